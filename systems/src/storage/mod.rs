//! The storage port: the only way systems reach a store.
//!
//! Systems hand [`StoreJob`]s to a [`PlayerStore`] and never wait: `submit` only queues.
//! Results come back as [`StoreCompletion`]s on a channel that a `PreUpdate` system drains.
//! Backends (memory, Redis) live in the `hearth` crate; both keep the same semantics:
//! leases with a TTL, owner-checked saves and refreshes, sequence-fenced writes, release only
//! by the owner.
//!
//! One concern per file, everything re-exported here: `port` (jobs, completions, the
//! [`PlayerStore`] trait, [`StorePort`]), `metrics` ([`StoreMetrics`], latency histograms) and
//! `plugin` ([`StoragePlugin`]: the drain system and the completion messages). The record a
//! save writes, [`PlayerSnapshot`], is encoded in `hearth_components::record`.

mod metrics;
mod plugin;
mod port;

/// What a save carries; encoded by the store, next to the record layout it writes.
pub use hearth_components::PlayerSnapshot;
pub use metrics::{
    BucketCounts, LatencyHistogram, LatencySummary, StoreMetrics, record_batch_latency,
};
pub use plugin::{
    DrainStoreCompletions, JoinCompleted, RefreshesCompleted, SavesCompleted, StoragePlugin,
    drain_store_completions,
};
pub use port::{
    JoinGrant, Lane, LeaseItem, PlayerStore, RefreshOutcome, RefreshResult, SaveItem, SaveOutcome,
    SaveResult, StoreCompletion, StoreInfo, StoreJob, StorePort,
};
