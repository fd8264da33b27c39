//! One lane's connection: a `ConnectionManager` made once, every call bounded by the store
//! timeout, reconnect accounting, and state-transition logging (down once, up once).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hearth_systems::storage::StoreMetrics;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, RedisError, Value};

/// While a lane stays down, how often it says so again (with the latest error).
const STILL_DOWN_REPORT: Duration = Duration::from_secs(60);

/// How long a lane must work without a failure before an outage counts as over. Redis can
/// be half-available (over `maxmemory` it refuses writes but still extends leases; a restart
/// answers `LOADING` to some requests): without this, every success between two failures
/// would end the outage and the next failure start a new one, logging a down/up pair per
/// request instead of one per outage.
const RECOVERY_SETTLES: Duration = Duration::from_secs(5);

/// How long a probe of a shed cluster node waits for its `PING`, and how often a shed node
/// is probed while requests keep coming for it.
pub const SHED_PROBE: Duration = Duration::from_millis(500);

/// Why a request got no reply.
#[derive(Debug)]
pub enum CallError {
    /// No complete reply within the store timeout (a hung or unreachable Redis).
    Timeout(Duration),
    /// The connection failed or Redis refused the whole request.
    Redis(RedisError),
    /// The task carrying the request did not finish (store shutting down).
    Worker(String),
    /// Not sent: this cluster node stopped answering and no probe has reached it since.
    Shed(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(t) => write!(f, "no reply from Redis within {t:?}"),
            Self::Redis(e) => write!(f, "{e}"),
            Self::Worker(e) => write!(f, "store worker stopped: {e}"),
            Self::Shed(node) => write!(
                f,
                "not sent: cluster node {node} stopped answering (probed every {SHED_PROBE:?} until it does)"
            ),
        }
    }
}

/// The reply to one request: one value per non-ignored command, or why there is none.
pub struct Reply {
    pub result: Result<Vec<Value>, CallError>,
    pub latency: Duration,
}

impl Reply {
    /// Whether the request failed because the connection broke (closed by Redis, reset): the
    /// manager reconnects, and a request safe to repeat can be sent again at once.
    pub fn broke_the_connection(&self) -> bool {
        matches!(&self.result, Err(CallError::Redis(e)) if e.is_io_error() || e.is_unrecoverable_error())
    }

    /// Whether Redis answered but refused every command (e.g. NOPERM, OOM, LOADING), or
    /// every player of every save call: as bad as being down for the lane's health.
    fn refused_all(&self) -> Option<String> {
        let values = self.result.as_ref().ok()?;
        let mut first = None;
        for value in values {
            match value {
                Value::ServerError(e) => {
                    first.get_or_insert_with(|| e.to_string());
                }
                // A save.lua call runs each player in its own pcall: a Redis that refuses
                // writes (out of memory, read-only) answers every player with `error: ...`.
                Value::Array(statuses) if !statuses.is_empty() => {
                    for status in statuses {
                        match status {
                            Value::BulkString(text) if text.starts_with(b"error: ") => {
                                first.get_or_insert_with(|| {
                                    String::from_utf8_lossy(&text[7..]).into_owned()
                                });
                            }
                            _ => return None,
                        }
                    }
                }
                _ => return None,
            }
        }
        first
    }
}

/// One plain connection attempt, bounded by `timeout` (the managers retry quietly, so this
/// is how the store learns *why* Redis cannot be reached). `Err(_)` is no answer in time.
pub async fn probe(
    client: &redis::Client,
    timeout: Duration,
) -> Result<redis::RedisResult<redis::aio::MultiplexedConnection>, tokio::time::error::Elapsed> {
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout));
    tokio::time::timeout(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
}

/// Sends one pipeline on `conn`, bounded by `timeout` (which also bounds any wait for a
/// reconnect inside the manager).
pub async fn call(mut conn: ConnectionManager, pipe: Arc<Pipeline>, timeout: Duration) -> Reply {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, pipe.query_async::<Value>(&mut conn)).await {
        Ok(Ok(Value::Array(values))) => Ok(values),
        Ok(Ok(other)) => Ok(vec![other]),
        Ok(Err(e)) => Err(CallError::Redis(e)),
        Err(_) => Err(CallError::Timeout(timeout)),
    };
    Reply {
        result,
        latency: started.elapsed(),
    }
}

/// The connection of one lane (periodic or interactive).
pub struct LaneConn {
    lane: &'static str,
    location: String,
    client: redis::Client,
    timeout: Duration,
    metrics: Arc<StoreMetrics>,
    manager: Option<ConnectionManager>,
    /// The next reply proves a connection we have not counted yet was opened (a fresh
    /// manager, or the manager's own reconnect after the old connection broke).
    uncounted_connection: bool,
    /// Whether this lane currently counts in `StoreMetrics::connections_open`.
    connected: bool,
    down_since: Option<Instant>,
    /// While down: the first success since the last failure (the outage ends once the lane
    /// has worked for [`RECOVERY_SETTLES`] from here).
    working_since: Option<Instant>,
    last_report: Instant,
    failures_while_down: u64,
    /// On a cluster node: whether it is shed (see [`LaneConn::shedding`]).
    shed: Option<Shed>,
}

/// A cluster node's shedding: once a request to it gets no reply (a timeout, a broken or
/// refused connection), requests to it fail at once instead of each waiting the store
/// timeout, so one dead master costs the lane nothing for the players on the others; a
/// `PING` over a fresh connection, at most every [`SHED_PROBE`], lets it back in.
#[derive(Default)]
struct Shed {
    down: bool,
    probe: Option<tokio::task::JoinHandle<bool>>,
    last_probe: Option<Instant>,
}

impl LaneConn {
    /// A lane connection; nothing is connected until [`LaneConn::manager`] is first used.
    pub fn new(
        lane: &'static str,
        location: &str,
        client: redis::Client,
        timeout: Duration,
        metrics: Arc<StoreMetrics>,
    ) -> Self {
        Self {
            lane,
            location: location.to_string(),
            client,
            timeout,
            metrics,
            manager: None,
            uncounted_connection: false,
            connected: false,
            down_since: None,
            working_since: None,
            last_report: Instant::now(),
            failures_while_down: 0,
            shed: None,
        }
    }

    /// This connection is one of a cluster's nodes: shed it while it does not answer (see
    /// [`Shed`]). Not for a single Redis, where there is no other node to go on with.
    pub fn shedding(mut self) -> Self {
        self.shed = Some(Shed::default());
        self
    }

    /// Whether a request may be sent: always, unless the node is shed. A shed node is let
    /// back in once a probe reached it; a new probe starts if none runs and the last began
    /// [`SHED_PROBE`] ago or more.
    fn usable(&mut self) -> bool {
        let Some(shed) = &mut self.shed else {
            return true;
        };
        if !shed.down {
            return true;
        }
        if let Some(probe) = shed.probe.take_if(|p| p.is_finished()) {
            let answered = futures_util::FutureExt::now_or_never(probe)
                .and_then(Result::ok)
                .unwrap_or(false);
            if answered {
                shed.down = false;
                // A fresh connection: the old one may be half-open.
                self.manager = None;
                return true;
            }
        }
        let due = shed.last_probe.is_none_or(|at| at.elapsed() >= SHED_PROBE);
        if shed.probe.is_none() && due {
            shed.last_probe = Some(Instant::now());
            let client = self.client.clone();
            let metrics = Arc::clone(&self.metrics);
            shed.probe = Some(tokio::spawn(async move {
                let ping = async {
                    let mut connection = probe(&client, SHED_PROBE).await.ok()?.ok()?;
                    StoreMetrics::add(&metrics.connections_opened, 1);
                    redis::cmd("PING")
                        .query_async::<()>(&mut connection)
                        .await
                        .ok()
                };
                matches!(tokio::time::timeout(SHED_PROBE, ping).await, Ok(Some(())))
            }));
        }
        false
    }

    /// Sheds a cluster node that gave no reply.
    fn shed(&mut self) {
        if let Some(shed) = &mut self.shed
            && !std::mem::replace(&mut shed.down, true)
        {
            tracing::warn!(
                lane = self.lane,
                node = %self.location,
                "cluster node not answering: requests for its slots fail at once until a probe reaches it; the other masters' players go on"
            );
        }
    }

    /// The lane's name, for logs.
    pub fn lane(&self) -> &'static str {
        self.lane
    }

    /// Where this connection goes (the URL without its password), for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The store timeout every call is bounded by.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The manager to send on, made on first use and after a timeout dropped the old one.
    /// Must be called inside the store's runtime.
    pub fn manager(&mut self) -> Result<ConnectionManager, CallError> {
        if !self.usable() {
            return Err(CallError::Shed(self.location.clone()));
        }
        if let Some(manager) = &self.manager {
            return Ok(manager.clone());
        }
        // - The manager's own response timeout stays off: every call is bounded by
        //   `tokio::time::timeout`, which also covers waiting for a reconnect.
        // - After the connection breaks, the manager keeps trying to reconnect in the
        //   background (every 0.5-1 s, without giving up), so the first call after Redis
        //   returns finds a working connection. Calls made meanwhile fail at the timeout.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None)
            .set_number_of_retries(usize::MAX)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(CallError::Redis)?;
        self.uncounted_connection = true;
        self.manager = Some(manager.clone());
        Ok(manager)
    }

    /// Sends one pipeline that is safe to repeat (a claim, a release, the instance
    /// registration) and accounts for it (round trip, connection, health). A connection that
    /// broke while idle (Redis restarted, or closed idle clients under its `timeout` setting)
    /// fails the first request sent on it; such a request is sent once more on the
    /// reconnected connection instead of failing a login for it. Saves are not repeated here:
    /// a repeated save that had been applied would come back `stale`, so failed saves are
    /// retried by the world with a new sequence instead.
    pub async fn request(&mut self, pipe: Pipeline, what: &str) -> Reply {
        let pipe = Arc::new(pipe);
        let mut reply = self.send_once(Arc::clone(&pipe)).await;
        if reply.broke_the_connection() {
            // The manager reconnects by itself; the next reply comes over a new connection.
            self.uncounted_connection = true;
            tracing::debug!(
                lane = self.lane,
                "{what}: the connection had closed; sending again on a new one"
            );
            reply = self.send_once(pipe).await;
        }
        self.observe(&reply, what);
        reply
    }

    async fn send_once(&mut self, pipe: Arc<Pipeline>) -> Reply {
        match self.manager() {
            Ok(conn) => {
                StoreMetrics::add(&self.metrics.round_trips, 1);
                call(conn, pipe, self.timeout).await
            }
            Err(e) => Reply {
                result: Err(e),
                latency: Duration::ZERO,
            },
        }
    }

    /// Sends one pipeline on its own task (so several chunks of one batch can be in flight
    /// while the next is encoded) and counts the round trip. The caller passes the reply to
    /// [`LaneConn::observe`] in send order.
    pub fn spawn(
        &mut self,
        pipe: Arc<Pipeline>,
    ) -> Result<tokio::task::JoinHandle<Reply>, CallError> {
        let timeout = self.timeout;
        self.spawn_with_limit(pipe, timeout)
    }

    /// Like [`LaneConn::spawn`], waiting up to `limit` for the reply: a caller that stops
    /// waiting at the store timeout can still learn what a late reply says.
    pub fn spawn_with_limit(
        &mut self,
        pipe: Arc<Pipeline>,
        limit: Duration,
    ) -> Result<tokio::task::JoinHandle<Reply>, CallError> {
        let conn = self.manager()?;
        StoreMetrics::add(&self.metrics.round_trips, 1);
        Ok(tokio::spawn(call(conn, pipe, limit)))
    }

    /// Notes that the connection broke (the next reply comes over a new one).
    pub fn connection_broke(&mut self) {
        self.uncounted_connection = true;
    }

    /// Updates connection accounting and health from a reply.
    pub fn observe(&mut self, reply: &Reply, what: &str) {
        match &reply.result {
            Ok(_) => {
                if std::mem::take(&mut self.uncounted_connection) {
                    StoreMetrics::add(&self.metrics.connections_opened, 1);
                }
                self.set_connected(true);
                match reply.refused_all() {
                    Some(error) => self.failed(what, &error, false),
                    None => self.succeeded(),
                }
            }
            Err(CallError::Timeout(_)) => {
                // A hung server, or a half-open connection that may never answer again:
                // start over with a fresh connection on the next call. Replies still on
                // their way to the old one are discarded; writes are safe to repeat.
                self.manager = None;
                self.set_connected(false);
                self.shed();
                let error = CallError::Timeout(self.timeout).to_string();
                self.failed(what, &error, true);
            }
            Err(CallError::Worker(e)) => self.failed(what, e, false),
            Err(error @ CallError::Shed(_)) => self.failed(what, &error.to_string(), false),
            Err(CallError::Redis(e)) => {
                if e.is_io_error() || e.is_unrecoverable_error() {
                    // The manager reconnects by itself; the next reply comes over a new
                    // connection.
                    self.uncounted_connection = true;
                    self.set_connected(false);
                    self.shed();
                }
                self.failed(what, &e.to_string(), false);
            }
        }
    }

    /// Keeps `StoreMetrics::connections_open` at the number of lanes whose connection
    /// answered its last request (a refusal such as OOM is an answer; a timeout or a broken
    /// connection is not).
    fn set_connected(&mut self, connected: bool) {
        if std::mem::replace(&mut self.connected, connected) != connected {
            if connected {
                self.metrics
                    .connections_open
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.metrics
                    .connections_open
                    .fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn failed(&mut self, what: &str, error: &str, timed_out: bool) {
        let now = Instant::now();
        self.failures_while_down += 1;
        self.working_since = None;
        match self.down_since {
            None => {
                self.down_since = Some(now);
                self.metrics.set_lane_down(self.lane, true);
                self.last_report = now;
                self.failures_while_down = 1;
                tracing::error!(
                    lane = self.lane,
                    redis = %self.location,
                    %error,
                    "Redis unavailable ({what} failed): saves stay dirty and are retried, joins are refused; the game goes on. Reported again every {STILL_DOWN_REPORT:?} until Redis is back"
                );
            }
            Some(since) if now.duration_since(self.last_report) >= STILL_DOWN_REPORT => {
                self.last_report = now;
                tracing::warn!(
                    lane = self.lane,
                    redis = %self.location,
                    down_for = ?since.elapsed(),
                    failed_requests = self.failures_while_down,
                    last_error = %error,
                    "Redis still unavailable"
                );
            }
            Some(_) => {
                tracing::debug!(lane = self.lane, %error, "{what} failed; Redis still unavailable");
                return;
            }
        }
        if timed_out {
            self.diagnose();
        }
    }

    /// After a timeout is reported, finds out what a fresh connection attempt says (a
    /// refused connection, a wrong password and a hung server all look like a timeout from
    /// a manager that retries quietly) and logs it. At most once per report.
    fn diagnose(&self) {
        let client = self.client.clone();
        let timeout = self.timeout;
        let lane = self.lane;
        let location = self.location.clone();
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            match probe(&client, timeout).await {
                Ok(Ok(_connection)) => {
                    StoreMetrics::add(&metrics.connections_opened, 1);
                    tracing::warn!(lane, redis = %location, "a fresh connection to Redis works: the lane's connection was hung or broken and is replaced");
                }
                Ok(Err(e)) => {
                    tracing::error!(lane, redis = %location, error = %e, "a fresh connection to Redis fails too")
                }
                Err(_) => {
                    tracing::error!(lane, redis = %location, "a fresh connection to Redis gets no answer within {timeout:?} either: Redis is hung or unreachable")
                }
            }
        });
    }

    /// A request worked. An outage ends (logged once) when the lane has worked since at
    /// least [`RECOVERY_SETTLES`] ago without a failure in between.
    fn succeeded(&mut self) {
        let Some(since) = self.down_since else {
            return;
        };
        let now = Instant::now();
        let working_since = *self.working_since.get_or_insert(now);
        if now.duration_since(working_since) < RECOVERY_SETTLES {
            return;
        }
        self.down_since = None;
        self.metrics.set_lane_down(self.lane, false);
        self.working_since = None;
        tracing::info!(
            lane = self.lane,
            redis = %self.location,
            down_for = ?working_since.duration_since(since),
            failed_requests = self.failures_while_down,
            "Redis reachable again; pending saves are written at the next flush"
        );
    }
}
