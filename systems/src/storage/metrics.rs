//! What a store measures about itself: counters and latency histograms, shared with its
//! worker threads and read by the metrics plugin.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::{RefreshOutcome, SaveOutcome};

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

    /// Every sample since start, counted into buckets with the given upper bounds (sorted
    /// ascending), for an exposition with fixed buckets. A sample lands in the first bucket
    /// whose bound is at least its value (to the histogram's 3 significant digits); the
    /// returned counts have one more entry, for samples above the last bound.
    pub fn buckets(&self, bounds: &[Duration]) -> BucketCounts {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let bounds_us: Vec<u64> = bounds
            .iter()
            .map(|b| u64::try_from(b.as_micros()).unwrap_or(u64::MAX))
            .collect();
        let mut counts = vec![0; bounds.len() + 1];
        let mut sum_us: u128 = 0;
        for v in h.all.iter_recorded() {
            let value = h.all.highest_equivalent(v.value_iterated_to());
            let n = v.count_at_value();
            let bucket = bounds_us.partition_point(|&bound| bound < value);
            counts[bucket] += n;
            sum_us += u128::from(h.all.median_equivalent(value)) * u128::from(n);
        }
        BucketCounts {
            counts,
            sum: Duration::from_micros(u64::try_from(sum_us).unwrap_or(u64::MAX)),
            count: h.all.len(),
        }
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

/// A [`LatencyHistogram`] counted into fixed buckets (see [`LatencyHistogram::buckets`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BucketCounts {
    /// Samples per bucket (not cumulative); the last entry counts those above every bound.
    pub counts: Vec<u64>,
    /// Sum of all samples (each at the middle of its 3-digit precision range).
    pub sum: Duration,
    /// Number of samples.
    pub count: u64,
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
    /// Store connections whose last request was answered (the Redis store's lanes and its
    /// liveness heartbeat; the memory store has none).
    pub connections_open: AtomicU64,
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
    /// Latency of each batch-flush save chunk (periodic lane).
    pub save_batch_latency: LatencyHistogram,
    /// Latency seen by each record of a batch flush (the round trip that carried it).
    pub save_record_latency: LatencyHistogram,
    /// Latency of each immediate or final save batch (interactive lane): what a `level_up`
    /// or a `logged_out` waits for.
    pub priority_save_batch_latency: LatencyHistogram,
    /// Latency seen by each immediate or final save.
    pub priority_save_record_latency: LatencyHistogram,
    /// Latency of each join (claim + load).
    pub load_latency: LatencyHistogram,
    /// Latency of each refresh batch / pipelined chunk.
    pub refresh_batch_latency: LatencyHistogram,
    /// Latency seen by each lease refresh.
    pub refresh_record_latency: LatencyHistogram,
    /// Per lane (in [`StoreMetrics::LANES`] order): whether it is in an outage, as its
    /// health tracking decides (down at the first failure, up once it has worked for a
    /// while). Read by the readiness check and the metrics endpoint.
    lanes_down: [AtomicBool; 2],
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

    /// The store's lanes, by name.
    pub const LANES: [&'static str; 2] = ["periodic", "interactive"];

    /// Records whether the lane named `lane` (one of [`StoreMetrics::LANES`]) is down.
    pub fn set_lane_down(&self, lane: &str, down: bool) {
        if let Some(i) = Self::LANES.iter().position(|l| *l == lane) {
            self.lanes_down[i].store(down, Ordering::Relaxed);
        }
    }

    /// Each lane with whether it is down.
    pub fn lanes_down(&self) -> [(&'static str, bool); 2] {
        [0, 1].map(|i| (Self::LANES[i], self.lanes_down[i].load(Ordering::Relaxed)))
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

    #[test]
    fn buckets_count_every_sample_since_start_under_its_bound() {
        let h = LatencyHistogram::default();
        h.record_n(Duration::from_millis(1), 3);
        h.record_n(Duration::from_millis(30), 2);
        h.record(Duration::from_secs(20));
        h.take_window();
        let ms = Duration::from_millis;
        let b = h.buckets(&[ms(1), ms(10), ms(100)]);
        assert_eq!(b.counts, [3, 0, 2, 1], "1 ms is within the 1 ms bucket");
        assert_eq!(b.count, 6);
        let sum = b.sum.as_secs_f64();
        assert!((sum - 20.063).abs() < 0.05, "sum {sum}");
    }
}
