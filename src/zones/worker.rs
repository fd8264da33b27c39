//! The zones worker: a thread with its own store connection (like an auth worker's) that
//! keeps the zone directory fresh — who serves each other zone, and whether that process is
//! alive — and runs handoffs, each retried until it is done or refused, so the tick never
//! waits on the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bevy_ecs::resource::Resource;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use hearth_components::PlayerId;
use hearth_components::protocol::ResumeToken;
use hearth_components::protocol::ServerMessage;
use hearth_systems::net::{ClientOutbox, ConnId};

use crate::store::accounts::TokenHash;
use crate::store::zones::{HandOver, ZoneHolder, ZoneStore, ZoneStoreError, ZoneStoreFactory};

/// How often the directory is read again: a zone whose process started (or died) is seen
/// within about this long (plus the dead process's `liveness_ttl`).
pub const DIRECTORY_REFRESH: Duration = Duration::from_millis(500);
/// How long a handoff that fails (the store unavailable) is retried before the client is
/// told to log in again.
pub const HANDOFF_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long a failed handoff attempt waits before the next.
const HANDOFF_RETRY: Duration = Duration::from_millis(200);
/// How long the destination holds a handed-over player's lease until its client resumes
/// there (then the join claims it for the full lease TTL); a client that never comes frees
/// the player after this long.
pub const HANDOFF_HOLD: Duration = Duration::from_secs(10);

/// Who serves each other zone, as last read ([`DIRECTORY_REFRESH`]).
#[derive(Resource, Clone, Default)]
pub struct ZoneDirectory(Arc<RwLock<HashMap<String, ZoneHolder>>>);

impl ZoneDirectory {
    /// The live process serving `zone`, if any.
    pub fn live_holder(&self, zone: &str) -> Option<ZoneHolder> {
        let directory = self.0.read().unwrap_or_else(|p| p.into_inner());
        directory.get(zone).filter(|holder| holder.alive).cloned()
    }

    fn replace(&self, holders: HashMap<String, ZoneHolder>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = holders;
    }
}

/// A handoff to run: the player who left, where it goes, and the token its client resumes
/// with there.
pub struct HandOverJob {
    pub conn: ConnId,
    /// The connection's outbox: the `handoff` is sent from the worker the moment the store
    /// answered ([`Connections::handoff_outbox`]).
    pub outbox: Option<Arc<dyn ClientOutbox>>,
    pub player: PlayerId,
    pub zone: String,
    pub holder: ZoneHolder,
    pub token: ResumeToken,
    pub hash: TokenHash,
    pub token_ttl: Duration,
}

/// A handoff's outcome: `Ok` as the store answered, `Err` when it never answered (within
/// [`HANDOFF_RETRY_FOR`]).
pub struct HandOverDone {
    pub job: HandOverJob,
    pub outcome: Result<HandOver, ZoneStoreError>,
    /// The `handoff` was queued on the job's outbox already.
    pub sent: bool,
}

impl HandOverJob {
    /// The `handoff` its client is sent once the store moved the lease.
    pub fn message(&self) -> ServerMessage {
        ServerMessage::Handoff {
            addr: self.holder.public_addr.clone(),
            ws_addr: self.holder.public_ws_addr.clone(),
            resume_token: self.token.clone(),
        }
    }
}

/// The worker's ends: handoffs in, outcomes out, and the directory it keeps. The thread
/// stops when this is dropped.
#[derive(Resource)]
pub struct ZonesWorker {
    jobs: Sender<HandOverJob>,
    pub done: Receiver<HandOverDone>,
}

impl ZonesWorker {
    /// Starts the worker for a process serving `own` among `zones`, by the zone map whose
    /// fingerprint is `map`.
    pub fn start(
        stores: ZoneStoreFactory,
        zones: Vec<String>,
        own: &str,
        map: String,
        directory: ZoneDirectory,
    ) -> std::io::Result<Self> {
        let others: Vec<String> = zones.into_iter().filter(|z| z != own).collect();
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("hearth-zones".into())
            .spawn(move || {
                let mut directory = Directory {
                    shared: directory,
                    map,
                    refused: HashMap::new(),
                };
                run(stores(), &others, &mut directory, &jobs_rx, &done_tx)
            })?;
        Ok(Self { jobs, done })
    }

    /// Queues a handoff; its outcome comes on `done`.
    pub fn submit(&self, job: HandOverJob) {
        self.jobs.send(job).ok();
    }
}

/// The worker's side of the directory: what it publishes, and the neighbours it refuses
/// because they serve another zone map.
struct Directory {
    shared: ZoneDirectory,
    /// This process's zone map fingerprint.
    map: String,
    /// Zone → the other map fingerprint its holder registered, logged once per change.
    refused: HashMap<String, String>,
}

impl Directory {
    /// Publishes what was read: each zone's holder, but for one serving another zone map
    /// (the processes disagree on where the borders are: players handed to it could be
    /// handed straight back, or land in no zone), which counts as no holder, with an error
    /// logged once.
    fn update(&mut self, others: &[String], holders: Vec<Option<ZoneHolder>>) {
        let mut served = HashMap::new();
        for (zone, holder) in others.iter().zip(holders) {
            let Some(holder) = holder else {
                self.refused.remove(zone);
                continue;
            };
            if holder.map == self.map {
                self.refused.remove(zone);
                served.insert(zone.clone(), holder);
                continue;
            }
            if self.refused.get(zone) != Some(&holder.map) {
                tracing::error!(
                    zone = %zone,
                    holder = %holder.owner,
                    its_map = %holder.map,
                    our_map = %self.map,
                    "zone {zone:?} is served by a process with another zone map: no player is handed to it until every process of the world reads the same map"
                );
                self.refused.insert(zone.clone(), holder.map);
            }
        }
        self.shared.replace(served);
    }
}

fn run(
    mut store: Box<dyn ZoneStore>,
    others: &[String],
    directory: &mut Directory,
    jobs: &Receiver<HandOverJob>,
    done: &Sender<HandOverDone>,
) {
    let mut next_read = Instant::now();
    loop {
        if Instant::now() >= next_read {
            match store.read_zones(others) {
                Ok(holders) => directory.update(others, holders),
                Err(e) => tracing::debug!(error = %e, "zone directory not refreshed"),
            }
            next_read = Instant::now() + DIRECTORY_REFRESH;
        }
        let job = match jobs.recv_timeout(next_read.saturating_duration_since(Instant::now())) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let outcome = hand_over(store.as_mut(), &job);
        let sent = matches!(outcome, Ok(HandOver::Done))
            && job
                .outbox
                .as_ref()
                .is_some_and(|outbox| outbox.send(job.message()).is_ok());
        if done.send(HandOverDone { job, outcome, sent }).is_err() {
            return;
        }
    }
}

/// Runs one handoff, retrying a store that does not answer for up to [`HANDOFF_RETRY_FOR`].
fn hand_over(store: &mut dyn ZoneStore, job: &HandOverJob) -> Result<HandOver, ZoneStoreError> {
    let give_up = Instant::now() + HANDOFF_RETRY_FOR;
    loop {
        match store.hand_over(
            job.player,
            &job.holder.owner,
            HANDOFF_HOLD,
            &job.hash,
            job.token_ttl,
        ) {
            Ok(outcome) => return Ok(outcome),
            Err(e) if Instant::now() >= give_up => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, player = %job.player, "handoff failed; retrying");
                std::thread::sleep(HANDOFF_RETRY);
            }
        }
    }
}
