//! Shared test support: store factories, so every ECS fixture test runs on each store.

#![allow(dead_code)]

pub mod client;
pub mod http;
pub mod process;
pub mod redis_cluster;
pub mod redis_server;
pub mod rng;
pub mod ws;
pub mod zones;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;

use hearth::config::ServerConfig;
use hearth::prelude::{App, Plugin};
use hearth::store::{MemoryBackend, StoreClock};
use hearth::testing::{TestServer, test_config};

/// Connects to `addr` from the local address `local` (on Linux every 127.x.y.z is this
/// machine), so a test can be several client hosts at once.
pub fn connect_from(local: IpAddr, addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(local, 0))
            .unwrap_or_else(|e| panic!("binding to {local} (loopback alias): {e}"));
        socket
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr} from {local}: {e}"))
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Makes test servers that share one store (so two servers can contend for a lease).
pub trait StoreFactory {
    /// A server on the shared store with `config`.
    fn server(&self, config: ServerConfig) -> TestServer;
    /// A server on the shared store with `config`, running the game `game` builds (and not
    /// the demo game).
    fn game_server(&self, config: ServerConfig, game: fn(&mut App)) -> TestServer;
}

/// A game given as the function that builds it.
struct Game(fn(&mut App));

impl Plugin for Game {
    fn build(&self, app: &mut App) {
        (self.0)(app);
    }
}

/// Servers on one shared in-memory backend with a manual clock.
pub struct MemoryStores(Arc<MemoryBackend>);

impl MemoryStores {
    pub fn new() -> Self {
        Self(MemoryBackend::new(StoreClock::manual()))
    }
}

impl StoreFactory for MemoryStores {
    fn server(&self, config: ServerConfig) -> TestServer {
        TestServer::on_memory(Arc::clone(&self.0), config)
    }
    fn game_server(&self, config: ServerConfig, game: fn(&mut App)) -> TestServer {
        TestServer::for_game_on_memory(Arc::clone(&self.0), config, Game(game))
    }
}

/// Servers on one real `redis-server` started for the test (killed when this is dropped).
/// Each server connects as its own ACL user, so faults stay per server.
pub struct RedisStores {
    pub redis: redis_server::RedisServer,
}

impl RedisStores {
    pub fn new() -> Self {
        Self {
            redis: redis_server::RedisServer::start(),
        }
    }
}

impl StoreFactory for RedisStores {
    fn server(&self, config: ServerConfig) -> TestServer {
        TestServer::on_redis(&self.redis.url(), config)
    }
    fn game_server(&self, config: ServerConfig, game: fn(&mut App)) -> TestServer {
        TestServer::for_game_on_redis(&self.redis.url(), config, Game(game))
    }
}

/// Servers on one real local Redis Cluster (3 masters) started for the test (killed when this
/// is dropped). Each server connects as its own ACL user, created on every master.
pub struct RedisClusterStores {
    pub cluster: redis_cluster::RedisCluster,
}

impl RedisClusterStores {
    pub fn new() -> Self {
        Self {
            cluster: redis_cluster::RedisCluster::start(3, 0),
        }
    }
}

impl StoreFactory for RedisClusterStores {
    fn server(&self, config: ServerConfig) -> TestServer {
        TestServer::on_redis(&self.cluster.url(), config)
    }
    fn game_server(&self, config: ServerConfig, game: fn(&mut App)) -> TestServer {
        TestServer::for_game_on_redis(&self.cluster.url(), config, Game(game))
    }
}

/// The default config of server `name`.
pub fn config(name: &str) -> ServerConfig {
    test_config(name)
}

/// Runs each listed test function (`fn(&dyn StoreFactory)`) once per store: `memory::<name>`,
/// `redis::<name>` (a real redis-server per test) and `redis_cluster::<name>` (a real local
/// 3-master Redis Cluster per test).
#[macro_export]
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::common::MemoryStores::new());
                }
            )*
        }
        mod redis {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::common::RedisStores::new());
                }
            )*
        }
        mod redis_cluster {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::common::RedisClusterStores::new());
                }
            )*
        }
    };
}
