//! Redis Cluster addressing: the seed nodes of a `redis+cluster://` URL, the key slot of a
//! key (CRC16 of its hash tag, as Redis computes it), and which master serves each slot
//! (`CLUSTER SLOTS`).
//!
//! redis-rs names transport variants `<scheme>+<variant>` (`redis+unix://`); the cluster
//! store follows that: `redis+cluster://[user[:password]@]host:port[,host:port...]`. Each
//! seed is reached as `redis://[user[:password]@]host:port/` with the same credentials; any
//! seed that answers tells the store every master.

use hearth_components::PlayerId;
use redis::Value;

/// The URL scheme of a cluster store.
pub const SCHEME: &str = "redis+cluster://";

/// Slots of a Redis Cluster.
pub const SLOTS: usize = 16384;

/// Why a cluster URL is not one. The text never repeats the URL (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterUrlError {
    /// Another scheme.
    #[error("a cluster URL starts with {SCHEME}")]
    Scheme,
    /// A database number, path or query after the nodes.
    #[error("a cluster URL names nodes only (host:port,...): a cluster has one database")]
    Database,
    /// A node that is not `host:port`.
    #[error("expected host:port for each cluster node, got {0:?}")]
    Node(String),
}

/// A `CLUSTER SLOTS` reply that is not one (the part that is not, as debug text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected CLUSTER SLOTS reply: {0}")]
pub struct SlotsReplyError(String);

/// A parsed cluster URL: the seed nodes and the credentials every node is reached with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    userinfo: Option<String>,
    /// `host:port` of each seed.
    pub seeds: Vec<String>,
}

impl ClusterUrl {
    /// Parses `redis+cluster://[user[:password]@]host:port[,host:port...][/]`, or says why
    /// not.
    pub fn parse(url: &str) -> Result<Self, ClusterUrlError> {
        let rest = url.strip_prefix(SCHEME).ok_or(ClusterUrlError::Scheme)?;
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo.to_string()), hosts),
            None => (None, rest),
        };
        let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
        if hosts.contains('/') || hosts.contains('?') {
            return Err(ClusterUrlError::Database);
        }
        let mut seeds = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            let port = host.rsplit_once(':').map(|(_, port)| port);
            match port.map(str::parse::<u16>) {
                Some(Ok(_)) => seeds.push(host.to_string()),
                _ => return Err(ClusterUrlError::Node(host.to_string())),
            }
        }
        Ok(Self { userinfo, seeds })
    }

    /// The `redis://` URL of the node at `address` (`host:port`), with the credentials.
    pub fn node_url(&self, address: &str) -> String {
        match &self.userinfo {
            Some(userinfo) => format!("redis://{userinfo}@{address}/"),
            None => format!("redis://{address}/"),
        }
    }
}

/// The slot Redis stores `key` in: CRC16 (XMODEM) of its hash tag — the text between the
/// first `{` and the next `}`, when not empty — or of the whole key, modulo 16384.
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// The slot of a player's keys: record and lease share the hash tag `{<id>}`.
pub fn player_slot(player: PlayerId) -> u16 {
    // The id's decimal digits, written on the stack (this runs for every player of a batch).
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut id = player.0;
    loop {
        at -= 1;
        digits[at] = b'0' + (id % 10) as u8;
        id /= 10;
        if id == 0 {
            break;
        }
    }
    crc16(&digits[at..]) % SLOTS as u16
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0), the checksum Redis Cluster hashes keys with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One range of slots and the address (`host:port`) of the master serving it.
pub type SlotRange = (u16, u16, String);

/// The ranges of a `CLUSTER SLOTS` reply, or why it is not one.
pub fn parse_slots(reply: Value) -> Result<Vec<SlotRange>, SlotsReplyError> {
    let bad = |what: &dyn std::fmt::Debug| SlotsReplyError(format!("{what:?}"));
    let Value::Array(ranges) = reply else {
        return Err(bad(&reply));
    };
    let mut parsed = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(parts) = &range else {
            return Err(bad(&range));
        };
        let slot = |value: Option<&Value>| match value {
            Some(Value::Int(n)) => u16::try_from(*n).ok().filter(|n| usize::from(*n) < SLOTS),
            _ => None,
        };
        let master = match parts.get(2) {
            Some(Value::Array(master)) => match (master.first(), master.get(1)) {
                (Some(host), Some(Value::Int(port))) => {
                    let host = match host {
                        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        Value::SimpleString(text) => text.clone(),
                        _ => return Err(bad(&range)),
                    };
                    Some(format!("{host}:{port}"))
                }
                _ => None,
            },
            _ => None,
        };
        match (slot(parts.first()), slot(parts.get(1)), master) {
            (Some(start), Some(end), Some(master)) if start <= end => {
                parsed.push((start, end, master));
            }
            _ => return Err(bad(&range)),
        }
    }
    Ok(parsed)
}

/// Where a `MOVED` or `ASK` error says a key now is: the node's `host:port`.
pub fn redirect_target(error: &redis::ServerError) -> Option<(Redirect, String)> {
    let kind = match error.code() {
        "MOVED" => Redirect::Moved,
        "ASK" => Redirect::Ask,
        _ => return None,
    };
    let address = error.details()?.split_whitespace().nth(1)?;
    Some((kind, address.to_string()))
}

/// A cluster redirection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// The slot moved for good: the slot table is stale.
    Moved,
    /// The slot is being moved and this key already left: ask the target once (`ASKING`).
    Ask,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_key_hashing() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.0.
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"hearth:player:{1}"), 9842);
        assert_eq!(slot_of(b"hearth:session:{1}"), 9842);
        assert_eq!(player_slot(PlayerId(1)), 9842);
        for id in [0, 7, 10, 4_294_967_296, u64::MAX] {
            assert_eq!(
                player_slot(PlayerId(id)),
                slot_of(id.to_string().as_bytes())
            );
        }
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(slot_of(b"a{}b"), crc16(b"a{}b") % 16384);
    }

    #[test]
    fn cluster_urls_give_one_seed_per_node_with_the_credentials() {
        let url = ClusterUrl::parse("redis+cluster://10.0.0.1:7000, 10.0.0.2:7001/").unwrap();
        assert_eq!(url.seeds, ["10.0.0.1:7000", "10.0.0.2:7001"]);
        assert_eq!(url.node_url("10.0.0.3:7002"), "redis://10.0.0.3:7002/");
        let url = ClusterUrl::parse("redis+cluster://app:pw@db:7000").unwrap();
        assert_eq!(url.node_url("db:7001"), "redis://app:pw@db:7001/");
        for bad in [
            "redis+cluster://app:pw@db:7000/1",
            "redis+cluster://app:pw@db",
            "redis+cluster://app:pw@db:7000,",
            "redis://app:pw@db:7000",
        ] {
            let error = ClusterUrl::parse(bad).unwrap_err().to_string();
            assert!(!error.contains("pw"), "{error}");
        }
    }

    #[test]
    fn a_slots_reply_gives_ranges_and_masters() {
        let node = |port| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node(7001)]),
        ]);
        assert_eq!(
            parse_slots(reply),
            Ok(vec![
                (0, 5460, "127.0.0.1:7000".to_string()),
                (5461, 16383, "127.0.0.1:7001".to_string())
            ])
        );
        assert!(parse_slots(Value::Array(vec![Value::Array(vec![Value::Int(0)])])).is_err());
        assert!(parse_slots(Value::Int(1)).is_err());
    }
}
