//! The built-in demo game, written only on Hearth's public extension points, as any game is
//! (proof that they suffice): players walk a bounded world (`move`), walking earns xp, every
//! 100 xp is a level, a level-up is saved immediately and announced (`level_up`) only once it
//! is durable, and every player sees who is near 20 times a second (`snapshot`).
//! docs/protocol.md describes its messages. A game of your own leaves it out.

use std::time::Duration;

use crate::prelude::*;

/// Half the side of the square world: positions stay within `[-WORLD_HALF_EXTENT, +..]`.
pub const WORLD_HALF_EXTENT: f32 = 1000.0;
/// Distance covered by one move.
pub const STEP: f32 = 1.0;
/// Experience earned by one move that covered ground.
pub const XP_PER_STEP: u64 = 10;
/// Snapshots per second sent to each player.
pub const SNAPSHOT_HZ: f64 = 20.0;
/// Players within this distance appear in a snapshot.
pub const VIEW_RADIUS: f32 = 50.0;
/// Most players listed in one snapshot.
pub const SNAPSHOT_LIMIT: usize = 64;
/// A player with this many messages still waiting to be written gets no snapshot this round:
/// a newer one supersedes them anyway. When the server falls behind, its clients then get
/// fewer, fresh snapshots, where a growing queue of stale ones ended in "cannot keep up"
/// disconnects of clients that were reading promptly.
pub const SNAPSHOT_BACKLOG: usize = 2;

/// Health of the player.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vitals {
    pub hp: u32,
    pub max_hp: u32,
}

impl Default for Vitals {
    fn default() -> Self {
        Self {
            hp: 100,
            max_hp: 100,
        }
    }
}

/// Experience and level. Every [`Progress::XP_PER_LEVEL`] xp is one level.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub xp: u64,
    pub level: u32,
}

impl Progress {
    /// Experience needed per level.
    pub const XP_PER_LEVEL: u64 = 100;

    /// The level that `xp` experience is worth.
    pub fn level_for(xp: u64) -> u32 {
        u32::try_from(xp / Self::XP_PER_LEVEL + 1).unwrap_or(u32::MAX)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self { xp: 0, level: 1 }
    }
}

/// `move`: take one step in a direction; the server owns speed and position.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Move {
    pub dx: f32,
    pub dy: f32,
}

/// `snapshot`: the players near the recipient (itself included), at [`SNAPSHOT_HZ`]. The
/// entries are shared by every snapshot of the same round that lists them, so each player's
/// entry is encoded once per round, not once per recipient.
#[derive(Serialize, Debug)]
pub struct Snapshot {
    /// Fixed ticks since the server started.
    pub tick: u64,
    pub players: EntryList<SnapshotEntry>,
}

/// One player in a snapshot.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct SnapshotEntry {
    pub id: u64,
    pub x: f32,
    pub y: f32,
}

/// `level_up`: the recipient reached `level`, durably saved.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct LevelUp {
    pub level: u32,
}

/// A step the player asked for, applied at the next fixed tick. Several requests within one
/// tick collapse into the latest, so sending faster than the tick rate gains no speed.
#[derive(Component, Clone, Copy, Debug, PartialEq)]
#[component(storage = "SparseSet")]
pub struct MoveIntent {
    /// Unit direction.
    pub dx: f32,
    pub dy: f32,
}

impl MoveIntent {
    /// Normalises a requested direction; `None` for a zero or non-finite vector. Every other
    /// direction, however large or small its components, is a unit step: the vector is first
    /// scaled by its largest component, so squaring cannot overflow (`1e38` would square to
    /// infinity) nor underflow to zero.
    pub fn new(dx: f32, dy: f32) -> Option<Self> {
        if !(dx.is_finite() && dy.is_finite()) {
            return None;
        }
        let largest = dx.abs().max(dy.abs());
        if largest == 0.0 {
            return None;
        }
        let (sx, sy) = (dx / largest, dy / largest);
        let len = sx.hypot(sy);
        Some(Self {
            dx: sx / len,
            dy: sy / len,
        })
    }
}

/// Counts fixed ticks since start (the `tick` of snapshots).
#[derive(Resource, Default, Debug, Clone, Copy)]
pub struct GameTick(pub u64);

fn count_ticks(mut tick: ResMut<GameTick>) {
    tick.0 += 1;
}

/// Turns `move` requests into the step applied at the next fixed tick.
fn take_moves(mut moves: MessageReader<FromClient<Move>>, mut commands: Commands) {
    for request in moves.read() {
        if let Some(intent) = MoveIntent::new(request.message.dx, request.message.dy) {
            commands.entity(request.entity).try_insert(intent);
        }
    }
}

/// Applies pending steps: moves within the world bounds, earns xp for ground covered, and
/// asks for an immediate save on level-up (tagged with the new level).
fn apply_moves(
    mut players: Query<(Entity, &MoveIntent, &mut Position, &mut Progress), Without<Leaving>>,
    mut save_now: MessageWriter<SaveNowRequest>,
    mut commands: Commands,
) {
    for (entity, intent, mut position, mut progress) in &mut players {
        commands.entity(entity).remove::<MoveIntent>();
        let x = (position.x + intent.dx * STEP).clamp(-WORLD_HALF_EXTENT, WORLD_HALF_EXTENT);
        let y = (position.y + intent.dy * STEP).clamp(-WORLD_HALF_EXTENT, WORLD_HALF_EXTENT);
        if (x, y) == (position.x, position.y) {
            continue; // against the edge of the world: no ground covered
        }
        *position = Position { x, y };
        progress.xp += XP_PER_STEP;
        let level = Progress::level_for(progress.xp);
        if level > progress.level {
            progress.level = level;
            save_now.write(SaveNowRequest {
                entity,
                tag: u64::from(level),
            });
        }
    }
}

/// Announces level-ups once they are saved: the immediate save asked for on level-up was
/// tagged with the level.
fn announce_level_ups(mut saved: MessageReader<SavedNow>, to_clients: ToClients<LevelUp>) {
    for s in saved.read() {
        let level = u32::try_from(s.tag).unwrap_or(u32::MAX);
        to_clients.send(s.entity, LevelUp { level });
    }
}

/// The snapshot timer.
#[derive(Resource)]
struct SnapshotTimer(Timer);

/// What snapshot rounds keep between runs, to reuse allocations: the players near the
/// recipient being served, and by entity index, the round in which a player's entry was
/// last added to the entry table and where (an array, not a hash map: it is looked up once
/// per listed player, 64 times per recipient).
#[derive(Default)]
struct SnapshotRound {
    number: u64,
    near: Vec<Nearby>,
    entry_of: Vec<(u64, u32)>,
}

/// Sends each connected player the players near it, at [`SNAPSHOT_HZ`]. Every listed
/// player's entry goes into one table per round, shared by all the round's snapshots.
fn send_snapshots(
    time: Res<Time<Real>>,
    tick: Res<GameTick>,
    mut timer: ResMut<SnapshotTimer>,
    positions: Query<&Position, With<PlayerId>>,
    to_clients: ToClients<Snapshot>,
    nearby: NearbyPlayers,
    mut round: Local<SnapshotRound>,
) {
    timer.0.tick(time.delta());
    if !timer.0.just_finished() {
        return;
    }
    round.number += 1;
    let SnapshotRound {
        number,
        near,
        entry_of,
    } = &mut *round;
    let mut entries = SharedEntries::default();
    let mut recipients = Vec::new();
    for entity in to_clients.connected() {
        let Ok(p) = positions.get(entity) else {
            continue;
        };
        if to_clients.backlog(entity).unwrap_or(0) >= SNAPSHOT_BACKLOG {
            continue;
        }
        nearby.near(p.x, p.y, VIEW_RADIUS, SNAPSHOT_LIMIT, near);
        let picks = near
            .iter()
            .map(|n| {
                let slot = n.entity.index_u32() as usize;
                if slot >= entry_of.len() {
                    entry_of.resize(slot + 1, (0, 0));
                }
                let (added_in, entry) = &mut entry_of[slot];
                if *added_in != *number {
                    *added_in = *number;
                    *entry = entries.push(SnapshotEntry {
                        id: n.player.0,
                        x: n.x,
                        y: n.y,
                    });
                }
                *entry
            })
            .collect();
        recipients.push((entity, picks));
    }
    let entries = std::sync::Arc::new(entries);
    for (entity, picks) in recipients {
        let players = EntryList::new(&entries, picks);
        to_clients.send(
            entity,
            Snapshot {
                tick: tick.0,
                players,
            },
        );
    }
}

/// The walking game: its persistent components (every player gets their defaults), its
/// messages and its systems.
pub struct DemoGamePlugin;

impl Plugin for DemoGamePlugin {
    fn build(&self, app: &mut App) {
        app.register_persistent::<Position>("position")
            .register_persistent::<Vitals>("vitals")
            .register_persistent::<Progress>("progress")
            .register_required_components::<PlayerId, Position>()
            .register_required_components::<PlayerId, Vitals>()
            .register_required_components::<PlayerId, Progress>()
            .add_client_message::<Move>("move")
            .add_server_message::<Snapshot>("snapshot")
            .add_server_message::<LevelUp>("level_up")
            .init_resource::<GameTick>()
            .insert_resource(SnapshotTimer(Timer::new(
                Duration::from_secs_f64(1.0 / SNAPSHOT_HZ),
                TimerMode::Repeating,
            )))
            .add_systems(PreUpdate, take_moves.after(NetSystems))
            .add_systems(FixedUpdate, (count_ticks, apply_moves))
            .add_systems(
                PostUpdate,
                (announce_level_ups, send_snapshots).after(NetSystems),
            );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(intent: MoveIntent, dx: f32, dy: f32) -> bool {
        (intent.dx - dx).abs() < 1e-6 && (intent.dy - dy).abs() < 1e-6
    }

    #[test]
    fn any_finite_nonzero_direction_is_one_unit_step() {
        let cases = [
            (1e38, 0.0, 1.0, 0.0),
            (0.0, -3e38, 0.0, -1.0),
            (
                f32::MAX,
                f32::MAX,
                std::f32::consts::FRAC_1_SQRT_2,
                std::f32::consts::FRAC_1_SQRT_2,
            ),
            (-2.4e38, 3.2e38, -0.6, 0.8),
            (3.0, 4.0, 0.6, 0.8),
            (1e-30, 0.0, 1.0, 0.0),
            (f32::MIN_POSITIVE / 8.0, 0.0, 1.0, 0.0),
        ];
        for (dx, dy, ux, uy) in cases {
            let intent =
                MoveIntent::new(dx, dy).unwrap_or_else(|| panic!("({dx}, {dy}) is a direction"));
            assert!(close(intent, ux, uy), "({dx}, {dy}) -> {intent:?}");
        }
    }

    #[test]
    fn zero_and_non_finite_directions_are_ignored() {
        for (dx, dy) in [
            (0.0, 0.0),
            (-0.0, 0.0),
            (f32::NAN, 1.0),
            (1.0, f32::INFINITY),
            (f32::NEG_INFINITY, 0.0),
        ] {
            assert_eq!(MoveIntent::new(dx, dy), None, "({dx}, {dy})");
        }
    }
}
