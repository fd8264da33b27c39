//! Start-up: the checks a lane's connection passes before the store opens, and why Redis
//! cannot be reached when it fails.

use std::sync::Arc;
use std::time::Duration;

use hearth_systems::storage::StoreMetrics;
use redis::Value;

use super::Shared;
use super::client::client_for;
use super::cluster::{self, ClusterUrl, ClusterUrlError};
use super::conn::{self, CallError, LaneConn};
use super::nodes::{LaneConnect, Nodes};

/// Why the store's connections failed their start-up check.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartupError {
    /// The `redis+cluster://` URL is not one.
    #[error("invalid Redis Cluster URL: {0}")]
    ClusterUrl(#[from] ClusterUrlError),
    /// The `redis://` URL is not one.
    #[error("invalid Redis URL: {0}")]
    Url(redis::RedisError),
    /// One node of a cluster failed.
    #[error("node {node}: {error}")]
    Node {
        /// The node's URL, without its password.
        node: String,
        /// How it failed.
        error: Box<StartupError>,
    },
    /// The check's request failed (no reply, a broken connection).
    #[error("{0}")]
    Call(CallError),
    /// Redis refused a script.
    #[error("Redis refused to load the store's scripts: {0}")]
    Scripts(redis::ServerError),
}

/// What a store URL names: one Redis, or the seeds of a Redis Cluster.
pub(super) enum Topology {
    Single(redis::Client),
    Cluster(ClusterUrl),
}

impl Topology {
    /// The topology of `url` (`redis://...` or `redis+cluster://...`), or why it is invalid.
    pub(super) fn of(url: &str) -> Result<Self, StartupError> {
        if url.starts_with(cluster::SCHEME) {
            Ok(Self::Cluster(ClusterUrl::parse(url)?))
        } else {
            client_for(url).map(Self::Single).map_err(StartupError::Url)
        }
    }
}

/// Checks at start that the lane's connections work and the scripts load. On the periodic
/// lane it also reads `INFO persistence memory` (best effort: an ACL may forbid it) and warns
/// about settings that lose data: no append-only file, or an eviction policy other than
/// `noeviction` (Redis would delete records or leases under memory pressure).
pub(super) async fn startup_check(
    shared: &Shared,
    nodes: &mut Nodes<LaneConnect>,
    periodic: bool,
) -> Result<(), StartupError> {
    let cluster = nodes.is_cluster();
    for conn in nodes.iter_mut() {
        check_node(shared, conn, periodic)
            .await
            .map_err(|error| match cluster {
                true => StartupError::Node {
                    node: conn.location().to_string(),
                    error: Box::new(error),
                },
                false => error,
            })?;
    }
    Ok(())
}

/// [`startup_check`] on one node.
async fn check_node(
    shared: &Shared,
    conn: &mut LaneConn,
    periodic: bool,
) -> Result<(), StartupError> {
    let mut pipe = redis::pipe();
    let s = &shared.scripts;
    let scripts = [&s.claim, &s.refresh, &s.release, &s.save];
    for script in scripts {
        pipe.load_script(script);
    }
    if periodic {
        pipe.cmd("INFO").arg("persistence").arg("memory");
    }
    let manager = conn.manager().map_err(StartupError::Call)?;
    StoreMetrics::add(&shared.metrics.round_trips, 1);
    let reply = conn::call(manager, Arc::new(pipe), conn.timeout()).await;
    let values = match reply.result {
        Ok(ref values) => values,
        Err(e) => return Err(StartupError::Call(e)),
    };
    if let Some(Value::ServerError(e)) = values
        .iter()
        .take(scripts.len())
        .find(|v| matches!(v, Value::ServerError(_)))
    {
        return Err(StartupError::Scripts(e.clone()));
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
pub(super) async fn diagnose(
    client: &redis::Client,
    timeout: Duration,
    reason: StartupError,
) -> String {
    match conn::probe(client, timeout).await {
        Ok(Err(e)) => e.to_string(),
        _ => reason.to_string(),
    }
}
