//! What replicates: the registered components (by index, as the `replication` message lists
//! them), how each is encoded, and a component value handed over by the tick, encoded off the
//! tick on first use and then shared by every client.

use std::marker::PhantomData;
use std::sync::OnceLock;

use bevy_ecs::prelude::*;
use hearth_components::Position;
use hearth_components::wire::QuantisedPosition;
use serde::Serialize;
use serde_json::value::RawValue;

/// Most components one app can replicate (one bit each in an entity's mask).
pub const MAX_REPLICATED: usize = 64;

/// Why a component value has no form on the wire (a game's type that serde cannot write, such
/// as a map with non-string keys in JSON). Logged once; the value travels as if absent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentEncodeError(Box<dyn std::error::Error + Send + Sync>);

impl ComponentEncodeError {
    /// Wraps the encoder's own error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

/// How a replicated component travels: its payload in the binary encoding and its value in
/// the JSON one. Called off the tick, once per changed value.
pub trait ReplicationEncoding<C>: Send + Sync + 'static {
    /// The encoding's name in the `replication` message (docs/protocol.md lists them).
    const NAME: &'static str;
    /// Appends the binary payload.
    fn binary(value: &C, out: &mut Vec<u8>) -> Result<(), ComponentEncodeError>;
    /// The JSON value.
    fn json(value: &C) -> Result<Box<RawValue>, ComponentEncodeError>;
}

/// Any serde component: MessagePack (named fields) in binary, its serde JSON in JSON.
pub struct SerdeEncoding;

impl<C: Serialize> ReplicationEncoding<C> for SerdeEncoding {
    const NAME: &'static str = "messagepack";

    fn binary(value: &C, out: &mut Vec<u8>) -> Result<(), ComponentEncodeError> {
        rmp_serde::encode::write_named(out, value).map_err(ComponentEncodeError::new)
    }

    fn json(value: &C) -> Result<Box<RawValue>, ComponentEncodeError> {
        serde_json::value::to_raw_value(value).map_err(ComponentEncodeError::new)
    }
}

/// [`Position`] in fixed point: 1/64 world unit (a coordinate within 1/128 of the true one),
/// x then y as zigzag varints (3 bytes each at most in a ±1000 world). JSON carries the exact
/// `{"x","y"}`.
pub struct QuantisedPositionEncoding;

impl ReplicationEncoding<Position> for QuantisedPositionEncoding {
    const NAME: &'static str = "position_q64";

    fn binary(value: &Position, out: &mut Vec<u8>) -> Result<(), ComponentEncodeError> {
        QuantisedPosition::from_world(value.x, value.y).encode(out);
        Ok(())
    }

    fn json(value: &Position) -> Result<Box<RawValue>, ComponentEncodeError> {
        serde_json::value::to_raw_value(value).map_err(ComponentEncodeError::new)
    }
}

/// A value copied off an entity on the tick: encodes itself when asked.
trait Encodable: Send + Sync {
    fn binary(&self, out: &mut Vec<u8>) -> Result<(), ComponentEncodeError>;
    fn json(&self) -> Result<Box<RawValue>, ComponentEncodeError>;
}

struct Held<C, E>(C, PhantomData<fn() -> E>);

impl<C: Send + Sync, E: ReplicationEncoding<C>> Encodable for Held<C, E> {
    fn binary(&self, out: &mut Vec<u8>) -> Result<(), ComponentEncodeError> {
        E::binary(&self.0, out)
    }

    fn json(&self) -> Result<Box<RawValue>, ComponentEncodeError> {
        E::json(&self.0)
    }
}

/// Stands in for the value of [`ComponentValue::encoded`], whose forms are set at
/// creation and so never asked of it.
struct Encoded;

impl Encodable for Encoded {
    fn binary(&self, _out: &mut Vec<u8>) -> Result<(), ComponentEncodeError> {
        Ok(())
    }

    fn json(&self) -> Result<Box<RawValue>, ComponentEncodeError> {
        serde_json::value::to_raw_value(&()).map_err(ComponentEncodeError::new)
    }
}

/// One component's value as of a round: what it was (copied on the tick), the round in which
/// it last changed (its version), and its encodings, made on first use off the tick and
/// shared by every client. A value that fails to encode (a game's programming error) is
/// logged once and travels as if the entity lacked the component.
pub struct ComponentValue {
    version: u32,
    value: Box<dyn Encodable>,
    binary: OnceLock<Option<Box<[u8]>>>,
    json: OnceLock<Option<Box<RawValue>>>,
}

impl ComponentValue {
    /// A value of `C`, encoded with `E`, that changed in round `version`.
    pub fn new<C, E>(value: C, version: u32) -> Self
    where
        C: Send + Sync + 'static,
        E: ReplicationEncoding<C>,
    {
        Self {
            version,
            value: Box::new(Held::<C, E>(value, PhantomData)),
            binary: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// A value that arrives already encoded (a neighbouring zone's border snapshot, encoded
    /// there by the same game's registry): both forms are set, nothing is encoded here.
    pub fn encoded(binary: Box<[u8]>, json: Box<RawValue>, version: u32) -> Self {
        Self {
            version,
            value: Box::new(Encoded),
            binary: OnceLock::from(Some(binary)),
            json: OnceLock::from(Some(json)),
        }
    }

    /// The round in which this value was taken (the component changed then).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The binary payload, encoded now if nobody needed it yet.
    pub fn binary(&self) -> Option<&[u8]> {
        self.binary
            .get_or_init(|| {
                let mut out = Vec::new();
                match self.value.binary(&mut out) {
                    Ok(()) => Some(out.into_boxed_slice()),
                    Err(e) => {
                        tracing::error!("a replicated component has no binary form: {e}");
                        None
                    }
                }
            })
            .as_deref()
    }

    /// The JSON value, encoded now if nobody needed it yet.
    pub fn json(&self) -> Option<&RawValue> {
        self.json
            .get_or_init(|| match self.value.json() {
                Ok(raw) => Some(raw),
                Err(e) => {
                    tracing::error!("a replicated component has no JSON form: {e}");
                    None
                }
            })
            .as_deref()
    }
}

/// A replicated component as clients learn of it: its name (the key in JSON updates) and
/// encoding (how to read its binary payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicatedComponent {
    pub name: String,
    pub encoding: &'static str,
}

/// The replicated components, in registration order: a component's index is its bit in
/// binary updates.
#[derive(Resource, Debug, Default, Clone)]
pub struct ReplicationRegistry {
    components: Vec<ReplicatedComponent>,
}

impl ReplicationRegistry {
    /// Registers a component; its index. Panics (at start-up) on a duplicate name, the name
    /// `id` (taken by the entity id in JSON updates) or more than [`MAX_REPLICATED`].
    pub fn add(&mut self, name: String, encoding: &'static str) -> usize {
        assert!(name != "id", "a replicated component cannot be named `id`");
        assert!(
            self.components.iter().all(|c| c.name != name),
            "component `{name}` is replicated twice"
        );
        assert!(
            self.components.len() < MAX_REPLICATED,
            "at most {MAX_REPLICATED} components replicate"
        );
        self.components.push(ReplicatedComponent { name, encoding });
        self.components.len() - 1
    }

    /// The components, by index.
    pub fn components(&self) -> &[ReplicatedComponent] {
        &self.components
    }
}

/// A type's name as a replicated component: its last path segment in snake_case
/// (`PlayerId` → `player_id`).
pub fn component_name<C>() -> String {
    let full = std::any::type_name::<C>();
    let short = full.split('<').next().unwrap_or(full);
    let short = short.rsplit("::").next().unwrap_or(short);
    let mut name = String::with_capacity(short.len() + 4);
    for (i, ch) in short.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 {
                name.push('_');
            }
            name.extend(ch.to_lowercase());
        } else {
            name.push(ch);
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_components::PlayerId;

    #[test]
    fn names_and_encodings() {
        assert_eq!(component_name::<PlayerId>(), "player_id");
        assert_eq!(component_name::<Position>(), "position");
        let value =
            ComponentValue::new::<_, QuantisedPositionEncoding>(Position { x: 1.5, y: -2.0 }, 3);
        assert_eq!(value.version(), 3);
        assert_eq!(value.binary(), Some(&[192, 1, 255, 1][..]));
        assert_eq!(value.json().unwrap().get(), r#"{"x":1.5,"y":-2.0}"#);
        let copied = ComponentValue::encoded(
            value.binary().unwrap().into(),
            value.json().unwrap().to_owned(),
            4,
        );
        assert_eq!(copied.version(), 4);
        assert_eq!(copied.binary(), value.binary());
        assert_eq!(copied.json().unwrap().get(), value.json().unwrap().get());
        let id = ComponentValue::new::<_, SerdeEncoding>(PlayerId(7), 1);
        assert_eq!(id.binary(), Some(&[7][..]));
        assert_eq!(id.json().unwrap().get(), "7");
    }

    #[test]
    #[should_panic(expected = "replicated twice")]
    fn a_name_replicates_once() {
        let mut registry = ReplicationRegistry::default();
        registry.add("position".into(), "x");
        registry.add("position".into(), "x");
    }
}
