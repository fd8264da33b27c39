//! Typed errors at module boundaries: no function in the library crates (src/, systems/,
//! components/, client/) returns `Result<_, String>`, so a caller can match on what failed
//! instead of reading English. Tools and tests may still use strings.

use std::path::Path;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether a line declares a result whose error is a bare `String`.
fn has_string_error(line: &str) -> bool {
    let squashed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    squashed.contains("Result<") && squashed.contains(",String>")
}

#[test]
fn the_library_crates_return_no_string_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "systems/src", "components/src", "client/src"] {
        sources(&root.join(dir), &mut files);
    }
    let found: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).expect("a readable source");
            // A file's unit tests sit after its `#[cfg(test)]`; tests may use strings.
            text.lines()
                .take_while(|line| line.trim() != "#[cfg(test)]")
                .enumerate()
                .filter(|(_, line)| has_string_error(line))
                .map(|(n, line)| format!("{}:{}: {}", file.display(), n + 1, line.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        found.is_empty(),
        "Result<_, String> in library code:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_string_error() {
    assert!(has_string_error("pub fn f() -> Result<(), String> {"));
    assert!(has_string_error("fn g() -> io::Result<Vec<u8>,  String>"));
    assert!(!has_string_error("fn h() -> Result<String, MessageError>"));
}
