//! ECS messages of the player lifecycle. `origin` is an opaque number chosen by whoever asked
//! (the network layer uses its connection id) and echoed back in the answer.

use bevy_ecs::entity::Entity;
use bevy_ecs::message::Message;

use crate::PlayerId;

/// Ask for a player to join: claim the session lease, load the record, spawn the entity.
#[derive(Message, Clone, Debug)]
pub struct JoinRequest {
    pub player: PlayerId,
    pub origin: u64,
}

/// A player's entity was spawned with its stored state.
#[derive(Message, Clone, Debug)]
pub struct PlayerJoined {
    pub entity: Entity,
    pub player: PlayerId,
    pub origin: u64,
}

/// Why a join did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error("player is already online (lease held by {owner})")]
    AlreadyOnline { owner: String },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record unusable: {0}")]
    BadRecord(String),
    /// The server is draining for a deploy: the player should join on another server.
    #[error("server is draining")]
    Draining,
}

/// A join was refused; nothing of any existing session was touched.
#[derive(Message, Clone, Debug)]
pub struct JoinRefused {
    pub player: PlayerId,
    pub origin: u64,
    pub reason: JoinRefusal,
}

/// Ask for a player to leave: final save, release the lease, despawn.
#[derive(Message, Clone, Debug)]
pub struct LeaveRequest {
    pub entity: Entity,
    pub origin: u64,
}

/// A player left: the final save is durable and the lease released.
#[derive(Message, Clone, Debug)]
pub struct PlayerLeft {
    /// The entity the player had (despawned by now).
    pub entity: Entity,
    pub player: PlayerId,
    pub origin: u64,
}

/// Ask for an immediate (tier-1) save of a player, for critical events.
#[derive(Message, Clone, Debug)]
pub struct SaveNowRequest {
    pub entity: Entity,
    /// Echoed in [`SavedNow`].
    pub tag: u64,
}

/// The state of the player at the time of the [`SaveNowRequest`] (or later) is durable.
#[derive(Message, Clone, Debug)]
pub struct SavedNow {
    pub entity: Entity,
    pub player: PlayerId,
    pub tag: u64,
}

/// This server no longer owns the player's lease; the entity was removed without saving.
#[derive(Message, Clone, Debug)]
pub struct OwnershipLost {
    pub entity: Entity,
    pub player: PlayerId,
}

/// Ask for several players to be saved together: every one's current state is written, or
/// none is (a trade, a gift). Write it in the same system that makes the change, before
/// `PersistenceSystems::Save` of that frame: from then on none of the players is saved on its
/// own until the linked save is durable, so no record holds one side of the change without
/// the other. Answered with [`SavedTogether`] echoing `tag`.
#[derive(Message, Clone, Debug)]
pub struct SaveTogether {
    /// The players' entities (two or more; duplicates are ignored).
    pub players: Vec<Entity>,
    /// Chosen by the game, echoed in [`SavedTogether`].
    pub tag: u64,
}

/// The answer to a [`SaveTogether`].
#[derive(Message, Clone, Debug)]
pub struct SavedTogether {
    /// The request's tag.
    pub tag: u64,
    /// The request's players.
    pub players: Vec<Entity>,
    /// Whether the players' states are durable together.
    pub outcome: TogetherOutcome,
}

/// How a linked save ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TogetherOutcome {
    /// Every player's state as of the request (or newer) is durable, written together.
    Saved,
    /// Not written together: `entity` is gone or no longer ours (left, or taken over by
    /// another server), so its side of the change cannot be stored with the others'. The
    /// other players are saved on their own from now on, with the change; undoing it (a
    /// refund) is the game's call.
    Abandoned {
        /// The player that could not be saved.
        entity: Entity,
    },
}
