//! The built-in persistent game state. Registered with the same API users use for their own.

use bevy_ecs::component::Component;
use serde::{Deserialize, Serialize};

/// Where the player stands in the world, in world units.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub x: f32,
    pub y: f32,
}

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
