//! The Redis side of border sharing: the zones' Pub/Sub channels (`<prefix>:border:{<zone>}`)
//! and plain blocking connections to publish and subscribe on, each owned by a thread of the
//! border link (`src/zones/border`). On one Redis, classic Pub/Sub (`PUBLISH`/`SUBSCRIBE`,
//! any Redis version); on a cluster, sharded Pub/Sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7):
//! each channel lives on the master of its slot (the `{<zone>}` hash tag), so a snapshot
//! crosses one node, not the whole cluster bus, and its connections go to that master,
//! looked up with the store's slot routing ([`Nodes`], the seeds' `CLUSTER SLOTS`) each time
//! they connect.

use std::time::Duration;

use redis::Value;

use super::Keys;
use super::client::client_for;
use super::cluster::ClusterUrl;
use super::nodes::{Connect, Nodes};

/// How long connecting, or one write, may take before the link retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Which Redis the channels are on.
#[derive(Clone, Debug)]
enum Target {
    Single(String),
    Cluster(ClusterUrl),
}

/// Where border snapshots travel: the Redis (or cluster) at a URL and its channel names.
#[derive(bevy_ecs::resource::Resource, Clone, Debug)]
pub struct BorderBus {
    target: Target,
    keys: Keys,
}

impl BorderBus {
    /// The channels under `prefix` on the single Redis at `url`.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            target: Target::Single(url.to_string()),
            keys: Keys::new(prefix),
        }
    }

    /// The channels under `prefix` on the cluster at `url`, as sharded channels.
    pub fn cluster(url: ClusterUrl, prefix: &str) -> Self {
        Self {
            target: Target::Cluster(url),
            keys: Keys::new(prefix),
        }
    }

    /// The channel `zone`'s process publishes its border strip on.
    pub fn channel(&self, zone: &str) -> String {
        self.keys.border(zone)
    }

    /// A new connection to the node serving `channel`, whose reads give up after
    /// `read_timeout` (so a subscriber can look up from waiting) and whose writes after a
    /// second.
    pub fn connect(
        &self,
        channel: &str,
        read_timeout: Duration,
    ) -> redis::RedisResult<redis::Connection> {
        let url = match &self.target {
            Target::Single(url) => url.clone(),
            Target::Cluster(cluster) => master_of(cluster, channel)?,
        };
        let connection = client_for(&url)?.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(read_timeout))?;
        connection.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        Ok(connection)
    }

    /// Publishes `payload` on `channel` (a connection from [`BorderBus::connect`] for it). On a
    /// cluster whose slot moved, Redis answers `MOVED`: the caller reconnects.
    pub fn publish(
        &self,
        connection: &mut redis::Connection,
        channel: &str,
        payload: &[u8],
    ) -> redis::RedisResult<()> {
        let command = match self.target {
            Target::Single(_) => "PUBLISH",
            Target::Cluster(_) => "SPUBLISH",
        };
        redis::cmd(command)
            .arg(channel)
            .arg(payload)
            .query::<i64>(connection)
            .map(drop)
    }

    /// Subscribes `connection` (from [`BorderBus::connect`] for `channel`) to `channel`;
    /// read what arrives with [`next_message`].
    pub fn subscribe(
        &self,
        connection: &mut redis::Connection,
        channel: &str,
    ) -> redis::RedisResult<()> {
        let command = match self.target {
            Target::Single(_) => "SUBSCRIBE",
            Target::Cluster(_) => "SSUBSCRIBE",
        };
        connection.send_packed_command(&redis::cmd(command).arg(channel).get_packed_command())
    }
}

/// A [`Nodes`] whose "connection" to a node is its `redis://` URL: the slot routing of the
/// store, used only to find which master serves a channel; the link connects itself.
struct NodeUrls;

impl Connect for NodeUrls {
    type Conn = String;

    fn connect(&self, url: &str, _client: redis::Client) -> String {
        url.to_string()
    }
}

/// The `redis://` URL of the master serving `channel`'s slot, from the seeds' slot table.
fn master_of(cluster: &ClusterUrl, channel: &str) -> redis::RedisResult<String> {
    let mut nodes = Nodes::unread_cluster(cluster.clone(), NodeUrls);
    nodes.refresh_from_seeds(CONNECT_TIMEOUT).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::Io,
            "the cluster's slot table could not be read",
            e.to_string(),
        ))
    })?;
    if nodes.count() == 0 {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the cluster's slot table names no master",
        )));
    }
    Ok(nodes.for_key(channel).clone())
}

/// The payload of the next message on a subscribed connection (a `message` or, sharded,
/// an `smessage`); `Ok(None)` for anything else (a subscription's confirmation).
pub fn next_message(connection: &mut redis::Connection) -> redis::RedisResult<Option<Vec<u8>>> {
    let reply = connection.recv_response()?;
    let parts = match reply {
        Value::Array(parts) => parts,
        Value::Push { kind, data } => {
            let kind = Value::BulkString(kind.to_string().into_bytes());
            std::iter::once(kind).chain(data).collect()
        }
        _ => return Ok(None),
    };
    let mut parts = parts.into_iter();
    let kind = match parts.next() {
        Some(Value::BulkString(kind)) => kind,
        Some(Value::SimpleString(kind)) => kind.into_bytes(),
        _ => return Ok(None),
    };
    if kind != b"message" && kind != b"smessage" {
        return Ok(None);
    }
    match (parts.next(), parts.next()) {
        (Some(_channel), Some(Value::BulkString(payload))) => Ok(Some(payload)),
        _ => Ok(None),
    }
}
