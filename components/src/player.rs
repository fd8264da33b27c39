//! Components every player entity carries, independent of the game being played.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bevy_ecs::change_detection::Tick;
use bevy_ecs::component::Component;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The stable identity of a player across sessions and servers (an account's numeric id).
#[derive(
    Component,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub struct PlayerId(pub u64);

impl fmt::Display for PlayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Marks a player whose persistent state changed since it was last snapshotted for saving.
///
/// A SparseSet marker: added and removed often, so it must not move entities between tables.
#[derive(Component, Clone, Copy, Debug, Default)]
#[component(storage = "SparseSet")]
pub struct Dirty;

/// An immediate (tier-1) save was asked for and not yet sent. Sent as soon as no other save
/// of the player is in flight.
#[derive(Component, Clone, Debug, Default)]
#[component(storage = "SparseSet")]
pub struct SaveNowPending {
    /// Tags to answer with [`crate::SavedNow`].
    pub tags: Vec<u64>,
    /// Real time (since app start) before which a failed attempt is not retried.
    pub retry_at: Duration,
}

/// The player is leaving (logout, disconnect, shutdown): a final save that releases the lease
/// is pending or in flight. The entity is despawned once a final save is durable and the
/// player was not changed after that save's snapshot; a change after it sends a follow-up
/// final save with the newest state (a bounded number of times).
#[derive(Component, Clone, Debug, Default)]
#[component(storage = "SparseSet")]
pub struct Leaving {
    /// Who asked, echoed in [`crate::PlayerLeft`].
    pub origin: u64,
    /// Real time (since app start) before which a failed attempt is not retried.
    pub retry_at: Duration,
    /// Set when a final save is durable: the tick its snapshot was taken at. The leave ends
    /// in the same frame, or sends a follow-up if the player changed since.
    pub saved_at: Option<Tick>,
    /// Follow-up final saves sent so far (changes made after the previous final snapshot).
    pub follow_ups: u32,
}

/// Marks a player spawned from a stored record this frame, so spawning is not mistaken for a
/// change that needs saving.
#[derive(Component, Clone, Copy, Debug, Default)]
#[component(storage = "SparseSet")]
pub struct JustLoaded;

/// The session lease this server holds for the player: the lease key in the store, the owner
/// (this process's lease owner, `<instance_id>/<boot token>`) and when the lease was last
/// confirmed.
#[derive(Component, Clone, Debug, PartialEq, Eq)]
pub struct SessionOwner {
    /// Store key of the lease (`hearth:session:{42}` on Redis).
    pub lease_key: String,
    /// Lease owner value of the owning process (`<instance_id>/<boot token>`, see `StoreInfo::lease_owner`).
    pub owner: String,
    /// Real time since app start when the lease was last claimed or refreshed.
    pub last_refresh: Duration,
}

/// Where the player's saves stand: the newest snapshot's sequence number and the save in
/// flight, if any. A table component mutated in place, so starting and finishing a save
/// does not move the entity between archetypes.
#[derive(Component, Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveState {
    /// Sequence of the newest snapshot. Every snapshot takes the next number; the store
    /// refuses a write whose number is not newer than the stored one.
    pub seq: u64,
    /// Sequence of the newest record this server knows the store holds (loaded at join, or
    /// confirmed saved). A save may re-claim an expired lease only while the store still
    /// holds exactly this: then nobody else has written the player since.
    pub stored: u64,
    /// The save not yet answered by the store. While set, no other save of the player starts.
    pub in_flight: Option<InFlightSave>,
}

/// A save of the player that the store has not answered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlightSave {
    /// Sequence number carried by the save.
    pub seq: u64,
    /// Tags of the [`crate::SaveNowRequest`]s this save answers.
    pub tags: Vec<u64>,
    /// Whether this is the final save of a leaving player (it releases the lease).
    pub release: bool,
    /// The change tick the snapshot was taken at: a persistent component changed after it is
    /// not in this save.
    pub taken_at: Tick,
}

/// Record sections this build does not know (written by a newer build or a removed feature).
/// They are written back unchanged with every save, never dropped.
#[derive(Component, Clone, Debug, Default, PartialEq)]
pub struct UnknownSections(pub BTreeMap<String, serde_json::Value>);
