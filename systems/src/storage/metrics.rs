//! What a store measures about itself: counters and latency histograms, shared with its
//! worker threads and read by the metrics plugin.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
