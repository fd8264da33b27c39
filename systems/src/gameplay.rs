//! The built-in game state: position, vitals and progress, persisted through the same
//! [`PersistentAppExt::register_persistent`] API users have.

use bevy_app::{App, Plugin};
use hearth_components::{PlayerId, Position, Progress, Vitals};

use crate::persistence::PersistentAppExt;

/// Registers the built-in persistent components; every player gets their defaults.
pub struct GameplayPlugin;

impl Plugin for GameplayPlugin {
    fn build(&self, app: &mut App) {
        app.register_persistent::<Position>("position")
            .register_persistent::<Vitals>("vitals")
            .register_persistent::<Progress>("progress")
            .register_required_components::<PlayerId, Position>()
            .register_required_components::<PlayerId, Vitals>()
            .register_required_components::<PlayerId, Progress>();
    }
}
