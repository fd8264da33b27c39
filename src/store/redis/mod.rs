//! The Redis store: the durable backend behind the storage port.
//!
//! - Two connections (`redis::aio::ConnectionManager`), made once at start and kept for the
//!   life of the store: one per [`Lane`]. Periodic work (batch flushes, lease refreshes) never
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

mod conn;
pub(crate) mod registration;
pub mod scripts;
mod uncertain;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use hearth_components::{JoinRefusal, PlayerId, PlayerRecord, ServerConfig};
use hearth_systems::storage::{
    JoinGrant, Lane, LeaseItem, PlayerStore, RefreshOutcome, RefreshResult, SaveItem, SaveOutcome,
    SaveResult, StoreCompletion, StoreInfo, StoreJob, StoreMetrics,
};
use redis::{Pipeline, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use self::conn::{CallError, LaneConn, Reply};
use self::registration::{Held, Registration};
pub use self::scripts::{Keys, Scripts};
use self::uncertain::{UncertainClaims, Undo};
use super::OpenError;
use super::dispatch::{self, RoundTrips, StoreOperations, failed_completion};

/// Chunks of one batch in flight at once on a lane; the next chunk is encoded meanwhile.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Players one `save.lua` call writes, at most. A call per player cost redis-server 1.3-1.8x
/// the CPU per save (docs/benchmarks.md); 20 saves hold Redis for about 0.15-0.25 ms.
const PLAYERS_PER_SAVE_CALL: usize = 20;

/// Leases one `refresh.lua` call extends. Redis spends more on starting a script than on the
/// two commands per lease: a call per lease cost redis-server 2.3-3.2x the CPU per refresh
/// (docs/benchmarks.md). 50 leases keep one call well under a millisecond.
const LEASES_PER_REFRESH_CALL: usize = 50;

/// A [`PlayerStore`] on Redis. Made with [`RedisStore::open`]; dropping it stops its runtime.
pub struct RedisStore {
    shared: Arc<Shared>,
    periodic: UnboundedSender<StoreJob>,
    interactive: UnboundedSender<StoreJob>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Signalled by the periodic worker once it stopped (after releasing the registration).
    stopped: crossbeam_channel::Receiver<()>,
    timeout: Duration,
}

/// What both lanes share.
struct Shared {
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
    registration: Registration,
    /// How often the periodic lane refreshes the registration (the lease refresh interval).
    heartbeat: Duration,
}

impl RedisStore {
    /// Connects both lanes to the Redis at `url` (checking it answers and accepts the
    /// scripts) and starts the lane workers. Completions go to `completions`.
    pub fn open(
        config: &ServerConfig,
        url: &str,
        completions: Sender<StoreCompletion>,
    ) -> Result<Self, OpenError> {
        let location = redact_url(url);
        let error = |reason: String| OpenError::Redis {
            url: location.clone(),
            reason,
        };
        let client = client_for(url).map_err(|e| error(format!("invalid Redis URL: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hearth-redis")
            .on_thread_start(super::yield_to_the_tick)
            .enable_all()
            .build()
            .map_err(|e| error(format!("cannot start the store's runtime: {e}")))?;
        let metrics = Arc::new(StoreMetrics::default());
        let keys = Keys::new(&config.key_prefix);
        let lease_ttl_ms = u64::try_from(config.lease_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let shared = Arc::new(Shared {
            instance: config.lease_owner(),
            lease_ttl_ms,
            lease_ttl: config.lease_ttl,
            registration: Registration::new(config, &keys, lease_ttl_ms),
            heartbeat: config.lease_refresh_interval,
            keys,
            scripts: Scripts::default(),
            chunk: config.batch_chunk.max(1),
            location: location.clone(),
            metrics: Arc::clone(&metrics),
            pending: AtomicUsize::new(0),
            completions,
        });
        let lane = |name| {
            LaneConn::new(
                name,
                &location,
                client.clone(),
                config.store_timeout,
                Arc::clone(&metrics),
            )
        };
        let (mut periodic, mut interactive) = (lane("periodic"), lane("interactive"));
        runtime
            .block_on(async {
                let checked = match startup_check(&shared, &mut periodic, true).await {
                    Ok(()) => startup_check(&shared, &mut interactive, false).await,
                    failed => failed,
                };
                match checked {
                    Ok(()) => Ok(()),
                    Err(reason) => Err(diagnose(&client, config.store_timeout, reason).await),
                }
            })
            .map_err(error)?;
        let held = runtime.block_on(shared.registration.hold(&mut periodic, &shared.scripts));
        match held.map_err(|reason| error(format!("registering the instance: {reason}")))? {
            Held::Ours => {}
            Held::Taken { holder, expires_in } => {
                return Err(OpenError::InstanceTaken {
                    id: config.instance_id.clone(),
                    holder,
                    expires_in,
                });
            }
        }
        let (periodic_tx, periodic_rx) = unbounded_channel();
        let (interactive_tx, interactive_rx) = unbounded_channel();
        let (stopped_tx, stopped) = crossbeam_channel::bounded(1);
        let workers = [
            (periodic, periodic_rx, Some(stopped_tx)),
            (interactive, interactive_rx, None),
        ];
        for (conn, jobs, stopped) in workers {
            let worker = LaneWorker {
                conn,
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
            timeout: config.store_timeout,
        })
    }

    /// The key layout this store writes.
    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }
}

impl Drop for RedisStore {
    /// Closes the lanes; the periodic worker finishes its jobs and releases the instance
    /// registration (waited for up to the store timeout), then the runtime stops.
    fn drop(&mut self) {
        let (closed, _) = unbounded_channel();
        drop(std::mem::replace(&mut self.periodic, closed));
        let (closed, _) = unbounded_channel();
        drop(std::mem::replace(&mut self.interactive, closed));
        self.stopped
            .recv_timeout(self.timeout + Duration::from_millis(100))
            .ok();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PlayerStore for RedisStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: "redis",
            durable: true,
            location: self.shared.location.clone(),
        }
    }

    fn submit(&self, job: StoreJob) {
        let lane = match &job {
            StoreJob::Save { lane, .. } => *lane,
            StoreJob::Refresh { .. } => Lane::Periodic,
            StoreJob::Join { .. } | StoreJob::Release { .. } => Lane::Interactive,
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

/// Checks at start that the lane's connection works and the scripts load. On the periodic
/// lane it also reads `INFO persistence memory` (best effort: an ACL may forbid it) and warns
/// about settings that lose data: no append-only file, or an eviction policy other than
/// `noeviction` (Redis would delete records or leases under memory pressure).
async fn startup_check(shared: &Shared, conn: &mut LaneConn, periodic: bool) -> Result<(), String> {
    let mut pipe = redis::pipe();
    let s = &shared.scripts;
    let scripts = [&s.claim, &s.refresh, &s.release, &s.save];
    for script in scripts {
        pipe.load_script(script);
    }
    if periodic {
        pipe.cmd("INFO").arg("persistence").arg("memory");
    }
    let manager = conn.manager().map_err(|e| e.to_string())?;
    StoreMetrics::add(&shared.metrics.round_trips, 1);
    let reply = conn::call(manager, pipe, conn.timeout()).await;
    let values = match &reply.result {
        Ok(values) => values,
        Err(e) => return Err(e.to_string()),
    };
    if let Some(Value::ServerError(e)) = values
        .iter()
        .take(scripts.len())
        .find(|v| matches!(v, Value::ServerError(_)))
    {
        return Err(format!("Redis refused to load the store's scripts: {e}"));
    }
    conn.observe(&reply, "connecting");
    if periodic && let Some(Value::BulkString(info)) = values.get(scripts.len()) {
        let info = String::from_utf8_lossy(info);
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("aof_enabled") == Some("0") {
            tracing::warn!(redis = %shared.location, "Redis runs without an append-only file (appendonly no): a Redis crash loses the writes since its last snapshot. See docs/operations.md");
        }
        if let Some(policy) = field("maxmemory_policy").filter(|p| *p != "noeviction") {
            tracing::warn!(redis = %shared.location, policy, "Redis may evict keys under memory pressure (maxmemory-policy is not noeviction): player records or session leases could disappear. See docs/operations.md");
        }
    }
    Ok(())
}

/// Why the start-up check failed, in the words of one plain connection attempt (the
/// managers retry quietly, so a refused connection or a wrong password would otherwise
/// only show as a timeout). Runs only when the store cannot start.
async fn diagnose(client: &redis::Client, timeout: Duration, reason: String) -> String {
    match conn::probe(client, timeout).await {
        Ok(Err(e)) => e.to_string(),
        _ => reason,
    }
}

/// A client for `url` with the socket options the store relies on: `TCP_NODELAY` (a
/// pipelined chunk is written in many segments; without it Nagle's algorithm and delayed
/// ACKs stall the last one for ~40 ms) and TCP keepalive (a peer that vanished without a
/// FIN is noticed on an idle connection too).
fn client_for(url: &str) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    use redis::io::tcp::{TcpSettings, socket2::TcpKeepalive};
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let info = url.into_connection_info()?.set_tcp_settings(
        TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive),
    );
    redis::Client::open(info)
}

/// A URL safe to print: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// What one script call of a pipelined batch got back: its reply value, or why there is none.
type ItemReply = Result<Value, String>;

/// The items one script call carries, and what the call got back.
type CallReply<M> = (Vec<M>, ItemReply);

/// One save sent in a chunk, waiting for its reply.
struct SentSave {
    entity: bevy_ecs::entity::Entity,
    player: PlayerId,
    seq: u64,
}

/// A chunk on its way: the request task and the items of each call, in pipeline order.
type InFlight<M> = (JoinHandle<Reply>, Vec<Vec<M>>);

/// The task of one lane.
struct LaneWorker {
    conn: LaneConn,
    shared: Arc<Shared>,
    /// Claims answered `unavailable` that Redis may still have run (interactive lane).
    uncertain: UncertainClaims,
}

impl LaneWorker {
    /// Runs jobs until the store closes the lane. The periodic worker (the one given
    /// `stopped`) also keeps the instance registration alive between jobs, releases it at the
    /// end and then signals `stopped`.
    async fn run(mut self, mut jobs: UnboundedReceiver<StoreJob>, stopped: Option<Sender<()>>) {
        let heartbeat = self.shared.heartbeat;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { break };
                    let shared = Arc::clone(&self.shared);
                    let completion = dispatch::execute(&mut self, &shared.metrics, job).await;
                    // A closed channel means the app is gone; keep draining so nothing waits.
                    self.shared.completions.send(completion).ok();
                    self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                }
                _ = beat.tick(), if stopped.is_some() => self.hold_registration().await,
                Some(undo) = self.uncertain.due_rx.recv() => self.undo_claim(undo).await,
            }
        }
        if let Some(stopped) = stopped {
            let shared = Arc::clone(&self.shared);
            shared
                .registration
                .release(&mut self.conn, &shared.scripts)
                .await;
            stopped.send(()).ok();
        }
    }

    /// Refreshes the instance registration. Finding it held by another process means two
    /// processes run under one instance id (the other started while this one could not reach
    /// Redis): leases stay safe, as each process owns them under its own boot token, but the
    /// operator must know.
    async fn hold_registration(&mut self) {
        let shared = Arc::clone(&self.shared);
        match shared
            .registration
            .hold(&mut self.conn, &shared.scripts)
            .await
        {
            Ok(Held::Ours) => {}
            Ok(Held::Taken { holder, .. }) => tracing::error!(
                instance = %shared.registration.instance_id,
                other = %holder,
                "another process now runs under this instance id; each process still owns only its own leases, but give each its own --instance-id"
            ),
            Err(e) => tracing::debug!(error = %e, "instance registration not refreshed"),
        }
    }

    /// Sends `items` in pipelined chunks of `batch_chunk`, [`CHUNKS_IN_FLIGHT`] at a time,
    /// building (and encoding) each chunk with `build` on this task, which groups the items
    /// into script calls. Returns one reply per call with its items. Once a chunk gets no
    /// reply, the chunks not yet sent fail without being sent: the batch costs at most about
    /// one store timeout when Redis is down or hung.
    async fn run_batch<I, M>(
        &mut self,
        items: Vec<I>,
        what: &str,
        round_trips: RoundTrips<'_>,
        mut build: impl FnMut(&Shared, Vec<I>, &mut Vec<CallReply<M>>) -> (Pipeline, Vec<Vec<M>>),
    ) -> Vec<CallReply<M>> {
        let shared = Arc::clone(&self.shared);
        let mut out = Vec::with_capacity(items.len());
        let mut in_flight: VecDeque<InFlight<M>> = VecDeque::new();
        let mut broken: Option<String> = None;
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<I> = items.by_ref().take(shared.chunk).collect();
            let (pipe, sent) = build(&shared, chunk, &mut out);
            if sent.is_empty() {
                continue;
            }
            if let Some(reason) = &broken {
                out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                continue;
            }
            match self.conn.spawn(pipe) {
                Ok(handle) => in_flight.push_back((handle, sent)),
                Err(e) => {
                    let reason = e.to_string();
                    out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                    broken = Some(reason);
                }
            }
            if in_flight.len() >= CHUNKS_IN_FLIGHT
                && let Some(chunk) = in_flight.pop_front()
                && let Err(reason) = self.finish_chunk(chunk, what, round_trips, &mut out).await
            {
                broken = Some(reason);
            }
        }
        while let Some(chunk) = in_flight.pop_front() {
            // Chunks already sent get their own answer even after an earlier one failed.
            self.finish_chunk(chunk, what, round_trips, &mut out)
                .await
                .ok();
        }
        out
    }

    /// Waits for one chunk's reply and hands each item its part of it. Returns the reason
    /// when the chunk got no reply at all.
    async fn finish_chunk<M>(
        &mut self,
        (handle, sent): InFlight<M>,
        what: &str,
        round_trips: RoundTrips<'_>,
        out: &mut Vec<CallReply<M>>,
    ) -> Result<(), String> {
        let reply = handle.await.unwrap_or_else(|e| Reply {
            result: Err(CallError::Worker(e.to_string())),
            latency: Duration::ZERO,
        });
        self.conn.observe(&reply, what);
        round_trips.record(reply.latency, sent.iter().map(Vec::len).sum());
        match reply.result {
            Ok(values) if values.len() == sent.len() => {
                let commands = sent.len();
                let mut item_errors = 0usize;
                for (meta, value) in sent.into_iter().zip(values) {
                    let reply = match value {
                        Value::ServerError(e) => {
                            item_errors += 1;
                            Err(e.to_string())
                        }
                        value => Ok(value),
                    };
                    out.push((meta, reply));
                }
                if item_errors > 0 && item_errors < commands {
                    tracing::warn!(
                        lane = self.conn.lane(),
                        item_errors,
                        "Redis refused some commands of a {what} chunk; those will be retried"
                    );
                }
                Ok(())
            }
            Ok(values) => {
                let reason = format!(
                    "unexpected reply from Redis: {} values for {} commands",
                    values.len(),
                    sent.len()
                );
                tracing::error!(lane = self.conn.lane(), "{reason}");
                out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                Err(reason)
            }
        }
    }
}

impl StoreOperations for LaneWorker {
    /// A round trip is one pipelined chunk.
    async fn save(&mut self, items: Vec<SaveItem>, round_trips: RoundTrips<'_>) -> Vec<SaveResult> {
        let replies = self
            .run_batch(items, "saving records", round_trips, build_save_chunk)
            .await;
        per_item(replies, save_outcomes, |sent, outcome| SaveResult {
            entity: sent.entity,
            player: sent.player,
            seq: sent.seq,
            outcome,
        })
    }

    /// A round trip is one pipelined chunk.
    async fn refresh(
        &mut self,
        leases: Vec<LeaseItem>,
        round_trips: RoundTrips<'_>,
    ) -> Vec<RefreshResult> {
        let replies = self
            .run_batch(
                leases,
                "refreshing leases",
                round_trips,
                build_refresh_chunk,
            )
            .await;
        per_item(replies, refresh_outcomes, |lease, outcome| RefreshResult {
            entity: lease.entity,
            player: lease.player,
            outcome,
        })
    }

    /// Claims the lease and loads the record in one round trip. A claim Redis may have run
    /// without this join learning its result (no reply within the store timeout, or the
    /// connection broke after sending) is answered `unavailable` and undone once Redis
    /// answers (see [`uncertain`]); a connection found broken (closed while idle) is retried
    /// once at once, which is safe: a repeated claim re-claims our own lease.
    async fn join(&mut self, ticket: u64, player: PlayerId) -> Result<JoinGrant, JoinRefusal> {
        let shared = Arc::clone(&self.shared);
        self.uncertain.superseded(player);
        let claim = &shared.scripts.claim;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.load_script(claim).ignore();
        pipe.cmd("EVALSHA")
            .arg(claim.get_hash())
            .arg(2)
            .arg(shared.keys.session(player))
            .arg(shared.keys.player(player))
            .arg(&shared.instance)
            .arg(shared.lease_ttl_ms);
        let mut reply = self.claim_once(pipe.clone(), ticket, player).await;
        if reply.broke_the_connection() {
            self.conn.connection_broke();
            tracing::debug!(
                "claiming a lease: the connection had closed; sending again on a new one"
            );
            reply = self.claim_once(pipe, ticket, player).await;
            if reply.broke_the_connection() {
                self.uncertain.undo_now(player, ticket);
            }
        }
        self.conn.observe(&reply, "claiming a lease");
        let unavailable = |reason: String| {
            StoreMetrics::add(&shared.metrics.load_errors, 1);
            Err(JoinRefusal::Unavailable(reason))
        };
        let value = match reply.result {
            Ok(mut values) if values.len() == 1 => values.remove(0),
            Ok(values) => {
                return unavailable(format!(
                    "unexpected reply from Redis: {} values for 1 command",
                    values.len()
                ));
            }
            Err(e) => return unavailable(e.to_string()),
        };
        let (granted, payload) = match value {
            Value::Array(parts) if parts.len() == 2 => {
                let mut parts = parts.into_iter();
                (parts.next(), parts.next())
            }
            // claim.lua reads the record before it writes the lease: a refused command (a
            // key of the wrong type) leaves nothing held.
            Value::ServerError(e) => return unavailable(e.to_string()),
            other => return unavailable(format!("unexpected reply to a claim: {other:?}")),
        };
        match (granted, payload) {
            (Some(Value::Int(1)), payload) => {
                StoreMetrics::add(&shared.metrics.loads, 1);
                let bytes = match payload {
                    Some(Value::BulkString(bytes)) => Some(bytes),
                    _ => None,
                };
                let record = match bytes
                    .map(|b| PlayerRecord::decode_for(&b, player.0))
                    .transpose()
                {
                    Ok(record) => record,
                    Err(e) => {
                        if self.release_if_ours(player).await.is_none() {
                            self.uncertain.undo_now(player, ticket);
                        }
                        return Err(JoinRefusal::BadRecord(e.to_string()));
                    }
                };
                Ok(JoinGrant {
                    lease_key: shared.keys.session(player),
                    record,
                })
            }
            (Some(Value::Int(0)), Some(owner)) => Err(JoinRefusal::AlreadyOnline {
                owner: reply_text(&owner).unwrap_or_default(),
            }),
            other => unavailable(format!("unexpected reply to a claim: {other:?}")),
        }
    }

    async fn release(&mut self, player: PlayerId) {
        self.release_if_ours(player).await;
    }
}

impl LaneWorker {
    /// Sends one claim and waits up to the store timeout. If that passes, the claim is left
    /// to finish on its own (up to the lease TTL) and undone when it does.
    async fn claim_once(&mut self, pipe: Pipeline, ticket: u64, player: PlayerId) -> Reply {
        let started = Instant::now();
        let timeout = self.conn.timeout();
        let mut late = match self.conn.spawn_with_limit(pipe, self.shared.lease_ttl) {
            Ok(late) => late,
            Err(e) => {
                return Reply {
                    result: Err(e),
                    latency: Duration::ZERO,
                };
            }
        };
        match tokio::time::timeout(timeout, &mut late).await {
            Ok(joined) => joined.unwrap_or_else(|e| Reply {
                result: Err(CallError::Worker(e.to_string())),
                latency: started.elapsed(),
            }),
            Err(_) => {
                self.uncertain.undo_after(player, ticket, late);
                Reply {
                    result: Err(CallError::Timeout(timeout)),
                    latency: started.elapsed(),
                }
            }
        }
    }

    /// Releases the lease of a claim that was answered `unavailable` but may have run,
    /// unless a later join of the player here took over; retried while Redis stays away.
    async fn undo_claim(&mut self, undo: Undo) {
        if !self.uncertain.wanted(&undo) {
            return;
        }
        match self.release_if_ours(undo.player).await {
            Some(released) => {
                if released {
                    tracing::info!(player = %undo.player, "a login answered `unavailable` had claimed the lease after all; released it");
                }
                self.uncertain.done(&undo);
            }
            None => {
                if !self.uncertain.retry_later(undo) {
                    tracing::warn!(player = %undo.player, "could not release the lease of an unanswered claim; if the claim ran, the lease expires by its TTL");
                }
            }
        }
    }

    /// Deletes the lease if it is ours. Returns whether it was deleted, or `None` when Redis
    /// did not answer (logged by the lane's health; the lease then expires by its TTL).
    async fn release_if_ours(&mut self, player: PlayerId) -> Option<bool> {
        let release = &self.shared.scripts.release;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.load_script(release).ignore();
        pipe.cmd("EVALSHA")
            .arg(release.get_hash())
            .arg(1)
            .arg(self.shared.keys.session(player))
            .arg(&self.shared.instance);
        match self.conn.request(pipe, "releasing a lease").await.result {
            Ok(values) => match values.first() {
                Some(Value::Int(deleted)) => Some(*deleted == 1),
                _ => None,
            },
            Err(_) => None,
        }
    }
}

/// One chunk of saves: `SCRIPT LOAD save.lua`, then one `EVALSHA` per
/// [`PLAYERS_PER_SAVE_CALL`] records. Records are encoded here, on the store's task, never on
/// the tick; one that fails to encode is answered at once and not sent.
fn build_save_chunk(
    shared: &Shared,
    chunk: Vec<SaveItem>,
    out: &mut Vec<CallReply<SentSave>>,
) -> (Pipeline, Vec<Vec<SentSave>>) {
    let script = &shared.scripts.save;
    let mut pipe = Pipeline::with_capacity(chunk.len() / PLAYERS_PER_SAVE_CALL + 2);
    pipe.ignore_errors();
    pipe.load_script(script).ignore();
    let mut groups = Vec::with_capacity(chunk.len() / PLAYERS_PER_SAVE_CALL + 1);
    let mut items = chunk.into_iter().peekable();
    while items.peek().is_some() {
        let mut keys = Vec::with_capacity(2 * PLAYERS_PER_SAVE_CALL);
        let mut args = Vec::with_capacity(4 * PLAYERS_PER_SAVE_CALL);
        let mut group = Vec::with_capacity(PLAYERS_PER_SAVE_CALL);
        for item in items.by_ref() {
            let snapshot = &item.snapshot;
            let meta = SentSave {
                entity: item.entity,
                player: snapshot.player,
                seq: snapshot.seq,
            };
            match snapshot.encode() {
                Ok(record) => {
                    keys.push(shared.keys.player(snapshot.player));
                    keys.push(shared.keys.session(snapshot.player));
                    args.push(snapshot.seq.to_string().into_bytes());
                    args.push(item.last_stored_seq.to_string().into_bytes());
                    args.push(record);
                    args.push(if item.release { b"1" } else { b"0" }.to_vec());
                    group.push(meta);
                }
                Err(e) => out.push((vec![meta], Err(format!("encoding the record: {e}")))),
            }
            if group.len() == PLAYERS_PER_SAVE_CALL {
                break;
            }
        }
        if group.is_empty() {
            continue;
        }
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(&shared.instance)
            .arg(shared.lease_ttl_ms)
            .arg(args);
        groups.push(group);
    }
    (pipe, groups)
}

/// One chunk of lease refreshes: `SCRIPT LOAD refresh.lua`, then one `EVALSHA` per
/// [`LEASES_PER_REFRESH_CALL`] leases.
fn build_refresh_chunk(
    shared: &Shared,
    chunk: Vec<LeaseItem>,
    _out: &mut Vec<CallReply<LeaseItem>>,
) -> (Pipeline, Vec<Vec<LeaseItem>>) {
    let script = &shared.scripts.refresh;
    let groups: Vec<Vec<LeaseItem>> = chunk
        .chunks(LEASES_PER_REFRESH_CALL)
        .map(<[LeaseItem]>::to_vec)
        .collect();
    let mut pipe = Pipeline::with_capacity(groups.len() + 1);
    pipe.ignore_errors();
    pipe.load_script(script).ignore();
    for group in &groups {
        let call = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(group.len());
        for lease in group {
            call.arg(shared.keys.session(lease.player));
        }
        call.arg(&shared.instance).arg(shared.lease_ttl_ms);
    }
    (pipe, groups)
}

/// One result per item of a batch, in order: each call's reply split into its items'
/// outcomes by `outcomes`, each paired with its item by `result`.
fn per_item<M, O, R>(
    replies: Vec<CallReply<M>>,
    outcomes: fn(ItemReply, usize) -> Vec<O>,
    mut result: impl FnMut(M, O) -> R,
) -> Vec<R> {
    let mut results = Vec::new();
    for (items, reply) in replies {
        let outcomes = outcomes(reply, items.len());
        results.extend(
            items
                .into_iter()
                .zip(outcomes)
                .map(|(item, outcome)| result(item, outcome)),
        );
    }
    results
}

/// Each player's outcome from the reply to one `save.lua` call of `players` players: an
/// array of statuses, or why there is none.
fn save_outcomes(reply: ItemReply, players: usize) -> Vec<SaveOutcome> {
    match reply {
        Ok(Value::Array(values)) if values.len() == players => values
            .iter()
            .map(|value| match reply_bytes(value) {
                Some(b"saved") => SaveOutcome::Saved,
                Some(b"lost") => SaveOutcome::LeaseLost,
                Some(b"stale") => SaveOutcome::StaleSequence,
                Some(status) if status.starts_with(b"error: ") => {
                    SaveOutcome::Failed(String::from_utf8_lossy(&status[7..]).into_owned())
                }
                _ => SaveOutcome::Failed(format!("unexpected reply to a save: {value:?}")),
            })
            .collect(),
        Ok(other) => vec![
            SaveOutcome::Failed(format!(
                "unexpected reply to a save of {players} players: {other:?}"
            ));
            players
        ],
        Err(reason) => vec![SaveOutcome::Failed(reason); players],
    }
}

/// Each lease's outcome from the reply to one `refresh.lua` call of `leases` leases: an
/// array of 1 (extended) and 0 (lost), or why there is none.
fn refresh_outcomes(reply: ItemReply, leases: usize) -> Vec<RefreshOutcome> {
    let failed = |reason: String| vec![RefreshOutcome::Failed(reason); leases];
    match reply {
        Ok(Value::Array(values)) if values.len() == leases => values
            .into_iter()
            .map(|value| match value {
                Value::Int(1) => RefreshOutcome::Refreshed,
                Value::Int(0) => RefreshOutcome::LeaseLost,
                other => {
                    RefreshOutcome::Failed(format!("unexpected reply to a refresh: {other:?}"))
                }
            })
            .collect(),
        Ok(other) => failed(format!(
            "unexpected reply to a refresh of {leases} leases: {other:?}"
        )),
        Err(reason) => failed(reason),
    }
}

/// A string reply's bytes, without copying them.
fn reply_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::Okay => Some(b"OK"),
        _ => None,
    }
}

/// A string reply as text.
fn reply_text(value: &Value) -> Option<String> {
    reply_bytes(value).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_printed_without_their_password() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://app:s3cret@db.example:6379/2"),
            "redis://app:***@db.example:6379/2"
        );
        assert_eq!(
            redact_url("rediss://:s3cret@db.example"),
            "rediss://:***@db.example"
        );
    }

    #[test]
    fn a_refresh_reply_of_the_wrong_shape_fails_every_lease_of_its_call() {
        let ok = refresh_outcomes(Ok(Value::Array(vec![Value::Int(1), Value::Int(0)])), 2);
        assert_eq!(
            ok,
            [RefreshOutcome::Refreshed, RefreshOutcome::LeaseLost].to_vec()
        );
        for reply in [
            Ok(Value::Array(vec![Value::Int(1)])),
            Ok(Value::Int(1)),
            Err("connection reset".to_string()),
        ] {
            let outcomes = refresh_outcomes(reply, 2);
            assert_eq!(outcomes.len(), 2);
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, RefreshOutcome::Failed(_))),
                "{outcomes:?}"
            );
        }
    }

    #[test]
    fn a_save_reply_of_the_wrong_shape_fails_every_player_of_its_call() {
        let statuses = ["saved", "lost", "stale"]
            .map(|s| Value::BulkString(s.as_bytes().to_vec()))
            .to_vec();
        assert_eq!(
            save_outcomes(Ok(Value::Array(statuses)), 3),
            [
                SaveOutcome::Saved,
                SaveOutcome::LeaseLost,
                SaveOutcome::StaleSequence
            ]
            .to_vec()
        );
        for reply in [
            Ok(Value::Array(vec![Value::BulkString(b"saved".to_vec())])),
            Ok(Value::BulkString(b"saved".to_vec())),
            Err("connection reset".to_string()),
        ] {
            let outcomes = save_outcomes(reply, 2);
            assert_eq!(outcomes.len(), 2);
            assert!(
                outcomes.iter().all(|o| matches!(o, SaveOutcome::Failed(_))),
                "{outcomes:?}"
            );
        }
    }

    #[test]
    fn keys_share_a_hash_tag_per_player() {
        let keys = Keys::new("hearth");
        assert_eq!(keys.player(PlayerId(42)), "hearth:player:{42}");
        assert_eq!(keys.session(PlayerId(42)), "hearth:session:{42}");
    }
}
