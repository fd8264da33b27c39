//! What the bots count, shared with the step runner and the progress line.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Counters every bot adds to; the runner reads deltas of them per second and per hold.
pub struct Stats {
    /// When the swarm started: ping nonces are microseconds since then, so a `pong` carries
    /// its own send time.
    pub epoch: Instant,
    /// Bots logged in with their connection open.
    pub online: AtomicU64,
    /// Bots done with their start, ever: in place (walk done), or ended before that
    /// (refused for good, disconnected). A step's ramp ends when all its bots are settled.
    pub settled: AtomicU64,
    /// Successful logins, ever.
    pub logins: AtomicU64,
    /// When the latest login succeeded ([`Stats::now_us`]): logins/s is counted up to it,
    /// not over the walk-out that follows.
    pub last_login_us: AtomicU64,
    /// Replication `update`s received, ever.
    pub updates: AtomicU64,
    /// Bytes received by logged-in bots (lines or frames, every message), ever.
    pub bytes: AtomicU64,
    /// Broken replication promises (see `world`), ever; the first is kept in
    /// [`Stats::first_violation`].
    pub violations: AtomicU64,
    /// Bots whose own position stopped being checked (too many moves in flight), ever.
    pub unchecked: AtomicU64,
    /// Connections of logged-in bots the server closed (kicks included).
    pub disconnects: AtomicU64,
    /// `kicked` messages received.
    pub kicked: AtomicU64,
    /// `rate_limited` errors received.
    pub rate_limited: AtomicU64,
    /// `server_busy` errors received (on connect or on login/register).
    pub server_busy: AtomicU64,
    /// Other errors (`unavailable`, `already_online`, anything unexpected).
    pub other_errors: AtomicU64,
    /// Bots that gave up before logging in (a refusal retrying cannot fix).
    pub login_failures: AtomicU64,
    /// The largest gap between two updates of one bot since the hold began.
    pub max_gap_us: AtomicU64,
    first_violation: Mutex<Option<String>>,
    rtt: Mutex<RttWindows>,
}

/// Round trips of the last second (for the progress line) and of the current hold.
struct RttWindows {
    second: Histogram<u64>,
    hold: Histogram<u64>,
}

/// A copy of the counters at one moment; deltas of two make a window's figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub logins: u64,
    pub updates: u64,
    pub bytes: u64,
    pub violations: u64,
    pub unchecked: u64,
    pub disconnects: u64,
    pub kicked: u64,
    pub rate_limited: u64,
    pub server_busy: u64,
    pub other_errors: u64,
    pub login_failures: u64,
}

impl Counters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            logins: self.logins - earlier.logins,
            updates: self.updates - earlier.updates,
            bytes: self.bytes - earlier.bytes,
            violations: self.violations - earlier.violations,
            unchecked: self.unchecked - earlier.unchecked,
            disconnects: self.disconnects - earlier.disconnects,
            kicked: self.kicked - earlier.kicked,
            rate_limited: self.rate_limited - earlier.rate_limited,
            server_busy: self.server_busy - earlier.server_busy,
            other_errors: self.other_errors - earlier.other_errors,
            login_failures: self.login_failures - earlier.login_failures,
        }
    }
}

/// RTT percentiles in milliseconds, `None` when no pong arrived in the window.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Rtt {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub count: u64,
}

/// A latency histogram in microseconds (the swarm's one shape of histogram).
pub(crate) fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn percentiles(h: &Histogram<u64>) -> Rtt {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Rtt::default();
    }
    Rtt {
        p50_ms: Some(ms(h.value_at_quantile(0.5))),
        p99_ms: Some(ms(h.value_at_quantile(0.99))),
        max_ms: Some(ms(h.max())),
        count: h.len(),
    }
}

impl Stats {
    /// Fresh counters; `epoch` starts now.
    pub fn new() -> Self {
        Stats {
            epoch: Instant::now(),
            online: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            logins: AtomicU64::new(0),
            last_login_us: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            unchecked: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            kicked: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            server_busy: AtomicU64::new(0),
            other_errors: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
            max_gap_us: AtomicU64::new(0),
            first_violation: Mutex::new(None),
            rtt: Mutex::new(RttWindows {
                second: histogram(),
                hold: histogram(),
            }),
        }
    }

    /// Microseconds since [`Stats::epoch`]: a ping's nonce.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Records the round trip of a `pong` whose nonce is its send time.
    pub fn record_pong(&self, nonce: u64) {
        let rtt = self.now_us().saturating_sub(nonce).max(1);
        let mut windows = self.rtt.lock().expect("rtt lock");
        windows.second.saturating_record(rtt);
        windows.hold.saturating_record(rtt);
    }

    /// Counts a broken replication promise of bot `n`, keeping the first one's description.
    pub fn record_violation(&self, n: usize, what: &str) {
        self.violations.fetch_add(1, Relaxed);
        let mut first = self
            .first_violation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(format!("bot {n}: {what}"));
        }
    }

    /// The first broken replication promise, if any.
    pub fn first_violation(&self) -> Option<String> {
        self.first_violation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the time since a bot's previous update.
    pub fn record_gap(&self, gap_us: u64) {
        self.max_gap_us.fetch_max(gap_us, Relaxed);
    }

    /// RTT of the last second; starts the next second.
    pub fn take_second_rtt(&self) -> Rtt {
        let mut windows = self.rtt.lock().expect("rtt lock");
        let rtt = percentiles(&windows.second);
        windows.second.reset();
        rtt
    }

    /// RTT since the hold began.
    pub fn hold_rtt(&self) -> Rtt {
        percentiles(&self.rtt.lock().expect("rtt lock").hold)
    }

    /// Starts a hold: its RTT and update gaps only count from now.
    pub fn start_hold(&self) {
        self.rtt.lock().expect("rtt lock").hold.reset();
        self.max_gap_us.store(0, Relaxed);
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        Counters {
            logins: self.logins.load(Relaxed),
            updates: self.updates.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            violations: self.violations.load(Relaxed),
            unchecked: self.unchecked.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            kicked: self.kicked.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            server_busy: self.server_busy.load(Relaxed),
            other_errors: self.other_errors.load(Relaxed),
            login_failures: self.login_failures.load(Relaxed),
        }
    }
}
