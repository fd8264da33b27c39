//! The maintenance port on Redis (one server or a cluster): `hearth admin`'s reads and
//! repairs, through the store's key layout, scripts and slot routing (`blocking.rs`).

use std::time::Duration;

use hearth_components::{PlayerId, PlayerRecord};
use redis::Script;

use super::Keys;
use super::blocking::{BlockingError, BlockingNodes};
use super::scripts::{IMPORT_LUA, RELEASE_LUA};
use crate::store::maintenance::{Imported, Lease, Maintenance, MaintenanceError};

/// [`Maintenance`] on Redis. Every command is safe to repeat (reads, and scripts that
/// compare before they write).
pub struct RedisMaintenance {
    nodes: BlockingNodes,
    keys: Keys,
}

impl From<BlockingError> for MaintenanceError {
    fn from(e: BlockingError) -> Self {
        Self(e.to_string())
    }
}

impl RedisMaintenance {
    /// Maintenance of the keys under `prefix` on the Redis at `url` (`redis://...` or
    /// `redis+cluster://...`), each call bounded by `timeout`. `Err` names what is wrong
    /// with the URL; connections open on first use.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, BlockingError> {
        Ok(Self {
            nodes: BlockingNodes::new(url, timeout)?,
            keys: Keys::new(prefix),
        })
    }

    fn get(&mut self, key: &str) -> Result<Option<String>, MaintenanceError> {
        Ok(self
            .nodes
            .on_key(key, |c| redis::cmd("GET").arg(key).query(c))?)
    }

    /// Every key matching `pattern` on every node, by SCAN (never KEYS, which blocks Redis).
    fn scan(&mut self, pattern: &str) -> Result<Vec<String>, MaintenanceError> {
        let mut keys = Vec::new();
        for node in 0..self.nodes.count()? {
            let page = self.nodes.on_node(node, |conn| {
                let mut keys = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query(conn)?;
                    keys.extend(page);
                    if next == 0 {
                        return Ok(keys);
                    }
                    cursor = next;
                }
            })?;
            keys.extend(page);
        }
        // A node that stopped being a master keeps its connection, and a replica holds its
        // master's keys: each key once.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// The id in braces of a key (`hearth:session:{42}` -> 42).
fn id_of(key: &str) -> Option<PlayerId> {
    key.rsplit_once('{')?
        .1
        .strip_suffix('}')?
        .parse()
        .ok()
        .map(PlayerId)
}

impl Maintenance for RedisMaintenance {
    fn record(&mut self, player: PlayerId) -> Result<Option<String>, MaintenanceError> {
        let key = self.keys.player(player);
        self.get(&key)
    }

    fn lease(&mut self, player: PlayerId) -> Result<Option<Lease>, MaintenanceError> {
        let key = self.keys.session(player);
        let (owner, ttl_ms): (Option<String>, i64) = self.nodes.on_key(&key, |c| {
            redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query(c)
        })?;
        Ok(owner.map(|owner| Lease {
            owner,
            ttl: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
        }))
    }

    fn leases(&mut self) -> Result<Vec<(PlayerId, String)>, MaintenanceError> {
        let pattern = self.keys.session_pattern();
        let mut leases = Vec::new();
        for key in self.scan(&pattern)? {
            if let (Some(owner), Some(id)) = (self.get(&key)?, id_of(&key)) {
                leases.push((id, owner));
            }
        }
        Ok(leases)
    }

    fn registration(&mut self, instance: &str) -> Result<Option<String>, MaintenanceError> {
        let key = self.keys.instance(instance);
        self.get(&key)
    }

    fn alive(&mut self, owner: &str) -> Result<bool, MaintenanceError> {
        let key = self.keys.alive(owner);
        let exists: i64 = self
            .nodes
            .on_key(&key, |c| redis::cmd("EXISTS").arg(&key).query(c))?;
        Ok(exists == 1)
    }

    fn release_lease(&mut self, player: PlayerId, owner: &str) -> Result<bool, MaintenanceError> {
        let key = self.keys.session(player);
        let script = Script::new(RELEASE_LUA);
        let deleted: i64 = self
            .nodes
            .on_key(&key, |c| script.key(&key).arg(owner).invoke(c))?;
        Ok(deleted == 1)
    }

    fn players(&mut self) -> Result<Vec<PlayerId>, MaintenanceError> {
        let pattern = self.keys.player_pattern();
        let mut players: Vec<PlayerId> = self
            .scan(&pattern)?
            .iter()
            .filter_map(|k| id_of(k))
            .collect();
        players.sort_unstable_by_key(|p| p.0);
        Ok(players)
    }

    fn import(
        &mut self,
        record: &PlayerRecord,
        overwrite_newer: bool,
    ) -> Result<Imported, MaintenanceError> {
        let key = self.keys.player(PlayerId(record.id));
        let script = Script::new(IMPORT_LUA);
        let (encoded, seq) = (record.encode(), record.seq.to_string());
        let overwrite = if overwrite_newer { "1" } else { "0" };
        let (done, stored): (i64, String) = self.nodes.on_key(&key, |c| {
            script
                .key(&key)
                .arg(&encoded)
                .arg(&seq)
                .arg(overwrite)
                .invoke(c)
        })?;
        Ok(match done {
            1 => Imported::Written,
            _ => Imported::Kept { stored_seq: stored },
        })
    }
}
