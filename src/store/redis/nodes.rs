//! Where a key's commands go: the connection to the node that serves it. A single Redis is
//! one node serving every key; a Redis Cluster is its masters, each serving the slots
//! `CLUSTER SLOTS` says. This is the one slot routing of the store: the lanes route their
//! pipelines with it ([`Nodes<LaneConnect>`]), and so do the blocking connections of the
//! account store and `hearth admin` (`blocking.rs`), each with its own kind of connection
//! ([`Connect`]).
//!
//! On a cluster every master gets one connection per [`Nodes`], made when it first learns
//! of the master and kept (a master that stops serving slots keeps its idle connection). The
//! slot table is read at start (or first use) and again before the next request once a reply
//! showed it stale (`MOVED`, or a node that stopped answering: a failover), from every seed
//! at once so a dead seed holds nothing up. A lane's node that stops answering is shed
//! (`conn.rs`): requests for its slots fail at once, so the other masters' players go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hearth_components::PlayerId;
use hearth_systems::storage::StoreMetrics;
use redis::Value;

use super::client::{client_for, redact_url};
use super::cluster::{self, ClusterUrl, SLOTS, SlotRange, SlotsReplyError};
use super::conn::{self, CallError, LaneConn};

/// How long after asking one seed for the slot table the next is asked too (without waiting
/// for the first to fail): a seed answers within a millisecond or two on a healthy network,
/// so the others are rarely asked, and a dead one costs this much, not a store timeout.
pub const SEED_STAGGER: Duration = Duration::from_millis(100);

/// Why a node could not be reached or the slot table not read.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// A redirection named another node, but the store runs on a single Redis.
    #[error("a redirection on a single Redis")]
    NotACluster,
    /// The connection to a new node could not be made.
    #[error("node {address}: {source}")]
    Node {
        /// The node's `host:port`.
        address: String,
        /// Why its client could not be made.
        source: redis::RedisError,
    },
    /// No node or seed answered `CLUSTER SLOTS`: the last one asked, and why.
    #[error("{asked}: {error}")]
    Slots {
        /// The node or seed (`host:port`, or the node's URL without its password).
        asked: String,
        /// What it answered.
        error: SlotsError,
    },
    /// There was no node or seed to ask.
    #[error("no node or seed to ask")]
    NoSeed,
}

/// Why one node did not say which master serves each slot.
#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    /// Connecting to it or asking it failed.
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The lane's request to it failed.
    #[error("{0}")]
    Call(CallError),
    /// It did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// It refused the command.
    #[error("{0}")]
    Refused(redis::ServerError),
    /// It answered with the wrong number of replies.
    #[error("{0} replies to one command")]
    Replies(usize),
    /// Its answer is not a slot table.
    #[error("{0}")]
    Reply(#[from] SlotsReplyError),
}

/// How a [`Nodes`] makes its connection to a node it learns of.
pub trait Connect {
    /// One node's connection.
    type Conn;
    /// The connection to the node at the `redis://` URL `url`, made with `client`.
    fn connect(&self, url: &str, client: redis::Client) -> Self::Conn;
}

/// A lane's connections: [`LaneConn`]s of that lane, bounded by the store timeout and
/// counted in the store's metrics.
pub struct LaneConnect {
    /// The lane's name, for logs and metrics.
    pub lane: &'static str,
    /// The store timeout.
    pub timeout: Duration,
    /// The store's metrics.
    pub metrics: Arc<StoreMetrics>,
}

impl Connect for LaneConnect {
    type Conn = LaneConn;

    fn connect(&self, url: &str, client: redis::Client) -> LaneConn {
        // Only a cluster's nodes are made here (a single Redis's connection is made by the
        // store): each is shed while it does not answer.
        LaneConn::new(
            self.lane,
            &redact_url(url),
            client,
            self.timeout,
            Arc::clone(&self.metrics),
        )
        .shedding()
    }
}

/// The connections of one user of the store (a lane, an auth worker), one per node.
pub struct Nodes<C: Connect> {
    conns: Vec<C::Conn>,
    /// `host:port` of each connection's node (cluster only).
    addresses: Vec<String>,
    connect: C,
    cluster: Option<Cluster>,
}

/// The masters of a cluster and which serves each slot.
struct Cluster {
    url: ClusterUrl,
    /// The node (index into `conns`) serving each slot.
    slots: Vec<usize>,
    /// The slot table is out of date (or not read yet).
    stale: bool,
}

impl<C: Connect> Nodes<C> {
    /// One Redis: every key on `conn`.
    pub fn single(conn: C::Conn, connect: C) -> Self {
        Self {
            conns: vec![conn],
            addresses: Vec::new(),
            connect,
            cluster: None,
        }
    }

    /// The cluster at `url`, its slot table not read yet: it is read before the first
    /// request ([`Nodes::refresh_from_seeds`], or for a lane [`Nodes::cluster`]).
    pub fn unread_cluster(url: ClusterUrl, connect: C) -> Self {
        Self {
            conns: Vec::new(),
            addresses: Vec::new(),
            connect,
            cluster: Some(Cluster {
                url,
                slots: vec![0; SLOTS],
                stale: true,
            }),
        }
    }

    /// How many nodes there are connections to.
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
    pub fn conn(&mut self, node: usize) -> &mut C::Conn {
        &mut self.conns[node]
    }

    /// The connection to the node serving `key`.
    pub fn for_key(&mut self, key: &str) -> &mut C::Conn {
        let node = self.of_key(key);
        self.conn(node)
    }

    /// Every node's connection.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut C::Conn> {
        self.conns.iter_mut()
    }

    /// Whether the store runs on a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Whether the slot table must be read (again) before the next request: never on a
    /// single Redis.
    pub fn is_stale(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.stale)
    }

    /// Notes that a reply showed the slot table out of date; it is read again before the
    /// next request. Nothing on a single Redis.
    pub fn mark_stale(&mut self) {
        if let Some(cluster) = &mut self.cluster {
            cluster.stale = true;
        }
    }

    /// The node at `address` (`host:port`), with a connection made for it if it is new.
    pub fn at(&mut self, address: &str) -> Result<usize, NodesError> {
        if let Some(node) = self.addresses.iter().position(|a| a == address) {
            return Ok(node);
        }
        let cluster = self.cluster.as_ref().ok_or(NodesError::NotACluster)?;
        let url = cluster.url.node_url(address);
        let client = client_for(&url).map_err(|source| NodesError::Node {
            address: address.to_string(),
            source,
        })?;
        self.conns.push(self.connect.connect(&url, client));
        self.addresses.push(address.to_string());
        Ok(self.conns.len() - 1)
    }

    /// Reads which master serves each slot from the first seed that answers, asking the
    /// seeds [`SEED_STAGGER`] apart without waiting for one to fail (a thread each, over a
    /// blocking connection made for the question, bounded by `timeout`): a dead or frozen
    /// first seed does not hold up the answer.
    pub fn refresh_from_seeds(&mut self, timeout: Duration) -> Result<(), NodesError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let url = cluster.url.clone();
        let (answers, answered) = std::sync::mpsc::channel();
        let done = Arc::new(AtomicBool::new(false));
        for (n, seed) in url.seeds.iter().enumerate() {
            let (seed, node_url, answers) = (seed.clone(), url.node_url(seed), answers.clone());
            let done = Arc::clone(&done);
            let asked = move || -> Result<Vec<SlotRange>, SlotsError> {
                let client = client_for(&node_url)?;
                let mut conn = client.get_connection_with_timeout(timeout)?;
                conn.set_read_timeout(Some(timeout))?;
                let reply = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<Value>(&mut conn)?;
                Ok(cluster::parse_slots(reply)?)
            };
            // A seed not asked yet when an answer came is not asked; a slower seed's answer
            // goes nowhere.
            std::thread::spawn(move || {
                std::thread::sleep(SEED_STAGGER * n as u32);
                if !done.load(Ordering::Relaxed) {
                    answers.send((seed, asked())).ok();
                }
            });
        }
        drop(answers);
        let mut why = NodesError::NoSeed;
        for (seed, answer) in answered {
            match answer {
                Ok(ranges) => {
                    done.store(true, Ordering::Relaxed);
                    return self.apply(ranges);
                }
                Err(error) => why = NodesError::Slots { asked: seed, error },
            }
        }
        Err(why)
    }

    fn apply(&mut self, ranges: Vec<SlotRange>) -> Result<(), NodesError> {
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

impl Nodes<LaneConnect> {
    /// A lane's connections to the masters of the cluster at `url`, found by asking its
    /// seeds for `CLUSTER SLOTS`.
    pub async fn cluster(url: ClusterUrl, connect: LaneConnect) -> Result<Self, NodesError> {
        let mut nodes = Self::unread_cluster(url, connect);
        nodes.refresh().await?;
        Ok(nodes)
    }

    /// Reads the slot table again if a reply showed it out of date. A failure is logged and
    /// leaves the old table (requests then fail or are redirected, and it is tried again).
    pub async fn refresh_if_stale(&mut self) {
        if self.is_stale()
            && let Err(e) = self.refresh().await
        {
            tracing::warn!(error = %e, "could not read the cluster's slots; trying again before the next request");
        }
    }

    /// Reads which master serves each slot: from a master this lane already reaches, else
    /// from a seed over a connection made for the question.
    async fn refresh(&mut self) -> Result<(), NodesError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let (seeds, timeout, metrics) = (
            cluster.url.clone(),
            self.connect.timeout,
            Arc::clone(&self.connect.metrics),
        );
        let mut why = NodesError::NoSeed;
        for conn in &mut self.conns {
            let mut pipe = redis::pipe();
            pipe.cmd("CLUSTER").arg("SLOTS");
            let reply = conn.request(pipe, "reading the cluster's slots").await;
            let ranges = reply
                .result
                .map_err(SlotsError::Call)
                .and_then(only_value)
                .and_then(|value| Ok(cluster::parse_slots(value)?));
            match ranges {
                Ok(ranges) => return self.apply(ranges),
                Err(error) => {
                    why = NodesError::Slots {
                        asked: conn.location().to_string(),
                        error,
                    }
                }
            }
        }
        // Seeds [`SEED_STAGGER`] apart, all in flight together, the first table wins: a dead
        // or frozen seed (first in the URL, say) delays the answer by that much, not a store
        // timeout; a seed that answers at once spares the others a connection.
        let asked = seeds
            .seeds
            .iter()
            .enumerate()
            .map(|(n, seed)| {
                let url = seeds.node_url(seed);
                let metrics = &metrics;
                Box::pin(async move {
                    tokio::time::sleep(SEED_STAGGER * n as u32).await;
                    ask_seed(&url, timeout, metrics)
                        .await
                        .map_err(|error| NodesError::Slots {
                            asked: seed.clone(),
                            error,
                        })
                })
            })
            .collect::<Vec<_>>();
        if asked.is_empty() {
            return Err(why);
        }
        // On failure, the last seed's reason (`select_ok` keeps the last error).
        let (ranges, _slower) = futures_util::future::select_ok(asked).await?;
        self.apply(ranges)
    }
}

/// `CLUSTER SLOTS` over a connection of its own to the seed at `url`.
async fn ask_seed(
    url: &str,
    timeout: Duration,
    metrics: &StoreMetrics,
) -> Result<Vec<SlotRange>, SlotsError> {
    let client = client_for(url)?;
    let mut connection = match conn::probe(&client, timeout).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(SlotsError::Timeout(timeout)),
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
        Ok(Ok(value)) => Ok(cluster::parse_slots(value)?),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(SlotsError::Timeout(timeout)),
    }
}

/// The one value of a one-command reply.
fn only_value(mut values: Vec<Value>) -> Result<Value, SlotsError> {
    match values.len() {
        1 => match values.remove(0) {
            Value::ServerError(e) => Err(SlotsError::Refused(e)),
            value => Ok(value),
        },
        n => Err(SlotsError::Replies(n)),
    }
}
