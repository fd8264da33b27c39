//! What a zone tells its neighbours, 20 times a second: a snapshot of the players in its
//! border strip (within the interest radius of a neighbouring zone), each with its full
//! current replicated state as the game's registry encodes it. State, not events: each
//! snapshot replaces the previous one, so a lost message costs one round of freshness.
//!
//! Encoded as MessagePack arrays (`rmp_serde`, no field names): about 40 bytes a player for
//! the demo game (position and player id).

use hearth_components::PlayerId;
use hearth_systems::replication::{
    EncodedReplica, EncodedValue, InterestTags, ReplicatedComponent, ReplicationRound,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::zones::{Zone, ZoneMap};

/// One zone's border strip as of one replication round.
#[derive(Debug, Serialize, Deserialize)]
pub struct BorderSnapshot {
    /// The zone that sent it.
    pub zone: String,
    /// When its round was taken there (microseconds since the Unix epoch, the sender's
    /// clock): how stale it is when it arrives (`hearth_border_snapshot_age_seconds`).
    pub taken_us: u64,
    pub players: Vec<BorderPlayer>,
}

/// A player in the strip: where it is, what the visibility rule knows of it, and each of its
/// replicated components by name: (name, binary payload, JSON value).
#[derive(Debug, Serialize, Deserialize)]
pub struct BorderPlayer {
    pub player: u64,
    pub x: f32,
    pub y: f32,
    pub layers: u64,
    pub group: u64,
    pub components: Vec<(String, Vec<u8>, String)>,
}

/// The parts of this zone near its neighbours: the other zones within `radius` of it.
#[derive(Clone, Debug)]
pub struct Strip {
    neighbours: Vec<Zone>,
    radius: f32,
}

impl Strip {
    /// The strip of `own` in `map`, `radius` wide (the replication radius).
    pub fn new(map: &ZoneMap, own: &Zone, radius: f32) -> Self {
        let neighbours = map
            .zones()
            .iter()
            .filter(|z| z.name != own.name && rect_distance(z, own) <= radius)
            .cloned()
            .collect();
        Self { neighbours, radius }
    }

    /// The neighbouring zones' names: their channels are the ones to subscribe to.
    pub fn neighbours(&self) -> impl Iterator<Item = &str> {
        self.neighbours.iter().map(|z| z.name.as_str())
    }

    /// Whether a player at `(x, y)` may be in the area of interest of a neighbour's player.
    pub fn holds(&self, x: f32, y: f32) -> bool {
        self.neighbours
            .iter()
            .any(|z| point_distance(z, x, y) <= self.radius)
    }

    /// The snapshot of `round`'s players in the strip (this process's own players: remote
    /// entities are not players in a round, so they are never passed on).
    pub fn snapshot(&self, zone: &str, round: &ReplicationRound, taken_us: u64) -> BorderSnapshot {
        let names = round.components();
        let players = round
            .entities()
            .iter()
            .enumerate()
            .filter_map(|(slot, entity)| {
                let player = entity.player?;
                let (x, y) = entity.at?;
                if !self.holds(x, y) {
                    return None;
                }
                let components = round
                    .values(slot as u32)
                    .iter()
                    .zip(names)
                    .filter_map(|(value, component)| {
                        let value = value.as_ref()?;
                        Some((
                            component.name.clone(),
                            value.binary()?.to_vec(),
                            value.json()?.get().to_string(),
                        ))
                    })
                    .collect();
                Some(BorderPlayer {
                    player: player.0,
                    x,
                    y,
                    layers: entity.tags.layers,
                    group: entity.tags.group,
                    components,
                })
            })
            .collect();
        BorderSnapshot {
            zone: zone.to_string(),
            taken_us,
            players,
        }
    }
}

/// A received player as a remote entity's parts: its id, tags and replicated values by this
/// process's registry index (components this process does not replicate, or whose JSON is
/// not JSON, are left out).
pub fn replica(
    player: BorderPlayer,
    components: &[ReplicatedComponent],
) -> (PlayerId, InterestTags, EncodedReplica) {
    let mut values = vec![None; components.len()];
    for (name, binary, json) in player.components {
        let Some(index) = components.iter().position(|c| c.name == name) else {
            continue;
        };
        let Ok(json) = RawValue::from_string(json) else {
            continue;
        };
        values[index] = Some(EncodedValue {
            binary: binary.into_boxed_slice(),
            json,
        });
    }
    (
        PlayerId(player.player),
        InterestTags {
            layers: player.layers,
            group: player.group,
        },
        EncodedReplica {
            at: (player.x, player.y),
            values,
        },
    )
}

/// The distance from `(x, y)` to the rectangle of `zone` (0 inside it).
fn point_distance(zone: &Zone, x: f32, y: f32) -> f32 {
    let dx = (zone.min[0] - x).max(0.0).max(x - zone.max[0]);
    let dy = (zone.min[1] - y).max(0.0).max(y - zone.max[1]);
    dx.hypot(dy)
}

/// The distance between two zones' rectangles (0 when they touch).
fn rect_distance(a: &Zone, b: &Zone) -> f32 {
    let dx = (a.min[0] - b.max[0]).max(0.0).max(b.min[0] - a.max[0]);
    let dy = (a.min[1] - b.max[1]).max(0.0).max(b.min[1] - a.max[1]);
    dx.hypot(dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ZoneMap {
        "[[zone]]\nname = \"west\"\nmin = [-1000, -1000]\nmax = [0, 1000]\n\n\
         [[zone]]\nname = \"east\"\nmin = [0, -1000]\nmax = [1000, 1000]\n\n\
         [[zone]]\nname = \"far\"\nmin = [1000, -1000]\nmax = [2000, 1000]\n"
            .parse()
            .unwrap()
    }

    #[test]
    fn the_strip_is_within_the_radius_of_a_neighbour() {
        let map = map();
        let west = Strip::new(&map, map.zone("west").unwrap(), 50.0);
        assert_eq!(
            west.neighbours().collect::<Vec<_>>(),
            vec!["east"],
            "far is 1000 away"
        );
        assert!(west.holds(-50.0, 0.0));
        assert!(west.holds(-1.0, 999.0));
        assert!(!west.holds(-50.5, 0.0));
        assert!(!west.holds(-500.0, 0.0));
        let east = Strip::new(&map, map.zone("east").unwrap(), 50.0);
        assert_eq!(east.neighbours().collect::<Vec<_>>(), vec!["west", "far"]);
        assert!(east.holds(960.0, 0.0), "near far");
        assert!(!east.holds(500.0, 0.0));
    }

    #[test]
    fn a_snapshot_survives_its_encoding_and_maps_components_by_name() {
        let snapshot = BorderSnapshot {
            zone: "east".into(),
            taken_us: 1,
            players: vec![BorderPlayer {
                player: 42,
                x: 3.0,
                y: -1.5,
                layers: 1,
                group: 0,
                components: vec![
                    ("unknown_here".into(), vec![1], "1".into()),
                    ("player_id".into(), vec![42], "42".into()),
                ],
            }],
        };
        let bytes = rmp_serde::to_vec(&snapshot).unwrap();
        let back: BorderSnapshot = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.zone, "east");
        let components = [
            ReplicatedComponent {
                name: "position".into(),
                encoding: "position_q64",
            },
            ReplicatedComponent {
                name: "player_id".into(),
                encoding: "messagepack",
            },
        ];
        let player = back.players.into_iter().next().unwrap();
        let (id, tags, replica) = replica(player, &components);
        assert_eq!(id, PlayerId(42));
        assert_eq!(tags, InterestTags::default());
        assert_eq!(replica.at, (3.0, -1.5));
        assert!(replica.values[0].is_none(), "position was not sent");
        let player_id = replica.values[1].as_ref().unwrap();
        assert_eq!(
            (&player_id.binary[..], player_id.json.get()),
            (&[42][..], "42")
        );
    }
}
