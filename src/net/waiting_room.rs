//! The waiting room: a `register` or `login` that waits behind others for a password worker
//! is told its place in the line and an estimate of its wait (`queued`), when it joins the
//! line and every [`NOTICE_INTERVAL`] while it waits. A crowd logging in at once (a server
//! start, a popular hour) waits its turn, fairly between addresses, instead of being refused
//! with `server_busy` and retrying.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use hearth_components::protocol::ServerMessage;
use hearth_systems::net::ClientOutbox;

use super::fair_queue::FairWatcher;

/// A request waiting in the line: where its notices go.
pub trait Waiting: Send + 'static {
    /// The outbox of the connection that sent the request.
    fn outbox(&self) -> &dyn ClientOutbox;
}

/// How often a waiting request is told its place again.
pub const NOTICE_INTERVAL: Duration = Duration::from_secs(2);

/// The time a password request is assumed to take until one has been measured (argon2 with
/// Hearth's parameters takes 20-60 ms on one core of a release build).
const FIRST_ESTIMATE: Duration = Duration::from_millis(50);

/// How long a password request keeps a worker busy (a moving average of the last dozen or
/// so), and how many workers share the line: enough to estimate a wait.
pub struct WaitEstimate {
    micros: AtomicU64,
    workers: usize,
}

impl WaitEstimate {
    /// An estimate for a line served by `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            micros: AtomicU64::new(0),
            workers: workers.max(1),
        }
    }

    /// A worker finished a password request that took `took`.
    pub fn record(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // Racing updates may lose one sample; an estimate does not mind.
        let old = self.micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            took.max(1)
        } else {
            old - old / 8 + took / 8
        };
        self.micros.store(new, Ordering::Relaxed);
    }

    /// Whether a request with `ahead` requests before it waits for more than the workers'
    /// current requests (and so is worth telling).
    pub fn waits(&self, ahead: usize) -> bool {
        ahead >= self.workers
    }

    /// The `queued` notice for a request with `ahead` requests before it: place `ahead + 1`,
    /// and the rounds of work before its own ends, in whole seconds (at least 1).
    pub fn notice(&self, ahead: usize) -> ServerMessage {
        let micros = match self.micros.load(Ordering::Relaxed) {
            0 => FIRST_ESTIMATE.as_micros() as u64,
            measured => measured,
        };
        let rounds = (ahead / self.workers + 1) as u64;
        ServerMessage::Queued {
            position: ahead as u64 + 1,
            eta_s: (rounds * micros).div_ceil(1_000_000).max(1),
        }
    }
}

/// Tells every waiting request that still waits its place, every [`NOTICE_INTERVAL`], until
/// the queue closes. A client whose outbox is full misses a notice, not its answer.
pub fn start<T: Waiting>(
    watcher: FairWatcher<IpAddr, T>,
    estimate: Arc<WaitEstimate>,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("hearth-waiting-room".into())
        .spawn(move || {
            loop {
                thread::sleep(NOTICE_INTERVAL);
                let open = watcher.visit_in_serving_order(|ahead, request| {
                    if estimate.waits(ahead) {
                        request.outbox().send(estimate.notice(ahead)).ok();
                    }
                });
                if !open {
                    return;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    use hearth_systems::net::OutboxClosed;

    use crate::net::fair_queue::fair_queue;

    /// A waiting request that is only its outbox.
    struct Waiter(Arc<Recorded>);

    impl Waiting for Waiter {
        fn outbox(&self) -> &dyn ClientOutbox {
            self.0.as_ref()
        }
    }

    /// An outbox that keeps what it is sent.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<ServerMessage>>);

    impl ClientOutbox for Recorded {
        fn send(&self, message: ServerMessage) -> Result<(), OutboxClosed> {
            self.0.lock().unwrap().push(message);
            Ok(())
        }

        fn close(&self) {}
    }

    #[test]
    fn every_request_still_waiting_is_told_its_place_again() {
        let (tx, _workers_not_started) = fair_queue::<IpAddr, Waiter>(8, 8);
        let outboxes: Vec<Arc<Recorded>> = (0..4).map(|_| Arc::default()).collect();
        for (n, outbox) in outboxes.iter().enumerate() {
            tx.try_push(
                IpAddr::from([10, 0, 0, n as u8]),
                Waiter(Arc::clone(outbox)),
            )
            .unwrap();
        }
        start(tx.watcher(), Arc::new(WaitEstimate::new(2))).unwrap();
        let deadline = Instant::now() + NOTICE_INTERVAL * 3;
        while outboxes[3].0.lock().unwrap().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let told: Vec<Vec<u64>> = outboxes
            .iter()
            .map(|outbox| {
                let sent = outbox.0.lock().unwrap();
                sent.iter()
                    .map(|m| match m {
                        ServerMessage::Queued { position, .. } => *position,
                        other => panic!("only notices: {other:?}"),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            told,
            [vec![], vec![], vec![3], vec![4]],
            "the two the workers take next are not told; the rest learn their places"
        );
    }

    fn told(estimate: &WaitEstimate, ahead: usize) -> (u64, u64) {
        match estimate.notice(ahead) {
            ServerMessage::Queued { position, eta_s } => (position, eta_s),
            other => panic!("not a notice: {other:?}"),
        }
    }

    #[test]
    fn the_wait_is_the_rounds_of_work_ahead_at_the_measured_pace() {
        let estimate = WaitEstimate::new(2);
        assert!(!estimate.waits(1), "two workers take the first two at once");
        assert!(estimate.waits(2));
        for _ in 0..20 {
            estimate.record(Duration::from_millis(100));
        }
        // 1,000 ahead, two at a time, 0.1 s each: 501 rounds, 50.1 s, told 51.
        assert_eq!(told(&estimate, 1_000), (1_001, 51));
        assert_eq!(told(&estimate, 2), (3, 1), "never told 0 s");
    }

    #[test]
    fn the_pace_follows_the_workers() {
        let estimate = WaitEstimate::new(1);
        estimate.record(Duration::from_millis(100));
        for _ in 0..40 {
            estimate.record(Duration::from_millis(400));
        }
        let (_, eta) = told(&estimate, 99);
        assert!((39..=41).contains(&eta), "100 rounds of about 0.4 s: {eta}");
    }
}
