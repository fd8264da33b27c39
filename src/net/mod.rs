//! The front door: a tokio TCP listener for game clients, their connection tasks and the
//! auth workers. Everything here talks to the ECS only through crossbeam channels
//! ([`NetEvent`]) and per-client bounded queues.

pub mod accept;
pub mod admission;
pub mod auth;
pub mod connection;
pub mod fair_queue;
pub mod fd_limit;
pub mod password;
pub mod resume;
pub mod sent_rate;
pub mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bevy_app::App;
use bevy_ecs::resource::Resource;
use hearth_components::{ServerConfig, StoreSelection};
use hearth_systems::NetBridgePlugin;
use hearth_systems::game_messages::ClientMessageTypes;
use hearth_systems::net::NetInbox;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::accounts::{AccountError, AccountStore, AccountStoreFactory, MemoryAccounts};
use crate::store::redis::accounts::RedisAccounts;
use auth::LoginThrottle;
use connection::ConnectionContext;
use stats::NetStats;

/// Auth worker threads.
pub const AUTH_WORKERS: usize = 2;
/// An address with too many failed logins is locked out this long.
pub const LOGIN_LOCKOUT: Duration = Duration::from_secs(300);

/// The running front door: its runtime and where it listens. Dropping it closes everything.
#[derive(Resource)]
pub struct FrontDoor {
    /// Owns every connection task; dropping it ends them.
    _runtime: tokio::runtime::Runtime,
    local_addr: SocketAddr,
    accepting: CancellationToken,
    closing: CancellationToken,
    farewell: Arc<OnceLock<&'static str>>,
    open: Arc<AtomicUsize>,
    stats: Arc<NetStats>,
    /// Keeps the resume tokens of the players online here alive; stops with the door.
    _keeper: resume::Keeper,
}

impl FrontDoor {
    /// The address clients connect to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting new connections (shutdown); open ones keep being served.
    pub fn stop_accepting(&self) {
        self.accepting.cancel();
    }

    /// Tells every open connection `reason` (with `kicked`) and closes it, waiting up to
    /// `grace` for them to finish writing. The last step of a shutdown or drain, once every
    /// player has left (each was told its progress is saved).
    pub fn close_all(&self, reason: &'static str, grace: Duration) {
        self.farewell.set(reason).ok();
        self.accepting.cancel();
        self.closing.cancel();
        let started = std::time::Instant::now();
        while self.open.load(Ordering::SeqCst) > 0 && started.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl FrontDoor {
    /// A read-only view for the operations endpoints (readiness, metrics).
    pub fn observer(&self) -> FrontDoorObserver {
        FrontDoorObserver {
            accepting: self.accepting.clone(),
            open: Arc::clone(&self.open),
            stats: Arc::clone(&self.stats),
        }
    }
}

/// What the operations endpoints read about the front door, from their own thread.
#[derive(Clone)]
pub struct FrontDoorObserver {
    accepting: CancellationToken,
    open: Arc<AtomicUsize>,
    /// The front door's counters.
    pub stats: Arc<NetStats>,
}

impl FrontDoorObserver {
    /// Whether it accepts new connections (and so logins): false once shutdown began.
    pub fn accepting(&self) -> bool {
        !self.accepting.is_cancelled()
    }

    /// Client connections open.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        self.accepting.cancel();
    }
}

/// One network thread per core: connections are served in parallel when there are cores
/// to do it (at a lower priority than the tick, see [`crate::priority`]).
fn network_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Account storage matching the selected store: memory, or Redis (one server or a cluster) at
/// the same URL.
pub fn account_stores(config: &ServerConfig) -> Result<AccountStoreFactory, AccountError> {
    match &config.store {
        StoreSelection::Memory => {
            let shared = MemoryAccounts::default();
            Ok(Arc::new(move || {
                Box::new(shared.clone()) as Box<dyn AccountStore>
            }))
        }
        StoreSelection::Redis(url) | StoreSelection::RedisCluster(url) => {
            RedisAccounts::new(url, &config.key_prefix, config.store_timeout)?; // URL check at start
            let (url, prefix, timeout) =
                (url.clone(), config.key_prefix.clone(), config.store_timeout);
            Ok(Arc::new(move || {
                Box::new(
                    RedisAccounts::new(&url, &prefix, timeout).expect("URL validated at start"),
                ) as Box<dyn AccountStore>
            }))
        }
    }
}

/// Memory accounts that see the leases of the memory store `backend` (as `resume.lua` sees
/// the Redis leases): a resume token presented while its player is online is kept.
pub fn memory_account_stores(backend: Arc<crate::store::MemoryBackend>) -> AccountStoreFactory {
    let shared = MemoryAccounts::on_leases(backend);
    Arc::new(move || Box::new(shared.clone()) as Box<dyn AccountStore>)
}

/// Binds the listener, starts auth workers and connection handling, and wires the bridge
/// into the app (as the [`FrontDoor`] resource). Returns the address it listens on.
pub fn start(app: &mut App, accounts: AccountStoreFactory) -> std::io::Result<SocketAddr> {
    let config = app.world().resource::<ServerConfig>().clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(network_threads())
        .thread_name("hearth-net")
        .on_thread_start(|| crate::priority::lower_this_thread(crate::priority::NETWORK_NICENESS))
        .enable_all()
        .build()?;
    let listener = runtime.block_on(TcpListener::bind(config.listen))?;
    let local_addr = listener.local_addr()?;
    let (events, inbox) = crossbeam_channel::unbounded();
    let throttle = Arc::new(LoginThrottle::new(LOGIN_LOCKOUT));
    let stats = Arc::new(NetStats::default());
    let online = Arc::new(resume::OnlinePlayers::default());
    let keeper = resume::Keeper::start(
        Arc::clone(&online),
        Arc::clone(&accounts),
        config.resume_ttl,
    )?;
    let auth = auth::start_workers(
        AUTH_WORKERS,
        accounts,
        events.clone(),
        throttle,
        Arc::clone(&stats),
        config.resume_ttl,
    );
    let closing = CancellationToken::new();
    let farewell = Arc::new(OnceLock::new());
    let open = Arc::new(AtomicUsize::new(0));
    let game_messages = Arc::new(
        app.world()
            .get_resource::<ClientMessageTypes>()
            .cloned()
            .unwrap_or_default(),
    );
    let ctx = ConnectionContext {
        events,
        auth,
        game_messages,
        registrations: Arc::new(admission::RegistrationLimit::new(
            config.registrations_per_minute,
        )),
        idle_timeout: config.idle_timeout,
        closing: closing.clone(),
        farewell: Arc::clone(&farewell),
        open: Arc::clone(&open),
        stats: Arc::clone(&stats),
        online,
    };
    let max_connections = fd_limit::fit_max_connections(config.max_connections);
    let limits =
        admission::ConnectionLimits::new(max_connections, config.max_connections_per_address);
    let accepting = CancellationToken::new();
    runtime.spawn(accept::run(listener, ctx, limits, accepting.clone()));
    app.insert_resource(NetInbox(inbox))
        .add_plugins(NetBridgePlugin)
        .insert_resource(FrontDoor {
            _runtime: runtime,
            local_addr,
            accepting,
            closing,
            farewell,
            open,
            stats,
            _keeper: keeper,
        });
    Ok(local_addr)
}
