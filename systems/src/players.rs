//! Finding players for games: the entity of an online player by its [`PlayerId`], and the
//! [`Playing`] filter for players that have joined and are not leaving.

use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use hearth_components::{Leaving, PlayerId};

use crate::sessions::OnlinePlayers;

/// Query filter for players that are playing: joined on this server and not [`Leaving`].
/// A leaving player is still saved if changed (its leave waits for the change to be
/// durable), but a game that should not start anything new with it uses this filter.
pub type Playing = (With<PlayerId>, Without<Leaving>);

/// Players on this server by id, for a system parameter: `players: Players`.
#[derive(SystemParam)]
pub struct Players<'w, 's> {
    online: Res<'w, OnlinePlayers>,
    playing: Query<'w, 's, (), Playing>,
}

impl Players<'_, '_> {
    /// The entity of the player if it is on this server, leaving or not. A change made to a
    /// leaving player is saved before it is gone.
    pub fn online(&self, player: PlayerId) -> Option<Entity> {
        self.online.entity(player)
    }

    /// The entity of the player if it is on this server and playing (not leaving).
    pub fn playing(&self, player: PlayerId) -> Option<Entity> {
        self.online(player)
            .filter(|&entity| self.playing.contains(entity))
    }
}
