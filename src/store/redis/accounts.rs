//! Accounts in Redis, beside the player store: the same key layout ([`Keys`]), the same URLs
//! (one Redis or a cluster) and the same connection settings (`TCP_NODELAY`, keepalive) as
//! the store's lanes. Each auth worker owns one [`RedisAccounts`]: one persistent connection
//! per node it needs (one on a single Redis), reopened only after it fails.

use std::time::Duration;

use hearth_components::PlayerId;
use redis::Script;

use super::Keys;
use super::client::client_for;
use super::cluster::{self, ClusterUrl};
use super::scripts::RESUME_LUA;
use crate::store::accounts::{
    Account, AccountError, AccountStore, Resumed, TOKENS_PER_PLAYER, TokenHash,
};

/// Accounts in Redis: `<prefix>:account:{<username>}` holds the account JSON,
/// `<prefix>:next_player_id` is the id counter (INCR), `<prefix>:resume:{<id>}` the digests
/// of a player's resume tokens (`resume.lua`). On a cluster each command goes to the master
/// serving its key's slot (`CLUSTER SLOTS`, read on first use and again after `MOVED`).
pub struct RedisAccounts {
    /// One Redis, or the masters of a cluster found so far: each with the worker's
    /// connection to it, opened on first use.
    nodes: Vec<AccountNode>,
    /// On a cluster: its seeds, and the node (index into `nodes`) serving each slot once
    /// read.
    cluster: Option<(ClusterUrl, Option<Vec<usize>>)>,
    prefix: String,
    timeout: Duration,
    resume_script: Script,
}

/// One node and the worker's connection to it.
struct AccountNode {
    address: String,
    client: redis::Client,
    connection: Option<redis::Connection>,
}

impl RedisAccounts {
    /// Accounts on the Redis at `url` (`redis://...` or `redis+cluster://...`); connections
    /// open on first use and persist.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, AccountError> {
        let unavailable = |e: String| AccountError::Unavailable(e);
        let (nodes, cluster) = if url.starts_with(cluster::SCHEME) {
            let url = ClusterUrl::parse(url).map_err(unavailable)?;
            (Vec::new(), Some((url, None)))
        } else {
            let client = client_for(url).map_err(|e| unavailable(e.to_string()))?;
            let node = AccountNode {
                address: String::new(),
                client,
                connection: None,
            };
            (vec![node], None)
        };
        Ok(Self {
            nodes,
            cluster,
            prefix: prefix.to_string(),
            timeout,
            resume_script: Script::new(RESUME_LUA),
        })
    }

    /// The node serving `key`: the only one on a single Redis; on a cluster, by the slot
    /// table (read first if it is not yet).
    fn node_for(&mut self, key: &str) -> Result<usize, AccountError> {
        if let Some((_, None)) = &self.cluster {
            self.read_slots()?;
        }
        Ok(match &self.cluster {
            Some((_, Some(slots))) => slots[usize::from(cluster::slot_of(key.as_bytes()))],
            _ => 0,
        })
    }

    /// Reads which master serves each slot from the first seed that answers.
    fn read_slots(&mut self) -> Result<(), AccountError> {
        let Some((url, _)) = &self.cluster else {
            return Ok(());
        };
        let url = url.clone();
        let mut why = String::from("no seed");
        for seed in &url.seeds {
            let asked = client_for(&url.node_url(seed)).and_then(|client| {
                let mut conn = client.get_connection_with_timeout(self.timeout)?;
                conn.set_read_timeout(Some(self.timeout))?;
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<redis::Value>(&mut conn)
            });
            let ranges = match asked
                .map_err(|e| e.to_string())
                .and_then(cluster::parse_slots)
            {
                Ok(ranges) => ranges,
                Err(e) => {
                    why = format!("{seed}: {e}");
                    continue;
                }
            };
            let mut slots = vec![0; cluster::SLOTS];
            for (start, end, address) in ranges {
                let node = self.node_at(&address)?;
                slots[usize::from(start)..=usize::from(end)].fill(node);
            }
            self.cluster = Some((url, Some(slots)));
            return Ok(());
        }
        Err(AccountError::Unavailable(format!(
            "reading the cluster's slots: {why}"
        )))
    }

    /// The node at `address` (`host:port`), added if it is new.
    fn node_at(&mut self, address: &str) -> Result<usize, AccountError> {
        if let Some(node) = self.nodes.iter().position(|n| n.address == address) {
            return Ok(node);
        }
        let Some((url, _)) = &self.cluster else {
            return Err(AccountError::Unavailable(
                "a cluster redirection from a single Redis".into(),
            ));
        };
        let client = client_for(&url.node_url(address))
            .map_err(|e| AccountError::Unavailable(e.to_string()))?;
        self.nodes.push(AccountNode {
            address: address.to_string(),
            client,
            connection: None,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Runs `op` on the worker's connection to the node serving `key`, opening one if there
    /// is none. A connection that was already open and fails with a connection error (Redis
    /// restarted, or closed it while idle under its `timeout` setting) is replaced and `op`
    /// runs once more, so the first login after that does not fail for it. On a cluster, a
    /// `MOVED` reply (the command did not run) has the slot table read again and `op` sent
    /// to the node named; an `ASK` sends it there after `ASKING`. Every `op` here is safe to
    /// repeat: `GET` reads, `INCR` at worst skips an id, a repeated `SET NX` of our own
    /// account is recognised as ours (see `create`), `PEXPIRE` is idempotent, and
    /// `resume.lua` is run again only when the connection was found broken before its reply
    /// (a resume whose first run took the token then answers "unknown": the client falls
    /// back to its password, nothing else is lost).
    fn with_connection<T>(
        &mut self,
        key: &str,
        op: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, AccountError> {
        let mut node = self.node_for(key)?;
        let mut reused = self.nodes[node].connection.is_some();
        let mut redirects = 0;
        let mut asking = false;
        loop {
            let timeout = self.timeout;
            let at = &mut self.nodes[node];
            if at.connection.is_none() {
                let conn = at
                    .client
                    .get_connection_with_timeout(timeout)
                    .map_err(|e| AccountError::Unavailable(e.to_string()))?;
                conn.set_read_timeout(Some(timeout)).ok();
                conn.set_write_timeout(Some(timeout)).ok();
                at.connection = Some(conn);
            }
            let conn = at.connection.as_mut().expect("connected above");
            let result = match std::mem::take(&mut asking) {
                true => redis::cmd("ASKING").exec(conn).and_then(|()| op(conn)),
                false => op(conn),
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if self.cluster.is_some() && redirects < 2 => {
                    if let Some((address, _)) = e.redirect_node() {
                        redirects += 1;
                        asking = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Ask);
                        let address = address.to_string();
                        if !asking {
                            self.read_slots()?;
                        }
                        node = self.node_at(&address)?;
                        reused = false;
                        continue;
                    }
                    if let Some(value) = self.broken(node, &e, &mut reused) {
                        return value;
                    }
                }
                Err(e) => {
                    if let Some(value) = self.broken(node, &e, &mut reused) {
                        return value;
                    }
                }
            }
        }
    }

    /// After `op` failed with `e` on `node`: drops the connection (reconnected on next use)
    /// and, on a cluster, the slot table (read again on next use), and answers the failure unless the connection was reused and found broken (then `op`
    /// runs once more, `None`).
    fn broken<T>(
        &mut self,
        node: usize,
        e: &redis::RedisError,
        reused: &mut bool,
    ) -> Option<Result<T, AccountError>> {
        self.nodes[node].connection = None;
        if let Some((_, slots)) = &mut self.cluster {
            // A node that failed may have failed over, a pipeline may have met a moved slot:
            // read the slot table again before the next command.
            *slots = None;
        }
        let broken = e.is_io_error() || e.is_unrecoverable_error();
        if std::mem::take(reused) && broken {
            tracing::debug!(error = %e, "account storage connection had closed; retrying on a new one");
            return None;
        }
        Some(Err(AccountError::Unavailable(e.to_string())))
    }

    fn account_key(&self, username: &str) -> String {
        Keys::new(&self.prefix).account(username)
    }
}

impl AccountStore for RedisAccounts {
    fn create(&mut self, username: &str, password_hash: &str) -> Result<u64, AccountError> {
        let key = self.account_key(username);
        let counter = format!("{}:next_player_id", self.prefix);
        let player_id: u64 =
            self.with_connection(&counter, |c| redis::cmd("INCR").arg(&counter).query(c))?;
        let account = serde_json::to_string(&Account {
            player_id,
            password_hash: password_hash.to_string(),
        })
        .expect("an account always serialises");
        // SET NX, then read back: a SET repeated after a lost reply finds our own account
        // (the fresh player id makes it unique) and is a success, not "taken".
        let stored: Option<String> = self.with_connection(&key, |c| {
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
        let key = self.account_key(username);
        let raw: Option<String> =
            self.with_connection(&key, |c| redis::cmd("GET").arg(&key).query(c))?;
        match raw {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                AccountError::Unavailable(format!("account {username:?} is malformed: {e}"))
            }),
        }
    }

    fn resume(
        &mut self,
        player_id: u64,
        presented: Option<&TokenHash>,
        fresh: &TokenHash,
        ttl: Duration,
    ) -> Result<Resumed, AccountError> {
        let keys = Keys::new(&self.prefix);
        let (set, lease) = (
            keys.resume(PlayerId(player_id)),
            keys.session(PlayerId(player_id)),
        );
        let presented = presented.map_or("", TokenHash::as_str);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let script = self.resume_script.clone();
        let answer: i64 = self.with_connection(&set, |c| {
            script
                .key(&set)
                .key(&lease)
                .arg(presented)
                .arg(fresh.as_str())
                .arg(ttl_ms)
                .arg(TOKENS_PER_PLAYER)
                .invoke(c)
        })?;
        match answer {
            1 => Ok(Resumed::Stored),
            0 => Ok(Resumed::Unknown),
            2 => Ok(Resumed::Online),
            other => Err(AccountError::Unavailable(format!(
                "resume.lua answered {other}"
            ))),
        }
    }

    fn extend_resume(&mut self, players: &[u64], ttl: Duration) -> Result<(), AccountError> {
        let keys = Keys::new(&self.prefix);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        for chunk in players.chunks(1000) {
            // One pipeline per node (on a cluster the players' slots spread over the masters).
            let mut per_node: Vec<(usize, String, redis::Pipeline)> = Vec::new();
            for &id in chunk {
                let key = keys.resume(PlayerId(id));
                let node = self.node_for(&key)?;
                let at = match per_node.iter().position(|(n, ..)| *n == node) {
                    Some(at) => at,
                    None => {
                        per_node.push((node, key.clone(), redis::pipe()));
                        per_node.len() - 1
                    }
                };
                per_node[at].2.cmd("PEXPIRE").arg(key).arg(ttl_ms).ignore();
            }
            for (_, first_key, pipe) in per_node {
                self.with_connection(&first_key, |c| pipe.query::<()>(c))?;
            }
        }
        Ok(())
    }
}
