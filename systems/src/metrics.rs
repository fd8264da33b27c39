//! Tick timing and the periodic metrics summary (verbose mode).
//!
//! Store counters and latencies live in [`crate::storage::StoreMetrics`] (they are recorded
//! off the tick, by the store's workers); tick timing lives here. [`MetricsReport`] puts
//! both together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bevy_app::{App, First, Last, Plugin};
use bevy_ecs::prelude::*;
use bevy_time::{Fixed, Real, Time, Timer, TimerMode};
use hearth_components::{JoinRefused, OwnershipLost, PlayerJoined, PlayerLeft};

use crate::persistence::FlushStats;
use crate::sessions::OnlinePlayers;
use crate::storage::{LatencyHistogram, LatencySummary, StoreMetrics, StorePort};

/// What the tick measures and publishes, shared (`Arc`) with readers off the tick (the
/// metrics endpoint, the health check): the one place these figures are kept. The tick
/// writes it once per frame in `Last` (a few relaxed atomic stores); readers never lock
/// the world.
pub struct TickStats {
    /// Frame durations.
    pub frame: LatencyHistogram,
    /// Frames that took longer than the tick budget (1 / tick rate).
    pub overruns: AtomicU64,
    /// Players dropped because another server owns their lease.
    pub ownership_lost: AtomicU64,
    /// Players whose entity was spawned (joins completed).
    pub joins: AtomicU64,
    /// Joins refused (lease held elsewhere, store unavailable, ...).
    pub joins_refused: AtomicU64,
    /// Players who left (final save durable, lease released).
    pub leaves: AtomicU64,
    /// Players on this server at the end of the last frame (joins in flight included).
    pub players_online: AtomicU64,
    /// Flush batches handed to the store.
    pub flush_batches: AtomicU64,
    /// Players in the last flush batch.
    pub last_flush_batch_size: AtomicU64,
    /// Players snapshotted by all flush batches.
    pub players_flushed: AtomicU64,
    epoch: Instant,
    /// When the last frame ended, in µs since `epoch`; 0: no frame yet.
    last_frame_end_us: AtomicU64,
}

impl Default for TickStats {
    fn default() -> Self {
        Self {
            frame: LatencyHistogram::default(),
            overruns: AtomicU64::new(0),
            ownership_lost: AtomicU64::new(0),
            joins: AtomicU64::new(0),
            joins_refused: AtomicU64::new(0),
            leaves: AtomicU64::new(0),
            players_online: AtomicU64::new(0),
            flush_batches: AtomicU64::new(0),
            last_flush_batch_size: AtomicU64::new(0),
            players_flushed: AtomicU64::new(0),
            epoch: Instant::now(),
            last_frame_end_us: AtomicU64::new(0),
        }
    }
}

impl TickStats {
    /// How long ago the last frame completed (since these stats were made, when none has).
    pub fn since_last_frame(&self) -> Duration {
        let last = Duration::from_micros(self.last_frame_end_us.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    fn frame_ended(&self) {
        let us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_frame_end_us.store(us.max(1), Ordering::Relaxed);
    }
}

/// Frame timing of this app: the frame being timed, the tick budget, and the shared
/// [`TickStats`] it publishes to.
#[derive(Resource)]
pub struct TickMetrics {
    started: Option<Instant>,
    budget: Duration,
    /// The published figures (clone the `Arc` to read them from another thread).
    pub stats: Arc<TickStats>,
}

impl TickMetrics {
    /// A frame longer than this is an overrun: the fixed timestep.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Players dropped because another server owns their lease.
    pub fn ownership_lost(&self) -> u64 {
        self.stats.ownership_lost.load(Ordering::Relaxed)
    }
}

fn start_frame(mut metrics: ResMut<TickMetrics>) {
    metrics.started = Some(Instant::now());
}

/// The messages and resources a frame's end publishes.
#[derive(bevy_ecs::system::SystemParam)]
struct FrameOutcome<'w, 's> {
    lost: MessageReader<'w, 's, OwnershipLost>,
    joined: MessageReader<'w, 's, PlayerJoined>,
    refused: MessageReader<'w, 's, JoinRefused>,
    left: MessageReader<'w, 's, PlayerLeft>,
    online: Option<Res<'w, OnlinePlayers>>,
    flush: Option<Res<'w, FlushStats>>,
}

fn end_frame(mut metrics: ResMut<TickMetrics>, mut frame: FrameOutcome) {
    let stats = &metrics.stats;
    let add = |counter: &AtomicU64, n: usize| {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    add(&stats.ownership_lost, frame.lost.read().count());
    add(&stats.joins, frame.joined.read().count());
    add(&stats.joins_refused, frame.refused.read().count());
    add(&stats.leaves, frame.left.read().count());
    let set = |gauge: &AtomicU64, value: u64| gauge.store(value, Ordering::Relaxed);
    set(
        &stats.players_online,
        frame.online.as_ref().map_or(0, |o| o.len() as u64),
    );
    if let Some(flush) = &frame.flush {
        set(&stats.flush_batches, flush.batches);
        set(&stats.last_flush_batch_size, flush.last_batch_size as u64);
        set(&stats.players_flushed, flush.players_flushed);
    }
    if let Some(started) = metrics.started.take() {
        let took = started.elapsed();
        metrics.stats.frame.record(took);
        if took > metrics.budget {
            add(&metrics.stats.overruns, 1);
        }
    }
    metrics.stats.frame_ended();
}

/// A point-in-time view of every metric, for logs, tests and tools.
#[derive(Clone, Debug)]
pub struct MetricsReport {
    pub players: usize,
    pub saves: u64,
    pub save_errors: u64,
    pub saves_lease_lost: u64,
    pub saves_stale: u64,
    pub loads: u64,
    pub load_errors: u64,
    pub refreshes: u64,
    pub refresh_errors: u64,
    pub connections_opened: u64,
    pub round_trips: u64,
    pub flush_batches: u64,
    pub last_flush_batch_size: usize,
    pub ownership_lost: u64,
    pub save_batch_latency: LatencySummary,
    pub save_record_latency: LatencySummary,
    pub load_latency: LatencySummary,
    pub refresh_batch_latency: LatencySummary,
    pub refresh_record_latency: LatencySummary,
    pub tick: LatencySummary,
}

impl MetricsReport {
    /// Reads every metric from the world.
    pub fn read(world: &World) -> Option<Self> {
        let store: &Arc<StoreMetrics> = world.get_resource::<StorePort>()?.metrics();
        let tick = world.get_resource::<TickMetrics>();
        let flush = world
            .get_resource::<FlushStats>()
            .cloned()
            .unwrap_or_default();
        let get = StoreMetrics::get;
        Some(Self {
            players: world
                .get_resource::<OnlinePlayers>()
                .map_or(0, OnlinePlayers::len),
            saves: get(&store.saves),
            save_errors: get(&store.save_errors),
            saves_lease_lost: get(&store.saves_lease_lost),
            saves_stale: get(&store.saves_stale),
            loads: get(&store.loads),
            load_errors: get(&store.load_errors),
            refreshes: get(&store.refreshes),
            refresh_errors: get(&store.refresh_errors),
            connections_opened: get(&store.connections_opened),
            round_trips: get(&store.round_trips),
            flush_batches: flush.batches,
            last_flush_batch_size: flush.last_batch_size,
            ownership_lost: tick.map_or(0, TickMetrics::ownership_lost),
            save_batch_latency: store.save_batch_latency.summary(),
            save_record_latency: store.save_record_latency.summary(),
            load_latency: store.load_latency.summary(),
            refresh_batch_latency: store.refresh_batch_latency.summary(),
            refresh_record_latency: store.refresh_record_latency.summary(),
            tick: tick.map(|t| t.stats.frame.summary()).unwrap_or_default(),
        })
    }

    /// Logs the report's totals with the latencies of the last window, warning about store
    /// latencies whose p99 in that window exceeds `warn_above`.
    pub fn log(&self, window: &WindowLatencies, warn_above: Duration) {
        tracing::info!(
            players = self.players,
            saves = self.saves,
            save_errors = self.save_errors,
            loads = self.loads,
            load_errors = self.load_errors,
            refreshes = self.refreshes,
            refresh_errors = self.refresh_errors,
            connections_opened = self.connections_opened,
            round_trips = self.round_trips,
            flush_batches = self.flush_batches,
            last_flush_batch = self.last_flush_batch_size,
            ownership_lost = self.ownership_lost,
            save_p50 = ?window.save.p50,
            save_p99 = ?window.save.p99,
            load_p50 = ?window.load.p50,
            load_p99 = ?window.load.p99,
            refresh_p50 = ?window.refresh.p50,
            refresh_p99 = ?window.refresh.p99,
            tick_p50 = ?window.tick.p50,
            tick_p99 = ?window.tick.p99,
            tick_max = ?window.tick.max,
            "metrics (latencies: since the previous summary)"
        );
        for (what, summary) in window.above(warn_above) {
            tracing::warn!(p99 = ?summary.p99, threshold = ?warn_above, samples = summary.count, "{what} latency p99 above threshold since the previous summary");
        }
    }
}

/// Latency percentiles over one reporting window: the samples since the previous summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowLatencies {
    /// Per pipelined save chunk.
    pub save: LatencySummary,
    /// Per join (claim + load).
    pub load: LatencySummary,
    /// Per pipelined refresh chunk.
    pub refresh: LatencySummary,
    /// Per frame.
    pub tick: LatencySummary,
}

impl WindowLatencies {
    /// Takes the current window of every latency histogram and starts new ones.
    pub fn take(world: &World) -> Option<Self> {
        let store = world.get_resource::<StorePort>()?.metrics();
        Some(Self {
            save: store.save_batch_latency.take_window(),
            load: store.load_latency.take_window(),
            refresh: store.refresh_batch_latency.take_window(),
            tick: world
                .get_resource::<TickMetrics>()
                .map(|t| t.stats.frame.take_window())
                .unwrap_or_default(),
        })
    }

    /// The store latencies with samples whose p99 exceeds `threshold`, by name.
    pub fn above(&self, threshold: Duration) -> Vec<(&'static str, LatencySummary)> {
        [
            ("save", self.save),
            ("load", self.load),
            ("refresh", self.refresh),
        ]
        .into_iter()
        .filter(|(_, s)| s.count > 0 && s.p99 > threshold)
        .collect()
    }
}

/// The summary's timer and the p99 above which it warns.
#[derive(Resource)]
struct SummaryTimer(Timer, Duration);

fn log_summary(world: &mut World) {
    let delta = world.resource::<Time<Real>>().delta();
    let finished = {
        let mut timer = world.resource_mut::<SummaryTimer>();
        timer.0.tick(delta);
        timer.0.just_finished()
    };
    if finished {
        let warn_above = world.resource::<SummaryTimer>().1;
        if let (Some(report), Some(window)) =
            (MetricsReport::read(world), WindowLatencies::take(world))
        {
            report.log(&window, warn_above);
        }
    }
}

/// Frame timing, plus a metrics summary in the log every `metrics_interval` in verbose mode.
/// A frame longer than one fixed timestep (`Time<Fixed>`, set from the `tick_rate` key) is
/// an overrun.
#[derive(Clone, Debug)]
pub struct MetricsPlugin {
    /// Verbose mode: log a summary every `metrics_interval` (the `verbose` key).
    pub verbose: bool,
    /// How often verbose mode logs a summary (the `metrics_interval` key).
    pub metrics_interval: Duration,
    /// The summary warns when a store p99 exceeds this (the `latency_warn` key).
    pub latency_warn: Duration,
}

impl Default for MetricsPlugin {
    fn default() -> Self {
        Self {
            verbose: false,
            metrics_interval: Duration::from_secs(120),
            latency_warn: Duration::from_millis(50),
        }
    }
}

impl Plugin for MetricsPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(TickMetrics {
            started: None,
            budget: Time::<Fixed>::default().timestep(),
            stats: Arc::default(),
        })
        .add_systems(First, start_frame)
        .add_systems(Last, end_frame);
        if self.verbose {
            app.insert_resource(SummaryTimer(
                Timer::new(self.metrics_interval, TimerMode::Repeating),
                self.latency_warn,
            ))
            .add_systems(Last, log_summary);
        }
    }

    /// The tick budget is the fixed timestep, read once every plugin has set it.
    fn finish(&self, app: &mut App) {
        if let Some(timestep) = app
            .world()
            .get_resource::<Time<Fixed>>()
            .map(Time::timestep)
        {
            app.world_mut().resource_mut::<TickMetrics>().budget = timestep;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_store_latencies_with_samples_above_the_threshold_warn() {
        let slow = LatencySummary {
            p50: Duration::from_millis(10),
            p99: Duration::from_millis(80),
            max: Duration::from_millis(90),
            count: 5,
        };
        let window = WindowLatencies {
            save: slow,
            load: LatencySummary {
                p99: Duration::from_millis(20),
                count: 5,
                ..slow
            },
            refresh: LatencySummary { count: 0, ..slow },
            tick: slow,
        };
        let names: Vec<_> = window
            .above(Duration::from_millis(50))
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            ["save"],
            "load is fast, refresh has no samples, tick is no store latency"
        );
    }
}
