//! Assembling a server the Bevy way: `App::new().add_plugins(HearthPlugins::new(config))
//! .add_plugins(MyGame).run()`. [`HearthPlugins`] holds every capability, configured from
//! one [`ServerConfig`]; its runner opens the store and the front door, runs the fixed-rate
//! loop until Ctrl-C or SIGTERM (shutdown) or SIGUSR1 (drain), saves everyone and returns
//! the exit code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bevy_app::{App, AppExit, Plugin, PluginGroup, PluginGroupBuilder, TaskPoolPlugin};
use bevy_ecs::resource::Resource;
use bevy_time::{Fixed, Time, TimePlugin};
use hearth_components::{PlayerId, ServerConfig};
use hearth_systems::storage::StorePort;
use hearth_systems::{
    GameMessagesPlugin, MetricsPlugin, PersistencePlugin, SessionPlugin, SpatialPlugin,
    StoragePlugin, sessions,
};
use sessions::Draining;

/// Every capability of a Hearth server, configured from one [`ServerConfig`] (each plugin's
/// settings are its fields, built from it). Add your game's plugin after it. Leave out the
/// network or the runner with `.build().disable::<FrontDoorPlugin>()` (as the test fixtures
/// do, which also bring their own store).
pub struct HearthPlugins {
    config: ServerConfig,
}

impl HearthPlugins {
    /// The plugins of a server with this configuration.
    pub fn new(config: ServerConfig) -> Self {
        Self { config }
    }
}

impl PluginGroup for HearthPlugins {
    fn build(self) -> PluginGroupBuilder {
        let config = &self.config;
        PluginGroupBuilder::start::<Self>()
            .add(TaskPoolPlugin::default())
            .add(TimePlugin)
            .add(ServerConfigPlugin {
                config: config.clone(),
            })
            .add(StoragePlugin)
            .add(PersistencePlugin::from(config))
            .add(SessionPlugin::from(config))
            .add(SpatialPlugin::default())
            .add(GameMessagesPlugin)
            .add(MetricsPlugin::from(config))
            .add(FrontDoorPlugin)
            .add(RunnerPlugin)
    }
}

/// Makes the configuration a resource (systems read it) and sets the fixed tick rate.
pub struct ServerConfigPlugin {
    pub config: ServerConfig,
}

impl Plugin for ServerConfigPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.config.clone())
            .insert_resource(Time::<Fixed>::from_hz(self.config.tick_rate));
    }
}

/// Asks the runner to open the client front door (TCP, `ServerConfig::listen`) before the
/// loop starts.
pub struct FrontDoorPlugin;

/// Present when the runner should start the front door.
#[derive(Resource)]
struct FrontDoorWanted;

impl Plugin for FrontDoorPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(FrontDoorWanted);
    }
}

/// Sets Hearth's runner: opens the store (unless one was inserted) and the front door, runs
/// the fixed-rate loop until Ctrl-C/SIGTERM (or a [`StopSignal`] the embedder set), then the
/// graceful shutdown; or until SIGUSR1 (or the [`DrainSignal`] set from code), then the
/// same shutdown as a drain. `App::run` returns `AppExit::Success` when every player was
/// saved, an error code otherwise (1: could not start or could not save everyone).
pub struct RunnerPlugin;

impl Plugin for RunnerPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<DrainSignal>().set_runner(run_server);
    }
}

/// A flag that drains a running server when set, for rolling deploys: logins are refused
/// with `draining`, every player is saved, released and told to reconnect (so it can log in
/// on another server at once), then [`run`] returns. The runner sets it on SIGUSR1; set it
/// from code to drain without a signal. It stays set from the drain request to the exit, so
/// a readiness probe can clone the `Arc` and report not ready while it is set.
#[derive(Resource, Clone, Default)]
pub struct DrainSignal(pub Arc<AtomicBool>);

/// A flag that stops a running server (graceful shutdown) when set. Insert one to stop the
/// server from code; without it the runner stops on Ctrl-C and SIGTERM.
#[derive(Resource, Clone)]
pub struct StopSignal(pub Arc<AtomicBool>);

/// The process-wide Ctrl-C/SIGTERM flag (a handler can be installed once per process).
fn termination_signal() -> Result<Arc<AtomicBool>, String> {
    static FLAG: OnceLock<Result<Arc<AtomicBool>, String>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        ctrlc::set_handler(move || set.store(true, Ordering::SeqCst))
            .map(|()| flag)
            .map_err(|e| format!("cannot install the Ctrl-C/SIGTERM handler: {e}"))
    })
    .clone()
}

/// Hearth's runner (see [`RunnerPlugin`]).
fn run_server(mut app: App) -> AppExit {
    match start(&mut app) {
        Ok(stop) => match u8::try_from(run(app, stop)) {
            Ok(0) => AppExit::Success,
            Ok(code) => AppExit::from_code(code),
            Err(_) => AppExit::from_code(1),
        },
        Err(message) => {
            eprintln!("hearth: {message}");
            AppExit::from_code(1)
        }
    }
}

/// Opens what the server needs before its first frame; returns its stop flag.
fn start(app: &mut App) -> Result<Arc<AtomicBool>, String> {
    let config = app.world().resource::<ServerConfig>().clone();
    let mut memory_backend = None;
    if !app.world().contains_resource::<StorePort>() {
        let (port, backend) =
            crate::store::open_with_backend(&config).map_err(|e| e.to_string())?;
        memory_backend = backend;
        let info = port.info();
        if info.durable {
            tracing::info!(store = info.backend, location = %info.location, instance = %config.instance_id, "store ready");
        } else {
            tracing::warn!(store = info.backend, instance = %config.instance_id, "store ready: the {} store is NOT durable; everything is lost when the process exits (use --store redis://...)", info.backend);
        }
        app.insert_resource(port);
    }
    let stop = match app.world().get_resource::<StopSignal>() {
        Some(signal) => Arc::clone(&signal.0),
        None => termination_signal()?,
    };
    let drain = Arc::clone(&app.world().resource::<DrainSignal>().0); // RunnerPlugin's
    // Installed before the server says it runs: SIGUSR1 would otherwise end the process.
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, drain)
        .map_err(|e| format!("cannot install the SIGUSR1 (drain) handler: {e}"))?;
    let door = if app.world().contains_resource::<FrontDoorWanted>() {
        let accounts = match memory_backend {
            Some(backend) => crate::net::memory_account_stores(backend),
            None => crate::net::account_stores(&config).map_err(|e| e.to_string())?,
        };
        let addr = crate::net::start(app, accounts)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        Some(addr)
    } else {
        None
    };
    app.world_mut()
        .get_resource_or_init::<crate::observability::Readiness>();
    let metrics = match config.metrics_listen {
        Some(addr) => Some(
            crate::observability::start(app, addr)
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    if let Some(addr) = door {
        // Announced only now: a server that cannot listen never says it is running.
        tracing::info!(tick_rate = config.tick_rate, flush_interval = ?config.flush_interval, lease_ttl = ?config.lease_ttl, "hearth running; Ctrl-C or SIGTERM to stop, SIGUSR1 to drain");
        tracing::info!(%addr, "accepting game clients (newline-delimited JSON over TCP, see docs/protocol.md)");
    }
    if let Some(addr) = metrics {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz over HTTP");
    }
    Ok(stop)
}

/// A server app on the given config and store, without a game, a front door or a runner:
/// what test fixtures and embedders build on ([`crate::net::start`] adds the front door,
/// [`run`] runs it).
pub fn build_core_app(config: ServerConfig, port: StorePort) -> App {
    let mut app = App::new();
    app.insert_resource(port).add_plugins(
        HearthPlugins::new(config)
            .build()
            .disable::<FrontDoorPlugin>()
            .disable::<RunnerPlugin>(),
    );
    app
}

/// [`build_core_app`] with the built-in demo game: the default server, not running.
pub fn build_app(config: ServerConfig, port: StorePort) -> App {
    let mut app = build_core_app(config, port);
    app.add_plugins(crate::demo_game::DemoGamePlugin);
    app
}

/// How long a shutdown waits for connections to write their last message.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How a shutdown ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Players whose final save did not complete before the deadline.
    pub unsaved: Vec<PlayerId>,
}

/// Saves every player and releases every lease, updating the app until all have left or
/// `deadline` passes. Runs the same leave path as a logout. During a drain (the [`Draining`]
/// resource is present) the front door keeps accepting until the end, so a late login hears
/// `draining` (go elsewhere) rather than finding the port closed.
pub fn shutdown(app: &mut App, deadline: Duration, mut wait_frame: impl FnMut()) -> ShutdownReport {
    if let Some(door) = app.world().get_resource::<crate::net::FrontDoor>()
        && !app.world().contains_resource::<Draining>()
    {
        door.stop_accepting();
    }
    let farewell = if app.world().contains_resource::<Draining>() {
        hearth_systems::net::DRAINING_REFUSAL
    } else {
        crate::net::connection::SHUTTING_DOWN
    };
    let started = Instant::now();
    loop {
        let present = sessions::leave_everyone(app.world_mut());
        if present == 0 || started.elapsed() >= deadline {
            if let Some(door) = app.world().get_resource::<crate::net::FrontDoor>() {
                door.close_all(farewell, CLOSE_GRACE);
            }
            let unsaved = app
                .world_mut()
                .query::<&PlayerId>()
                .iter(app.world())
                .copied()
                .collect();
            return ShutdownReport { unsaved };
        }
        app.update();
        wait_frame();
    }
}

/// Runs every schedule's systems one after another on the runner's thread. Bevy's
/// multi-threaded executor hands systems to a task pool, and a frame crosses threads dozens
/// of times: on a server whose cores are busy with the network (and, in a load test, the
/// clients), each crossing waits for a core, and frames ran late by tens of milliseconds
/// while the tick used a fifth of one core (hearth-swarm, 5,000 bots in one spot). One thread
/// that keeps its core for the whole frame meets the deadline; the frame's work is small.
fn run_frames_on_one_thread(app: &mut App) {
    let mut schedules = app
        .world_mut()
        .resource_mut::<bevy_ecs::schedule::Schedules>();
    for (_, schedule) in schedules.iter_mut() {
        schedule.set_executor(bevy_ecs::schedule::SingleThreadedExecutor::new());
    }
}

/// Runs the app at its tick rate until `stop` is set, then shuts down gracefully; or until
/// the app's [`DrainSignal`] (if any) is set, then drains: the same shutdown, with the
/// [`Draining`] resource telling clients to reconnect elsewhere. Returns the process exit
/// code: 0 when every player was saved.
pub fn run(mut app: App, stop: Arc<AtomicBool>) -> i32 {
    let config = app.world().resource::<ServerConfig>().clone();
    let drain = app
        .world()
        .get_resource::<DrainSignal>()
        .map(|signal| Arc::clone(&signal.0))
        .unwrap_or_default();
    let frame = Duration::from_secs_f64(1.0 / config.tick_rate);
    app.finish();
    app.cleanup();
    run_frames_on_one_thread(&mut app);
    let mut next = Instant::now();
    let pace = move |next: &mut Instant| {
        *next += frame;
        let now = Instant::now();
        if *next > now {
            std::thread::sleep(*next - now);
        } else {
            *next = now; // behind: do not try to catch up with a burst
        }
    };
    while !stop.load(Ordering::SeqCst) && !drain.load(Ordering::SeqCst) {
        app.update();
        pace(&mut next);
    }
    let players = app
        .world()
        .resource::<hearth_systems::OnlinePlayers>()
        .len();
    if drain.load(Ordering::SeqCst) {
        app.world_mut().insert_resource(Draining);
        // /readyz answers 503 `draining` from now on: the load balancer stops sending players.
        if let Some(readiness) = app
            .world()
            .get_resource::<crate::observability::Readiness>()
        {
            readiness.set_draining(true);
        }
        tracing::info!(players, deadline = ?config.shutdown_deadline, "draining: refusing logins, saving every player, releasing leases and telling each to reconnect");
    } else {
        tracing::info!(players, deadline = ?config.shutdown_deadline, "shutting down: saving every player and releasing leases");
    }
    let report = shutdown(&mut app, config.shutdown_deadline, || pace(&mut next));
    if report.unsaved.is_empty() {
        tracing::info!(
            players,
            "shutdown complete: every player saved, every lease released"
        );
        0
    } else {
        tracing::error!(
            unsaved = report.unsaved.len(),
            players = ?report.unsaved,
            "SHUTDOWN COULD NOT SAVE EVERY PLAYER before the deadline; their progress since the last save is lost"
        );
        1
    }
}
