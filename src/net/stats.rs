//! What the front door counts about itself, shared by the accept loop, the connection tasks
//! and the auth workers, and read by the metrics endpoint at scrape time. Relaxed atomics:
//! a count costs a connection task one uncontended add.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hearth_systems::storage::LatencyHistogram;

use super::admission::Refused;
use super::transport::TransportKind;

/// Front door counters.
#[derive(Default)]
pub struct NetStats {
    /// Connections refused because the server held `max_connections`.
    pub refused_server_full: AtomicU64,
    /// Connections refused because their address held `max_connections_per_address`.
    pub refused_address_full: AtomicU64,
    /// Messages received from clients (blank lines not counted), by transport
    /// ([`TransportKind::ALL`] order).
    pub messages_in: [AtomicU64; 4],
    /// Messages written to clients (answers and pushes; not the last word of a close), by
    /// transport.
    pub messages_out: [AtomicU64; 4],
    /// Client messages dropped with `rate_limited` (over the per-connection rate), by
    /// transport.
    pub rate_limited_messages: [AtomicU64; 4],
    /// Registrations refused with `rate_limited` (over the per-address rate).
    pub rate_limited_registrations: AtomicU64,
    /// Logins refused with `rate_limited` (address locked out after failed logins).
    pub rate_limited_logins: AtomicU64,
    /// Auth requests refused with `server_busy` because the auth queue (or the address's
    /// share of it) was full.
    pub auth_queue_full: AtomicU64,
    /// Auth requests waiting for a worker.
    pub auth_queued: AtomicU64,
    /// Time an auth worker spent on each request (password hashing, account lookup, the
    /// session claim and load for a login).
    pub auth_latency: LatencyHistogram,
    /// Open connections by login state, in [`NetStats::CONNECTION_STATES`] order.
    pub connections_by_state: [AtomicU64; 3],
    /// Client connections opened since start, by transport ([`TransportKind::ALL`] order).
    pub connections_opened: [AtomicU64; 4],
    /// Client connections open now, by transport ([`TransportKind::ALL`] order).
    pub connections_open: [AtomicU64; 4],
}

impl NetStats {
    /// The login states a connection is counted under: no login yet (or logged out), a
    /// login being checked, a player in the world.
    pub const CONNECTION_STATES: [&'static str; 3] = ["anonymous", "logging_in", "playing"];

    /// Moves one connection from state `from` to state `to` (indices into
    /// [`NetStats::CONNECTION_STATES`]; `None` for a connection arriving or leaving).
    pub fn connection_state(&self, from: Option<usize>, to: Option<usize>) {
        if let Some(from) = from {
            self.connections_by_state[from].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(to) = to {
            self.connections_by_state[to].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A client connection came in by `kind` and is being served.
    pub fn connection_opened(&self, kind: TransportKind) {
        Self::count(&self.connections_opened[kind.index()]);
        Self::count(&self.connections_open[kind.index()]);
    }

    /// A client connection that came in by `kind` ended.
    pub fn connection_closed(&self, kind: TransportKind) {
        self.connections_open[kind.index()].fetch_sub(1, Ordering::Relaxed);
    }

    /// A message came in by `kind`.
    pub fn message_in(&self, kind: TransportKind) {
        Self::count(&self.messages_in[kind.index()]);
    }

    /// `count` messages were written to a client of `kind`.
    pub fn messages_out(&self, kind: TransportKind, count: u64) {
        self.messages_out[kind.index()].fetch_add(count, Ordering::Relaxed);
    }

    /// A message that came in by `kind` was dropped over the rate.
    pub fn rate_limited(&self, kind: TransportKind) {
        Self::count(&self.rate_limited_messages[kind.index()]);
    }

    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused connection under its reason.
    pub fn count_refused(&self, refused: Refused) {
        Self::count(match refused {
            Refused::ServerFull(_) => &self.refused_server_full,
            Refused::AddressFull(_) => &self.refused_address_full,
        });
    }

    /// An auth request left the queue for a worker (or never entered it).
    pub fn auth_dequeued(&self) {
        self.auth_queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// An auth worker finished a request that took `took`.
    pub fn auth_done(&self, took: Duration) {
        self.auth_latency.record(took);
    }
}
