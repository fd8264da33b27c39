//! Blocking calls on a thread's own connections, for the users of the store that are not
//! lanes: each auth worker's account store, the resume keeper, `hearth admin`. Each command
//! goes to the node serving its key, routed by the store's [`Nodes`]: one persistent
//! connection per node it needs (one on a single Redis), reopened only after it fails.

use std::time::{Duration, Instant};

use super::client::client_for;
use super::cluster::{self, ClusterUrl, ClusterUrlError};
use super::conn::SHED_PROBE;
use super::nodes::{Connect, Nodes, NodesError};

/// Why a blocking call failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    /// The store URL is not a Redis URL.
    #[error("{0}")]
    Url(redis::RedisError),
    /// The store URL is not a cluster URL.
    #[error("{0}")]
    ClusterUrl(#[from] ClusterUrlError),
    /// The cluster's slot table could not be read, or a node not reached.
    #[error("reading the cluster's slots: {0}")]
    Slots(NodesError),
    /// A redirection could not be followed.
    #[error("{0}")]
    Redirect(NodesError),
    /// Redis failed the call (or the connection to it).
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    /// The request's budget (one store timeout) was spent before this call.
    #[error("no reply from Redis within {0:?}")]
    OutOfTime(Duration),
}

/// One node's blocking connection, opened on first use.
pub struct NodeConn {
    client: redis::Client,
    connection: Option<redis::Connection>,
    /// On a cluster: the node gave no reply last time. Before it is used again a `PING` over
    /// a fresh connection, bounded by [`SHED_PROBE`], must answer; if not the call fails at
    /// once instead of waiting the store timeout (twice, with the retry) on a dead master.
    shed: bool,
}

/// Makes [`NodeConn`]s (nothing connects until first use).
pub struct BlockingConnect;

impl Connect for BlockingConnect {
    type Conn = NodeConn;

    fn connect(&self, _url: &str, client: redis::Client) -> NodeConn {
        NodeConn {
            client,
            connection: None,
            shed: false,
        }
    }
}

/// A thread's blocking connections to the nodes of one Redis or cluster.
pub struct BlockingNodes {
    nodes: Nodes<BlockingConnect>,
    timeout: Duration,
    /// The current request's budget ([`BlockingNodes::begin_request`]): every call of it,
    /// retries included, shares one store timeout.
    budget: Budget,
}

/// How a thread's calls are bounded.
#[derive(Clone, Copy)]
enum Budget {
    /// Each call by the store timeout (the resume keeper, `hearth admin`).
    PerCall,
    /// A request began; its budget starts with its first call (a login's argon2 before it
    /// does not spend it).
    Begun,
    /// The request's calls share what is left until then.
    Until(Instant),
}

impl BlockingNodes {
    /// Connections to the Redis at `url` (`redis://...` or `redis+cluster://...`), each
    /// call (connecting, reading, writing) bounded by `timeout`; they open on first use.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, BlockingError> {
        let nodes = if url.starts_with(cluster::SCHEME) {
            let url = ClusterUrl::parse(url)?;
            Nodes::unread_cluster(url, BlockingConnect)
        } else {
            let client = client_for(url).map_err(BlockingError::Url)?;
            Nodes::single(BlockingConnect.connect(url, client), BlockingConnect)
        };
        Ok(Self {
            nodes,
            timeout,
            budget: Budget::PerCall,
        })
    }

    /// Starts a request (a login, a resume, a registration): from now on its calls together
    /// get one store timeout, so a hung Redis answers it in about that long, not one timeout
    /// per call and retry.
    pub fn begin_request(&mut self) {
        self.budget = Budget::Begun;
    }

    /// How long the next call may take: the store timeout, or what is left of the request's.
    fn call_timeout(&mut self) -> Result<Duration, BlockingError> {
        match self.budget {
            Budget::PerCall => Ok(self.timeout),
            Budget::Begun => {
                self.budget = Budget::Until(Instant::now() + self.timeout);
                Ok(self.timeout)
            }
            Budget::Until(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(BlockingError::OutOfTime(self.timeout))
                } else {
                    Ok(left.min(self.timeout))
                }
            }
        }
    }

    /// The node serving `key`, the slot table read first if it is stale.
    pub fn node_of(&mut self, key: &str) -> Result<usize, BlockingError> {
        self.fresh_slots()?;
        Ok(self.nodes.of_key(key))
    }

    /// How many nodes there are (every master of a cluster), the slot table read first if
    /// it is stale.
    pub fn count(&mut self) -> Result<usize, BlockingError> {
        self.fresh_slots()?;
        Ok(self.nodes.count())
    }

    fn fresh_slots(&mut self) -> Result<(), BlockingError> {
        if self.nodes.is_stale() {
            self.nodes
                .refresh_from_seeds(self.timeout)
                .map_err(BlockingError::Slots)?;
        }
        Ok(())
    }

    /// Whether `node` gave no reply the last time it was used (cluster only): callers with
    /// work for several nodes do the others' first.
    pub fn is_shed(&mut self, node: usize) -> bool {
        self.nodes.conn(node).shed
    }

    /// Runs `op` on the connection to the node serving `key` ([`BlockingNodes::on_node`]).
    pub fn on_key<T>(
        &mut self,
        key: &str,
        op: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BlockingError> {
        let node = self.node_of(key)?;
        self.on_node(node, op)
    }

    /// Runs `op` on the connection to `node`, opening one if there is none. A connection
    /// that was already open and fails with a connection error (Redis restarted, or closed
    /// it while idle under its `timeout` setting) is replaced and `op` runs once more, so the
    /// first call after that does not fail for it. On a cluster, a `MOVED` reply (the
    /// command did not run) has the slot table read again and `op` sent to the node named;
    /// an `ASK` sends it there after `ASKING`. So every `op` must be safe to repeat.
    pub fn on_node<T>(
        &mut self,
        mut node: usize,
        op: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BlockingError> {
        let mut reused = self.nodes.conn(node).connection.is_some();
        let mut redirects = 0;
        let mut asking = false;
        loop {
            let timeout = self.call_timeout()?;
            let at = self.nodes.conn(node);
            if at.shed {
                // A probe with a short bound; the connection it opens is the one used.
                let conn = at.client.get_connection_with_timeout(SHED_PROBE)?;
                conn.set_read_timeout(Some(SHED_PROBE)).ok();
                conn.set_write_timeout(Some(SHED_PROBE)).ok();
                let mut conn = conn;
                redis::cmd("PING").exec(&mut conn)?;
                at.connection = Some(conn);
                at.shed = false;
                reused = false;
            }
            if at.connection.is_none() {
                // redis-rs bounds each step of the handshake (connect, then each setup reply)
                // by the timeout it is given: on a hung Redis a fresh connection waited twice
                // the store timeout. A third of what is left bounds the handshake within it;
                // a Redis that answers at all does so in microseconds.
                at.connection = Some(at.client.get_connection_with_timeout(timeout / 3)?);
            }
            // Connecting spent some of the budget (on a hung Redis the handshake waits).
            let timeout = self.call_timeout()?;
            let conn = self
                .nodes
                .conn(node)
                .connection
                .as_mut()
                .expect("connected above");
            conn.set_read_timeout(Some(timeout)).ok();
            conn.set_write_timeout(Some(timeout)).ok();
            let result = match std::mem::take(&mut asking) {
                true => redis::cmd("ASKING").exec(conn).and_then(|()| op(conn)),
                false => op(conn),
            };
            let e = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if self.nodes.is_cluster()
                && redirects < 2
                && let Some((address, _)) = e.redirect_node()
            {
                redirects += 1;
                asking = e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Ask);
                let address = address.to_string();
                if !asking {
                    self.nodes.mark_stale();
                    self.fresh_slots()?;
                }
                node = self.nodes.at(&address).map_err(BlockingError::Redirect)?;
                reused = false;
                continue;
            }
            // Reconnect on next use; on a cluster, read the slot table again first (a node
            // that failed may have failed over).
            self.nodes.conn(node).connection = None;
            self.nodes.mark_stale();
            if self.nodes.is_cluster() && (e.is_timeout() || e.is_connection_refusal()) {
                // No reply, or nothing listening: shed until a probe answers, no retry.
                self.nodes.conn(node).shed = true;
                return Err(e.into());
            }
            // A timeout is a hung Redis, not a connection closed while idle: sending again
            // would only wait again.
            let broken = (e.is_io_error() || e.is_unrecoverable_error()) && !e.is_timeout();
            if !(std::mem::take(&mut reused) && broken) {
                return Err(e.into());
            }
            tracing::debug!(error = %e, "store connection had closed; retrying on a new one");
        }
    }
}
