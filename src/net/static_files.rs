//! The browser client's files, embedded in the binary from the repository's `web/` folder
//! and served by the WebSocket listener (`net::web`): a newcomer opens the server's
//! address in a browser and plays, with nothing else to install or host. Adding a file is
//! one line in [`STATIC_FILES`].

/// One file of the browser client.
pub struct StaticFile {
    /// Its name under `web/`, which is also its path on the listener (`/` is `index.html`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

/// A [`StaticFile`] of `web/` named `$name`, served as `$content_type`.
macro_rules! web_file {
    ($name:literal, $content_type:literal) => {
        StaticFile {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../web/", $name)),
        }
    };
}

/// Every file served, by name.
pub const STATIC_FILES: &[StaticFile] = &[
    web_file!("index.html", "text/html; charset=utf-8"),
    web_file!("app.js", "text/javascript; charset=utf-8"),
    web_file!("client.js", "text/javascript; charset=utf-8"),
    web_file!("hearth-messages.d.ts", "text/plain; charset=utf-8"),
    web_file!("hearth-messages.schema.json", "application/schema+json"),
];

/// The file a request path names (`/` names `index.html`); `None` for anything else.
pub fn lookup(path: &str) -> Option<&'static StaticFile> {
    let name = match path.strip_prefix('/')? {
        "" => "index.html",
        name => name,
    };
    STATIC_FILES.iter().find(|file| file.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_index_and_unknown_paths_are_nothing() {
        assert_eq!(lookup("/").map(|f| f.name), Some("index.html"));
        assert_eq!(lookup("/index.html").map(|f| f.name), Some("index.html"));
        assert!(lookup("/../Cargo.toml").is_none());
        assert!(lookup("/nothing.js").is_none());
        assert!(lookup("index.html").is_none());
    }

    #[test]
    fn every_file_of_the_web_folder_is_served() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
        for entry in std::fs::read_dir(folder).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                lookup(&format!("/{name}")).is_some(),
                "web/{name} is not in STATIC_FILES"
            );
        }
    }

    #[test]
    fn every_file_has_a_content_type_and_a_body() {
        for file in STATIC_FILES {
            assert!(!file.content_type.is_empty(), "{}", file.name);
            assert!(!file.body.is_empty(), "{}", file.name);
        }
    }
}
