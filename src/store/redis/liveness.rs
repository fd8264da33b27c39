//! This process's liveness key, `<prefix>:alive:{<lease owner>}`: set with a short TTL
//! (`liveness_ttl`, 3 s by default) and renewed every third of it on a thread of its own, at
//! the process's own priority (the store's threads run at nice 10 and can wait seconds for a
//! core on a saturated machine: a heartbeat that late would give the players away), on a
//! connection of its own, so neither a long flush nor a hung lane delays it. A lease lives
//! `lease_ttl` (60 s); without this key a crashed server's players would wait that long to get
//! back in. With it, a claim (or a resume) that finds the lease held by an owner whose key is
//! gone takes the lease over (`claim.lua`, `resume.lua`: only while the lease still names that
//! owner). A holder that was only cut off (frozen, partitioned) cannot write over the new
//! owner's state: every save is owner-checked and sequence-fenced, so its next save of such a
//! player comes back `lost` and the player is dropped with what it had not saved.
//!
//! The key is in the slot of its owner, not of any player, so on a cluster the check is a
//! separate `EXISTS` before the claim: a holder that comes back between the two is still
//! fenced as above.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::oneshot;

use super::conn::{self, CallError};
use super::nodes::{LaneConnect, Nodes};
use super::scripts::Keys;
use crate::store::StoreSettings;

/// Why the liveness key could not be set at start.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    /// The request got no reply, or Redis refused it.
    #[error("setting the liveness key: {0}")]
    Call(CallError),
    /// Redis answered something `SET` never answers.
    #[error("setting the liveness key: unexpected reply {0:?}")]
    Unexpected(Vec<Value>),
    /// Its thread or runtime could not start.
    #[error("starting the liveness heartbeat: {0}")]
    Runtime(String),
}

/// This process's liveness key and how it is renewed.
pub struct Liveness {
    key: String,
    /// The lease owner: what the key holds, so an operator reading it sees whose it is.
    owner: String,
    ttl_ms: u64,
    /// How often it is renewed (a third of the TTL).
    period: Duration,
}

impl Liveness {
    /// The liveness key of the process `config` describes.
    pub fn new(config: &StoreSettings, keys: &Keys) -> Self {
        let owner = config.lease_owner();
        Self {
            key: keys.alive(&owner),
            owner,
            ttl_ms: u64::try_from(config.liveness_ttl.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            period: config.liveness_heartbeat().max(Duration::from_millis(10)),
        }
    }

    /// Sets (or renews) the key once, waiting at most until it would expire if this renewal
    /// were the last one that worked.
    pub async fn beat(&self, nodes: &mut Nodes<LaneConnect>) -> Result<(), LivenessError> {
        nodes.refresh_if_stale().await;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&self.key)
            .arg(&self.owner)
            .arg("PX")
            .arg(self.ttl_ms);
        let bound = Duration::from_millis(self.ttl_ms).saturating_sub(self.period);
        let reply = self
            .send(nodes, pipe, bound, "renewing the liveness key")
            .await;
        match reply {
            Ok(values) if matches!(values.as_slice(), [Value::Okay]) => Ok(()),
            Ok(values) => {
                nodes.mark_stale();
                Err(LivenessError::Unexpected(values))
            }
            Err(e) => {
                // On a cluster the key's master may have failed over: read the slots again.
                nodes.mark_stale();
                Err(LivenessError::Call(e))
            }
        }
    }

    /// Sends `pipe` to the node serving the key, bounded by `bound`, without counting a round
    /// trip (those count the store's jobs), and accounts for the connection.
    async fn send(
        &self,
        nodes: &mut Nodes<LaneConnect>,
        pipe: redis::Pipeline,
        bound: Duration,
        what: &str,
    ) -> Result<Vec<Value>, CallError> {
        let conn = nodes.for_key(&self.key);
        let manager = conn.manager()?;
        let reply = conn::call(manager, Arc::new(pipe), bound).await;
        conn.observe(&reply, what);
        reply.result
    }

    /// Sets the key, then renews it every period on a thread of its own until the returned
    /// [`Heartbeat`] is stopped. `Err` when the first `SET` fails: a process that cannot say
    /// it is alive must not claim leases another server would take from it at once.
    pub fn start(self, mut nodes: Nodes<LaneConnect>) -> Result<Heartbeat, LivenessError> {
        let (started_tx, started) = crossbeam_channel::bounded(1);
        let (stop, stop_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LivenessError::Runtime(e.to_string()))?;
        std::thread::Builder::new()
            .name("hearth-alive".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let first = self.beat(&mut nodes).await;
                    let ok = first.is_ok();
                    started_tx.send(first).ok();
                    if ok {
                        self.run(nodes, stop_rx).await;
                    }
                });
            })
            .map_err(|e| LivenessError::Runtime(e.to_string()))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Heartbeat { stop: Some(stop) }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LivenessError::Runtime(
                "the heartbeat thread stopped".into(),
            )),
        }
    }

    /// Renews the key every period until `stop` is signalled, then deletes it (all this
    /// process's leases are released or abandoned by then: another server may take them at
    /// once) and answers on the sender it was given.
    async fn run(
        self,
        mut nodes: Nodes<LaneConnect>,
        mut stop: oneshot::Receiver<crossbeam_channel::Sender<()>>,
    ) {
        let mut beat =
            tokio::time::interval_at(tokio::time::Instant::now() + self.period, self.period);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let done = loop {
            tokio::select! {
                done = &mut stop => break done.ok(),
                _ = beat.tick() => {
                    if let Err(e) = self.beat(&mut nodes).await {
                        tracing::warn!(error = %e, "liveness key not renewed: if it expires, other servers may take this server's players over");
                    }
                }
            }
        };
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&self.key);
        let bound = Duration::from_millis(self.ttl_ms);
        if let Err(e) = self
            .send(&mut nodes, pipe, bound, "deleting the liveness key")
            .await
        {
            tracing::debug!(error = %e, "liveness key not deleted; it expires by its TTL");
        }
        if let Some(done) = done {
            done.send(()).ok();
        }
    }
}

/// The running heartbeat of [`Liveness::start`].
pub struct Heartbeat {
    stop: Option<oneshot::Sender<crossbeam_channel::Sender<()>>>,
}

impl Heartbeat {
    /// Stops renewing and deletes the key, waiting up to `wait` for the deletion.
    pub fn stop(&mut self, wait: Duration) {
        if let Some(stop) = self.stop.take() {
            let (done_tx, done) = crossbeam_channel::bounded(1);
            if stop.send(done_tx).is_ok() {
                done.recv_timeout(wait).ok();
            }
        }
    }
}

/// Whether the process holding lease owner `owner` is alive (its liveness key exists), asked
/// on `nodes`' connection to the key's node. `None` when Redis did not answer: the caller
/// then treats the holder as alive (a refusal it can retry, never a takeover on a guess).
pub async fn holder_alive(
    nodes: &mut Nodes<LaneConnect>,
    keys: &Keys,
    owner: &str,
) -> Option<bool> {
    let key = keys.alive(owner);
    nodes.refresh_if_stale().await;
    let mut pipe = redis::pipe();
    pipe.cmd("EXISTS").arg(&key);
    let reply = nodes
        .for_key(&key)
        .request(pipe, "checking a lease holder is alive")
        .await;
    match reply.result.as_deref() {
        Ok([Value::Int(n)]) => Some(*n == 1),
        _ => {
            nodes.mark_stale();
            None
        }
    }
}
