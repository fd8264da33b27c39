//! The replicated world as the client knows it (docs/protocol.md, "Replication: what you see"):
//! entities by id, each with its components as serde JSON values, rebuilt from `replication`
//! and `update` messages in either encoding.

use std::collections::BTreeMap;

use hearth_components::wire::{self, MessageError, QuantisedPosition, UpdateFrame, WireError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// One replicated component, as the `replication` message announces it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ComponentInfo {
    /// Its key in an entity (`position`).
    pub name: String,
    /// How its binary payload is read (`position_q64`, `messagepack`).
    pub encoding: String,
}

/// An entity of an update's `entered` or `changed` section: its id and the components sent.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct EntityState {
    pub id: u64,
    /// Component name → value (all of them when entered; only the changed ones when changed).
    #[serde(flatten)]
    pub components: Map<String, Value>,
}

/// One replication round's news: apply entered, then changed, then left.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Update {
    /// The round this brings the client to (increasing; skipped rounds are never replayed).
    pub round: u64,
    pub entered: Vec<EntityState>,
    pub changed: Vec<EntityState>,
    pub left: Vec<u64>,
}

impl Update {
    /// A binary update frame in JSON form, its components read with `components` (the
    /// `replication` message's list): positions in world units (within 1/128), MessagePack
    /// values as JSON. A component of an unknown encoding is skipped, as the spec allows.
    pub(crate) fn from_binary(
        frame: UpdateFrame,
        components: &[ComponentInfo],
    ) -> Result<Self, UpdateFrameError> {
        let section =
            |entities: Vec<wire::EntityState>| {
                entities
                    .into_iter()
                    .map(|entity| {
                        let mut values = Map::new();
                        for (bit, payload) in entity.components {
                            let info = components.get(usize::from(bit)).ok_or(
                                UpdateFrameError::Unannounced {
                                    entity: entity.id,
                                    bit,
                                },
                            )?;
                            let value =
                                match info.encoding.as_str() {
                                    "position_q64" => {
                                        let (x, y) = QuantisedPosition::decode(&payload)
                                            .map_err(|source| UpdateFrameError::Position {
                                                entity: entity.id,
                                                component: info.name.clone(),
                                                source,
                                            })?
                                            .to_world();
                                        serde_json::json!({"x": x, "y": y})
                                    }
                                    "messagepack" => wire::decode_message::<Value>(&payload)
                                        .map_err(|source| UpdateFrameError::MessagePack {
                                            entity: entity.id,
                                            component: info.name.clone(),
                                            source,
                                        })?,
                                    _ => continue,
                                };
                            values.insert(info.name.clone(), value);
                        }
                        Ok(EntityState {
                            id: entity.id,
                            components: values,
                        })
                    })
                    .collect::<Result<Vec<_>, UpdateFrameError>>()
            };
        Ok(Self {
            round: frame.round,
            entered: section(frame.entered)?,
            changed: section(frame.changed)?,
            left: frame.left,
        })
    }
}

/// Why a binary update frame could not be read with the `replication` message's list of
/// components (the frame itself decoded).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpdateFrameError {
    /// The frame carries a component by a bit the `replication` message did not announce.
    #[error("entity {entity}: component bit {bit} was not announced")]
    Unannounced { entity: u64, bit: u8 },
    /// A `position_q64` component whose payload is not a quantised position.
    #[error("entity {entity}: {component}: {source}")]
    Position {
        entity: u64,
        component: String,
        #[source]
        source: WireError,
    },
    /// A `messagepack` component whose payload is not valid MessagePack.
    #[error("entity {entity}: {component}: {source}")]
    MessagePack {
        entity: u64,
        component: String,
        #[source]
        source: MessageError,
    },
}

/// Why a component could not be read from the world.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("no entity {0} in view")]
    NoEntity(u64),
    #[error("entity {id} has no component `{name}`")]
    NoComponent { id: u64, name: String },
    #[error("entity {id}'s `{name}` does not decode as the type asked for: {source}")]
    Decode {
        id: u64,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A replicated entity: its server id and its components.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entity {
    pub id: u64,
    pub components: Map<String, Value>,
}

impl Entity {
    /// The component `name` as a `T` (the game's own serde type).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, WorldError> {
        let value = self
            .components
            .get(name)
            .ok_or_else(|| WorldError::NoComponent {
                id: self.id,
                name: name.to_string(),
            })?;
        T::deserialize(value).map_err(|source| WorldError::Decode {
            id: self.id,
            name: name.to_string(),
            source,
        })
    }
}

/// What the server has shown this client: cleared by each `replication`, built by `update`s.
#[derive(Clone, Debug, Default)]
pub struct World {
    you: Option<u64>,
    rate_hz: f64,
    components: Vec<ComponentInfo>,
    round: u64,
    entities: BTreeMap<u64, Entity>,
}

impl World {
    /// Starts over for a new login: `you`, the round rate and the replicated components.
    pub(crate) fn reset(&mut self, you: u64, rate_hz: f64, components: Vec<ComponentInfo>) {
        *self = Self {
            you: Some(you),
            rate_hz,
            components,
            ..Self::default()
        };
    }

    /// Forgets everything (the connection ended).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Applies an update: entered entities replace what was known under their id, changed
    /// ones overwrite the components sent, left ones are forgotten. A change of an entity
    /// never entered (a server bug) enters it with what it carries, and is logged.
    pub(crate) fn apply(&mut self, update: &Update) {
        self.round = update.round;
        for state in &update.entered {
            self.entities.insert(
                state.id,
                Entity {
                    id: state.id,
                    components: state.components.clone(),
                },
            );
        }
        for state in &update.changed {
            let entity = self.entities.entry(state.id).or_insert_with(|| {
                tracing::warn!(id = state.id, "a change of an entity never entered");
                Entity {
                    id: state.id,
                    ..Entity::default()
                }
            });
            for (name, value) in &state.components {
                entity.components.insert(name.clone(), value.clone());
            }
        }
        for id in &update.left {
            self.entities.remove(id);
        }
    }

    /// The replicated components, in index order (empty before the first `replication`).
    pub fn components(&self) -> &[ComponentInfo] {
        &self.components
    }

    /// Your own entity's id, once logged in.
    pub fn you(&self) -> Option<u64> {
        self.you
    }

    /// Replication rounds per second.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// The last round applied.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The entity with server id `id`, if in view.
    pub fn entity(&self, id: u64) -> Option<&Entity> {
        self.entities.get(&id)
    }

    /// Every entity in view, by id.
    pub fn entities(&self) -> impl Iterator<Item = &Entity> {
        self.entities.values()
    }

    /// Component `name` of entity `id` as a `T`: `world.get::<Position>(id, "position")`.
    pub fn get<T: DeserializeOwned>(&self, id: u64, name: &str) -> Result<T, WorldError> {
        self.entity(id).ok_or(WorldError::NoEntity(id))?.get(name)
    }

    /// The entity of player `player_id` (by its `player_id` component), if in view.
    pub fn player(&self, player_id: u64) -> Option<&Entity> {
        self.entities
            .values()
            .find(|e| e.components.get("player_id").and_then(Value::as_u64) == Some(player_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_components::Position;
    use serde_json::json;

    fn update(json: Value) -> Update {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn entered_changed_left_build_the_world_and_components_read_typed() {
        let mut world = World::default();
        world.reset(1, 20.0, Vec::new());
        world.apply(&update(json!({"round": 5,
            "entered": [{"id": 1, "position": {"x": 1.0, "y": 2.0}, "player_id": 7},
                        {"id": 2, "position": {"x": 0.0, "y": 0.0}, "player_id": 8}],
            "changed": [], "left": []})));
        world.apply(&update(json!({"round": 6, "entered": [],
            "changed": [{"id": 1, "position": {"x": 3.0, "y": 2.0}}], "left": [2]})));
        assert_eq!(world.round(), 6);
        assert_eq!(
            world.get::<Position>(1, "position").unwrap(),
            Position { x: 3.0, y: 2.0 }
        );
        assert_eq!(world.get::<u64>(1, "player_id").unwrap(), 7, "kept");
        assert!(matches!(
            world.get::<u64>(2, "player_id"),
            Err(WorldError::NoEntity(2))
        ));
        assert!(matches!(
            world.get::<String>(1, "player_id"),
            Err(WorldError::Decode { .. })
        ));
        assert_eq!(world.player(7).map(|e| e.id), Some(1));
    }

    #[test]
    fn binary_updates_read_positions_and_messagepack_values_by_the_announced_list() {
        let components = vec![
            ComponentInfo {
                name: "position".into(),
                encoding: "position_q64".into(),
            },
            ComponentInfo {
                name: "player_id".into(),
                encoding: "messagepack".into(),
            },
        ];
        let mut position = Vec::new();
        QuantisedPosition::from_world(1.5, -2.0).encode(&mut position);
        let frame = UpdateFrame {
            round: 64,
            entered: vec![wire::EntityState {
                id: 51,
                components: vec![(0, position), (1, vec![0x01])],
            }],
            changed: vec![],
            left: vec![7],
        };
        let update = Update::from_binary(frame.clone(), &components).unwrap();
        assert_eq!(
            update.entered[0].components,
            json!({"position": {"x": 1.5, "y": -2.0}, "player_id": 1})
                .as_object()
                .unwrap()
                .clone()
        );
        assert_eq!(update.left, vec![7]);
        assert!(
            matches!(
                Update::from_binary(frame, &components[..1]),
                Err(UpdateFrameError::Unannounced { entity: 51, bit: 1 })
            ),
            "a bit never announced"
        );
    }
}
