//! Claims whose outcome the client was not told: a join that got no reply within the store
//! timeout (a hung Redis, `DEBUG SLEEP`) or lost its connection after sending is answered
//! `unavailable` ("nothing was changed"), but Redis may still run the claim later and hold the
//! lease for a full TTL, refusing the player everywhere. Each such claim is undone — the lease
//! released if it is ours — once Redis answers: when the claim's own late reply arrives, or at
//! once for a broken connection, retried until it succeeds or the lease would have expired
//! anyway. A later join of the same player here supersedes the undo (it claims the lease
//! itself and may legitimately hold it).

use std::collections::HashMap;
use std::time::Duration;

use hearth_components::PlayerId;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::conn::Reply;

/// How long a failed undo waits before it is tried again.
pub const UNDO_RETRY: Duration = Duration::from_secs(1);

/// An undo due now: release `player`'s lease if the claim of join `ticket` is still the
/// latest one here, and keep trying until `give_up_at`.
#[derive(Clone, Copy, Debug)]
pub struct Undo {
    pub player: PlayerId,
    pub ticket: u64,
    pub give_up_at: Instant,
}

/// The lane's uncertain claims, by player: the ticket of the join whose claim may have run.
pub struct UncertainClaims {
    latest: HashMap<PlayerId, u64>,
    due: UnboundedSender<Undo>,
    pub due_rx: UnboundedReceiver<Undo>,
    lease_ttl: Duration,
}

impl UncertainClaims {
    /// No uncertain claims; undos of leases with `lease_ttl` give up after it.
    pub fn new(lease_ttl: Duration) -> Self {
        let (due, due_rx) = unbounded_channel();
        Self {
            latest: HashMap::new(),
            due,
            due_rx,
            lease_ttl,
        }
    }

    /// A new join of `player` starts: whatever an earlier uncertain claim did, this join now
    /// decides the lease.
    pub fn superseded(&mut self, player: PlayerId) {
        self.latest.remove(&player);
    }

    /// The claim of join `ticket` got no reply in time: undo it when `late` resolves (its
    /// reply arrives, or its own longer limit passes).
    pub fn undo_after(&mut self, player: PlayerId, ticket: u64, late: JoinHandle<Reply>) {
        self.latest.insert(player, ticket);
        let (due, lease_ttl) = (self.due.clone(), self.lease_ttl);
        tokio::spawn(async move {
            late.await.ok();
            // Whatever the reply says: a refused claim leaves a lease we do not own, which
            // the owner-checked release leaves alone.
            let give_up_at = Instant::now() + lease_ttl;
            due.send(Undo {
                player,
                ticket,
                give_up_at,
            })
            .ok();
        });
    }

    /// The claim of join `ticket` may have run, and no reply will say (its connection
    /// broke): undo it now.
    pub fn undo_now(&mut self, player: PlayerId, ticket: u64) {
        self.latest.insert(player, ticket);
        let give_up_at = Instant::now() + self.lease_ttl;
        self.due
            .send(Undo {
                player,
                ticket,
                give_up_at,
            })
            .ok();
    }

    /// Whether `undo` is still wanted (no later join of the player here since).
    pub fn wanted(&self, undo: &Undo) -> bool {
        self.latest.get(&undo.player) == Some(&undo.ticket)
    }

    /// The undo is done (or given up).
    pub fn done(&mut self, undo: &Undo) {
        if self.wanted(undo) {
            self.latest.remove(&undo.player);
        }
    }

    /// Tries `undo` again after [`UNDO_RETRY`], unless its time is up.
    pub fn retry_later(&mut self, undo: Undo) -> bool {
        if Instant::now() + UNDO_RETRY > undo.give_up_at {
            self.done(&undo);
            return false;
        }
        let due = self.due.clone();
        tokio::spawn(async move {
            tokio::time::sleep(UNDO_RETRY).await;
            due.send(undo).ok();
        });
        true
    }
}
