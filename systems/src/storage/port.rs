//! The port itself: the jobs a store takes, the completions it answers with, the
//! [`PlayerStore`] trait backends implement and the [`StorePort`] resource systems use.

use std::sync::Arc;

use bevy_ecs::entity::Entity;
use bevy_ecs::resource::Resource;
use crossbeam_channel::Receiver;
use hearth_components::{JoinRefusal, PlayerId, PlayerRecord, PlayerSnapshot};

use super::StoreMetrics;

/// One save within a batch.
pub struct SaveItem {
    /// The entity the snapshot was taken from (results are routed back to it).
    pub entity: Entity,
    /// The state to write.
    pub snapshot: PlayerSnapshot,
    /// Release the session lease once the record is written (logout, shutdown).
    pub release: bool,
    /// Sequence of the newest record this server knows is stored ([`SaveState::stored`]).
    /// If the lease has expired (not taken by anyone) and the stored record is still at this
    /// sequence, the store re-claims the lease and writes; otherwise the save is `LeaseLost`.
    ///
    /// [`SaveState::stored`]: hearth_components::SaveState::stored
    pub last_stored_seq: u64,
}

/// One lease to refresh within a batch.
#[derive(Clone, Copy, Debug)]
pub struct LeaseItem {
    pub entity: Entity,
    pub player: PlayerId,
}

/// Which connection a job travels on. Interactive work (logins, immediate and final saves)
/// never queues behind a large periodic flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Batch flushes and lease refreshes.
    Periodic,
    /// Logins, tier-1 and logout saves.
    Interactive,
}

/// Work for a store. `submit` never blocks; each job yields exactly one completion.
pub enum StoreJob {
    /// Write records, each only if this server owns the lease and the sequence is newer.
    Save {
        lane: Lane,
        batch: u64,
        items: Vec<SaveItem>,
    },
    /// Write several players' records together (interactive lane): every record is written,
    /// or none is. Each is owner-checked and sequence-fenced as in [`StoreJob::Save`]; if any
    /// player fails its check (lease lost, stale), nothing is written: that player is
    /// answered `LeaseLost`/`StaleSequence` and the others `Failed` (retry or give up is the
    /// caller's). Answered with [`StoreCompletion::Saved`], one result per item in order.
    /// Never releases a lease: a trade is not a logout. Used by linked saves (a trade that
    /// must be durable on both sides or neither).
    SaveTogether { batch: u64, items: Vec<SaveItem> },
    /// Extend every lease this server still owns (periodic lane).
    Refresh { batch: u64, leases: Vec<LeaseItem> },
    /// Claim the player's lease and load the record (interactive lane). A record that cannot
    /// be decoded is refused and the lease released again.
    Join { ticket: u64, player: PlayerId },
    /// Give up a lease without saving (interactive lane), e.g. when a loaded record turned
    /// out unusable. Only deletes the lease if it is ours.
    Release { player: PlayerId },
}

/// What happened to one save.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveOutcome {
    /// Written (and the lease released, if asked).
    Saved,
    /// The lease belongs to someone else (or expired): nothing written.
    LeaseLost,
    /// The stored record is as new or newer: nothing written.
    StaleSequence,
    /// The write did not happen or its result is unknown (store down, timeout). Retry.
    Failed(String),
}

/// What happened to one lease refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    Refreshed,
    LeaseLost,
    Failed(String),
}

/// Result of one save.
#[derive(Clone, Debug)]
pub struct SaveResult {
    pub entity: Entity,
    pub player: PlayerId,
    pub seq: u64,
    pub outcome: SaveOutcome,
}

/// Result of one lease refresh.
#[derive(Clone, Debug)]
pub struct RefreshResult {
    pub entity: Entity,
    pub player: PlayerId,
    pub outcome: RefreshOutcome,
}

/// A granted join: the lease is ours.
#[derive(Clone, Debug)]
pub struct JoinGrant {
    /// Store key of the lease, for [`hearth_components::SessionOwner`].
    pub lease_key: String,
    /// The stored record, or `None` for a player never saved before.
    pub record: Option<PlayerRecord>,
}

/// The answer to one [`StoreJob`].
#[derive(Debug)]
pub enum StoreCompletion {
    Saved {
        batch: u64,
        results: Vec<SaveResult>,
    },
    Refreshed {
        batch: u64,
        results: Vec<RefreshResult>,
    },
    Joined {
        ticket: u64,
        player: PlayerId,
        result: Result<JoinGrant, JoinRefusal>,
    },
    Released {
        player: PlayerId,
    },
}

/// What a store is, for logs and the startup banner.
#[derive(Clone, Debug)]
pub struct StoreInfo {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Whether saved data survives this process.
    pub durable: bool,
    /// Where the data lives (a URL, or `process memory`).
    pub location: String,
    /// The value of every lease this process holds through this store
    /// (`<instance_id>/<boot token>`): the owner a join's `SessionOwner` records.
    pub lease_owner: String,
}

/// A store backend behind the port.
pub trait PlayerStore: Send + Sync + 'static {
    /// Describes the backend.
    fn info(&self) -> StoreInfo;
    /// Queues a job. Never blocks on I/O.
    fn submit(&self, job: StoreJob);
    /// The store's own counters and latency histograms.
    fn metrics(&self) -> &Arc<StoreMetrics>;
    /// Jobs submitted whose completion has not been sent yet (the queue depth).
    fn pending_jobs(&self) -> usize;
}

/// The port as systems see it: the store and the channel its completions arrive on.
#[derive(Resource, Clone)]
pub struct StorePort {
    store: Arc<dyn PlayerStore>,
    completions: Receiver<StoreCompletion>,
}

impl StorePort {
    /// Wraps a store and the receiving end of the channel it completes jobs on.
    pub fn new(store: Arc<dyn PlayerStore>, completions: Receiver<StoreCompletion>) -> Self {
        Self { store, completions }
    }

    /// Queues a job.
    pub fn submit(&self, job: StoreJob) {
        self.store.submit(job);
    }

    /// Describes the backend.
    pub fn info(&self) -> StoreInfo {
        self.store.info()
    }

    /// Jobs submitted whose completion has not been sent yet.
    pub fn pending_jobs(&self) -> usize {
        self.store.pending_jobs()
    }

    /// The store's metrics.
    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        self.store.metrics()
    }

    /// Completions that arrived so far, without waiting.
    pub fn completions(&self) -> &Receiver<StoreCompletion> {
        &self.completions
    }
}
