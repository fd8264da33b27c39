//! Accounts in Redis, beside the player store: the same key layout ([`Keys`]), the same URLs
//! (one Redis or a cluster), the same connection settings (`TCP_NODELAY`, keepalive) and the
//! same slot routing as the store's lanes. Each auth worker owns one [`RedisAccounts`]: its
//! own blocking connection per node it needs (`blocking.rs`).

use std::time::Duration;

use hearth_components::PlayerId;
use hearth_systems::net::ResumeGiveBack;
use redis::{Script, Value};

use super::Keys;
use super::blocking::{BlockingError, BlockingNodes};
use super::resume_undo::ResumeUndos;
use super::scripts::RESUME_LUA;
use crate::store::accounts::{
    Account, AccountError, AccountStore, RESUME_LEASE, Resumed, TOKENS_PER_PLAYER, TokenHash,
};

/// Accounts in Redis: `<prefix>:account:{<username>}` holds the account JSON,
/// `<prefix>:next_player_id` is the id counter (INCR), `<prefix>:resume:{<id>}` the digests
/// of a player's resume tokens (`resume.lua`). On a cluster each command goes to the master
/// serving its key's slot (`CLUSTER SLOTS`, read on first use and again after `MOVED`).
///
/// Every command here is safe to repeat (a call is sent again after a redirection or on a
/// new connection when the old one was found broken): `GET` reads, `INCR` at worst skips an
/// id, a repeated `SET NX` of our own account is recognised as ours (see `create`), `SET XX`
/// of the same account, `DEL` and `PEXPIRE` are idempotent, and `resume.lua` is run again
/// only when the connection was found broken before its reply (a resume whose first run
/// took the token then answers "unknown": the client falls back to its password, nothing
/// else is lost).
pub struct RedisAccounts {
    nodes: BlockingNodes,
    keys: Keys,
    prefix: String,
    resume_script: Script,
    /// The lease owner of the server these accounts serve: a resume takes the lease for it.
    owner: String,
    /// Where resumes answered `unavailable` are undone (`None`: `hearth admin`, which never
    /// resumes).
    undos: Option<ResumeUndos>,
}

impl From<BlockingError> for AccountError {
    fn from(e: BlockingError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl RedisAccounts {
    /// Accounts on the Redis at `url` (`redis://...` or `redis+cluster://...`) for the
    /// server whose lease owner is `owner` (`""` where nobody resumes: `hearth admin`);
    /// connections open on first use and persist.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        owner: &str,
    ) -> Result<Self, AccountError> {
        Ok(Self {
            nodes: BlockingNodes::new(url, timeout)?,
            keys: Keys::new(prefix),
            prefix: prefix.to_string(),
            resume_script: Script::new(RESUME_LUA),
            owner: owner.to_string(),
            undos: None,
        })
    }

    /// These accounts, with resumes that fail uncertainly undone by `undos` (one per server,
    /// shared by its resume workers).
    pub fn with_undos(mut self, undos: ResumeUndos) -> Self {
        self.undos = Some(undos);
        self
    }

    /// The stored account at `key`, if any.
    fn read(&mut self, username: &str, key: &str) -> Result<Option<Account>, AccountError> {
        let raw: Option<String> = self
            .nodes
            .on_key(key, |c| redis::cmd("GET").arg(key).query(c))?;
        match raw {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                AccountError::Unavailable(format!("account {username:?} is malformed: {e}"))
            }),
        }
    }
}

impl AccountStore for RedisAccounts {
    fn create(&mut self, username: &str, password_hash: &str) -> Result<u64, AccountError> {
        let key = self.keys.account(username);
        let counter = format!("{}:next_player_id", self.prefix);
        let player_id: u64 = self
            .nodes
            .on_key(&counter, |c| redis::cmd("INCR").arg(&counter).query(c))?;
        let account = serde_json::to_string(&Account {
            player_id,
            password_hash: password_hash.to_string(),
        })
        .expect("an account always serialises");
        // SET NX, then read back: a SET repeated after a lost reply finds our own account
        // (the fresh player id makes it unique) and is a success, not "taken".
        let stored: Option<String> = self.nodes.on_key(&key, |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&account)
                .arg("NX")
                .query::<Option<String>>(c)?;
            redis::cmd("GET").arg(&key).query(c)
        })?;
        if stored.as_deref() == Some(account.as_str()) {
            Ok(player_id)
        } else {
            Err(AccountError::Taken)
        }
    }

    fn find(&mut self, username: &str) -> Result<Option<Account>, AccountError> {
        let key = self.keys.account(username);
        self.read(username, &key)
    }

    fn resume(
        &mut self,
        player_id: u64,
        presented: Option<&TokenHash>,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> Result<Resumed, AccountError> {
        let player = PlayerId(player_id);
        let (set, lease, cancelled, handoff) = (
            self.keys.resume(player),
            self.keys.session(player),
            self.keys.resume_cancelled(player),
            self.keys.handoff(player),
        );
        if let (Some(undos), Some(_)) = (&self.undos, presented) {
            // An earlier resume of this player that may still run is settled first.
            undos.settle(player, &mut self.nodes)?;
        }
        let uncertain = |e: AccountError| {
            if let (Some(undos), Some(presented)) = (&self.undos, presented) {
                undos.uncertain(player, presented, fresh, ttl);
            }
            e
        };
        let presented_digest = presented.map_or("", TokenHash::as_str);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let lease_ms = RESUME_LEASE.as_millis() as u64;
        let script = self.resume_script.clone();
        let owner = self.owner.clone();
        let run = |nodes: &mut BlockingNodes, dead: &str| -> Result<Value, AccountError> {
            Ok(nodes.on_key(&set, |c| {
                script
                    .key(&set)
                    .key(&lease)
                    .key(&cancelled)
                    .key(&handoff)
                    .arg(presented_digest)
                    .arg(fresh.as_str())
                    .arg(ttl_ms)
                    .arg(TOKENS_PER_PLAYER)
                    .arg(dead)
                    .arg(&owner)
                    .arg(lease_ms)
                    .invoke(c)
            })?)
        };
        let mut answer = run(&mut self.nodes, "").map_err(uncertain)?;
        if let Some(holder) = online_holder(&answer) {
            // A holder that is not alive (crashed) does not keep the player online: the
            // token is taken, and the join that follows takes the lease over.
            let alive_key = self.keys.alive(&holder);
            let alive: i64 = self.nodes.on_key(&alive_key, |c| {
                redis::cmd("EXISTS").arg(&alive_key).query(c)
            })?;
            if alive == 0 {
                answer = run(&mut self.nodes, &holder).map_err(uncertain)?;
            }
        }
        match answer {
            Value::Int(1) => Ok(Resumed::Stored),
            Value::Int(0) => Ok(Resumed::Unknown),
            answer if online_holder(&answer).is_some() => Ok(Resumed::Online),
            other => Err(AccountError::Unavailable(format!(
                "resume.lua answered {other:?}"
            ))),
        }
    }

    /// Queued on the undo thread (`resume_undo.lua`, retried while Redis does not answer);
    /// without one (accounts not serving a front door) nothing is given back.
    fn give_back(
        &self,
        player_id: u64,
        presented: &TokenHash,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> ResumeGiveBack {
        let undos = self.undos.clone();
        let (presented, fresh) = (presented.clone(), fresh.clone());
        ResumeGiveBack::new(move || {
            if let Some(undos) = undos {
                undos.uncertain(PlayerId(player_id), &presented, &fresh, ttl);
            }
        })
    }

    /// Each master's share is renewed on its own: a master that fails does not keep the
    /// others' tokens from being renewed (the error names how many players failed), and one
    /// that does not answer is tried after the others and costs one store timeout at most
    /// (then a short probe per round while it stays shed).
    fn extend_resume(&mut self, players: &[u64], ttl: Duration) -> Result<(), AccountError> {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let (mut failed, mut last_error) = (0usize, None);
        for chunk in players.chunks(1000) {
            // One pipeline per node (on a cluster the players' slots spread over the masters).
            let mut per_node: Vec<(usize, redis::Pipeline, usize)> = Vec::new();
            for &id in chunk {
                let key = self.keys.resume(PlayerId(id));
                let node = match self.nodes.node_of(&key) {
                    Ok(node) => node,
                    Err(e) => {
                        failed += 1;
                        last_error = Some(e);
                        continue;
                    }
                };
                let at = match per_node.iter().position(|(n, ..)| *n == node) {
                    Some(at) => at,
                    None => {
                        per_node.push((node, redis::pipe(), 0));
                        per_node.len() - 1
                    }
                };
                per_node[at].1.cmd("PEXPIRE").arg(key).arg(ttl_ms).ignore();
                per_node[at].2 += 1;
            }
            // Nodes that answered last time first: a dead master's wait comes last.
            per_node.sort_by_key(|(node, ..)| self.nodes.is_shed(*node));
            for (node, pipe, count) in per_node {
                // A PING first: a pipeline's replies are each read with the store timeout,
                // so a node that does not answer would cost that once per key. Not
                // answering the PING sheds the node, and later rounds only probe it briefly.
                let renewed = self
                    .nodes
                    .on_node(node, |c| redis::cmd("PING").exec(c))
                    .and_then(|()| self.nodes.on_node(node, |c| pipe.query::<()>(c)));
                if let Err(e) = renewed {
                    failed += count;
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            None => Ok(()),
            Some(e) => Err(AccountError::Unavailable(format!(
                "renewing the resume tokens of {failed} of {} players: {e}",
                players.len()
            ))),
        }
    }

    fn set_password(
        &mut self,
        username: &str,
        password_hash: &str,
    ) -> Result<Option<u64>, AccountError> {
        let key = self.keys.account(username);
        let Some(mut account) = self.read(username, &key)? else {
            return Ok(None);
        };
        account.password_hash = password_hash.to_string();
        let json = serde_json::to_string(&account).expect("an account always serialises");
        let written: Option<String> = self.nodes.on_key(&key, |c| {
            redis::cmd("SET").arg(&key).arg(&json).arg("XX").query(c)
        })?;
        Ok(written.map(|_| account.player_id))
    }

    fn begin_request(&mut self) {
        self.nodes.begin_request();
    }

    fn revoke_resume(&mut self, player_id: u64) -> Result<bool, AccountError> {
        let key = self.keys.resume(PlayerId(player_id));
        let deleted: i64 = self
            .nodes
            .on_key(&key, |c| redis::cmd("DEL").arg(&key).query(c))?;
        Ok(deleted == 1)
    }
}

/// The lease owner in `resume.lua`'s "online" answer (`{2, owner}`), if it is one.
fn online_holder(answer: &Value) -> Option<String> {
    match answer {
        Value::Array(parts) => match parts.as_slice() {
            [Value::Int(2), Value::BulkString(owner)] => {
                Some(String::from_utf8_lossy(owner).into_owned())
            }
            _ => None,
        },
        _ => None,
    }
}
