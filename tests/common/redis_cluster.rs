//! A real local Redis Cluster per test: `masters` masters and `replicas` replicas per master,
//! each node a `redis-server --cluster-enabled yes` on a free port (and a free cluster bus
//! port, `--cluster-port`) with its own directory, joined by `redis-cli --cluster create`,
//! killed on drop. Helpers kill a node, promote a replica and move a slot by hand, as an
//! operator would. A missing `redis-server` or `redis-cli` is a test failure with an install
//! hint, never a silent skip.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::{free_port, signal};

const INSTALL_HINT: &str =
    "redis-server/redis-cli not found: install them with `apt-get install -y redis-server`";

/// How long the cluster may take to agree on a change (start, failover, slot move).
const SETTLE: Duration = Duration::from_secs(30);

/// One node of the cluster.
struct Node {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    fn spawn() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let (port, bus) = (free_port(), free_port());
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--cluster-port", &bus.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        let mut node = Self {
            port,
            dir,
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("redis-server exited with {status}\n{}", node.log()));
            }
            if node.try_connection().is_ok() {
                return Ok(node);
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!("node {port} did not answer within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        redis::cmd("PING").query::<String>(&mut conn)?;
        Ok(conn)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A local Redis Cluster owned by a test.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and waits until every node
    /// reports `cluster_state:ok` and every replica is in sync with its master.
    pub fn start(masters: usize, replicas: usize) -> Self {
        let nodes = (0..masters * (1 + replicas))
            .map(|_| Node::spawn().unwrap_or_else(|e| panic!("cluster node did not start: {e}")))
            .collect();
        let cluster = Self { nodes };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create
            .args(["--cluster-replicas", &replicas.to_string()])
            .arg("--cluster-yes");
        let output = match create.stdin(Stdio::null()).output() {
            Ok(output) => output,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot run redis-cli: {e}"),
        };
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_until_ok();
        cluster.wait_for_replicas(replicas);
        cluster
    }

    /// Waits until every master has `replicas` replicas connected and in sync
    /// (`connected_slaves` in `INFO replication` counts only replicas past their first sync).
    fn wait_for_replicas(&self, replicas: usize) {
        let started = Instant::now();
        for port in self.masters() {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut self.connection(port))
                    .unwrap_or_default();
                let online = info.matches("state=online").count();
                if online >= replicas {
                    break;
                }
                assert!(
                    started.elapsed() < SETTLE,
                    "master {port} has {online} of {replicas} replicas online: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Waits until every running node says `cluster_state:ok` and sees every slot served.
    pub fn wait_until_ok(&self) {
        let started = Instant::now();
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let info: String = node
                    .try_connection()
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384") {
                    break;
                }
                assert!(
                    started.elapsed() < SETTLE,
                    "node {} not ok within {SETTLE:?}: {info}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...`: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `redis://127.0.0.1:<port>/` of one node.
    pub fn node_url(&self, port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    /// The ports of every node started (running or killed).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// A plain connection to the node on `port`.
    pub fn connection(&self, port: u16) -> redis::Connection {
        self.node(port)
            .try_connection()
            .unwrap_or_else(|e| panic!("connecting to cluster node {port}: {e}"))
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// A running node to ask about the cluster.
    fn any_running(&self) -> redis::Connection {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .find_map(|n| n.try_connection().ok())
            .expect("a running cluster node")
    }

    /// The ports of the masters that serve slots, in slot order.
    pub fn masters(&self) -> Vec<u16> {
        let mut masters: Vec<u16> = Vec::new();
        for (_, port) in self.slot_ranges() {
            if !masters.contains(&port) {
                masters.push(port);
            }
        }
        masters
    }

    /// The first slot of each range and the port of the master serving it (`CLUSTER SLOTS`).
    fn slot_ranges(&self) -> BTreeMap<u16, u16> {
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.any_running())
            .expect("CLUSTER SLOTS");
        let mut ranges = BTreeMap::new();
        for range in slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(i) => *i,
                other => panic!("unexpected CLUSTER SLOTS field {other:?}"),
            };
            let redis::Value::Array(master) = &parts[2] else {
                panic!("unexpected CLUSTER SLOTS master {:?}", parts[2]);
            };
            ranges.insert(int(&parts[0]) as u16, int(&master[1]) as u16);
        }
        ranges
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.any_running())
            .expect("CLUSTER KEYSLOT")
    }

    /// The port of the master serving `slot`, as the cluster sees it now.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.slot_owners()[usize::from(slot)]
    }

    /// The port of the master serving each slot, as the cluster sees it now (one question).
    pub fn slot_owners(&self) -> Vec<u16> {
        let ranges = self.slot_ranges();
        (0..16384u16)
            .map(|slot| {
                *ranges
                    .range(..=slot)
                    .next_back()
                    .map(|(_, port)| port)
                    .expect("every slot is served")
            })
            .collect()
    }

    /// The port of a replica of the master on `master`.
    pub fn replica_of(&self, master: u16) -> u16 {
        let id = self.id(master);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let Ok(mut conn) = node.try_connection() else {
                continue;
            };
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut conn)
                .unwrap_or_default();
            if info.contains("role:slave") && info.contains(&format!("master_port:{master}")) {
                return node.port;
            }
        }
        panic!("no replica of {master} (id {id})")
    }

    /// The node id of the node on `port` (`CLUSTER MYID`).
    pub fn id(&self, port: u16) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.connection(port))
            .expect("CLUSTER MYID")
    }

    /// Kills the node on `port` (SIGKILL: a crash).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .kill();
    }

    /// Freezes the node on `port` (SIGSTOP): it answers nothing, replicates nothing.
    pub fn freeze(&self, port: u16) {
        let pid = self.running(port).id();
        assert!(signal(pid, "-STOP"), "kill -STOP failed");
    }

    /// Lets a frozen node run again (SIGCONT).
    pub fn thaw(&self, port: u16) {
        let pid = self.running(port).id();
        assert!(signal(pid, "-CONT"), "kill -CONT failed");
    }

    fn running(&self, port: u16) -> &Child {
        self.node(port)
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("cluster node {port} is not running"))
    }

    /// `CLUSTER FAILOVER FORCE` on the replica on `replica` (its master may be down), then
    /// waits until the cluster serves every slot again with it as a master.
    pub fn failover_force(&self, replica: u16) {
        redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .arg("FORCE")
            .exec(&mut self.connection(replica))
            .expect("CLUSTER FAILOVER FORCE");
        let started = Instant::now();
        while !self.masters().contains(&replica) {
            assert!(
                started.elapsed() < SETTLE,
                "{replica} did not become a master"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_until_ok();
    }

    /// Starts moving `slot` to the master on `to`: `IMPORTING` there, `MIGRATING` on its
    /// owner. Keys stay where they are, so clients meet `ASK` for keys already moved and
    /// `TRYAGAIN` for multi-key commands over both. Returns the owner's port.
    pub fn begin_slot_move(&self, slot: u16, to: u16) -> u16 {
        let from = self.master_of_slot(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        setslot(&mut self.connection(to), slot, "IMPORTING", &self.id(from));
        setslot(&mut self.connection(from), slot, "MIGRATING", &self.id(to));
        from
    }

    /// Moves `keys` from the node on `from` to the node on `to` (`MIGRATE`), as a
    /// resharding does key by key.
    pub fn migrate_keys(&self, from: u16, to: u16, keys: &[impl AsRef<str>]) {
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(to)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(keys)
            .exec(&mut self.connection(from))
            .expect("MIGRATE");
    }

    /// Waits until the replica on `replica` has every write the master on `master` took.
    pub fn wait_until_replicated(&self, master: u16, replica: u16) {
        let offset = |port: u16, field: &str| -> Option<u64> {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut self.connection(port))
                .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        };
        let started = Instant::now();
        loop {
            let wanted = offset(master, "master_repl_offset");
            let got = offset(replica, "slave_repl_offset");
            if wanted.is_some() && got >= wanted {
                return;
            }
            assert!(
                started.elapsed() < SETTLE,
                "{replica} did not catch up with {master}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Moves every key of `slot` from `from` to `to` (`MIGRATE`) and gives `to` the slot
    /// (`CLUSTER SETSLOT NODE` on every master), finishing [`RedisCluster::begin_slot_move`].
    pub fn finish_slot_move(&self, slot: u16, from: u16, to: u16) {
        let mut source = self.connection(from);
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut source)
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            self.migrate_keys(from, to, &keys);
        }
        let owner = self.id(to);
        for port in self.masters() {
            setslot(&mut self.connection(port), slot, "NODE", &owner);
        }
        let started = Instant::now();
        while self.master_of_slot(slot) != to {
            assert!(started.elapsed() < SETTLE, "slot {slot} did not move");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Moves `slot` with its keys to the master on `to`.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let from = self.begin_slot_move(slot, to);
        self.finish_slot_move(slot, from, to);
    }

    /// The keys matching `pattern` stored on the node on `port` (`SCAN`).
    pub fn keys_on(&self, port: u16, pattern: &str) -> Vec<String> {
        let mut conn = self.connection(port);
        let iter: redis::Iter<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut conn)
            .expect("SCAN");
        iter.map(|k| k.expect("a key")).collect()
    }

    /// `CONFIG SET name value` on every running node.
    pub fn config_set(&self, name: &str, value: &str) {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .exec(&mut self.connection(node.port))
                .unwrap_or_else(|e| panic!("CONFIG SET {name} {value} on {}: {e}", node.port));
        }
    }

    /// The log of the node on `port`.
    pub fn log(&self, port: u16) -> String {
        self.node(port).log()
    }
}

fn setslot(conn: &mut redis::Connection, slot: u16, state: &str, node: &str) {
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(state)
        .arg(node)
        .exec(conn)
        .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {state} {node}: {e}"));
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &node.child {
                signal(child.id(), "-CONT"); // harmless if it was not frozen
            }
            node.kill();
        }
    }
}

/// A plain connection that follows `MOVED` and `ASK`, so each command reaches the node serving its
/// key, as a cluster client's would; on a single Redis it is just a connection. For tests
/// that read and poke keys (commands one at a time; a pipeline goes to one node).
pub struct Inspector {
    conns: Vec<(String, redis::Connection)>,
    current: usize,
}

impl Inspector {
    /// Starts at the node `address` (`host:port`).
    pub fn new(address: &str) -> Self {
        let mut inspector = Self {
            conns: Vec::new(),
            current: 0,
        };
        inspector.current = inspector.at(address).expect("connecting to the test Redis");
        inspector
    }

    fn at(&mut self, address: &str) -> redis::RedisResult<usize> {
        if let Some(at) = self.conns.iter().position(|(a, _)| a == address) {
            return Ok(at);
        }
        let client = redis::Client::open(format!("redis://{address}/"))?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        self.conns.push((address.to_string(), conn));
        Ok(self.conns.len() - 1)
    }
}

impl redis::ConnectionLike for Inspector {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        for _ in 0..5 {
            let reply = self.conns[self.current].1.req_packed_command(cmd)?;
            let redirect = match &reply {
                redis::Value::ServerError(e) if matches!(e.code(), "MOVED" | "ASK") => e
                    .details()
                    .and_then(|d| d.split_whitespace().nth(1))
                    .map(|address| (e.code() == "ASK", address.to_string())),
                _ => None,
            };
            match redirect {
                Some((false, address)) => self.current = self.at(&address)?,
                Some((true, address)) => {
                    let at = self.at(&address)?;
                    let conn = &mut self.conns[at].1;
                    redis::cmd("ASKING").exec(conn)?;
                    return conn.req_packed_command(cmd);
                }
                None => return Ok(reply),
            }
        }
        panic!("redirected more than 5 times")
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        self.conns[self.current]
            .1
            .req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        self.conns[self.current].1.check_connection()
    }

    fn is_open(&self) -> bool {
        self.conns[self.current].1.is_open()
    }
}

/// A Redis the store-level tests run against: one server, or a cluster.
pub trait TestRedis {
    /// The store URL (`redis://...` or `redis+cluster://...`).
    fn url(&self) -> String;
    /// A connection for reading and poking keys wherever they live.
    fn inspector(&self) -> Inspector;
    /// A connection to each master.
    fn masters_connections(&self) -> Vec<redis::Connection>;
}

impl TestRedis for super::redis_server::RedisServer {
    fn url(&self) -> String {
        self.url()
    }

    fn inspector(&self) -> Inspector {
        Inspector::new(&format!("127.0.0.1:{}", self.port()))
    }

    fn masters_connections(&self) -> Vec<redis::Connection> {
        vec![self.connection()]
    }
}

impl TestRedis for RedisCluster {
    fn url(&self) -> String {
        self.url()
    }

    fn inspector(&self) -> Inspector {
        Inspector::new(&format!("127.0.0.1:{}", self.masters()[0]))
    }

    fn masters_connections(&self) -> Vec<redis::Connection> {
        self.masters()
            .into_iter()
            .map(|port| self.connection(port))
            .collect()
    }
}

/// Runs each listed test function (`fn(&dyn TestRedis)`) on one Redis and on a cluster:
/// `single::<name>` (a redis-server per test) and `cluster::<name>` (3 masters per test).
#[macro_export]
macro_rules! on_one_redis_and_a_cluster {
    ($($test:ident),* $(,)?) => {
        mod single {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::common::redis_server::RedisServer::start());
                }
            )*
        }
        mod cluster {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::common::redis_cluster::RedisCluster::start(3, 0));
                }
            )*
        }
    };
}
