//! The built-in demo game, written only on Hearth's public extension points, as any game is
//! (proof that they suffice): players walk a bounded world (`move`), walking earns xp, every
//! 100 xp is a level, a level-up is saved immediately and announced (`level_up`) only once it
//! is durable, and every player sees who is near: positions and player ids replicate
//! (`app.replicate`), so each client gets `update`s of the players within 50 units.
//! docs/protocol.md describes its messages. A game of your own leaves it out.

use crate::prelude::*;

/// Half the side of the square world: positions stay within `[-WORLD_HALF_EXTENT, +..]`.
pub const WORLD_HALF_EXTENT: f32 = 1000.0;
/// Distance covered by one move.
pub const STEP: f32 = 1.0;
/// Experience earned by one move that covered ground.
pub const XP_PER_STEP: u64 = 10;

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

/// `move`: take one step in a direction; the server owns speed and position. Each of `dx`
/// and `dy` is 0 or of a magnitude within [`MOVE_COMPONENT_RANGE`]; anything else (too
/// large for an `f32`, too small to tell from 0 after normalising) is refused as a
/// `bad_request` naming the field, rather than silently moving nothing.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// The direction's x component: 0, or of magnitude 1e-6 to 1e6.
    #[serde(deserialize_with = "move_component")]
    pub dx: f32,
    /// The direction's y component: 0, or of magnitude 1e-6 to 1e6.
    #[serde(deserialize_with = "move_component")]
    pub dy: f32,
}

/// The magnitudes a non-zero `dx` or `dy` of a `move` may have (inclusive).
pub const MOVE_COMPONENT_RANGE: std::ops::RangeInclusive<f64> = 1e-6..=1e6;

/// A `move` component: 0, or a number whose magnitude is within [`MOVE_COMPONENT_RANGE`].
fn move_component<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value == 0.0 || MOVE_COMPONENT_RANGE.contains(&value.abs()) {
        Ok(value as f32) // within ±1e6: an f32 holds it
    } else {
        Err(serde::de::Error::custom(format!(
            "{value:e} is out of range: must be 0 or of magnitude {:e} to {:e}",
            MOVE_COMPONENT_RANGE.start(),
            MOVE_COMPONENT_RANGE.end()
        )))
    }
}

/// `level_up`: the recipient reached `level`, durably saved.
#[derive(Serialize, JsonSchema, Debug, Clone, Copy, PartialEq)]
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

/// The walking game: its persistent components (every player gets their defaults), its
/// messages, what replicates (positions, 1/64-unit fixed point in binary, and player ids) and
/// its systems.
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
            .add_server_message::<LevelUp>("level_up")
            .replicate_with::<Position, QuantisedPositionEncoding>()
            .replicate::<PlayerId>()
            .add_systems(PreUpdate, take_moves.after(NetSystems::Receive))
            .add_systems(FixedUpdate, apply_moves)
            .add_systems(PostUpdate, announce_level_ups.after(NetSystems::Send));
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
    fn a_move_component_is_zero_or_within_its_range_and_refused_otherwise() {
        let decode = |line: &str| serde_json::from_str::<Move>(line);
        for (dx, dy) in [
            ("0", "0"),
            ("1e-6", "-1e6"),
            ("-1e-6", "1e6"),
            ("0.5", "0"),
            ("-0.0", "3"),
        ] {
            let line = format!(r#"{{"dx":{dx},"dy":{dy}}}"#);
            assert!(decode(&line).is_ok(), "{line}");
        }
        for bad in ["1e39", "1e300", "-1e7", "1e-50", "9.9e-7", "1000000.1"] {
            let line = format!(r#"{{"dx":{bad},"dy":1}}"#);
            let error = decode(&line).expect_err(&line).to_string();
            assert!(error.contains("out of range"), "{line}: {error}");
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
