//! Typed bindings: the schema of every message a game's server speaks, so clients in any
//! language get typed messages instead of guessing fields. Registering a message
//! (`add_client_message`, `add_server_message`) or a replicated component (`replicate`)
//! records its type here; [`MessageSchemas::document`] turns the registry, with Hearth's core
//! messages and the replication messages, into one JSON Schema document, and
//! [`typescript::declarations`] turns that into TypeScript declarations (`hearth schema`
//! writes both).

mod document;
pub mod typescript;

use bevy_ecs::prelude::*;
use schemars::{JsonSchema, Schema, SchemaGenerator};

pub use document::SchemaError;

/// Builds one type's schema in a generator (the types it refers to become the generator's
/// definitions).
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// A type's own schema, inline (a message's fields, to which its `type` is added).
fn inline_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    T::json_schema(generator)
}

/// A reference to a type's schema (a replicated component, shared by every entity).
fn referenced_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One registered type, by the name it travels under.
#[derive(Clone)]
struct Entry {
    name: String,
    schema: SchemaFn,
}

/// The message registry as types: a game's client and server messages and its replicated
/// components, in registration order. Filled by the registration methods; read by
/// `hearth schema`.
#[derive(Resource, Default, Clone)]
pub struct MessageSchemas {
    client: Vec<Entry>,
    server: Vec<Entry>,
    replicated: Vec<Entry>,
}

impl MessageSchemas {
    /// Records the client message `name`, whose fields are `T`'s.
    pub fn add_client<T: JsonSchema>(&mut self, name: &str) {
        self.client.push(Entry {
            name: name.to_string(),
            schema: inline_schema::<T>,
        });
    }

    /// Records the server message `name`, whose fields are `T`'s.
    pub fn add_server<T: JsonSchema>(&mut self, name: &str) {
        self.server.push(Entry {
            name: name.to_string(),
            schema: inline_schema::<T>,
        });
    }

    /// Records the replicated component `name` (its key in JSON updates), whose JSON value
    /// is `C`'s.
    pub fn add_replicated<C: JsonSchema>(&mut self, name: &str) {
        self.replicated.push(Entry {
            name: name.to_string(),
            schema: referenced_schema::<C>,
        });
    }
}
