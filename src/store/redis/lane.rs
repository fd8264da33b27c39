//! The lane worker: one tokio task per lane taking jobs in FIFO order, sending batches as
//! pipelined chunks, claims, releases and the instance registration, each to the node that
//! serves its keys (`nodes.rs`). Calls a cluster node redirects (`MOVED`, `ASK`) did not run
//! and are sent again to the node named; with `durable_replicas`, a chunk of saves ends with
//! `WAIT` and counts only once enough replicas confirm it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use hearth_components::{JoinRefusal, PlayerId, PlayerRecord};
use hearth_systems::storage::{
    JoinGrant, LeaseItem, RefreshResult, SaveItem, SaveResult, StoreJob, StoreMetrics,
};
use redis::{Cmd, Pipeline, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

use super::Shared;
use super::calls::{
    CallFailed, CallReply, build_refresh_chunk, build_save_chunk, build_together_call, in_order,
    per_item, refresh_outcomes, reply_text, save_outcomes,
};
use super::cluster::{self, Redirect};
use super::conn::{CallError, Reply};
use super::linked::CrossSlot;
use super::liveness;
use super::nodes::{LaneConnect, Nodes};
use super::registration::Held;
use super::uncertain::{UncertainClaims, Undo};
use crate::store::dispatch::{self, RoundTrips, StoreOperations};

/// Chunks of one batch in flight at once on a lane; the next chunk is encoded meanwhile.
const CHUNKS_IN_FLIGHT: usize = 2;

/// A chunk on its way: its node, the request task, the pipeline (its first command loads the
/// script, each further one is a call) and the items of each call, in pipeline order.
type InFlight<M> = (usize, JoinHandle<Reply>, Arc<Pipeline>, Vec<Vec<M>>);

/// A call a node answered with `MOVED` or `ASK` (it did not run), to send again to the node
/// named.
struct Redirected<M> {
    redirect: Redirect,
    /// The node's `host:port`.
    address: String,
    /// The chunk's `SCRIPT LOAD`.
    load: Cmd,
    call: Cmd,
    items: Vec<M>,
    /// The chunk's `WAIT` (`durable_replicas`), to follow the call again.
    wait: Option<Cmd>,
}

/// The task of one lane.
pub(super) struct LaneWorker {
    pub nodes: Nodes<LaneConnect>,
    pub shared: Arc<Shared>,
    /// Claims answered `unavailable` that Redis may still have run (interactive lane).
    pub uncertain: UncertainClaims,
}

impl LaneWorker {
    /// Runs jobs until the store closes the lane. The periodic worker (the one given
    /// `stopped`) also keeps the instance registration alive between jobs, releases it at the
    /// end and then signals `stopped`.
    pub(super) async fn run(
        mut self,
        mut jobs: UnboundedReceiver<StoreJob>,
        stopped: Option<Sender<()>>,
    ) {
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
            for registration in &shared.registrations {
                registration
                    .release(self.nodes.for_key(&registration.key), &shared.scripts)
                    .await;
            }
            stopped.send(()).ok();
        }
    }

    /// Refreshes the registrations. Finding one held by another process means two processes
    /// run under one instance id or serve one zone (the other started while this one could
    /// not reach Redis): leases stay safe, as each process owns them under its own boot token,
    /// but the operator must know.
    async fn hold_registration(&mut self) {
        let shared = Arc::clone(&self.shared);
        self.nodes.refresh_if_stale().await;
        for registration in &shared.registrations {
            match registration
                .hold(self.nodes.for_key(&registration.key), &shared.scripts)
                .await
            {
                Ok(Held::Ours) => {}
                Ok(Held::Taken { holder, .. }) => tracing::error!(
                    registration = %registration.what,
                    other = %holder,
                    "another process now holds this registration; each process still owns only its own leases, but give each its own --instance-id and --zone"
                ),
                Err(e) => {
                    // On a cluster the registration's slot may have moved: read the slots again.
                    self.nodes.mark_stale();
                    tracing::debug!(error = %e, registration = %registration.what, "registration not refreshed");
                }
            }
        }
    }

    /// Sends `items` to the nodes serving them, in pipelined chunks of `batch_chunk` per
    /// node, [`CHUNKS_IN_FLIGHT`] per node at a time, building (and encoding) each chunk with
    /// `build` on this task, which groups the items into script calls. Returns one reply per
    /// call with its items. Once a chunk gets no reply, the chunks not yet sent to that node
    /// fail without being sent: the batch costs at most about one store timeout when a node
    /// is down or hung, and the other nodes' items are still written.
    async fn run_batch<I, M>(
        &mut self,
        items: Vec<I>,
        player_of: fn(&I) -> PlayerId,
        what: &str,
        round_trips: RoundTrips<'_>,
        mut build: impl FnMut(&Shared, Vec<I>, &mut Vec<CallReply<M>>) -> (Pipeline, Vec<Vec<M>>),
    ) -> Vec<CallReply<M>> {
        self.nodes.refresh_if_stale().await;
        let shared = Arc::clone(&self.shared);
        let mut out = Vec::with_capacity(items.len());
        let mut redirected = Vec::new();
        let nodes = self.nodes.count();
        let mut queues: Vec<Vec<I>> = (0..nodes).map(|_| Vec::new()).collect();
        for item in items {
            queues[self.nodes.of_player(player_of(&item))].push(item);
        }
        let busy = queues.iter().filter(|q| !q.is_empty()).count();
        let mut queues: Vec<_> = queues
            .into_iter()
            .map(|q| q.into_iter().peekable())
            .collect();
        let mut in_flight: VecDeque<InFlight<M>> = VecDeque::new();
        let mut broken: Vec<Option<CallFailed>> = vec![None; nodes];
        while queues.iter_mut().any(|q| q.peek().is_some()) {
            for node in 0..nodes {
                let chunk: Vec<I> = queues[node].by_ref().take(shared.chunk).collect();
                if chunk.is_empty() {
                    continue;
                }
                let (pipe, sent) = build(&shared, chunk, &mut out);
                if sent.is_empty() {
                    continue;
                }
                if let Some(reason) = &broken[node] {
                    out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                    continue;
                }
                let pipe = Arc::new(pipe);
                match self.nodes.conn(node).spawn(Arc::clone(&pipe)) {
                    Ok(handle) => in_flight.push_back((node, handle, pipe, sent)),
                    Err(e) => {
                        let reason = CallFailed::NoReply(e.to_string());
                        out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                        broken[node] = Some(reason);
                    }
                }
                if in_flight.len() >= CHUNKS_IN_FLIGHT * busy
                    && let Some(chunk) = in_flight.pop_front()
                {
                    let node = chunk.0;
                    let finished =
                        self.finish_chunk(chunk, what, round_trips, &mut out, &mut redirected);
                    if let Err(reason) = finished.await {
                        broken[node] = Some(reason);
                    }
                }
            }
        }
        while let Some(chunk) = in_flight.pop_front() {
            // Chunks already sent get their own answer even after an earlier one failed.
            self.finish_chunk(chunk, what, round_trips, &mut out, &mut redirected)
                .await
                .ok();
        }
        if !redirected.is_empty() {
            self.send_redirected(redirected, what, round_trips, &mut out)
                .await;
        }
        out
    }

    /// The players of a batch in submission order, when its results may come back in
    /// another (on a cluster: sent per node, grouped per slot); `None` on a single Redis.
    fn reordered<I>(&self, items: &[I], player_of: fn(&I) -> PlayerId) -> Option<Vec<PlayerId>> {
        self.nodes
            .is_cluster()
            .then(|| items.iter().map(player_of).collect())
    }

    /// Sends the calls a node redirected (they did not run, so sending them again is safe)
    /// to the node named, one pipeline per node: after `MOVED` the slot table is read again
    /// first; after `ASK` (a slot being moved) each call is preceded by `ASKING`. A call
    /// redirected again is answered failed, and retried by the world at its next flush.
    async fn send_redirected<M>(
        &mut self,
        redirected: Vec<Redirected<M>>,
        what: &str,
        round_trips: RoundTrips<'_>,
        out: &mut Vec<CallReply<M>>,
    ) {
        if redirected.iter().any(|r| r.redirect == Redirect::Moved) {
            self.nodes.mark_stale();
            self.nodes.refresh_if_stale().await;
        }
        // The batch's `WAIT`, if its saves must reach replicas: it ends each pipeline.
        let wait = redirected.iter().find_map(|r| r.wait.clone());
        let mut per_node: Vec<(usize, Pipeline, Vec<Vec<M>>)> = Vec::new();
        for Redirected {
            redirect,
            address,
            load,
            call,
            items,
            ..
        } in redirected
        {
            let node = match self.nodes.at(&address) {
                Ok(node) => node,
                Err(reason) => {
                    out.push((items, Err(CallFailed::Unreachable(reason.to_string()))));
                    continue;
                }
            };
            let at = match per_node.iter().position(|(n, ..)| *n == node) {
                Some(at) => at,
                None => {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    pipe.add_command(load).ignore();
                    per_node.push((node, pipe, Vec::new()));
                    per_node.len() - 1
                }
            };
            let (_, pipe, sent) = &mut per_node[at];
            if redirect == Redirect::Ask {
                pipe.cmd("ASKING").ignore();
            }
            pipe.add_command(call);
            sent.push(items);
        }
        for (node, mut pipe, sent) in per_node {
            if let Some(wait) = &wait {
                pipe.add_command(wait.clone());
            }
            let pipe = Arc::new(pipe);
            let handle = match self.nodes.conn(node).spawn(Arc::clone(&pipe)) {
                Ok(handle) => handle,
                Err(e) => {
                    let reason = CallFailed::NoReply(e.to_string());
                    out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                    continue;
                }
            };
            let mut again = Vec::new();
            let chunk = (node, handle, pipe, sent);
            self.finish_chunk(chunk, what, round_trips, out, &mut again)
                .await
                .ok();
            for again in again {
                self.nodes.mark_stale();
                let reason = CallFailed::RedirectedAgain {
                    redirect: again.redirect,
                    address: again.address,
                };
                out.push((again.items, Err(reason)));
            }
        }
    }

    /// Waits for one chunk's reply and hands each item its part of it. Returns the reason
    /// when the chunk got no reply at all.
    async fn finish_chunk<M>(
        &mut self,
        (node, handle, pipe, sent): InFlight<M>,
        what: &str,
        round_trips: RoundTrips<'_>,
        out: &mut Vec<CallReply<M>>,
        redirected: &mut Vec<Redirected<M>>,
    ) -> Result<(), CallFailed> {
        let reply = handle.await.unwrap_or_else(|e| Reply {
            result: Err(CallError::Worker(e.to_string())),
            latency: Duration::ZERO,
        });
        let conn = self.nodes.conn(node);
        conn.observe(&reply, what);
        round_trips.record(reply.latency, sent.iter().map(Vec::len).sum());
        let wait = pipe.cmd_iter().last().filter(|c| named(c, "WAIT"));
        let wanted = wait.map(|_| self.shared.durable_replicas);
        let (result, not_durable) = confirmed(reply.result, wanted);
        match result {
            Ok(values) if values.len() == sent.len() => {
                let commands = sent.len();
                let mut item_errors = 0usize;
                // The calls, in reply order: every command but the ignored `SCRIPT LOAD`
                // (first) and `ASKING`s, and `WAIT` (last, and already taken off the reply).
                let mut cmds = pipe.cmd_iter().filter(|c| !named(c, "ASKING"));
                let load = cmds.next();
                for ((meta, value), call) in sent.into_iter().zip(values).zip(cmds) {
                    let reply = match value {
                        Value::ServerError(e) => match (cluster::redirect_target(&e), load) {
                            (Some((redirect, address)), Some(load)) => {
                                redirected.push(Redirected {
                                    redirect,
                                    address,
                                    load: load.clone(),
                                    call: call.clone(),
                                    items: meta,
                                    wait: wait.cloned(),
                                });
                                continue;
                            }
                            _ => {
                                item_errors += 1;
                                Err(CallFailed::Refused(e))
                            }
                        },
                        value => match &not_durable {
                            Some(reason) => Ok(not_saved(value, reason)),
                            None => Ok(value),
                        },
                    };
                    out.push((meta, reply));
                }
                if item_errors > 0 && item_errors < commands {
                    tracing::warn!(
                        lane = conn.lane(),
                        item_errors,
                        "Redis refused some commands of a {what} chunk; those will be retried"
                    );
                }
                Ok(())
            }
            Ok(values) => {
                let reason = CallFailed::Replies {
                    values: values.len(),
                    commands: sent.len(),
                };
                tracing::error!(lane = conn.lane(), "{reason}");
                out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                Ok(())
            }
            Err(e) => {
                // On a cluster, a node that stopped answering may have been replaced by its
                // replica (a failover): read the slot table again before the next request.
                self.nodes.mark_stale();
                let reason = CallFailed::NoReply(e.to_string());
                out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                Err(reason)
            }
        }
    }
}

impl StoreOperations for LaneWorker {
    /// A round trip is one pipelined chunk.
    async fn save(&mut self, items: Vec<SaveItem>, round_trips: RoundTrips<'_>) -> Vec<SaveResult> {
        let order = self.reordered(&items, |item| item.snapshot.player);
        let replies = self
            .run_batch(
                items,
                |item| item.snapshot.player,
                "saving records",
                round_trips,
                build_save_chunk,
            )
            .await;
        let results = per_item(replies, save_outcomes, |sent, outcome| SaveResult {
            entity: sent.entity,
            player: sent.player,
            seq: sent.seq,
            outcome,
        });
        match order {
            Some(order) => in_order(results, &order, |result| result.player),
            None => results,
        }
    }

    /// One call of `save_together.lua`, one round trip, when every player's keys share a slot
    /// (always on one Redis). On a cluster, players of several slots cannot be written by one
    /// script: the three-step commit of [`super::linked`] writes them together.
    async fn save_together(
        &mut self,
        items: Vec<SaveItem>,
        round_trips: RoundTrips<'_>,
    ) -> Vec<SaveResult> {
        let Some(first) = items.first().map(|item| item.snapshot.player) else {
            return Vec::new();
        };
        let one_slot = !self.nodes.is_cluster()
            || items.iter().all(|item| {
                cluster::player_slot(item.snapshot.player) == cluster::player_slot(first)
            });
        if !one_slot {
            let started = Instant::now();
            let count = items.len();
            let results = CrossSlot {
                nodes: &mut self.nodes,
                shared: &self.shared,
            }
            .save_across_slots(items)
            .await;
            round_trips.record(started.elapsed(), count);
            return results;
        }
        self.nodes.refresh_if_stale().await;
        let node = self.nodes.of_player(first);
        let mut out = Vec::new();
        let (pipe, sent) = build_together_call(&self.shared, items, &mut out);
        if !sent.is_empty() {
            let pipe = Arc::new(pipe);
            match self.nodes.conn(node).spawn(Arc::clone(&pipe)) {
                Ok(handle) => {
                    let mut redirected = Vec::new();
                    let chunk = (node, handle, pipe, sent);
                    let what = "saving records together";
                    self.finish_chunk(chunk, what, round_trips, &mut out, &mut redirected)
                        .await
                        .ok();
                    if !redirected.is_empty() {
                        self.send_redirected(redirected, what, round_trips, &mut out)
                            .await;
                    }
                }
                Err(e) => {
                    let reason = CallFailed::NoReply(e.to_string());
                    out.extend(sent.into_iter().map(|m| (m, Err(reason.clone()))));
                }
            }
        }
        per_item(out, save_outcomes, |sent, outcome| SaveResult {
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
        let order = self.reordered(&leases, |lease| lease.player);
        let replies = self
            .run_batch(
                leases,
                |lease| lease.player,
                "refreshing leases",
                round_trips,
                build_refresh_chunk,
            )
            .await;
        let results = per_item(replies, refresh_outcomes, |lease, outcome| RefreshResult {
            entity: lease.entity,
            player: lease.player,
            outcome,
        });
        match order {
            Some(order) => in_order(results, &order, |result| result.player),
            None => results,
        }
    }

    /// Claims the lease and loads the record in one round trip. A claim Redis may have run
    /// without this join learning its result (no reply within the store timeout, or the
    /// connection broke after sending) is answered `unavailable` and undone once Redis
    /// answers (see [`uncertain`]); a connection found broken (closed while idle) is retried
    /// once at once, which is safe: a repeated claim re-claims our own lease.
    ///
    /// A lease held by a process that is no longer alive (its liveness key gone: crashed, or
    /// cut off from Redis longer than `liveness_ttl`) is taken over by a second claim naming
    /// that holder (`liveness.rs`), so a crashed server's players are back within seconds,
    /// not `lease_ttl`.
    async fn join(&mut self, ticket: u64, player: PlayerId) -> Result<JoinGrant, JoinRefusal> {
        self.uncertain.superseded(player);
        match self.claim(ticket, player, "").await {
            Err(JoinRefusal::AlreadyOnline { owner }) => {
                let shared = Arc::clone(&self.shared);
                match liveness::holder_alive(&mut self.nodes, &shared.keys, &owner).await {
                    Some(false) => {
                        tracing::info!(%player, holder = %owner, "the lease holder is not alive: taking the lease over");
                        self.claim(ticket, player, &owner).await
                    }
                    _ => Err(JoinRefusal::AlreadyOnline { owner }),
                }
            }
            other => other,
        }
    }

    async fn release(&mut self, player: PlayerId) {
        self.release_if_ours(player).await;
    }
}

impl LaneWorker {
    /// One claim of `player`'s lease, taking it over if it is still held by `dead` (a
    /// holder found not alive; `""` for none), and the record's load.
    async fn claim(
        &mut self,
        ticket: u64,
        player: PlayerId,
        dead: &str,
    ) -> Result<JoinGrant, JoinRefusal> {
        let shared = Arc::clone(&self.shared);
        self.nodes.refresh_if_stale().await;
        let claim = |asking: bool| {
            let claim = &shared.scripts.claim;
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.load_script(claim).ignore();
            if asking {
                pipe.cmd("ASKING").ignore();
            }
            pipe.cmd("EVALSHA")
                .arg(claim.get_hash())
                .arg(2)
                .arg(shared.keys.session(player))
                .arg(shared.keys.player(player))
                .arg(&shared.instance)
                .arg(shared.lease_ttl_ms)
                .arg(dead);
            pipe
        };
        let mut node = self.nodes.of_player(player);
        let mut reply = self.claim_once(node, claim(false), ticket, player).await;
        if reply.broke_the_connection() {
            self.nodes.conn(node).connection_broke();
            tracing::debug!(
                "claiming a lease: the connection had closed; sending again on a new one"
            );
            reply = self.claim_once(node, claim(false), ticket, player).await;
            if reply.broke_the_connection() {
                self.uncertain.undo_now(player, ticket);
            }
        }
        // On a cluster, a node that does not serve the player's slot (any more) did not run
        // the claim: it goes to the node named, once.
        if let Some((redirect, address)) = redirect_of(&reply) {
            self.nodes.conn(node).observe(&reply, "claiming a lease");
            if redirect == Redirect::Moved {
                self.nodes.mark_stale();
                self.nodes.refresh_if_stale().await;
            }
            match self.nodes.at(&address) {
                Ok(to) => {
                    node = to;
                    let asking = redirect == Redirect::Ask;
                    reply = self.claim_once(node, claim(asking), ticket, player).await;
                }
                Err(reason) => {
                    StoreMetrics::add(&shared.metrics.load_errors, 1);
                    return Err(JoinRefusal::Unavailable(reason.to_string()));
                }
            }
        }
        self.nodes.conn(node).observe(&reply, "claiming a lease");
        if reply.result.is_err() {
            // On a cluster the node may have failed over: read the slots before the next job.
            self.nodes.mark_stale();
        }
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
                // On a cluster, a linked save across slots may have left a pending record:
                // resolve it by the link's decision (roll forward or drop), then read the
                // record as it is now.
                let recovered = CrossSlot {
                    nodes: &mut self.nodes,
                    shared: &self.shared,
                }
                .pending_record(player, payload)
                .await;
                let payload = match recovered {
                    Ok(payload) => payload,
                    Err(reason) => {
                        self.release_if_ours(player).await;
                        return unavailable(reason.to_string());
                    }
                };
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

    /// Sends one claim to `node` and waits up to the store timeout. If that passes, the claim is left
    /// to finish on its own (up to the lease TTL) and undone when it does.
    async fn claim_once(
        &mut self,
        node: usize,
        pipe: Pipeline,
        ticket: u64,
        player: PlayerId,
    ) -> Reply {
        let started = Instant::now();
        let conn = self.nodes.conn(node);
        let timeout = conn.timeout();
        let mut late = match conn.spawn_with_limit(Arc::new(pipe), self.shared.lease_ttl) {
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
        self.nodes.refresh_if_stale().await;
        let node = self.nodes.of_player(player);
        let mut reply = self
            .nodes
            .conn(node)
            .request(pipe.clone(), "releasing a lease")
            .await;
        // On a cluster, a node that did not answer may have been replaced by its replica, and
        // a slot may have moved: a release is safe to repeat, so it goes once more to the
        // node serving the slot by the slots read again.
        if self.nodes.is_cluster() && (reply.result.is_err() || redirect_of(&reply).is_some()) {
            self.nodes.mark_stale();
            self.nodes.refresh_if_stale().await;
            let now = self.nodes.of_player(player);
            reply = self
                .nodes
                .conn(now)
                .request(pipe, "releasing a lease")
                .await;
        }
        match reply.result {
            Ok(values) => match values.first() {
                Some(Value::Int(deleted)) => Some(*deleted == 1),
                _ => None,
            },
            Err(_) => None,
        }
    }
}

/// A chunk's reply without its final `WAIT` reply (when `wanted`, the replicas the saves
/// must reach), and why its saves are not durable: `WAIT` confirmed fewer.
fn confirmed(
    result: Result<Vec<Value>, CallError>,
    wanted: Option<u32>,
) -> (Result<Vec<Value>, CallError>, Option<String>) {
    let (mut values, wanted) = match (result, wanted) {
        (Ok(values), Some(wanted)) => (values, wanted),
        (result, _) => return (result, None),
    };
    let short = match values.pop() {
        Some(Value::Int(confirmed)) if confirmed >= i64::from(wanted) => None,
        Some(Value::Int(confirmed)) => Some(format!(
            "not durable: {confirmed} of {wanted} replicas confirmed the write in time (WAIT)"
        )),
        other => Some(format!("not durable: unexpected reply to WAIT: {other:?}")),
    };
    (Ok(values), short)
}

/// Whether `cmd` is the command `name` (`WAIT`, `ASKING`).
fn named(cmd: &Cmd, name: &str) -> bool {
    matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(first)) if first.eq_ignore_ascii_case(name.as_bytes()))
}

/// A `save.lua` reply with every `saved` status turned into `error: <reason>`: the writes
/// happened on the master but are not durable yet, so they count as failed and are retried
/// (a retried save is safe: it carries a newer sequence). Other statuses stay.
fn not_saved(value: Value, reason: &str) -> Value {
    match value {
        Value::Array(statuses) => Value::Array(
            statuses
                .into_iter()
                .map(|status| match status {
                    Value::BulkString(text) if text == b"saved" => {
                        Value::BulkString(format!("error: {reason}").into_bytes())
                    }
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

/// Where a one-call reply redirects the call, if it is a `MOVED` or `ASK`.
fn redirect_of(reply: &Reply) -> Option<(Redirect, String)> {
    match reply.result.as_ref().ok()?.as_slice() {
        [Value::ServerError(e)] => cluster::redirect_target(e),
        _ => None,
    }
}
