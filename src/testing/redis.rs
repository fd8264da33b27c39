//! The Redis store as a [`TestStore`]: fixture tests run unchanged against a real
//! `redis-server` (which the test starts; see `tests/common/redis_server.rs`), or a real local
//! Redis Cluster (`tests/common/redis_cluster.rs`): there each key is read and written on the
//! master serving its slot, and everything below is done on every master.
//!
//! The fixture needs a few things Redis does not do by itself; each is done for real on the
//! server, never by faking the store:
//!
//! - **Faults per server** (`set_unavailable`): every fixture server connects as its own ACL
//!   user (`hearth-store-<instance id>`). Making the store unavailable removes that user's
//!   permissions (`ACL SETUSER .. -@all`): every command of that store is refused by Redis
//!   with `NOPERM`, immediately, on its existing connections. Other servers on the same Redis
//!   are unaffected, as with the memory store.
//! - **Writes in flight** (`pause`/`resume`): `CLIENT PAUSE <ms> WRITE` holds every write
//!   (every store script counts as one) inside Redis until `CLIENT UNPAUSE`, so the store's
//!   jobs are truly in flight. The pause is server-wide (it holds every server on that Redis)
//!   and expires by itself after [`RedisTestStore::PAUSE_LIMIT`]. While paused,
//!   `running_jobs` reports 0 (the held jobs cannot complete without help, like the memory
//!   store's held jobs), the fixture's clock advances are applied at `resume`, and
//!   `put_raw_record`/`force_lease` would block: do not call them while paused.
//! - **Time** (`advance_clock`): lease TTLs run on Redis's wall clock while fixture frames
//!   advance 100 ms instantly, so advancing the fixture clock shortens every lease TTL
//!   under the key prefix by the same amount (`PTTL` - `by`, or `DEL` when it reaches 0),
//!   in one script on the inspection connection. Leases therefore expire after the same
//!   fixture time as on the memory store (slightly earlier, as wall time also passes).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy_app::Plugin;
use crossbeam_channel::unbounded;
use hearth_components::{PlayerId, PlayerRecord, StoreSelection};
use hearth_systems::storage::{PlayerStore, StorePort};
use redis::{Commands, RedisResult, Script};

use super::{TestServer, TestStore};
use crate::config::ServerConfig;
use crate::store::redis::{ClusterUrl, Keys, cluster};
use crate::store::{RedisStore, StoreSettings};

/// Shortens every lease TTL under a prefix by ARGV[2] ms; deletes leases that reach 0.
const ADVANCE_LEASES_LUA: &str = r#"
local cursor = '0'
local by = tonumber(ARGV[2])
local touched = 0
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local ttl = redis.call('PTTL', key)
    if ttl >= 0 then
      if ttl <= by then
        redis.call('DEL', key)
      else
        redis.call('PEXPIRE', key, ttl - by)
      end
      touched = touched + 1
    end
  end
until cursor == '0'
return touched
"#;

/// Password of the per-server ACL users the fixture creates.
const STORE_USER_PASSWORD: &str = "hearth-fixture";

/// A [`RedisStore`] seen by a test: inspection connections (as the admin user of the URL
/// the test gave, one per node) plus the store itself.
pub struct RedisTestStore {
    store: Arc<RedisStore>,
    /// One Redis, or each master of a cluster.
    nodes: Vec<Node>,
    /// On a cluster: the node (index into `nodes`) serving each slot.
    slots: Option<Vec<usize>>,
    keys: Keys,
    store_user: String,
    advance: Script,
    paused: AtomicBool,
    owed_ms: AtomicU64,
}

/// One node the fixture inspects and pokes.
struct Node {
    admin: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
}

impl Node {
    fn new(address: &str) -> Self {
        let url = format!("redis://{address}/");
        let admin = redis::Client::open(url.as_str())
            .unwrap_or_else(|e| panic!("invalid admin Redis URL {url}: {e}"));
        Self {
            admin,
            conn: Mutex::new(None),
        }
    }

    /// Runs `f` on the inspection connection, reconnecting once if the connection broke
    /// (e.g. Redis restarted).
    fn with<T>(&self, f: impl Fn(&mut redis::Connection) -> RedisResult<T>) -> RedisResult<T> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = slot.as_mut() {
            match f(conn) {
                Err(e) if e.is_io_error() || e.is_unrecoverable_error() => *slot = None,
                result => return result,
            }
        }
        let mut conn = connect(&self.admin)?;
        let result = f(&mut conn);
        *slot = Some(conn);
        result
    }
}

impl RedisTestStore {
    /// Longest a [`TestStore::pause`] holds writes if the test never resumes.
    pub const PAUSE_LIMIT: Duration = Duration::from_secs(15);

    /// Opens a [`RedisStore`] for `config` on the Redis at `admin_url` — `redis://host:port/`
    /// or a cluster's `redis+cluster://host:port,...`, without credentials, whose default
    /// user may run `ACL` and `CLIENT PAUSE` — connecting as the server's own ACL user
    /// (created on every master). Returns the port for the app and the store for the test.
    /// `config.selection` is ignored.
    pub fn open(admin_url: &str, config: &StoreSettings) -> (StorePort, Arc<Self>) {
        assert!(
            !admin_url.contains('@'),
            "the fixture needs a URL without credentials, got {admin_url}"
        );
        let store_user = format!("hearth-store-{}", config.instance_id);
        let credentials = format!("{store_user}:{STORE_USER_PASSWORD}@");
        let (nodes, slots, store_url) = match admin_url.strip_prefix("redis://") {
            Some(rest) => {
                let address = rest.split('/').next().unwrap_or(rest);
                let store_url = format!("redis://{credentials}{rest}");
                (vec![Node::new(address)], None, store_url)
            }
            None => {
                let (addresses, slots) = cluster_masters(admin_url);
                let store_url = format!("{}{credentials}{}", cluster::SCHEME, addresses.join(","));
                (
                    addresses.iter().map(|a| Node::new(a)).collect(),
                    Some(slots),
                    store_url,
                )
            }
        };
        for node in &nodes {
            node.with(|c| create_store_user(c, &store_user))
                .unwrap_or_else(|e| panic!("creating ACL user {store_user}: {e}"));
        }
        let mut store_config = config.clone();
        store_config.selection = StoreSelection::parse(&store_url).expect("a store URL");
        let (tx, rx) = unbounded();
        let store = Arc::new(
            RedisStore::open(&store_config, &store_url, tx)
                .unwrap_or_else(|e| panic!("opening the Redis store: {e}")),
        );
        let test_store = Arc::new(Self {
            store: Arc::clone(&store),
            nodes,
            slots,
            keys: Keys::new(&config.key_prefix),
            store_user,
            advance: Script::new(ADVANCE_LEASES_LUA),
            paused: AtomicBool::new(false),
            owed_ms: AtomicU64::new(0),
        });
        (StorePort::new(store, rx), test_store)
    }

    /// The Redis store itself (metrics, pending jobs).
    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    /// The ACL user this server's store connects as.
    pub fn store_user(&self) -> &str {
        &self.store_user
    }

    /// Runs `f` on the inspection connection to the node holding `key`.
    fn on_key<T>(
        &self,
        key: &str,
        f: impl Fn(&mut redis::Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let node = self.slots.as_ref().map_or(0, |slots| {
            slots[usize::from(cluster::slot_of(key.as_bytes()))]
        });
        self.nodes[node].with(f)
    }

    /// Runs `f` on every node's inspection connection; the first error, if any.
    fn on_every_node(
        &self,
        f: impl Fn(&mut redis::Connection) -> RedisResult<()>,
    ) -> RedisResult<()> {
        self.nodes.iter().try_for_each(|node| node.with(&f))
    }

    /// Creates the server's ACL user again. ACL users live in Redis's memory (the fixture
    /// uses no ACL file), so a restarted redis-server has forgotten them: call this after a
    /// restart, or the store cannot authenticate.
    pub fn restore_store_user(&self) {
        let result = self.on_every_node(|c| create_store_user(c, &self.store_user));
        self.expect("ACL SETUSER", result);
    }

    fn expect<T>(&self, what: &str, result: RedisResult<T>) -> T {
        result.unwrap_or_else(|e| panic!("inspecting Redis ({what}): {e}"))
    }
}

/// The masters of the cluster at `url` (`host:port` each) and the master serving each slot,
/// from `CLUSTER SLOTS` on its first seed.
fn cluster_masters(url: &str) -> (Vec<String>, Vec<usize>) {
    let seeds = ClusterUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let seed = Node::new(&seeds.seeds[0]);
    let reply = seed
        .with(|c| redis::cmd("CLUSTER").arg("SLOTS").query(c))
        .unwrap_or_else(|e| panic!("CLUSTER SLOTS on {url}: {e}"));
    let ranges = cluster::parse_slots(reply).unwrap_or_else(|e| panic!("{url}: {e}"));
    let mut addresses: Vec<String> = Vec::new();
    let mut slots = vec![0; cluster::SLOTS];
    for (start, end, address) in ranges {
        let node = match addresses.iter().position(|a| *a == address) {
            Some(node) => node,
            None => {
                addresses.push(address);
                addresses.len() - 1
            }
        };
        slots[usize::from(start)..=usize::from(end)].fill(node);
    }
    (addresses, slots)
}

fn create_store_user(conn: &mut redis::Connection, user: &str) -> RedisResult<()> {
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(user)
        .arg("reset")
        .arg("on")
        .arg(format!(">{STORE_USER_PASSWORD}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .exec(conn)
}

fn connect(client: &redis::Client) -> RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

impl TestStore for RedisTestStore {
    fn record(&self, player: PlayerId) -> Option<PlayerRecord> {
        let bytes = self.raw_record(player)?;
        PlayerRecord::decode(&bytes).ok()
    }

    fn raw_record(&self, player: PlayerId) -> Option<Vec<u8>> {
        let key = self.keys.player(player);
        let result = self.on_key(&key, |c| c.get::<_, Option<Vec<u8>>>(&key));
        self.expect("GET record", result)
    }

    fn put_raw_record(&self, player: PlayerId, bytes: Vec<u8>) {
        let key = self.keys.player(player);
        let result = self.on_key(&key, |c| c.set::<_, _, ()>(&key, bytes.as_slice()));
        self.expect("SET record", result);
    }

    fn lease_owner(&self, player: PlayerId) -> Option<String> {
        let key = self.keys.session(player);
        let result = self.on_key(&key, |c| c.get::<_, Option<String>>(&key));
        self.expect("GET lease", result)
    }

    fn force_lease(&self, player: PlayerId, owner: &str, ttl: Duration) {
        let key = self.keys.session(player);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let result = self.on_key(&key, |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(owner)
                .arg("PX")
                .arg(ms)
                .exec(c)
        });
        self.expect("SET lease", result);
    }

    fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        if self.paused.load(Ordering::SeqCst) {
            // Shortening TTLs is a write, which the pause would hold: owe it until resume.
            self.owed_ms.fetch_add(ms, Ordering::SeqCst);
            return;
        }
        let total = ms + self.owed_ms.swap(0, Ordering::SeqCst);
        if total == 0 {
            return;
        }
        let pattern = self.keys.session_pattern();
        let result = self.on_every_node(|c| {
            self.advance
                .arg(&pattern)
                .arg(total)
                .invoke::<u64>(c)
                .map(drop)
        });
        if let Err(e) = result {
            // Redis may be down on purpose (restart tests); the leases then keep their TTL.
            tracing::debug!("advance_clock: cannot shorten lease TTLs: {e}");
        }
    }

    fn pause(&self) {
        let ms = u64::try_from(Self::PAUSE_LIMIT.as_millis()).unwrap_or(u64::MAX);
        let result = self.on_every_node(|c| {
            redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(ms)
                .arg("WRITE")
                .exec(c)
        });
        self.expect("CLIENT PAUSE", result);
        self.paused.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        let result = self.on_every_node(|c| redis::cmd("CLIENT").arg("UNPAUSE").exec(c));
        self.expect("CLIENT UNPAUSE", result);
        self.paused.store(false, Ordering::SeqCst);
        self.advance_clock(Duration::ZERO);
    }

    fn set_unavailable(&self, unavailable: bool) {
        let permissions = if unavailable { "-@all" } else { "+@all" };
        let result = self.on_every_node(|c| {
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&self.store_user)
                .arg(permissions)
                .exec(c)
        });
        self.expect("ACL SETUSER", result);
    }

    fn running_jobs(&self) -> usize {
        if self.paused.load(Ordering::SeqCst) {
            0
        } else {
            self.store.pending_jobs()
        }
    }
}

impl TestServer {
    /// A server on the Redis (or Redis Cluster) at `admin_url` (see
    /// [`RedisTestStore::open`]) with `config`.
    pub fn on_redis(admin_url: &str, config: ServerConfig) -> Self {
        let (port, store) = RedisTestStore::open(admin_url, &config.store.settings);
        Self::on_store(config, port, store)
    }

    /// A server running `game` (not the demo game) on the Redis (or Redis Cluster) at
    /// `admin_url`.
    pub fn for_game_on_redis(admin_url: &str, config: ServerConfig, game: impl Plugin) -> Self {
        let (port, store) = RedisTestStore::open(admin_url, &config.store.settings);
        Self::for_game_on_store(config, port, store, game)
    }
}
