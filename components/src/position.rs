//! Where a player stands: the one piece of game state Hearth itself reads (its spatial index
//! finds who is near whom). A game registers it as persistent like any of its own.

use bevy_ecs::component::Component;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the player stands in the world, in world units.
#[derive(Component, Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Position {
    pub x: f32,
    pub y: f32,
}
