//! Where a lane's pipelines go: the connection to the node that serves a key. A single Redis
//! is one node serving every key; a Redis Cluster is its masters, each serving the slots
//! `CLUSTER SLOTS` says. The lane worker asks only this, so one lane implementation serves
//! both topologies.
//!
//! On a cluster every master gets one connection per lane, made when the lane first learns
//! of the master and kept (a master that stops serving slots keeps its idle connection). The
//! slot table is read at start and again before the next request once a reply showed it
//! stale (`MOVED`, or a node that stopped answering: a failover).

use std::sync::Arc;
use std::time::Duration;

use hearth_components::PlayerId;
use hearth_systems::storage::StoreMetrics;
use redis::Value;

use super::client::{client_for, redact_url};
use super::cluster::{self, ClusterUrl, SLOTS, SlotRange};
use super::conn::{self, LaneConn};

/// A lane's connections, one per node.
pub struct Nodes {
    conns: Vec<LaneConn>,
    /// `host:port` of each connection's node (cluster only).
    addresses: Vec<String>,
    cluster: Option<Cluster>,
}

/// What a lane on a cluster needs to find and reach the masters.
struct Cluster {
    url: ClusterUrl,
    lane: &'static str,
    timeout: Duration,
    metrics: Arc<StoreMetrics>,
    /// The node (index into `conns`) serving each slot.
    slots: Vec<usize>,
    /// A reply showed the slot table out of date.
    stale: bool,
}

impl Nodes {
    /// One Redis: every key on `conn`.
    pub fn single(conn: LaneConn) -> Self {
        Self {
            conns: vec![conn],
            addresses: Vec::new(),
            cluster: None,
        }
    }

    /// The masters of the cluster at `url`, found by asking its seeds for `CLUSTER SLOTS`.
    pub async fn cluster(
        url: ClusterUrl,
        lane: &'static str,
        timeout: Duration,
        metrics: Arc<StoreMetrics>,
    ) -> Result<Self, String> {
        let mut nodes = Self {
            conns: Vec::new(),
            addresses: Vec::new(),
            cluster: Some(Cluster {
                url,
                lane,
                timeout,
                metrics,
                slots: vec![0; SLOTS],
                stale: true,
            }),
        };
        nodes.refresh().await?;
        Ok(nodes)
    }

    /// How many nodes the lane sends to.
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    /// The node serving `player`'s keys (record and lease share its hash tag).
    pub fn of_player(&self, player: PlayerId) -> usize {
        self.cluster
            .as_ref()
            .map_or(0, |c| c.slots[usize::from(cluster::player_slot(player))])
    }

    /// The node serving `key`.
    pub fn of_key(&self, key: &str) -> usize {
        self.cluster.as_ref().map_or(0, |c| {
            c.slots[usize::from(cluster::slot_of(key.as_bytes()))]
        })
    }

    /// The connection to node `node` (an index from [`Nodes::of_player`] or [`Nodes::of_key`]).
    pub fn conn(&mut self, node: usize) -> &mut LaneConn {
        &mut self.conns[node]
    }

    /// The connection to the node serving `key`.
    pub fn for_key(&mut self, key: &str) -> &mut LaneConn {
        let node = self.of_key(key);
        self.conn(node)
    }

    /// Every node's connection.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut LaneConn> {
        self.conns.iter_mut()
    }

    /// Whether the store runs on a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Notes that a reply showed the slot table out of date; it is read again before the
    /// next request ([`Nodes::refresh_if_stale`]). Nothing on a single Redis.
    pub fn mark_stale(&mut self) {
        if let Some(cluster) = &mut self.cluster {
            cluster.stale = true;
        }
    }

    /// Reads the slot table again if a reply showed it out of date. A failure is logged and
    /// leaves the old table (requests then fail or are redirected, and it is tried again).
    pub async fn refresh_if_stale(&mut self) {
        if self.cluster.as_ref().is_some_and(|c| c.stale)
            && let Err(e) = self.refresh().await
        {
            tracing::warn!(error = %e, "could not read the cluster's slots; trying again before the next request");
        }
    }

    /// The node at `address` (`host:port`), with a connection made for it if it is new.
    pub fn at(&mut self, address: &str) -> Result<usize, String> {
        if let Some(node) = self.addresses.iter().position(|a| a == address) {
            return Ok(node);
        }
        let cluster = self
            .cluster
            .as_ref()
            .ok_or("a redirection on a single Redis")?;
        let url = cluster.url.node_url(address);
        let client = client_for(&url).map_err(|e| format!("node {address}: {e}"))?;
        self.conns.push(LaneConn::new(
            cluster.lane,
            &redact_url(&url),
            client,
            cluster.timeout,
            Arc::clone(&cluster.metrics),
        ));
        self.addresses.push(address.to_string());
        Ok(self.conns.len() - 1)
    }

    /// Reads which master serves each slot: from a master this lane already reaches, else
    /// from a seed over a connection made for the question.
    async fn refresh(&mut self) -> Result<(), String> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let (seeds, timeout, metrics) = (
            cluster.url.clone(),
            cluster.timeout,
            Arc::clone(&cluster.metrics),
        );
        let mut why = String::from("no node to ask");
        for conn in &mut self.conns {
            let mut pipe = redis::pipe();
            pipe.cmd("CLUSTER").arg("SLOTS");
            let reply = conn.request(pipe, "reading the cluster's slots").await;
            match reply.result.map_err(|e| e.to_string()).and_then(only_value) {
                Ok(value) => match cluster::parse_slots(value) {
                    Ok(ranges) => return self.apply(ranges),
                    Err(e) => why = e,
                },
                Err(e) => why = e,
            }
        }
        for seed in &seeds.seeds {
            match ask_seed(&seeds.node_url(seed), timeout, &metrics).await {
                Ok(ranges) => return self.apply(ranges),
                Err(e) => why = format!("{seed}: {e}"),
            }
        }
        Err(why)
    }

    fn apply(&mut self, ranges: Vec<SlotRange>) -> Result<(), String> {
        for (start, end, address) in ranges {
            let node = self.at(&address)?;
            if let Some(cluster) = &mut self.cluster {
                cluster.slots[usize::from(start)..=usize::from(end)].fill(node);
            }
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.stale = false;
        }
        Ok(())
    }
}

/// `CLUSTER SLOTS` over a connection of its own to the seed at `url`.
async fn ask_seed(
    url: &str,
    timeout: Duration,
    metrics: &StoreMetrics,
) -> Result<Vec<SlotRange>, String> {
    let client = client_for(url).map_err(|e| e.to_string())?;
    let mut connection = match conn::probe(&client, timeout).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {timeout:?}")),
    };
    StoreMetrics::add(&metrics.connections_opened, 1);
    StoreMetrics::add(&metrics.round_trips, 1);
    let reply = tokio::time::timeout(
        timeout,
        redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Value>(&mut connection),
    )
    .await;
    match reply {
        Ok(Ok(value)) => cluster::parse_slots(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The one value of a one-command reply.
fn only_value(mut values: Vec<Value>) -> Result<Value, String> {
    match values.len() {
        1 => match values.remove(0) {
            Value::ServerError(e) => Err(e.to_string()),
            value => Ok(value),
        },
        n => Err(format!("{n} replies to one command")),
    }
}
