//! Updates in one form whatever their encoding: entities by id with their components, a
//! position decoded to world units, any other component kept as its encoded value.

use hearth_components::wire::{QuantisedPosition, UpdateFrame};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::conn::{ComponentInfo, RawUpdate};

/// The encoding of the component the bot checks its own position with.
pub(crate) const POSITION_ENCODING: &str = "position_q64";

/// A JSON `update` line.
#[derive(Deserialize)]
pub(crate) struct JsonUpdate {
    round: u64,
    entered: Vec<Map<String, Value>>,
    changed: Vec<Map<String, Value>>,
    left: Vec<u64>,
}

/// One component's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Component {
    /// World units: exact from JSON, within 1/128 from binary.
    Position(f32, f32),
    /// Any other component, as its encoding carries it.
    Binary(Vec<u8>),
    Json(Value),
}

/// An entity in the entered or changed section: its id and components by index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entity {
    pub(crate) id: u64,
    pub(crate) components: Vec<(usize, Component)>,
}

/// An update, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Update {
    pub(crate) round: u64,
    pub(crate) entered: Vec<Entity>,
    pub(crate) changed: Vec<Entity>,
    pub(crate) left: Vec<u64>,
}

/// Decodes `raw` against the components of the `replication` message; an error is a broken
/// promise (an unknown component, a position that does not decode).
pub(crate) fn decode(raw: RawUpdate, schema: &[ComponentInfo]) -> Result<Update, String> {
    match raw {
        RawUpdate::Binary(frame) => from_binary(frame, schema),
        RawUpdate::Json(update) => from_json(update, schema),
    }
}

fn from_binary(frame: UpdateFrame, schema: &[ComponentInfo]) -> Result<Update, String> {
    let section = |entities: Vec<hearth_components::wire::EntityState>| {
        entities
            .into_iter()
            .map(|entity| {
                let components = entity
                    .components
                    .into_iter()
                    .map(|(index, payload)| {
                        let index = usize::from(index);
                        let info = schema.get(index).ok_or_else(|| {
                            format!("entity {}: component bit {index} not announced", entity.id)
                        })?;
                        let value = if info.encoding == POSITION_ENCODING {
                            let (x, y) = QuantisedPosition::decode(&payload)
                                .map_err(|e| format!("entity {}: position: {e}", entity.id))?
                                .to_world();
                            Component::Position(x, y)
                        } else {
                            Component::Binary(payload)
                        };
                        Ok((index, value))
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Entity {
                    id: entity.id,
                    components,
                })
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(Update {
        round: frame.round,
        entered: section(frame.entered)?,
        changed: section(frame.changed)?,
        left: frame.left,
    })
}

fn from_json(update: JsonUpdate, schema: &[ComponentInfo]) -> Result<Update, String> {
    let section = |entities: Vec<Map<String, Value>>| {
        entities
            .into_iter()
            .map(|entity| {
                let id = entity
                    .get("id")
                    .and_then(Value::as_u64)
                    .ok_or("an entity without a numeric id")?;
                let mut components = Vec::with_capacity(entity.len().saturating_sub(1));
                for (name, value) in entity {
                    if name == "id" {
                        continue;
                    }
                    let index = schema
                        .iter()
                        .position(|c| c.name == name)
                        .ok_or_else(|| format!("entity {id}: component {name:?} not announced"))?;
                    let value = if schema[index].encoding == POSITION_ENCODING {
                        let axis = |axis: &str| value.get(axis).and_then(Value::as_f64);
                        match (axis("x"), axis("y")) {
                            (Some(x), Some(y)) => Component::Position(x as f32, y as f32),
                            _ => return Err(format!("entity {id}: position {value}")),
                        }
                    } else {
                        Component::Json(value)
                    };
                    components.push((index, value));
                }
                components.sort_by_key(|(index, _)| *index);
                Ok(Entity { id, components })
            })
            .collect::<Result<Vec<_>, String>>()
    };
    Ok(Update {
        round: update.round,
        entered: section(update.entered)?,
        changed: section(update.changed)?,
        left: update.left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_components::wire::EntityState;

    fn schema() -> Vec<ComponentInfo> {
        [
            ("position", POSITION_ENCODING),
            ("player_id", "messagepack"),
        ]
        .map(|(name, encoding)| ComponentInfo {
            name: name.into(),
            encoding: encoding.into(),
        })
        .to_vec()
    }

    #[test]
    fn both_encodings_decode_to_the_same_update() {
        let mut position = Vec::new();
        QuantisedPosition::from_world(1.5, -2.0).encode(&mut position);
        let binary = UpdateFrame {
            round: 64,
            entered: vec![EntityState {
                id: 51,
                components: vec![(0, position), (1, vec![0x01])],
            }],
            changed: vec![],
            left: vec![7],
        };
        let json: JsonUpdate = serde_json::from_str(
            r#"{"type":"update","round":64,"entered":[{"id":51,"position":{"x":1.5,"y":-2.0},"player_id":1}],"changed":[],"left":[7]}"#,
        )
        .unwrap();
        let binary = decode(RawUpdate::Binary(binary), &schema()).unwrap();
        let json = decode(RawUpdate::Json(json), &schema()).unwrap();
        assert_eq!(
            binary.entered[0].components[0].1,
            Component::Position(1.5, -2.0)
        );
        assert_eq!(
            json.entered[0].components[0].1,
            Component::Position(1.5, -2.0)
        );
        assert_eq!((binary.round, &binary.left), (json.round, &json.left));
    }

    #[test]
    fn an_unannounced_component_or_a_bad_position_is_an_error() {
        let bad = UpdateFrame {
            round: 1,
            entered: vec![EntityState {
                id: 3,
                components: vec![(5, vec![])],
            }],
            ..UpdateFrame::default()
        };
        assert!(decode(RawUpdate::Binary(bad), &schema()).is_err());
        let bad = UpdateFrame {
            round: 1,
            changed: vec![EntityState {
                id: 3,
                components: vec![(0, vec![0x80])],
            }],
            ..UpdateFrame::default()
        };
        assert!(decode(RawUpdate::Binary(bad), &schema()).is_err());
        let json: JsonUpdate = serde_json::from_str(
            r#"{"round":2,"entered":[],"changed":[{"id":3,"position":{"x":"a"}}],"left":[]}"#,
        )
        .unwrap();
        assert!(decode(RawUpdate::Json(json), &schema()).is_err());
    }
}
