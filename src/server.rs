//! Assembling a server: the plugins of every capability, the runner with its fixed-rate
//! loop, and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy_app::{App, PluginGroup, PluginGroupBuilder, TaskPoolPlugin};
use bevy_time::{Fixed, Time, TimePlugin};
use hearth_components::{PlayerId, ServerConfig};
use hearth_systems::storage::StorePort;
use hearth_systems::{
    GameplayPlugin, MetricsPlugin, PersistencePlugin, SessionPlugin, StoragePlugin, sessions,
};

/// Every capability of a Hearth server, in build order. Needs [`ServerConfig`] and a
/// [`StorePort`] inserted first (see [`build_app`]).
pub struct HearthPlugins;

impl PluginGroup for HearthPlugins {
    fn build(self) -> PluginGroupBuilder {
        PluginGroupBuilder::start::<Self>()
            .add(TaskPoolPlugin::default())
            .add(TimePlugin)
            .add(StoragePlugin)
            .add(PersistencePlugin)
            .add(SessionPlugin)
            .add(GameplayPlugin)
            .add(MetricsPlugin)
    }
}

/// A server app on the given config and store, not yet running.
pub fn build_app(config: ServerConfig, port: StorePort) -> App {
    let mut app = App::new();
    let tick = Time::<Fixed>::from_hz(config.tick_rate);
    app.insert_resource(config)
        .insert_resource(port)
        .add_plugins(HearthPlugins)
        .insert_resource(tick);
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
/// `deadline` passes. Runs the same leave path as a logout.
pub fn shutdown(app: &mut App, deadline: Duration, mut wait_frame: impl FnMut()) -> ShutdownReport {
    if let Some(door) = app.world().get_resource::<crate::net::FrontDoor>() {
        door.stop_accepting();
    }
    let started = Instant::now();
    loop {
        let present = sessions::leave_everyone(app.world_mut());
        if present == 0 || started.elapsed() >= deadline {
            if let Some(door) = app.world().get_resource::<crate::net::FrontDoor>() {
                door.close_all(CLOSE_GRACE);
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

/// Runs the app at its tick rate until `stop` is set, then shuts down gracefully.
/// Returns the process exit code: 0 when every player was saved.
pub fn run(mut app: App, stop: Arc<AtomicBool>) -> i32 {
    let config = app.world().resource::<ServerConfig>().clone();
    let frame = Duration::from_secs_f64(1.0 / config.tick_rate);
    app.finish();
    app.cleanup();
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
    while !stop.load(Ordering::SeqCst) {
        app.update();
        pace(&mut next);
    }
    let players = app
        .world()
        .resource::<hearth_systems::OnlinePlayers>()
        .len();
    tracing::info!(players, deadline = ?config.shutdown_deadline, "shutting down: saving every player and releasing leases");
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
