//! The front door: the listeners for game clients (TCP, and WebSocket when `listen_ws` is
//! set, each in TLS when a certificate is configured), their connection tasks and the
//! auth workers. Everything here talks to the ECS only through crossbeam channels
//! ([`NetEvent`]) and per-client bounded queues.

pub mod accept;
pub mod admission;
pub mod auth;
pub mod connection;
pub mod encoding;
pub mod fair_queue;
pub mod fd_limit;
pub mod password;
pub mod replica;
pub mod resume;
pub mod sent_rate;
pub mod static_files;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod transport;
pub mod waiting_room;
pub mod web;
pub mod websocket;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bevy_app::{App, Plugin};
use bevy_ecs::resource::Resource;
use hearth_components::protocol::KickCode;
use hearth_systems::NetBridgePlugin;
use hearth_systems::game_messages::ClientMessageTypes;
use hearth_systems::net::NetInbox;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::startup::{self, BoundAddresses, StartupFailure, StartupFailures};
use crate::store::accounts::AccountStoreFactory;
use crate::store::{AccountStores, AdvertisedListen, AdvertisedWsListen, ResumeTokenLifetime};
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
    farewell: Arc<OnceLock<(KickCode, &'static str)>>,
    /// Set when the server starts draining: logins and resumes are answered `draining` at
    /// the door, before they spend anything (a resume token stays good for another server).
    draining: Arc<AtomicBool>,
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

    /// The server drains: from now on a `login` or `resume` is answered `draining` before
    /// it reaches the auth workers or the store.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Tells every open connection why (`kicked` with `code` and `reason`) and closes it,
    /// waiting up to `grace` for them to finish writing. The last step of a shutdown or
    /// drain, once every player has left (each was told its progress is saved).
    pub fn close_all(&self, code: KickCode, reason: &'static str, grace: Duration) {
        self.farewell.set((code, reason)).ok();
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

/// The client front door: a TCP listener for game clients (newline-delimited JSON, see
/// docs/protocol.md), its connection tasks and auth workers, bridged to the world. Adds the
/// [`NetBridgePlugin`] when built; binds and starts in `Plugin::finish`, after the store
/// opened (it needs the [`AccountStores`]) and after every game registered
/// its messages. The bound address is published in [`BoundAddresses`] (bind port 0 in tests
/// and read it there); a failure to bind is recorded for the runner, which exits 1.
#[derive(Clone, Debug)]
pub struct FrontDoorPlugin {
    /// TCP address of the client front door (the `listen` key).
    pub listen: SocketAddr,
    /// A client that sends no line for this long is disconnected.
    pub idle_timeout: Duration,
    /// Accounts one client address may register per minute (bursts up to this many), so one
    /// address cannot fill the account store or keep the auth workers hashing for it.
    pub registrations_per_minute: u32,
    /// Client connections served at once; beyond it new ones get `server_busy` and are
    /// closed, so the server never runs out of file descriptors.
    pub max_connections: usize,
    /// Client connections served at once from one address, so one address cannot take
    /// every slot of `max_connections`.
    pub max_connections_per_address: usize,
    /// How long a resume token (handed out with every `logged_in`) stays usable after the
    /// player's last login, resume or time online: it lets a client reconnect after a
    /// restart or drain without a password (and without argon2's cost).
    pub resume_ttl: Duration,
    /// The WebSocket listener's address (the `listen_ws` key; `None`: no listener): browser
    /// and WASM clients, and the browser client's files.
    pub listen_ws: Option<SocketAddr>,
    /// The `Origin`s a WebSocket handshake may come from (empty: any), so other sites'
    /// pages cannot connect with a visitor's browser.
    pub ws_allowed_origins: Vec<String>,
    /// PEM certificate chain: with `tls_key`, both listeners speak TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for FrontDoorPlugin {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            idle_timeout: Duration::from_secs(30),
            registrations_per_minute: 10,
            max_connections: 10_000,
            max_connections_per_address: 64,
            resume_ttl: Duration::from_secs(600),
            listen_ws: None,
            ws_allowed_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Plugin for FrontDoorPlugin {
    fn build(&self, app: &mut App) {
        app.add_plugins(NetBridgePlugin)
            .insert_resource(AdvertisedListen(self.listen))
            .insert_resource(ResumeTokenLifetime(self.resume_ttl));
        if let Some(ws) = self.listen_ws {
            app.insert_resource(AdvertisedWsListen(ws));
        }
    }

    fn finish(&self, app: &mut App) {
        let Some(accounts) = app.world().get_resource::<AccountStores>() else {
            // A store that failed to open was recorded already; otherwise none was added.
            if !app.world().contains_resource::<StartupFailures>() {
                startup::record(app.world_mut(), StartupFailure::NoStore);
            }
            return;
        };
        let accounts = Arc::clone(&accounts.0);
        let tls = match self.tls_acceptors() {
            Ok(tls) => tls,
            Err(e) => return startup::record(app.world_mut(), StartupFailure::Tls(Box::new(e))),
        };
        match self.start(app, accounts, tls) {
            Ok((game, ws)) => {
                let mut bound = app.world_mut().get_resource_or_init::<BoundAddresses>();
                bound.game = Some(game);
                bound.ws = ws;
            }
            Err((addr, source)) => startup::record(
                app.world_mut(),
                StartupFailure::Listen {
                    what: "listen on",
                    addr,
                    source,
                },
            ),
        }
    }
}

/// The TLS acceptors of the two listeners (the same certificate; the WebSocket one offers
/// HTTP/1.1 by ALPN).
struct TlsAcceptors {
    game: TlsAcceptor,
    web: TlsAcceptor,
}

impl FrontDoorPlugin {
    /// The TLS acceptors, when a certificate and key are configured.
    fn tls_acceptors(&self) -> Result<Option<TlsAcceptors>, tls::TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        Ok(Some(TlsAcceptors {
            game: tls::acceptor(cert, key, &[])?,
            web: tls::acceptor(cert, key, &[tls::HTTP1_ALPN])?,
        }))
    }

    /// Binds the listeners, starts auth workers and connection handling, and wires the
    /// bridge into the app (as the [`FrontDoor`] resource). Returns the addresses it listens
    /// on (the game's, the WebSocket one's), or the address it could not bind and why.
    fn start(
        &self,
        app: &mut App,
        accounts: AccountStoreFactory,
        tls: Option<TlsAcceptors>,
    ) -> Result<(SocketAddr, Option<SocketAddr>), (SocketAddr, std::io::Error)> {
        let config = self;
        let failed = |addr| move |e| (addr, e);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(network_threads())
            .thread_name("hearth-net")
            .on_thread_start(|| {
                crate::priority::lower_this_thread(crate::priority::NETWORK_NICENESS)
            })
            .enable_all()
            .build()
            .map_err(failed(config.listen))?;
        let bind = |addr| {
            let listener = runtime.block_on(TcpListener::bind(addr))?;
            let local = listener.local_addr()?;
            Ok((listener, local))
        };
        let (listener, local_addr) = bind(config.listen).map_err(failed(config.listen))?;
        let ws_listener = match config.listen_ws {
            Some(addr) => Some(bind(addr).map_err(failed(addr))?),
            None => None,
        };
        let (events, inbox) = crossbeam_channel::unbounded();
        let throttle = Arc::new(LoginThrottle::new(LOGIN_LOCKOUT));
        let stats = Arc::new(NetStats::default());
        let online = Arc::new(resume::OnlinePlayers::default());
        let keeper = resume::Keeper::start(
            Arc::clone(&online),
            Arc::clone(&accounts),
            config.resume_ttl,
        )
        .map_err(failed(config.listen))?;
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
        let draining = Arc::new(AtomicBool::new(false));
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
            draining: Arc::clone(&draining),
            open: Arc::clone(&open),
            stats: Arc::clone(&stats),
            online,
            replication: app
                .world()
                .get_resource::<hearth_systems::ReplicationFeed>()
                .cloned(),
        };
        let max_connections = fd_limit::fit_max_connections(config.max_connections);
        let limits =
            admission::ConnectionLimits::new(max_connections, config.max_connections_per_address);
        let accepting = CancellationToken::new();
        let (game_tls, web_tls) = match tls {
            Some(TlsAcceptors { game, web }) => (Some(game), Some(web)),
            None => (None, None),
        };
        let ws_addr = ws_listener.map(|(ws_listener, ws_addr)| {
            let door = accept::Door {
                web: Some(Arc::new(web::WebSettings::new(&config.ws_allowed_origins))),
                tls: web_tls,
            };
            let (ctx, limits) = (ctx.clone(), Arc::clone(&limits));
            runtime.spawn(accept::run(
                ws_listener,
                door,
                ctx,
                limits,
                accepting.clone(),
            ));
            ws_addr
        });
        let door = accept::Door {
            web: None,
            tls: game_tls,
        };
        runtime.spawn(accept::run(listener, door, ctx, limits, accepting.clone()));
        app.insert_resource(NetInbox(inbox))
            .insert_resource(FrontDoor {
                _runtime: runtime,
                local_addr,
                accepting,
                closing,
                farewell,
                draining,
                open,
                stats,
                _keeper: keeper,
            });
        Ok((local_addr, ws_addr))
    }
}
