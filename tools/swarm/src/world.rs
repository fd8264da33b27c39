//! The world a bot rebuilds from replication, in either encoding, checking every update
//! against what it was told: a change or a leave of an entity it was never told of, or an
//! update that does not decode, is a broken promise of the server.

use std::collections::HashMap;

use hearth_components::wire::{QuantisedPosition, UpdateFrame, decode_message};
use serde::Deserialize;

/// What a bot knows of one entity.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seen {
    pub player: Option<u64>,
    pub position: Option<(f64, f64)>,
}

/// The replicated world as this bot was told it.
#[derive(Default)]
pub struct World {
    /// Component names by index (binary updates).
    components: Vec<String>,
    entities: HashMap<u64, Seen>,
}

/// The `replication` message.
#[derive(Deserialize)]
pub struct Introduction {
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    name: String,
}

/// A JSON `update` (components other than position and player id are ignored).
#[derive(Deserialize)]
struct JsonUpdate {
    entered: Vec<JsonEntity>,
    changed: Vec<JsonEntity>,
    left: Vec<u64>,
}

#[derive(Deserialize)]
struct JsonEntity {
    id: u64,
    position: Option<JsonPosition>,
    player_id: Option<u64>,
}

#[derive(Deserialize)]
struct JsonPosition {
    x: f64,
    y: f64,
}

impl World {
    /// A `replication` message: a new world.
    pub fn introduce(&mut self, intro: Introduction) {
        self.components = intro.components.into_iter().map(|c| c.name).collect();
        self.entities.clear();
    }

    /// Applies a JSON `update` line.
    pub fn apply_json(&mut self, line: &[u8]) -> Result<(), String> {
        let update: JsonUpdate = serde_json::from_slice(line)
            .map_err(|e| format!("an update that does not parse: {e}"))?;
        for e in update.entered {
            self.entities.insert(e.id, Seen::default());
            self.set_json(e)?;
        }
        for e in update.changed {
            self.set_json(e)?;
        }
        self.leave(&update.left)
    }

    fn set_json(&mut self, e: JsonEntity) -> Result<(), String> {
        let seen = self.known(e.id)?;
        if let Some(p) = e.position {
            seen.position = Some((p.x, p.y));
        }
        if let Some(player) = e.player_id {
            seen.player = Some(player);
        }
        Ok(())
    }

    /// Applies a binary update frame's payload.
    pub fn apply_binary(&mut self, payload: &[u8]) -> Result<(), String> {
        let update = UpdateFrame::decode(payload).map_err(|e| format!("a bad update: {e}"))?;
        for e in &update.entered {
            self.entities.insert(e.id, Seen::default());
        }
        for e in update.entered.iter().chain(&update.changed) {
            for (index, bytes) in &e.components {
                let name = self
                    .components
                    .get(*index as usize)
                    .ok_or_else(|| format!("component {index} was never introduced"))?
                    .clone();
                let seen = self.known(e.id)?;
                match name.as_str() {
                    "position" => {
                        let q = QuantisedPosition::decode(bytes)
                            .map_err(|err| format!("a bad position: {err}"))?;
                        let (x, y) = q.to_world();
                        seen.position = Some((f64::from(x), f64::from(y)));
                    }
                    "player_id" => {
                        seen.player = Some(
                            decode_message(bytes)
                                .map_err(|err| format!("a bad player id: {err}"))?,
                        );
                    }
                    _ => {}
                }
            }
        }
        self.leave(&update.left)
    }

    fn known(&mut self, id: u64) -> Result<&mut Seen, String> {
        self.entities
            .get_mut(&id)
            .ok_or_else(|| format!("an update of entity {id}, which was never entered"))
    }

    fn leave(&mut self, ids: &[u64]) -> Result<(), String> {
        for id in ids {
            if self.entities.remove(id).is_none() {
                return Err(format!("entity {id} left without having entered"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_for_unknown_entities_are_refused() {
        let mut world = World::default();
        world.introduce(Introduction {
            components: vec![Component {
                name: "position".into(),
            }],
        });
        world
            .apply_json(br#"{"type":"update","round":1,"entered":[{"id":1,"position":{"x":1.0,"y":2.0}}],"changed":[],"left":[]}"#)
            .unwrap();
        assert_eq!(world.entities[&1].position, Some((1.0, 2.0)));
        let bad = world.apply_json(
            br#"{"type":"update","round":2,"entered":[],"changed":[{"id":9}],"left":[]}"#,
        );
        assert!(bad.unwrap_err().contains("never entered"));
        let bad = world
            .apply_json(br#"{"type":"update","round":2,"entered":[],"changed":[],"left":[8]}"#);
        assert!(bad.unwrap_err().contains("without having entered"));
        let mut payload = Vec::new();
        UpdateFrame {
            round: 3,
            changed: vec![hearth_components::wire::EntityState {
                id: 1,
                components: vec![(0, {
                    let mut b = Vec::new();
                    QuantisedPosition::from_world(3.0, -1.0).encode(&mut b);
                    b
                })],
            }],
            ..Default::default()
        }
        .encode(&mut payload);
        world.apply_binary(&payload).unwrap();
        assert_eq!(world.entities[&1].position, Some((3.0, -1.0)));
        assert!(world.apply_binary(&[0xff]).is_err());
        assert_eq!(world.entities.len(), 1);
    }
}
