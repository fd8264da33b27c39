//! The port's side in the app: the system that drains the store's completions into ECS
//! messages, and those messages, one per kind of result. All three live here so the plugins
//! that apply them (persistence, sessions) import from storage and storage imports none of
//! them: each orders its own `ApplyResults` after [`DrainStoreCompletions`].

use bevy_app::{App, Plugin, PreUpdate};
use bevy_ecs::message::{Message, MessageWriter};
use bevy_ecs::schedule::{IntoScheduleConfigs, SystemSet};
use bevy_ecs::system::Res;
use hearth_components::{JoinRefusal, PlayerId};

use super::{JoinGrant, RefreshResult, SaveResult, StoreCompletion, StorePort};

/// A batch of save results that came back from the store.
#[derive(Message, Debug)]
pub struct SavesCompleted {
    /// The save job's batch number.
    pub batch: u64,
    /// One result per save, routed back to its entity.
    pub results: Vec<SaveResult>,
}

/// Lease refresh results that came back from the store.
#[derive(Message, Debug)]
pub struct RefreshesCompleted {
    /// The refresh job's batch number.
    pub batch: u64,
    /// One result per lease, routed back to its entity.
    pub results: Vec<RefreshResult>,
}

/// A join (claim + load) that came back from the store.
#[derive(Message, Debug)]
pub struct JoinCompleted {
    /// The join request this answers.
    pub ticket: u64,
    /// Who asked to join.
    pub player: PlayerId,
    /// The lease and record, or why not.
    pub result: Result<JoinGrant, JoinRefusal>,
}

/// Ordering point for draining the store's completions (`PreUpdate`). Whoever applies
/// results orders itself after it, so a result is applied the frame it arrives.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct DrainStoreCompletions;

/// Moves completions from the store's channel into ECS messages, without waiting.
pub fn drain_store_completions(
    port: Res<StorePort>,
    mut saves: MessageWriter<SavesCompleted>,
    mut refreshes: MessageWriter<RefreshesCompleted>,
    mut joins: MessageWriter<JoinCompleted>,
) {
    for completion in port.completions().try_iter() {
        match completion {
            StoreCompletion::Saved { batch, results } => {
                saves.write(SavesCompleted { batch, results });
            }
            StoreCompletion::Refreshed { batch, results } => {
                refreshes.write(RefreshesCompleted { batch, results });
            }
            StoreCompletion::Joined {
                ticket,
                player,
                result,
            } => {
                joins.write(JoinCompleted {
                    ticket,
                    player,
                    result,
                });
            }
            StoreCompletion::Released { player } => tracing::debug!(%player, "lease released"),
        }
    }
}

/// Drains store completions into messages every frame.
pub struct StoragePlugin;

impl Plugin for StoragePlugin {
    fn build(&self, app: &mut App) {
        app.add_message::<SavesCompleted>()
            .add_message::<RefreshesCompleted>()
            .add_message::<JoinCompleted>()
            .add_systems(
                PreUpdate,
                drain_store_completions.in_set(DrainStoreCompletions),
            );
    }
}
