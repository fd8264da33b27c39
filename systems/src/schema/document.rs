//! The registry as one JSON Schema (draft 2020-12) document: each message a definition
//! named after its `type` (`level_up` → `LevelUpMessage`) with its `type` as a constant, the
//! unions `ClientMessage` and `ServerMessage`, and every type they use under `$defs`.

use std::collections::BTreeMap;

use hearth_components::protocol::{ClientMessage, RequestId, ServerMessage};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::{Entry, MessageSchemas};

/// Why the registry has no schema document (a game's naming clash, found at generation).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Two different types would be defined under one name.
    #[error(
        "two different types are named `{0}` in the schema; rename one (`#[schemars(rename = \"...\")]`)"
    )]
    NameClash(String),
    /// A core message's schema does not have the shape the document relies on.
    #[error("the schema of Hearth's {0} is not a union of objects tagged by `type`")]
    CoreShape(&'static str),
}

const DEFS: &str = "#/$defs/";

/// The definition name of a message type: `level_up` → `LevelUpMessage`.
pub fn message_def_name(kind: &str) -> String {
    let mut name = String::with_capacity(kind.len() + 7);
    for part in kind.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.push(first.to_ascii_uppercase());
            name.extend(chars);
        }
    }
    name.push_str("Message");
    name
}

/// `{"type":"string","const":kind}`: a message's tag.
fn tag(kind: &str) -> Value {
    json!({ "type": "string", "const": kind })
}

/// Messages of one direction, by definition name, with the definitions their generator made.
struct Side {
    generator: SchemaGenerator,
    /// (type, schema), in order.
    messages: Vec<(String, Value)>,
}

impl Side {
    fn new(settings: SchemaSettings) -> Self {
        Self {
            generator: settings.into_generator(),
            messages: Vec::new(),
        }
    }

    /// Adds the variants of a core enum tagged by `type`, each as its own message.
    fn add_core(&mut self, union: Schema, what: &'static str) -> Result<(), SchemaError> {
        let Some(Value::Array(variants)) = union.as_object().and_then(|o| o.get("oneOf")) else {
            return Err(SchemaError::CoreShape(what));
        };
        for variant in variants {
            let kind = variant
                .pointer("/properties/type/const")
                .and_then(Value::as_str)
                .ok_or(SchemaError::CoreShape(what))?;
            self.messages.push((kind.to_string(), variant.clone()));
        }
        Ok(())
    }

    /// Adds a game's messages: each type's fields, with the `type` tag added.
    fn add_game(&mut self, entries: &[Entry]) {
        for entry in entries {
            let fields = (entry.schema)(&mut self.generator).to_value();
            self.messages
                .push((entry.name.clone(), with_tag(&entry.name, fields)));
        }
    }
}

/// An object with only the `type` tag `kind` (and `description`, when given).
fn tag_only(kind: &str, description: Option<Value>) -> Map<String, Value> {
    let mut object = Map::new();
    if let Some(description) = description {
        object.insert("description".into(), description);
    }
    object.insert("type".into(), json!("object"));
    object.insert("properties".into(), json!({ "type": tag(kind) }));
    object.insert("required".into(), json!(["type"]));
    object
}

/// A game message's schema: `fields` (the schema of its Rust type) with the `type` tag
/// as its first required property. A type without fields (a unit struct, `null` to serde)
/// is an object with only the tag; a type that is not a plain object (an enum, a flattened
/// struct) is kept whole beside the tag (`allOf`).
fn with_tag(kind: &str, fields: Value) -> Value {
    let Value::Object(mut object) = fields else {
        return Value::Object(tag_only(kind, None));
    };
    if object.get("type") == Some(&json!("null")) {
        return Value::Object(tag_only(kind, object.remove("description")));
    }
    let plain = object.get("type") == Some(&json!("object"))
        && ["allOf", "anyOf", "oneOf", "$ref"]
            .iter()
            .all(|key| !object.contains_key(*key));
    if !plain {
        let mut whole = tag_only(kind, object.remove("description"));
        whole.insert("allOf".into(), json!([object]));
        return Value::Object(whole);
    }
    let mut properties = Map::new();
    properties.insert("type".into(), tag(kind));
    if let Some(Value::Object(fields)) = object.remove("properties") {
        properties.extend(fields);
    }
    let mut required = vec![json!("type")];
    if let Some(Value::Array(fields)) = object.remove("required") {
        required.extend(fields);
    }
    object.insert("properties".into(), Value::Object(properties));
    object.insert("required".into(), Value::Array(required));
    Value::Object(object)
}

/// Adds the optional request `id` to a message's properties (a client may send one with any
/// message; answers carry it back).
fn with_request_id(mut message: Value) -> Value {
    if let Some(Value::Object(properties)) = message.get_mut("properties") {
        properties.insert("id".into(), json!({ "$ref": format!("{DEFS}RequestId") }));
    }
    message
}

/// The `replication` message and the `update` entities, typed by the replicated components.
fn replication_messages(side: &mut Side, components: &[Entry]) -> (Value, Value, Value) {
    let mut entity = Map::new();
    entity.insert(
        "id".into(),
        json!({ "description": "The entity's id, unique for the life of the server process.", "type": "integer", "format": "uint64", "minimum": 0 }),
    );
    for component in components {
        let schema = (component.schema)(&mut side.generator).to_value();
        entity.insert(component.name.clone(), schema);
    }
    let names: Vec<&str> = components.iter().map(|c| c.name.as_str()).collect();
    let replication = json!({
        "description": "Once per login or resume, before the first `update`: your entity and what replicates.",
        "type": "object",
        "properties": {
            "type": tag("replication"),
            "you": { "description": "Your own entity id (as in updates).", "type": "integer", "format": "uint64", "minimum": 0 },
            "rate_hz": { "description": "Rounds (updates) per second.", "type": "number", "format": "double" },
            "components": {
                "description": "The replicated components in index order: a name is a key of an entity object in updates.",
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": { "enum": names },
                        "encoding": { "description": "How the binary encoding carries it (docs/protocol.md).", "type": "string" }
                    },
                    "required": ["name", "encoding"]
                }
            }
        },
        "required": ["type", "you", "rate_hz", "components"]
    });
    let entity_ref = json!({ "$ref": format!("{DEFS}ReplicatedEntity") });
    let update = json!({
        "description": "Once per round while logged in: what entered your area of interest, what changed, what left. Apply entered, changed, left in order.",
        "type": "object",
        "properties": {
            "type": tag("update"),
            "round": { "description": "The round this update brings you to (increasing).", "type": "integer", "format": "uint64", "minimum": 0 },
            "entered": { "description": "Entities new to you, with every replicated component they have.", "type": "array", "items": entity_ref },
            "changed": { "description": "Entities you have, with only the components that changed.", "type": "array", "items": entity_ref },
            "left": { "description": "Ids of entities to forget.", "type": "array", "items": { "type": "integer", "format": "uint64", "minimum": 0 } }
        },
        "required": ["type", "round", "entered", "changed", "left"]
    });
    let entity = json!({
        "description": "A replicated entity in an update: its id and replicated components (by name).",
        "type": "object",
        "properties": entity,
        "required": ["id"],
        "additionalProperties": false
    });
    (replication, update, entity)
}

/// Rewrites every `$ref` to a definition renamed in `renamed` (old name → new).
fn rename_refs(value: &mut Value, renamed: &BTreeMap<String, String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get_mut("$ref")
                && let Some(new) = target.strip_prefix(DEFS).and_then(|name| renamed.get(name))
            {
                *target = format!("{DEFS}{new}");
            }
            object.values_mut().for_each(|v| rename_refs(v, renamed));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, renamed)),
        _ => {}
    }
}

/// Inserts a definition, refusing a second, different one under the same name.
fn define(defs: &mut Map<String, Value>, name: String, schema: Value) -> Result<(), SchemaError> {
    match defs.get(&name) {
        Some(existing) if *existing != schema => Err(SchemaError::NameClash(name)),
        _ => {
            defs.insert(name, schema);
            Ok(())
        }
    }
}

/// A union of messages by their definition names.
fn union(description: &str, messages: &[(String, Value)]) -> Value {
    let refs: Vec<Value> = messages
        .iter()
        .map(|(kind, _)| json!({ "$ref": format!("{DEFS}{}", message_def_name(kind)) }))
        .collect();
    json!({ "description": description, "oneOf": refs })
}

impl MessageSchemas {
    /// The JSON Schema document of every message: Hearth's core messages, the game's, and
    /// (when the game replicates components) `replication` and `update` with their entities
    /// typed. Client messages are described as the server reads them (unknown fields refused,
    /// an optional request `id`), server messages as it writes them.
    pub fn document(&self, title: &str) -> Result<Value, SchemaError> {
        let mut client = Side::new(SchemaSettings::draft2020_12().for_deserialize());
        let mut server = Side::new(SchemaSettings::draft2020_12().for_serialize());
        let core_client = ClientMessage::json_schema(&mut client.generator);
        client.add_core(core_client, "ClientMessage")?;
        client.add_game(&self.client);
        let core_server = ServerMessage::json_schema(&mut server.generator);
        server.add_core(core_server, "ServerMessage")?;
        server.add_game(&self.server);

        for (_, message) in &mut client.messages {
            *message = with_request_id(std::mem::take(message));
            if let Value::Object(object) = message
                && !object.contains_key("allOf")
            {
                object.insert("additionalProperties".into(), json!(false));
            }
        }
        let mut entity = None;
        if !self.replicated.is_empty() {
            let (replication, update, replicated) =
                replication_messages(&mut server, &self.replicated);
            server.messages.push(("replication".into(), replication));
            server.messages.push(("update".into(), update));
            entity = Some(replicated);
        }
        for (kind, message) in &mut server.messages {
            if !matches!(kind.as_str(), "replication" | "update" | "kicked") {
                *message = with_request_id(std::mem::take(message));
            }
            if kind == "error"
                && let Some(code) = message.pointer_mut("/properties/code")
            {
                // A game's refusal (`Refusals::refuse`) carries the game's own code.
                *code = json!({ "anyOf": [
                    { "$ref": format!("{DEFS}ErrorCode") },
                    { "description": "A game's own refusal code.", "type": "string" }
                ] });
            }
        }

        // A type both read and written with different forms (a defaulted field is optional
        // when read, always there when written) gets a second definition for its written form.
        let mut defs = client.generator.take_definitions(true);
        let mut server_defs = server.generator.take_definitions(true);
        let renamed: BTreeMap<String, String> = server_defs
            .iter()
            .filter(|(name, schema)| defs.get(*name).is_some_and(|c| c != *schema))
            .map(|(name, _)| (name.clone(), format!("{name}AsSent")))
            .collect();
        for schema in server_defs.values_mut() {
            rename_refs(schema, &renamed);
        }
        for (_, message) in &mut server.messages {
            rename_refs(message, &renamed);
        }
        if let Some(entity) = &mut entity {
            rename_refs(entity, &renamed);
        }
        for (name, schema) in server_defs {
            let name = renamed.get(&name).cloned().unwrap_or(name);
            define(&mut defs, name, schema)?;
        }
        define(
            &mut defs,
            "RequestId".into(),
            RequestId::json_schema(&mut client.generator).to_value(),
        )?;
        if let Some(entity) = entity {
            define(&mut defs, "ReplicatedEntity".into(), entity)?;
        }
        for (kind, message) in client.messages.iter().chain(&server.messages) {
            if defs.contains_key(&message_def_name(kind)) {
                return Err(SchemaError::NameClash(message_def_name(kind)));
            }
            defs.insert(message_def_name(kind), message.clone());
        }
        for (name, union) in [
            (
                "ClientMessage",
                union("A message a client sends.", &client.messages),
            ),
            (
                "ServerMessage",
                union("A message the server sends.", &server.messages),
            ),
        ] {
            if defs.contains_key(name) {
                return Err(SchemaError::NameClash(name.into()));
            }
            defs.insert(name.into(), union);
        }
        Ok(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title,
            "description": "Every message of this game's protocol (docs/protocol.md), generated by `hearth schema` from the server's message registry.",
            "anyOf": [
                { "$ref": format!("{DEFS}ClientMessage") },
                { "$ref": format!("{DEFS}ServerMessage") }
            ],
            "$defs": defs
        }))
    }
}
