//! `hearth schema`: the game's message registry as typed bindings for client writers: one
//! JSON Schema document ([`SCHEMA_FILE`]) and TypeScript declarations ([`TYPESCRIPT_FILE`]),
//! both made from the same Rust types the server decodes and encodes, so they say exactly
//! what the wire carries. The browser client in `web/` is typed by the demo game's.

use std::path::Path;

use bevy_app::{App, Plugin};
use hearth_systems::MessageSchemas;
use hearth_systems::schema::{SchemaError, typescript};
use serde_json::Value;

use crate::HearthPlugins;
use crate::config::ServerConfig;

/// The JSON Schema document's file name.
pub const SCHEMA_FILE: &str = "hearth-messages.schema.json";
/// The TypeScript declarations' file name (a JS module imports `./hearth-messages`).
pub const TYPESCRIPT_FILE: &str = "hearth-messages.d.ts";

/// A game's bindings, as the files hold them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bindings {
    /// The JSON Schema document (pretty-printed, keys sorted, ending with a newline).
    pub json_schema: String,
    /// The TypeScript declarations.
    pub typescript: String,
}

/// The bindings of the server binary `name` running `game`: its app is built (not started:
/// nothing opens) with a default configuration, and its registry read.
pub fn bindings_of(name: &str, game: impl Plugin) -> Result<Bindings, SchemaError> {
    let mut app = App::new();
    app.add_plugins(HearthPlugins::new(ServerConfig::default()))
        .add_plugins(game);
    bindings(name, &app)
}

/// The bindings of a built app (every plugin added) of the server binary `name`.
pub fn bindings(name: &str, app: &App) -> Result<Bindings, SchemaError> {
    let registry = app
        .world()
        .get_resource::<MessageSchemas>()
        .cloned()
        .unwrap_or_default();
    let mut document = registry.document(&format!("{name} messages"))?;
    sort_keys(&mut document);
    let mut json_schema =
        serde_json::to_string_pretty(&document).expect("a JSON value always serialises");
    json_schema.push('\n');
    let typescript = typescript::declarations(
        &document,
        &format!("regenerate with `{name} schema --out DIR`"),
    );
    Ok(Bindings {
        json_schema,
        typescript,
    })
}

/// Sorts every object's keys, so the files do not depend on how serde_json orders maps.
fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.sort_keys();
            object.values_mut().for_each(sort_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// Writes both files into `dir` (created if missing).
pub fn write(dir: &Path, bindings: &Bindings) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(SCHEMA_FILE), &bindings.json_schema)?;
    std::fs::write(dir.join(TYPESCRIPT_FILE), &bindings.typescript)
}
