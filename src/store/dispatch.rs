//! The one place a [`StoreJob`] becomes a [`StoreCompletion`], for every backend.
//!
//! A backend implements [`StoreOperations`], one operation per kind of job, and runs each job
//! through [`execute`], which routes it, wraps the result into the completion and keeps the
//! bookkeeping both backends share: the latency histograms each kind of job is timed in (a
//! batch through [`RoundTrips`], a join around the whole operation) and the per-outcome save
//! and refresh counters. [`failed_completion`] answers a job that could not run at all.
//!
//! Why an async trait: the Redis store's operations await Redis on its lanes' tokio tasks,
//! the memory store's are plain calls on its worker thread. Operations that are `async` fit
//! both as they are: the memory store's never await, so its worker drives [`execute`] to the
//! end with a single poll (`now_or_never`) and needs no runtime. (Splitting a job into a
//! request enum and wrapping the results back in a second function would leave each backend
//! its own match over the kinds of job, which is the duplication this replaces.)

use std::time::{Duration, Instant};

use hearth_components::{JoinRefusal, PlayerId};
use hearth_systems::storage::{
    JoinGrant, Lane, LatencyHistogram, LeaseItem, RefreshOutcome, RefreshResult, SaveItem,
    SaveOutcome, SaveResult, StoreCompletion, StoreJob, StoreMetrics, record_batch_latency,
};

/// What a backend does for each kind of [`StoreJob`]; [`execute`] does the rest.
pub(crate) trait StoreOperations {
    /// Writes the records (owner-checked, sequence-fenced), one result per item in order,
    /// reporting each round trip it makes to `round_trips`.
    fn save(
        &mut self,
        items: Vec<SaveItem>,
        round_trips: RoundTrips<'_>,
    ) -> impl Future<Output = Vec<SaveResult>> + Send;

    /// Writes every record or none (owner-checked, sequence-fenced, never releasing), one
    /// result per item in order: all `Saved`; or the players that failed their check
    /// `LeaseLost`/`StaleSequence` and the rest `Failed`, nothing written.
    fn save_together(
        &mut self,
        items: Vec<SaveItem>,
        round_trips: RoundTrips<'_>,
    ) -> impl Future<Output = Vec<SaveResult>> + Send;

    /// Extends the leases still ours, one result per lease in order, reporting each round
    /// trip it makes to `round_trips`.
    fn refresh(
        &mut self,
        leases: Vec<LeaseItem>,
        round_trips: RoundTrips<'_>,
    ) -> impl Future<Output = Vec<RefreshResult>> + Send;

    /// Claims the player's lease and loads the record (`ticket` names the join).
    fn join(
        &mut self,
        ticket: u64,
        player: PlayerId,
    ) -> impl Future<Output = Result<JoinGrant, JoinRefusal>> + Send;

    /// Deletes the player's lease if it is ours.
    fn release(&mut self, player: PlayerId) -> impl Future<Output = ()> + Send;
}

/// Where a batch's round trips are timed: the per-batch and per-record histograms of its kind
/// of job, picked by [`execute`]. What a round trip is belongs to the backend (a pipelined
/// chunk on Redis, the whole batch in memory), so the backend reports them.
#[derive(Clone, Copy)]
pub(crate) struct RoundTrips<'a> {
    per_batch: &'a LatencyHistogram,
    per_record: &'a LatencyHistogram,
}

impl RoundTrips<'_> {
    /// Records one round trip that carried `records` records.
    pub(crate) fn record(self, latency: Duration, records: usize) {
        record_batch_latency((self.per_batch, self.per_record), latency, records);
    }
}

/// Runs `job` on `ops` and answers it, recording its latencies and outcomes in `metrics`.
pub(crate) async fn execute<O: StoreOperations>(
    ops: &mut O,
    metrics: &StoreMetrics,
    job: StoreJob,
) -> StoreCompletion {
    match job {
        StoreJob::Save { batch, items, lane } => {
            let round_trips = match lane {
                Lane::Periodic => RoundTrips {
                    per_batch: &metrics.save_batch_latency,
                    per_record: &metrics.save_record_latency,
                },
                Lane::Interactive => RoundTrips {
                    per_batch: &metrics.priority_save_batch_latency,
                    per_record: &metrics.priority_save_record_latency,
                },
            };
            let results = ops.save(items, round_trips).await;
            for result in &results {
                metrics.count_save(&result.outcome);
            }
            StoreCompletion::Saved { batch, results }
        }
        StoreJob::SaveTogether { batch, items } => {
            let round_trips = RoundTrips {
                per_batch: &metrics.priority_save_batch_latency,
                per_record: &metrics.priority_save_record_latency,
            };
            let results = ops.save_together(items, round_trips).await;
            for result in &results {
                metrics.count_save(&result.outcome);
            }
            StoreCompletion::Saved { batch, results }
        }
        StoreJob::Refresh { batch, leases } => {
            let round_trips = RoundTrips {
                per_batch: &metrics.refresh_batch_latency,
                per_record: &metrics.refresh_record_latency,
            };
            let results = ops.refresh(leases, round_trips).await;
            for result in &results {
                metrics.count_refresh(&result.outcome);
            }
            StoreCompletion::Refreshed { batch, results }
        }
        StoreJob::Join { ticket, player } => {
            let started = Instant::now();
            let result = ops.join(ticket, player).await;
            metrics.load_latency.record(started.elapsed());
            StoreCompletion::Joined {
                ticket,
                player,
                result,
            }
        }
        StoreJob::Release { player } => {
            ops.release(player).await;
            StoreCompletion::Released { player }
        }
    }
}

/// The answer to a job that could not be carried out at all: every save and refresh failed
/// (so it is retried), the join unavailable. Nothing ran, so nothing is recorded.
pub(crate) fn failed_completion(job: StoreJob, reason: &str) -> StoreCompletion {
    match job {
        StoreJob::Save { batch, items, .. } | StoreJob::SaveTogether { batch, items } => {
            StoreCompletion::Saved {
                batch,
                results: items
                    .into_iter()
                    .map(|item| SaveResult {
                        entity: item.entity,
                        player: item.snapshot.player,
                        seq: item.snapshot.seq,
                        outcome: SaveOutcome::Failed(reason.to_string()),
                    })
                    .collect(),
            }
        }
        StoreJob::Refresh { batch, leases } => StoreCompletion::Refreshed {
            batch,
            results: leases
                .into_iter()
                .map(|lease| RefreshResult {
                    entity: lease.entity,
                    player: lease.player,
                    outcome: RefreshOutcome::Failed(reason.to_string()),
                })
                .collect(),
        },
        StoreJob::Join { ticket, player } => StoreCompletion::Joined {
            ticket,
            player,
            result: Err(JoinRefusal::Unavailable(reason.to_string())),
        },
        StoreJob::Release { player } => StoreCompletion::Released { player },
    }
}
