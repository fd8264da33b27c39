//! The Redis store: the durable backend behind the storage port.
//!
//! - Two connections (`redis::aio::ConnectionManager`), made once at start and kept for the
//!   life of the store: one per [`Lane`] (on a Redis Cluster, one per lane per master: see
//!   `nodes.rs` and [`cluster`]). Periodic work (batch flushes, lease refreshes) never
//!   delays interactive work (joins, immediate and logout saves) through head-of-line
//!   blocking on one multiplexed socket.
//! - Each lane is one tokio task taking [`StoreJob`]s in FIFO order, one job at a time, so a
//!   logout's save+release lands before a later join of the same player.
//! - Every write is an owner-checked, sequence-fenced Lua script (`assets/redis/*.lua`).
//!   Batches are pipelined in chunks of `batch_chunk` invocations: one round trip per chunk.
//!   Every pipeline starts with `SCRIPT LOAD` of its script, so `SCRIPT FLUSH` or a Redis
//!   restart never leaves it with `NOSCRIPT`.
//! - Every request is bounded by `store_timeout`. A failed or timed-out chunk fails its items
//!   (the ECS re-marks them dirty and retries); the store logs the transition to "down" once
//!   and the recovery once per lane.
//!
//! Key layout and script semantics: docs/storage.md. Semantics equal the memory store's
//! ([`super::memory::MemoryBackend`]).

pub mod accounts;
mod blocking;
pub mod border;
mod calls;
mod client;
pub mod cluster;
mod conn;
mod lane;
mod linked;
mod liveness;
pub mod maintenance;
mod nodes;
pub(crate) mod registration;
pub(crate) mod resume_undo;
pub mod scripts;
mod startup;
mod uncertain;
pub mod zones;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::store::StoreSettings;
use crossbeam_channel::Sender;
use hearth_systems::storage::{
    Lane, PlayerStore, StoreCompletion, StoreInfo, StoreJob, StoreMetrics,
};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

pub use self::client::redact_url;
pub use self::cluster::ClusterUrl;
use self::conn::LaneConn;
use self::lane::LaneWorker;
use self::liveness::{Heartbeat, Liveness};
use self::nodes::{LaneConnect, Nodes};
use self::registration::{Held, Registered, Registration};
pub use self::scripts::{Keys, Scripts};
use self::startup::{Topology, diagnose, startup_check};
use self::uncertain::UncertainClaims;
use super::OpenError;
use super::dispatch::failed_completion;

/// A [`PlayerStore`] on Redis (one server or a Redis Cluster). Made with
/// [`RedisStore::open`]; dropping it stops its runtime.
pub struct RedisStore {
    shared: Arc<Shared>,
    periodic: UnboundedSender<StoreJob>,
    interactive: UnboundedSender<StoreJob>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Signalled by the periodic worker once it stopped (after releasing the registration).
    stopped: crossbeam_channel::Receiver<()>,
    /// Renews this process's liveness key; stopped (the key deleted) after the lanes.
    heartbeat: Heartbeat,
    timeout: Duration,
}

/// What both lanes share.
struct Shared {
    /// `redis` or `redis-cluster`, for logs.
    backend: &'static str,
    /// On a cluster: a script call holds players of one slot only.
    cluster: bool,
    /// Replicas that must confirm a chunk of saves (`WAIT`) for them to count as saved.
    durable_replicas: u32,
    /// How long that `WAIT` may take: half the store timeout.
    wait_ms: u64,
    instance: String,
    lease_ttl_ms: u64,
    /// Longest a claim's late reply is waited for (see [`uncertain`]): the lease TTL.
    lease_ttl: Duration,
    keys: Keys,
    scripts: Scripts,
    chunk: usize,
    location: String,
    metrics: Arc<StoreMetrics>,
    pending: AtomicUsize,
    completions: Sender<StoreCompletion>,
    /// The instance's registration, then the zone's if this process serves one.
    registrations: Vec<Registration>,
    /// How often the periodic lane refreshes the registrations (a third of the lease TTL).
    heartbeat: Duration,
    /// Numbers this process's linked saves across cluster slots (`<owner>/<n>`).
    next_link: std::sync::atomic::AtomicU64,
}

impl RedisStore {
    /// Connects both lanes to the Redis at `url` — `redis://...`, or a cluster's
    /// `redis+cluster://...` — (checking it answers and accepts the scripts) and starts the
    /// lane workers. Completions go to `completions`.
    pub fn open(
        config: &StoreSettings,
        url: &str,
        completions: Sender<StoreCompletion>,
    ) -> Result<Self, OpenError> {
        let location = redact_url(url);
        let error = |reason: String| OpenError::Redis {
            url: location.clone(),
            reason,
        };
        let topology = Topology::of(url).map_err(|e| error(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hearth-redis")
            .on_thread_start(|| crate::priority::lower_this_thread(crate::priority::STORE_NICENESS))
            .enable_all()
            .build()
            .map_err(|e| error(format!("cannot start the store's runtime: {e}")))?;
        let metrics = Arc::new(StoreMetrics::default());
        let keys = Keys::new(&config.key_prefix);
        let lease_ttl_ms = u64::try_from(config.lease_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let shared = Arc::new(Shared {
            cluster: matches!(topology, Topology::Cluster(_)),
            durable_replicas: config.durable_replicas,
            wait_ms: u64::try_from(config.store_timeout.as_millis() / 2)
                .unwrap_or(u64::MAX)
                .max(1),
            backend: match topology {
                Topology::Single(_) => "redis",
                Topology::Cluster(_) => "redis-cluster",
            },
            instance: config.lease_owner(),
            lease_ttl_ms,
            lease_ttl: config.lease_ttl,
            registrations: Registration::all(config, &keys, lease_ttl_ms),
            heartbeat: config.registration_heartbeat(),
            next_link: std::sync::atomic::AtomicU64::new(1),
            keys,
            scripts: Scripts::default(),
            chunk: config.batch_chunk.max(1),
            location: location.clone(),
            metrics: Arc::clone(&metrics),
            pending: AtomicUsize::new(0),
            completions,
        });
        let timeout = config.store_timeout;
        let (mut periodic, interactive, alive) = runtime
            .block_on(async {
                let connect = |lane| LaneConnect {
                    lane,
                    timeout,
                    metrics: Arc::clone(&metrics),
                };
                let (mut periodic, mut interactive, alive) = match &topology {
                    Topology::Single(client) => {
                        let lane = |name| {
                            let conn = LaneConn::new(
                                name,
                                &location,
                                client.clone(),
                                timeout,
                                Arc::clone(&metrics),
                            );
                            Nodes::single(conn, connect(name))
                        };
                        (lane("periodic"), lane("interactive"), lane("liveness"))
                    }
                    Topology::Cluster(url) => {
                        let lane = |name| Nodes::cluster(url.clone(), connect(name));
                        let periodic = lane("periodic").await.map_err(|e| e.to_string())?;
                        let interactive = lane("interactive").await.map_err(|e| e.to_string())?;
                        let alive = lane("liveness").await.map_err(|e| e.to_string())?;
                        (periodic, interactive, alive)
                    }
                };
                let checked = match startup_check(&shared, &mut periodic, true).await {
                    Ok(()) => startup_check(&shared, &mut interactive, false).await,
                    failed => failed,
                };
                match (checked, &topology) {
                    (Ok(()), _) => Ok((periodic, interactive, alive)),
                    (Err(reason), Topology::Single(client)) => {
                        Err(diagnose(client, timeout, reason).await)
                    }
                    (Err(reason), Topology::Cluster(_)) => Err(reason.to_string()),
                }
            })
            .map_err(error)?;
        // Alive before registering (so a process starting alongside never takes this one
        // for dead) and before the first claim (a process without its key could lose a lease
        // it just took to the next claim that checks).
        let heartbeat = Liveness::new(config, &shared.keys)
            .start(alive)
            .map_err(|e| error(e.to_string()))?;
        for (i, registration) in shared.registrations.iter().enumerate() {
            let held = runtime.block_on(register(&shared, registration, &mut periodic));
            let taken = match held.map_err(|reason| {
                error(format!("registering the {}: {reason}", registration.what))
            })? {
                Held::Ours => continue,
                Held::Taken {
                    holder, expires_in, ..
                } => match &registration.what {
                    Registered::Instance(id) => OpenError::InstanceTaken {
                        id: id.clone(),
                        holder,
                        expires_in,
                    },
                    Registered::Zone(name) => OpenError::ZoneTaken {
                        zone: name.clone(),
                        holder,
                        expires_in,
                    },
                },
            };
            // What was registered before is given back, so a corrected restart starts at once.
            for earlier in &shared.registrations[..i] {
                runtime.block_on(earlier.release(periodic.for_key(&earlier.key), &shared.scripts));
            }
            return Err(taken);
        }
        let (periodic_tx, periodic_rx) = unbounded_channel();
        let (interactive_tx, interactive_rx) = unbounded_channel();
        let (stopped_tx, stopped) = crossbeam_channel::bounded(1);
        let workers = [
            (periodic, periodic_rx, Some(stopped_tx)),
            (interactive, interactive_rx, None),
        ];
        for (nodes, jobs, stopped) in workers {
            let worker = LaneWorker {
                nodes,
                shared: Arc::clone(&shared),
                uncertain: UncertainClaims::new(config.lease_ttl),
            };
            runtime.spawn(worker.run(jobs, stopped));
        }
        Ok(Self {
            shared,
            periodic: periodic_tx,
            interactive: interactive_tx,
            runtime: Some(runtime),
            stopped,
            heartbeat,
            timeout: config.store_timeout,
        })
    }

    /// The key layout this store writes.
    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }
}

/// Holds `registration` at start; one held by a process found dead (its liveness key gone:
/// it crashed) is taken over at once instead of after its TTL, so a crashed zone's or
/// instance's replacement starts within the failover time.
async fn register(
    shared: &Shared,
    registration: &Registration,
    periodic: &mut Nodes<LaneConnect>,
) -> Result<Held, registration::RegistrationError> {
    let held = registration
        .hold(periodic.for_key(&registration.key), &shared.scripts)
        .await?;
    let Held::Taken { raw, .. } = &held else {
        return Ok(held);
    };
    let owner = registration::owner_of(raw);
    if owner.is_empty()
        || liveness::holder_alive(periodic, &shared.keys, &owner).await != Some(false)
    {
        return Ok(held);
    }
    tracing::warn!(registration = %registration.what, dead = %registration::describe(raw), "taking over the registration of a process that is not alive");
    registration
        .take(periodic.for_key(&registration.key), &shared.scripts, raw)
        .await
}

impl Drop for RedisStore {
    /// Closes the lanes; the periodic worker finishes its jobs and releases the instance
    /// registration (waited for up to the store timeout); then the liveness key is deleted
    /// (waited for up to the store timeout) and the runtime stops.
    fn drop(&mut self) {
        let (closed, _) = unbounded_channel();
        drop(std::mem::replace(&mut self.periodic, closed));
        let (closed, _) = unbounded_channel();
        drop(std::mem::replace(&mut self.interactive, closed));
        self.stopped
            .recv_timeout(self.timeout + Duration::from_millis(100))
            .ok();
        self.heartbeat
            .stop(self.timeout + Duration::from_millis(100));
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PlayerStore for RedisStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: self.shared.backend,
            durable: true,
            location: self.shared.location.clone(),
            lease_owner: self.shared.instance.clone(),
        }
    }

    fn submit(&self, job: StoreJob) {
        let lane = match &job {
            StoreJob::Save { lane, .. } => *lane,
            StoreJob::Refresh { .. } => Lane::Periodic,
            StoreJob::SaveTogether { .. } | StoreJob::Join { .. } | StoreJob::Release { .. } => {
                Lane::Interactive
            }
        };
        let queue = match lane {
            Lane::Periodic => &self.periodic,
            Lane::Interactive => &self.interactive,
        };
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        if let Err(refused) = queue.send(job) {
            // The worker is gone (it cannot be while the store lives, unless it panicked):
            // still answer the job, as failed.
            let completion = failed_completion(refused.0, "the Redis store worker stopped");
            self.shared.completions.send(completion).ok();
            self.shared.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.shared.metrics
    }

    fn pending_jobs(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use hearth_components::PlayerId;

    use super::*;
    #[test]
    fn keys_share_a_hash_tag_per_player() {
        let keys = Keys::new("hearth");
        assert_eq!(keys.player(PlayerId(42)), "hearth:player:{42}");
        assert_eq!(keys.session(PlayerId(42)), "hearth:session:{42}");
    }
}
