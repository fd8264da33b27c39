//! Linked saves across Redis Cluster slots: one script reaches one slot, so the records of a
//! link whose players live in several slots are written by a three-step commit, crash-safe
//! at every step:
//!
//! 1. **Prepare** (`link_prepare.lua`, one call per slot): every player checked as
//!    `save_together.lua` checks it; its record written as a *pending* record of the link
//!    (`<prefix>:pending:{<id>}`: link id, sequence, record), not as its record.
//! 2. **Decide**: `SET <prefix>:link:{<link id>} committed NX GET`. Whoever sets the decision
//!    first decides: this store commits only when every player was prepared; a load that
//!    finds a pending record of an undecided link aborts it (`SET ... aborted NX GET`). So a
//!    link is committed everywhere or nowhere.
//! 3. **Finish** (`link_finish.lua`, one call per slot): a committed pending record becomes
//!    the record (unless a newer one is stored: the sequence fence), an aborted one is
//!    dropped. A crash before finishing leaves pending records: the next claim of such a
//!    player (`claim.lua` returns the link id) resolves it the same way before loading.
//!
//! A link is answered saved once committed (step 2): its records are durable from then on,
//! as pending records that every load applies.

use std::collections::BTreeMap;

use hearth_components::PlayerId;
use hearth_systems::storage::{SaveItem, SaveOutcome, SaveResult};
use redis::{Pipeline, Value};

use super::calls::reply_text;
use super::cluster::player_slot;
use super::lane::LaneWorker;

/// A link's decision.
const COMMITTED: &str = "committed";
const ABORTED: &str = "aborted";

impl LaneWorker {
    /// Writes `items` (players of several slots) together by the three-step commit; one
    /// result per item in order.
    pub(super) async fn save_across_slots(&mut self, items: Vec<SaveItem>) -> Vec<SaveResult> {
        let shared = std::sync::Arc::clone(&self.shared);
        let number = shared
            .next_link
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let link = format!("{}/{number}", shared.instance);
        let result = |item: &SaveItem, outcome| SaveResult {
            entity: item.entity,
            player: item.snapshot.player,
            seq: item.snapshot.seq,
            outcome,
        };
        let mut records = Vec::with_capacity(items.len());
        for item in &items {
            match item.snapshot.encode() {
                Ok(record) => records.push(record),
                Err(e) => {
                    let reason = format!("encoding the record of {}: {e}", item.snapshot.player);
                    return items
                        .iter()
                        .map(|item| result(item, SaveOutcome::Failed(reason.clone())))
                        .collect();
                }
            }
        }
        self.nodes.refresh_if_stale().await;
        let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (at, item) in items.iter().enumerate() {
            by_slot
                .entry(player_slot(item.snapshot.player))
                .or_default()
                .push(at);
        }
        let mut statuses: Vec<String> = vec![String::new(); items.len()];
        for players in by_slot.values() {
            let prepare = &shared.scripts.link_prepare;
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            pipe.load_script(prepare).ignore();
            let call = pipe
                .cmd("EVALSHA")
                .arg(prepare.get_hash())
                .arg(3 * players.len());
            for &at in players {
                let player = items[at].snapshot.player;
                call.arg(shared.keys.player(player))
                    .arg(shared.keys.session(player))
                    .arg(shared.keys.pending(player));
            }
            call.arg(&shared.instance)
                .arg(shared.lease_ttl_ms)
                .arg(&link);
            for &at in players {
                call.arg(items[at].snapshot.seq)
                    .arg(items[at].last_stored_seq)
                    .arg(&records[at][..]);
            }
            let first = items[players[0]].snapshot.player;
            match self.one_call(first, pipe, "preparing a linked save").await {
                Ok(Value::Array(values)) if values.len() == players.len() => {
                    for (&at, value) in players.iter().zip(values) {
                        statuses[at] = reply_text(&value).unwrap_or_default();
                    }
                }
                Ok(other) => {
                    for &at in players {
                        statuses[at] = format!("error: unexpected reply to a prepare: {other:?}");
                    }
                }
                Err(reason) => {
                    for &at in players {
                        statuses[at] = format!("error: {reason}");
                    }
                }
            }
        }
        let prepared = statuses.iter().all(|s| s == "prepared");
        let wanted = if prepared { COMMITTED } else { ABORTED };
        let decision = match self.decide(&link, wanted).await {
            Ok(decision) => decision,
            Err(reason) => {
                // Unknown whether it was committed: the pending records stay, and whoever
                // next loads or saves one of the players resolves the link.
                let reason = format!("linked save {link} undecided: {reason}");
                return items
                    .iter()
                    .map(|item| result(item, SaveOutcome::Failed(reason.clone())))
                    .collect();
            }
        };
        let mut finished = true;
        for players in by_slot.values() {
            let players: Vec<PlayerId> = players
                .iter()
                .map(|&at| items[at].snapshot.player)
                .collect();
            finished &= self.finish(&players, &link, &decision).await.is_ok();
        }
        if decision == COMMITTED {
            if finished {
                self.forget(&link).await;
            }
            return items
                .iter()
                .map(|item| result(item, SaveOutcome::Saved))
                .collect();
        }
        let mut results = Vec::with_capacity(items.len());
        for (item, status) in items.iter().zip(&statuses) {
            let outcome = match status.as_str() {
                "lost" => SaveOutcome::LeaseLost,
                "stale" => SaveOutcome::StaleSequence,
                pending if pending.starts_with("pending:") => {
                    // An earlier link's pending record: resolve it now, and retry.
                    let earlier = &pending["pending:".len()..];
                    let player = item.snapshot.player;
                    let resolved = self.resolve(player, earlier).await;
                    SaveOutcome::Failed(format!(
                        "a pending record of link {earlier} was in the way ({}); retried",
                        match resolved {
                            Ok(()) => "resolved".to_string(),
                            Err(e) => e,
                        }
                    ))
                }
                _ => SaveOutcome::Failed(format!("linked save {link} aborted: {status}")),
            };
            results.push(result(item, outcome));
        }
        results
    }

    /// After a granted claim of `player` whose reply carried `claimed` (the record): on a
    /// cluster, reads the player's pending record's link (one `HGET`, following an `ASK` or
    /// `MOVED` of a slot being moved), and if there is one resolves it and reads the record
    /// again. (Not in `claim.lua`: a third key that does not exist makes the claim of a slot
    /// being moved answer `TRYAGAIN`.) On one Redis no pending record is ever written.
    pub(super) async fn pending_record(
        &mut self,
        player: PlayerId,
        claimed: Option<Value>,
    ) -> Result<Option<Value>, String> {
        if !self.nodes.is_cluster() {
            return Ok(claimed);
        }
        let key = self.shared.keys.pending(player);
        let hget = |asking: bool| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            if asking {
                pipe.cmd("ASKING").ignore();
            }
            pipe.cmd("HGET").arg(&key).arg("link");
            pipe
        };
        let node = self.nodes.of_player(player);
        let reply = self
            .nodes
            .conn(node)
            .request(hget(false), "reading a pending record")
            .await;
        let mut value = match reply.result {
            Ok(mut values) if values.len() == 1 => values.remove(0),
            Ok(values) => {
                return Err(format!(
                    "unexpected reply: {} values for 1 command",
                    values.len()
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        if let Value::ServerError(e) = &value
            && let Some((redirect, address)) = super::cluster::redirect_target(e)
        {
            if redirect == super::cluster::Redirect::Moved {
                self.nodes.mark_stale();
                self.nodes.refresh_if_stale().await;
            }
            let node = self.nodes.at(&address).map_err(|e| e.to_string())?;
            let asking = redirect == super::cluster::Redirect::Ask;
            value = self
                .call_node(node, hget(asking), "reading a pending record")
                .await?;
        }
        match value {
            Value::Nil => Ok(claimed),
            Value::ServerError(e) => Err(e.to_string()),
            link => {
                let link = reply_text(&link).ok_or("unexpected pending link")?;
                Ok(self
                    .resolve_and_read(player, &link)
                    .await?
                    .map(Value::BulkString))
            }
        }
    }

    /// Resolves the pending record of `link` a claim found for `player` (aborting the link
    /// if undecided), then reads the player's record as it is now.
    async fn resolve_and_read(
        &mut self,
        player: PlayerId,
        link: &str,
    ) -> Result<Option<Vec<u8>>, String> {
        self.resolve(player, link).await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("GET").arg(self.shared.keys.player(player));
        match self.one_call(player, pipe, "reading a record").await? {
            Value::BulkString(bytes) => Ok(Some(bytes)),
            Value::Nil => Ok(None),
            other => Err(format!("unexpected reply to GET: {other:?}")),
        }
    }

    /// Applies or drops `player`'s pending record of `link` by the link's decision, aborting
    /// the link first if nobody decided it yet.
    async fn resolve(&mut self, player: PlayerId, link: &str) -> Result<(), String> {
        let decision = self.decide(link, ABORTED).await?;
        self.finish(&[player], link, &decision).await
    }

    /// `SET <link key> <wanted> NX GET`: the decision, ours if nobody's was there first.
    async fn decide(&mut self, link: &str, wanted: &str) -> Result<String, String> {
        let key = self.shared.keys.link(link);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("SET").arg(&key).arg(wanted).arg("NX").arg("GET");
        let node = self.nodes.of_key(&key);
        match self.call_node(node, pipe, "deciding a linked save").await? {
            Value::Nil => Ok(wanted.to_string()),
            value => reply_text(&value).ok_or_else(|| format!("unexpected decision {value:?}")),
        }
    }

    /// `link_finish.lua` for `players` (all of one slot).
    async fn finish(
        &mut self,
        players: &[PlayerId],
        link: &str,
        decision: &str,
    ) -> Result<(), String> {
        let Some(&first) = players.first() else {
            return Ok(());
        };
        let finish = &self.shared.scripts.link_finish;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.load_script(finish).ignore();
        let call = pipe
            .cmd("EVALSHA")
            .arg(finish.get_hash())
            .arg(2 * players.len());
        for &player in players {
            call.arg(self.shared.keys.player(player))
                .arg(self.shared.keys.pending(player));
        }
        call.arg(link).arg(decision);
        self.one_call(first, pipe, "finishing a linked save")
            .await
            .map(drop)
    }

    /// Deletes a committed link's decision once every pending record of it is applied.
    async fn forget(&mut self, link: &str) {
        let key = self.shared.keys.link(link);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("DEL").arg(&key);
        let node = self.nodes.of_key(&key);
        if let Err(e) = self.call_node(node, pipe, "forgetting a linked save").await {
            tracing::debug!(link, error = %e, "a committed link's decision was not deleted");
        }
    }

    /// Sends `pipe` (one command, after any ignored ones) to the node serving `player`.
    async fn one_call(
        &mut self,
        player: PlayerId,
        pipe: Pipeline,
        what: &str,
    ) -> Result<Value, String> {
        let node = self.nodes.of_player(player);
        self.call_node(node, pipe, what).await
    }

    /// Sends `pipe` (one command, after any ignored ones) to `node`; its one reply value. A
    /// failure marks the slot table stale (a moved slot, a failover).
    async fn call_node(
        &mut self,
        node: usize,
        pipe: Pipeline,
        what: &str,
    ) -> Result<Value, String> {
        let reply = self.nodes.conn(node).request(pipe, what).await;
        let value = match reply.result {
            Ok(mut values) if values.len() == 1 => values.remove(0),
            Ok(values) => {
                return Err(format!(
                    "unexpected reply: {} values for 1 command",
                    values.len()
                ));
            }
            Err(e) => {
                self.nodes.mark_stale();
                return Err(e.to_string());
            }
        };
        match value {
            Value::ServerError(e) => {
                self.nodes.mark_stale();
                Err(e.to_string())
            }
            value => Ok(value),
        }
    }
}
