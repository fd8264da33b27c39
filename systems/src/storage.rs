//! The storage port: the only way systems reach a store.
//!
//! Systems hand [`StoreJob`]s to a [`PlayerStore`] and never wait: `submit` only queues.
//! Results come back as [`StoreCompletion`]s on a channel that a `PreUpdate` system drains.
//! Backends (memory, Redis) live in the `hearth` crate; both keep the same semantics:
//! leases with a TTL, owner-checked saves and refreshes, sequence-fenced writes, release only
//! by the owner.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy_ecs::entity::Entity;
use bevy_ecs::resource::Resource;
use crossbeam_channel::Receiver;
use hdrhistogram::Histogram;
/// What a save carries; encoded by the store, next to the record layout it writes.
pub use hearth_components::PlayerSnapshot;
use hearth_components::{JoinRefusal, PlayerId, PlayerRecord};

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

/// A latency histogram in microseconds (1 µs to 1 h, 3 significant digits), kept twice: since
/// start, and over the current reporting window. The summary log and its p99 warning read
/// the window, so an old spike does not warn forever and a new one is not diluted by hours
/// of good samples.
pub struct LatencyHistogram(Mutex<Windowed>);

struct Windowed {
    all: Histogram<u64>,
    window: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        Self(Mutex::new(Windowed {
            all: histogram(),
            window: histogram(),
        }))
    }
}

impl LatencyHistogram {
    /// Records `count` samples of `latency`.
    pub fn record_n(&self, latency: Duration, count: u64) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 3_600_000_000);
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        h.all.saturating_record_n(us, count);
        h.window.saturating_record_n(us, count);
    }

    /// Records one sample.
    pub fn record(&self, latency: Duration) {
        self.record_n(latency, 1);
    }

    /// Percentiles of every sample since start.
    pub fn summary(&self) -> LatencySummary {
        summarize(&self.0.lock().unwrap_or_else(|p| p.into_inner()).all)
    }

    /// Percentiles of the samples since the previous call (or start), and a new window.
    pub fn take_window(&self) -> LatencySummary {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let summary = summarize(&h.window);
        h.window.reset();
        summary
    }
}

/// Records one batch's latency: once in its per-batch histogram, and once per record in its
/// per-record one (every record of a batch waited as long as the batch).
pub fn record_batch_latency(
    (per_batch, per_record): (&LatencyHistogram, &LatencyHistogram),
    latency: Duration,
    records: usize,
) {
    per_batch.record(latency);
    per_record.record_n(latency, records as u64);
}

fn summarize(h: &Histogram<u64>) -> LatencySummary {
    let d = Duration::from_micros;
    LatencySummary {
        p50: d(h.value_at_quantile(0.50)),
        p99: d(h.value_at_quantile(0.99)),
        max: d(h.max()),
        count: h.len(),
    }
}

/// Percentiles of a [`LatencyHistogram`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub count: u64,
}

/// Counters and latencies a store keeps about itself. Shared with the store's worker threads.
#[derive(Default)]
pub struct StoreMetrics {
    /// Connections ever opened to the backing server (reconnects included).
    pub connections_opened: AtomicU64,
    /// Requests sent to the backing server (a pipeline counts once).
    pub round_trips: AtomicU64,
    /// Records written.
    pub saves: AtomicU64,
    /// Saves that failed (will be retried).
    pub save_errors: AtomicU64,
    /// Saves refused because the lease was someone else's.
    pub saves_lease_lost: AtomicU64,
    /// Saves refused because a newer record was stored.
    pub saves_stale: AtomicU64,
    /// Records loaded on join.
    pub loads: AtomicU64,
    /// Joins that failed on the store (not refusals).
    pub load_errors: AtomicU64,
    /// Leases refreshed.
    pub refreshes: AtomicU64,
    /// Refreshes that failed (will be retried next interval).
    pub refresh_errors: AtomicU64,
    /// Latency of each save batch / pipelined chunk.
    pub save_batch_latency: LatencyHistogram,
    /// Latency seen by each record (the round trip that carried it).
    pub save_record_latency: LatencyHistogram,
    /// Latency of each join (claim + load).
    pub load_latency: LatencyHistogram,
    /// Latency of each refresh batch / pipelined chunk.
    pub refresh_batch_latency: LatencyHistogram,
    /// Latency seen by each lease refresh.
    pub refresh_record_latency: LatencyHistogram,
}

impl StoreMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts one save under its outcome.
    pub fn count_save(&self, outcome: &SaveOutcome) {
        let counter = match outcome {
            SaveOutcome::Saved => &self.saves,
            SaveOutcome::LeaseLost => &self.saves_lease_lost,
            SaveOutcome::StaleSequence => &self.saves_stale,
            SaveOutcome::Failed(_) => &self.save_errors,
        };
        Self::add(counter, 1);
    }

    /// Counts one lease refresh under its outcome (a lost lease is neither done nor failed).
    pub fn count_refresh(&self, outcome: &RefreshOutcome) {
        match outcome {
            RefreshOutcome::Refreshed => Self::add(&self.refreshes, 1),
            RefreshOutcome::LeaseLost => {}
            RefreshOutcome::Failed(_) => Self::add(&self.refresh_errors, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_window_forgets_what_the_all_time_histogram_keeps() {
        let h = LatencyHistogram::default();
        h.record_n(Duration::from_millis(100), 100);
        let first = h.take_window();
        assert_eq!((first.count, first.p99.as_millis()), (100, 100));
        h.record_n(Duration::from_millis(1), 100);
        let second = h.take_window();
        assert_eq!(second.count, 100);
        assert_eq!(second.p99.as_millis(), 1, "the old slow samples are gone");
        assert_eq!(h.take_window().count, 0, "a new, empty window");
        let all = h.summary();
        assert_eq!(all.count, 200);
        assert_eq!(all.p99.as_millis(), 100, "since start, they are kept");
    }
}

/// Lease refresh results that came back from the store.
#[derive(bevy_ecs::message::Message, Debug)]
pub struct RefreshesCompleted {
    pub batch: u64,
    pub results: Vec<RefreshResult>,
}

/// A join (claim + load) that came back from the store.
#[derive(bevy_ecs::message::Message, Debug)]
pub struct JoinCompleted {
    pub ticket: u64,
    pub player: PlayerId,
    pub result: Result<JoinGrant, JoinRefusal>,
}

/// Ordering point for draining the store's completions (`PreUpdate`, before any result is
/// applied).
#[derive(bevy_ecs::schedule::SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct DrainStoreCompletions;

/// Moves completions from the store's channel into ECS messages, without waiting.
pub fn drain_store_completions(
    port: bevy_ecs::system::Res<StorePort>,
    mut saves: bevy_ecs::message::MessageWriter<crate::persistence::SavesCompleted>,
    mut refreshes: bevy_ecs::message::MessageWriter<RefreshesCompleted>,
    mut joins: bevy_ecs::message::MessageWriter<JoinCompleted>,
) {
    for completion in port.completions().try_iter() {
        match completion {
            StoreCompletion::Saved { results, .. } => {
                saves.write(crate::persistence::SavesCompleted(results));
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

impl bevy_app::Plugin for StoragePlugin {
    fn build(&self, app: &mut bevy_app::App) {
        use bevy_ecs::schedule::IntoScheduleConfigs;
        app.add_message::<crate::persistence::SavesCompleted>()
            .add_message::<RefreshesCompleted>()
            .add_message::<JoinCompleted>()
            .configure_sets(
                bevy_app::PreUpdate,
                DrainStoreCompletions.before(crate::persistence::PersistenceSystems::ApplyResults),
            )
            .add_systems(
                bevy_app::PreUpdate,
                drain_store_completions.in_set(DrainStoreCompletions),
            );
    }
}
