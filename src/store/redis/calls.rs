//! Script calls of a batch: how a chunk of saves or lease refreshes becomes one pipeline of
//! `EVALSHA` calls (several players per call), and how each call's reply is split back into
//! one outcome per player.

use hearth_components::PlayerId;
use hearth_systems::storage::{LeaseItem, RefreshOutcome, SaveItem, SaveOutcome};
use std::collections::{HashMap, VecDeque};

use redis::{Cmd, Pipeline, Value};

use super::Shared;
use super::cluster::{self, Redirect};

/// Players one `save.lua` call writes, at most. A call per player cost redis-server 1.3-1.8x
/// the CPU per save (docs/benchmarks.md); 20 saves hold Redis for about 0.15-0.25 ms.
const PLAYERS_PER_SAVE_CALL: usize = 20;

/// Leases one `refresh.lua` call extends. Redis spends more on starting a script than on the
/// two commands per lease: a call per lease cost redis-server 2.3-3.2x the CPU per refresh
/// (docs/benchmarks.md). 50 leases keep one call well under a millisecond.
const LEASES_PER_REFRESH_CALL: usize = 50;

/// What one script call of a pipelined batch got back: its reply value, or why there is none.
pub(super) type ItemReply = Result<Value, CallFailed>;

/// Why one script call of a batch got no usable reply: its items fail, and the world retries
/// them. Shared by every call of a chunk, so it carries the failure's text where the
/// underlying error cannot be copied.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum CallFailed {
    /// Its record could not be encoded; nothing was sent.
    #[error("encoding the record: {0}")]
    Encode(std::sync::Arc<hearth_components::record::SnapshotEncodeError>),
    /// The chunk carrying it got no reply, or could not be sent.
    #[error("{0}")]
    NoReply(String),
    /// Redis refused the call.
    #[error("{0}")]
    Refused(redis::ServerError),
    /// The chunk's reply does not match its commands.
    #[error("unexpected reply from Redis: {values} values for {commands} commands")]
    Replies {
        /// Values in the reply.
        values: usize,
        /// Commands sent.
        commands: usize,
    },
    /// A cluster node redirected it, and the node named could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// The node it was redirected to redirected it again.
    #[error("redirected again ({redirect:?} to {address})")]
    RedirectedAgain {
        /// `MOVED` or `ASK`.
        redirect: Redirect,
        /// Where to (`host:port`).
        address: String,
    },
}

/// The items one script call carries, and what the call got back.
pub(super) type CallReply<M> = (Vec<M>, ItemReply);

/// One save sent in a chunk, waiting for its reply.
pub(super) struct SentSave {
    pub entity: bevy_ecs::entity::Entity,
    pub player: PlayerId,
    pub seq: u64,
}

/// One chunk of saves: `SCRIPT LOAD save.lua`, then one `EVALSHA` per
/// [`PLAYERS_PER_SAVE_CALL`] records (on a cluster: of one slot, see [`call_slot`]), then
/// `WAIT` when saves must reach `durable_replicas` replicas. Records are encoded here, on the store's task, never on
/// the tick; one that fails to encode is answered at once and not sent.
pub(super) fn build_save_chunk(
    shared: &Shared,
    mut chunk: Vec<SaveItem>,
    out: &mut Vec<CallReply<SentSave>>,
) -> (Pipeline, Vec<Vec<SentSave>>) {
    let slot = |item: &SaveItem| call_slot(shared, item.snapshot.player);
    if shared.cluster {
        chunk.sort_by_cached_key(slot);
    }
    let script = &shared.scripts.save;
    let mut pipe = Pipeline::with_capacity(chunk.len() / PLAYERS_PER_SAVE_CALL + 2);
    pipe.ignore_errors();
    pipe.load_script(script).ignore();
    let mut groups = Vec::with_capacity(chunk.len() / PLAYERS_PER_SAVE_CALL + 1);
    let mut items = chunk.into_iter().peekable();
    while let Some(first) = items.peek() {
        // Saves that release go in calls of their own, which also name each player's release
        // marker: a key that rarely exists, and a multi-key call naming a missing key of a
        // slot being moved is answered TRYAGAIN, so other saves do not name it.
        let call = (slot(first), first.release);
        let mut keys = Vec::with_capacity(3 * PLAYERS_PER_SAVE_CALL);
        let mut args = Vec::with_capacity(4 * PLAYERS_PER_SAVE_CALL);
        let mut group = Vec::with_capacity(PLAYERS_PER_SAVE_CALL);
        while let Some(item) = items.next_if(|item| (slot(item), item.release) == call) {
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
                    if item.release {
                        keys.push(shared.keys.released(snapshot.player));
                    }
                    args.push(snapshot.seq.to_string().into_bytes());
                    args.push(item.last_stored_seq.to_string().into_bytes());
                    args.push(record);
                    args.push(if item.release { b"1" } else { b"0" }.to_vec());
                    group.push(meta);
                }
                Err(e) => out.push((vec![meta], Err(CallFailed::Encode(std::sync::Arc::new(e))))),
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
            .arg(if call.1 { 3 } else { 2 })
            .arg(args);
        groups.push(group);
    }
    if shared.durable_replicas > 0 {
        pipe.add_command(wait_command(shared));
    }
    (pipe, groups)
}

/// A linked save: `SCRIPT LOAD save_together.lua`, then one `EVALSHA` holding every record
/// (all of one slot: the caller checks), then `WAIT` as for any chunk of saves. A record that
/// cannot be encoded fails the whole call, unsent: the records travel together or not at all.
pub(super) fn build_together_call(
    shared: &Shared,
    items: Vec<SaveItem>,
    out: &mut Vec<CallReply<SentSave>>,
) -> (Pipeline, Vec<Vec<SentSave>>) {
    let script = &shared.scripts.save_together;
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.load_script(script).ignore();
    let mut keys = Vec::with_capacity(2 * items.len());
    let mut args = Vec::with_capacity(3 * items.len());
    let mut group = Vec::with_capacity(items.len());
    let mut unencodable = None;
    for item in items {
        let snapshot = &item.snapshot;
        match snapshot.encode() {
            Ok(record) => {
                keys.push(shared.keys.player(snapshot.player));
                keys.push(shared.keys.session(snapshot.player));
                args.push(snapshot.seq.to_string().into_bytes());
                args.push(item.last_stored_seq.to_string().into_bytes());
                args.push(record);
            }
            Err(e) => unencodable = Some(CallFailed::Encode(std::sync::Arc::new(e))),
        }
        group.push(SentSave {
            entity: item.entity,
            player: snapshot.player,
            seq: snapshot.seq,
        });
    }
    if let Some(reason) = unencodable {
        out.push((group, Err(reason)));
        return (pipe, Vec::new());
    }
    pipe.cmd("EVALSHA")
        .arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(&shared.instance)
        .arg(shared.lease_ttl_ms)
        .arg(args);
    if shared.durable_replicas > 0 {
        pipe.add_command(wait_command(shared));
    }
    (pipe, vec![group])
}

/// `WAIT <durable_replicas> <ms>`: after a chunk of saves, on the same connection, asks how
/// many replicas have them. It waits at most half the store timeout, so the chunk's reply
/// still comes within it.
fn wait_command(shared: &Shared) -> Cmd {
    let mut wait = redis::cmd("WAIT");
    wait.arg(shared.durable_replicas).arg(shared.wait_ms);
    wait
}

/// One chunk of lease refreshes: `SCRIPT LOAD refresh.lua`, then one `EVALSHA` per
/// [`LEASES_PER_REFRESH_CALL`] leases (on a cluster: of one slot, see [`call_slot`]).
pub(super) fn build_refresh_chunk(
    shared: &Shared,
    chunk: Vec<LeaseItem>,
    _out: &mut Vec<CallReply<LeaseItem>>,
) -> (Pipeline, Vec<Vec<LeaseItem>>) {
    let mut chunk = chunk;
    let slot = |lease: &LeaseItem| call_slot(shared, lease.player);
    if shared.cluster {
        chunk.sort_by_cached_key(slot);
    }
    let script = &shared.scripts.refresh;
    let groups: Vec<Vec<LeaseItem>> = chunk
        .chunk_by(|a, b| slot(a) == slot(b))
        .flat_map(|run| run.chunks(LEASES_PER_REFRESH_CALL))
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

/// Which players one script call may hold: those of one slot on a cluster (all keys of a
/// script call must live in one slot), any on a single Redis (all `0`).
fn call_slot(shared: &Shared, player: PlayerId) -> u16 {
    if shared.cluster {
        cluster::player_slot(player)
    } else {
        0
    }
}

/// `results` in the order of `order` (the batch's players as submitted): a batch sent to
/// several nodes, or grouped by slot, is answered in another order.
pub(super) fn in_order<R>(
    results: Vec<R>,
    order: &[PlayerId],
    player_of: fn(&R) -> PlayerId,
) -> Vec<R> {
    let mut positions: HashMap<PlayerId, VecDeque<usize>> = HashMap::with_capacity(order.len());
    for (at, player) in order.iter().enumerate() {
        positions.entry(*player).or_default().push_back(at);
    }
    let mut placed: Vec<Option<R>> = std::iter::repeat_with(|| None).take(order.len()).collect();
    for result in results {
        let at = positions
            .get_mut(&player_of(&result))
            .and_then(VecDeque::pop_front);
        match at.and_then(|at| placed.get_mut(at)) {
            Some(slot) => *slot = Some(result),
            None => tracing::error!("a store result for a player not in its batch"),
        }
    }
    placed.into_iter().flatten().collect()
}

/// One result per item of a batch, in order: each call's reply split into its items'
/// outcomes by `outcomes`, each paired with its item by `result`.
pub(super) fn per_item<M, O, R>(
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
pub(super) fn save_outcomes(reply: ItemReply, players: usize) -> Vec<SaveOutcome> {
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
        Err(reason) => vec![SaveOutcome::Failed(reason.to_string()); players],
    }
}

/// Each lease's outcome from the reply to one `refresh.lua` call of `leases` leases: an
/// array of 1 (extended) and 0 (lost), or why there is none.
pub(super) fn refresh_outcomes(reply: ItemReply, leases: usize) -> Vec<RefreshOutcome> {
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
        Err(reason) => failed(reason.to_string()),
    }
}

/// A string reply's bytes, without copying them.
pub(super) fn reply_bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        Value::Okay => Some(b"OK"),
        _ => None,
    }
}

/// A string reply as text.
pub(super) fn reply_text(value: &Value) -> Option<String> {
    reply_bytes(value).map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Err(CallFailed::NoReply("connection reset".into())),
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
            Err(CallFailed::NoReply("connection reset".into())),
        ] {
            let outcomes = save_outcomes(reply, 2);
            assert_eq!(outcomes.len(), 2);
            assert!(
                outcomes.iter().all(|o| matches!(o, SaveOutcome::Failed(_))),
                "{outcomes:?}"
            );
        }
    }
}
