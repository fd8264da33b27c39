//! The fixed tick rate and Hearth's runner: frames at the tick rate until Ctrl-C or SIGTERM
//! (shutdown) or SIGUSR1 (drain), then everyone saved and released, and the exit code. The
//! runner opens nothing: the plugins did (`Plugin::finish`); it reports what they could not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bevy_app::{App, AppExit, Plugin, PluginsState};
use bevy_ecs::resource::Resource;
use bevy_time::{Fixed, Time};
use hearth_components::PlayerId;
use hearth_components::protocol::KickCode;
use hearth_systems::sessions::{self, Draining};

use crate::startup::{BoundAddresses, StartupFailure, StartupFailures};

/// The fixed game tick rate (`Time<Fixed>`): `FixedUpdate` runs this many times a second, and
/// the runner paces one frame per tick.
#[derive(Clone, Debug)]
pub struct TickRatePlugin {
    /// Fixed game ticks per second (the `tick_rate` key).
    pub tick_rate: f64,
}

impl Default for TickRatePlugin {
    fn default() -> Self {
        Self { tick_rate: 60.0 }
    }
}

impl Plugin for TickRatePlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(Time::<Fixed>::from_hz(self.tick_rate));
    }
}

/// Sets Hearth's runner: runs the fixed-rate loop until Ctrl-C/SIGTERM (or a [`StopSignal`]
/// the embedder set), then the graceful shutdown; or until SIGUSR1 (or the [`DrainSignal`]
/// set from code), then the same shutdown as a drain. `App::run` returns
/// `AppExit::Success` when every player was saved, an error code otherwise (1: a plugin could
/// not open what it owns, or not everyone could be saved).
#[derive(Clone, Debug)]
pub struct RunnerPlugin {
    /// How long shutdown may spend saving everyone before it gives up loudly (the
    /// `shutdown_deadline` key).
    pub shutdown_deadline: Duration,
}

impl Default for RunnerPlugin {
    fn default() -> Self {
        Self {
            shutdown_deadline: Duration::from_secs(10),
        }
    }
}

/// The runner's own setting, for [`run`].
#[derive(Resource, Clone, Copy)]
struct ShutdownDeadline(Duration);

impl Plugin for RunnerPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<DrainSignal>()
            .insert_resource(ShutdownDeadline(self.shutdown_deadline))
            .set_runner(run_server);
    }
}

/// A flag that drains a running server when set, for rolling deploys: logins are refused
/// with `draining`, every player is saved, released and told to reconnect (so it can log in
/// on another server at once), then the runner returns. The runner sets it on SIGUSR1; set it
/// from code to drain without a signal. It stays set from the drain request to the exit, so
/// a readiness probe can clone the `Arc` and report not ready while it is set.
#[derive(Resource, Clone, Default)]
pub struct DrainSignal(pub Arc<AtomicBool>);

/// The server binary's name, which its log says is running (`arena running`): the game's
/// binary, not the framework. `launch::main` inserts it; without it the name is `hearth`.
#[derive(Resource, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerName(pub &'static str);

impl ServerName {
    /// The name in `app`, `hearth` when none was set.
    fn of(app: &App) -> &'static str {
        app.world().get_resource::<Self>().map_or("hearth", |n| n.0)
    }
}

/// A flag that stops a running server (graceful shutdown) when set. Insert one to stop the
/// server from code; without it the runner stops on Ctrl-C and SIGTERM.
#[derive(Resource, Clone)]
pub struct StopSignal(pub Arc<AtomicBool>);

/// The process-wide Ctrl-C/SIGTERM flag (a handler can be installed once per process).
fn termination_signal() -> Result<Arc<AtomicBool>, StartupFailure> {
    static FLAG: OnceLock<Result<Arc<AtomicBool>, Arc<ctrlc::Error>>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        ctrlc::set_handler(move || set.store(true, Ordering::SeqCst))
            .map(|()| flag)
            .map_err(Arc::new)
    })
    .clone()
    .map_err(|e| StartupFailure::Signal {
        signal: "Ctrl-C/SIGTERM",
        reason: e.to_string(),
    })
}

/// Sets `drain` when the process gets SIGUSR1 (Unix). Elsewhere there is no such signal: a
/// drain is asked for from code ([`DrainSignal`]), and the start says so once.
#[cfg(unix)]
fn drain_on_sigusr1(drain: Arc<AtomicBool>) -> Result<(), StartupFailure> {
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, drain)
        .map(|_| ())
        .map_err(|e| StartupFailure::Signal {
            signal: "SIGUSR1 (drain)",
            reason: e.to_string(),
        })
}

/// See the Unix version: no SIGUSR1 here, so only [`DrainSignal`] drains.
#[cfg(not(unix))]
fn drain_on_sigusr1(_drain: Arc<AtomicBool>) -> Result<(), StartupFailure> {
    tracing::info!("no SIGUSR1 on this system: drain from code with DrainSignal");
    Ok(())
}

/// Lets every plugin open what it owns (`Plugin::finish`), unless the embedder did already
/// (to read [`BoundAddresses`] before running). Bevy's own runners do the same.
pub fn finish_plugins(app: &mut App) {
    if app.plugins_state() == PluginsState::Ready {
        app.finish();
        app.cleanup();
    }
}

/// Hearth's runner (see [`RunnerPlugin`]).
fn run_server(mut app: App) -> AppExit {
    // The signal handlers go in before the plugins open their ports: a SIGTERM or SIGUSR1
    // sent as soon as the port answers (a supervisor, a test) must stop or drain the server,
    // not kill it with the signal's default action.
    let signals = signals(&app);
    finish_plugins(&mut app);
    match signals.and_then(|stop| start(&mut app).map(|()| stop)) {
        Ok(stop) => match u8::try_from(run(app, stop)) {
            Ok(0) => AppExit::Success,
            Ok(code) => AppExit::from_code(code),
            Err(_) => AppExit::from_code(1),
        },
        Err(failures) => {
            let name = ServerName::of(&app);
            for failure in failures {
                eprintln!("{name}: {failure}");
            }
            AppExit::from_code(1)
        }
    }
}

/// Installs the signal handlers (unless a [`StopSignal`] was inserted: then only SIGUSR1's);
/// returns the stop flag.
fn signals(app: &App) -> Result<Arc<AtomicBool>, Vec<StartupFailure>> {
    let stop = match app.world().get_resource::<StopSignal>() {
        Some(signal) => Arc::clone(&signal.0),
        None => termination_signal().map_err(|f| vec![f])?,
    };
    let drain = Arc::clone(&app.world().resource::<DrainSignal>().0); // RunnerPlugin's
    drain_on_sigusr1(drain).map_err(|f| vec![f])?;
    Ok(stop)
}

/// Checks what the plugins opened and announces the server.
fn start(app: &mut App) -> Result<(), Vec<StartupFailure>> {
    if let Some(mut failures) = app.world_mut().remove_resource::<StartupFailures>()
        && !failures.0.is_empty()
    {
        return Err(std::mem::take(&mut failures.0));
    }
    let bound = app
        .world()
        .get_resource::<BoundAddresses>()
        .copied()
        .unwrap_or_default();
    if let Some(addr) = bound.game {
        // Announced only now: a server that cannot listen never says it is running.
        let timestep = app.world().resource::<Time<Fixed>>().timestep();
        // The configured rate, without the float error of its round trip through a Duration.
        let tick_rate = (1000.0 / timestep.as_secs_f64()).round() / 1000.0;
        let name = ServerName::of(app);
        tracing::info!(
            tick_rate,
            "{name} running; Ctrl-C or SIGTERM to stop, SIGUSR1 to drain"
        );
        tracing::info!(%addr, "accepting game clients (JSON lines or the binary encoding over TCP, see docs/protocol.md)");
    }
    if let Some(addr) = bound.ws {
        tracing::info!(%addr, "accepting WebSocket clients at /ws and serving the browser client at / (docs/protocol.md, \"WebSocket\")");
    }
    if let Some(addr) = bound.metrics {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz over HTTP");
    }
    Ok(())
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
    let (code, farewell) = if app.world().contains_resource::<Draining>() {
        (KickCode::Drain, hearth_systems::net::DRAINING_REFUSAL)
    } else {
        (KickCode::Shutdown, crate::net::connection::SHUTTING_DOWN)
    };
    let started = Instant::now();
    loop {
        let present = sessions::leave_everyone(app.world_mut());
        if present == 0 || started.elapsed() >= deadline {
            if let Some(door) = app.world().get_resource::<crate::net::FrontDoor>() {
                door.close_all(code, farewell, CLOSE_GRACE);
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
fn run(mut app: App, stop: Arc<AtomicBool>) -> i32 {
    let deadline = app.world().resource::<ShutdownDeadline>().0;
    let drain = app
        .world()
        .get_resource::<DrainSignal>()
        .map(|signal| Arc::clone(&signal.0))
        .unwrap_or_default();
    let frame = app.world().resource::<Time<Fixed>>().timestep();
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
        if let Some(door) = app.world().get_resource::<crate::net::FrontDoor>() {
            door.begin_draining();
        }
        // /readyz answers 503 `draining` from now on: the load balancer stops sending players.
        if let Some(readiness) = app
            .world()
            .get_resource::<crate::observability::Readiness>()
        {
            readiness.set_draining(true);
        }
        tracing::info!(
            players,
            ?deadline,
            "draining: refusing logins, saving every player, releasing leases and telling each to reconnect"
        );
    } else {
        tracing::info!(
            players,
            ?deadline,
            "shutting down: saving every player and releasing leases"
        );
    }
    let report = shutdown(&mut app, deadline, || pace(&mut next));
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
