//! The browser client's JavaScript (web/*.js: `// @ts-check` modules with JSDoc types that
//! import web/hearth-messages.d.ts) type-checks against the checked-in declarations, which
//! tests/schema.rs holds to what the message registry generates: a message changed without the
//! page following it fails here. TypeScript's `tsc` (Debian's `node-typescript`) missing is a
//! failure that says how to install it, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the browser client and its declarations are, relative to the repository root.
const WEB_DIR: &str = "web";
/// The declarations `hearth schema` generates, which the client imports.
const DECLARATIONS: &str = "hearth-messages.d.ts";
/// tsc's options: check the JavaScript strictly, emit nothing. `--moduleResolution node` (not
/// `bundler`, which needs TypeScript 5) resolves `import('./hearth-messages')` to the `.d.ts`.
const TSC_OPTIONS: &[&str] = &[
    "--noEmit",
    "--allowJs",
    "--checkJs",
    "--strict",
    "--target",
    "es2022",
    "--module",
    "es2022",
    "--moduleResolution",
    "node",
    "--lib",
    "es2022,dom",
];

/// `web/*.js` (sorted) and the declarations, relative to `root`.
fn checked_files(root: &Path) -> Vec<PathBuf> {
    let dir = root.join(WEB_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "js"))
        .map(|path| Path::new(WEB_DIR).join(path.file_name().unwrap()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .js files in {}", dir.display());
    files.push(Path::new(WEB_DIR).join(DECLARATIONS));
    files
}

/// Runs tsc over the browser client under `root`: whether it passed, and what it printed.
fn tsc(root: &Path) -> (bool, String) {
    let files = checked_files(root);
    let output = Command::new("tsc")
        .args(TSC_OPTIONS)
        .args(&files)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "could not run `tsc` ({e}): this test type-checks the browser client with \
                 TypeScript. Install it with `apt-get install -y node-typescript` \
                 (./scripts/test.sh does)."
            )
        });
    let printed = format!(
        "$ tsc {} {}\n{}{}",
        TSC_OPTIONS.join(" "),
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

#[test]
fn the_browser_client_type_checks_against_the_generated_declarations() {
    let (passed, printed) = tsc(Path::new(env!("CARGO_MANIFEST_DIR")));
    assert!(
        passed,
        "the browser client (web/*.js) does not type-check against {WEB_DIR}/{DECLARATIONS}: \
         a message changed and the page did not follow it (or the page has a type error). \
         Fix the JavaScript (JSDoc annotations) to fit the messages.\n{printed}"
    );
}

/// The check is not vacuous: a copy of web/ whose declarations rename a field the client reads
/// (`handoff`'s `ws_addr`) fails it, naming that field.
#[test]
fn the_check_fails_when_a_message_changes_without_the_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir(copy.path().join(WEB_DIR)).unwrap();
    for file in checked_files(root) {
        std::fs::copy(root.join(&file), copy.path().join(&file)).unwrap();
    }
    let declarations = copy.path().join(WEB_DIR).join(DECLARATIONS);
    let original = std::fs::read_to_string(&declarations).unwrap();
    let field = "  ws_addr?: string | null;";
    assert_eq!(
        original.matches(field).count(),
        1,
        "{DECLARATIONS} no longer declares `{field}` once: pick another field for this test"
    );
    std::fs::write(
        &declarations,
        original.replace(field, "  ws_address?: string | null;"),
    )
    .unwrap();

    let (passed, printed) = tsc(copy.path());
    assert!(
        !passed,
        "tsc accepted a client reading a field the declarations no longer have:\n{printed}"
    );
    assert!(
        printed.contains("ws_addr"),
        "tsc failed without naming the renamed field `ws_addr`:\n{printed}"
    );
}
