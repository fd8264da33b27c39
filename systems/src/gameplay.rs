//! The small built-in game: players walk a bounded world, walking earns xp, every 100 xp is
//! a level, and a level-up is saved immediately (tier 1) before the client hears of it.
//! Position, vitals and progress are persisted through the same
//! [`PersistentAppExt::register_persistent`] API users have.

use bevy_app::{App, FixedUpdate, Plugin};
use bevy_ecs::prelude::*;
use hearth_components::{Leaving, PlayerId, Position, Progress, SaveNowRequest, Vitals};

use crate::persistence::PersistentAppExt;

/// Half the side of the square world: positions stay within `[-WORLD_HALF_EXTENT, +..]`.
pub const WORLD_HALF_EXTENT: f32 = 1000.0;
/// Distance covered by one move.
pub const STEP: f32 = 1.0;
/// Experience earned by one move that covered ground.
pub const XP_PER_STEP: u64 = 10;

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

/// Registers the built-in persistent components (every player gets their defaults) and the
/// walking game.
pub struct GameplayPlugin;

impl Plugin for GameplayPlugin {
    fn build(&self, app: &mut App) {
        app.register_persistent::<Position>("position")
            .register_persistent::<Vitals>("vitals")
            .register_persistent::<Progress>("progress")
            .register_required_components::<PlayerId, Position>()
            .register_required_components::<PlayerId, Vitals>()
            .register_required_components::<PlayerId, Progress>()
            .init_resource::<GameTick>()
            .add_systems(FixedUpdate, (count_ticks, apply_moves));
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
