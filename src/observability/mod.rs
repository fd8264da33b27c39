//! Operations endpoints on an HTTP listener of their own ([`MetricsEndpointPlugin`], the
//! `metrics_listen` key, off by default): Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness
//! (`/readyz`). Everything here reads figures the server already keeps (store counters,
//! tick stats, front door counters) at request time; nothing runs on the tick.

pub mod collector;
pub mod health;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bevy_app::{App, Plugin};
use hearth_systems::TickMetrics;
use hearth_systems::storage::StorePort;
use prometheus_client::registry::Registry;

pub use collector::HearthCollector;
pub use health::{Health, NotLive, NotReady, NotReadyReason, Readiness};
pub use http::MetricsEndpoint;

/// Serves `/metrics`, `/healthz` and `/readyz` on `metrics_listen` when it is set. Opens in
/// `Plugin::finish` after the store and the front door (added before it in
/// [`crate::HearthPlugins`]), so their figures are there to read; publishes the bound address
/// in [`crate::startup::BoundAddresses`] and records a failure to bind for the runner.
#[derive(Clone, Debug, Default)]
pub struct MetricsEndpointPlugin {
    /// HTTP address of the metrics and health endpoints; `None` (the default): not served.
    /// Off by default so an operator opts in and chooses the interface (a private one, not
    /// the game port's public one).
    pub metrics_listen: Option<SocketAddr>,
}

impl Plugin for MetricsEndpointPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Readiness>();
    }

    fn finish(&self, app: &mut App) {
        let Some(addr) = self.metrics_listen else {
            return;
        };
        if app
            .world()
            .get_resource::<crate::startup::StartupFailures>()
            .is_some_and(|f| !f.0.is_empty())
        {
            return; // the store or the front door failed: the runner exits before serving
        }
        match start(app, addr) {
            Ok(local) => {
                app.world_mut()
                    .get_resource_or_init::<crate::startup::BoundAddresses>()
                    .metrics = Some(local);
            }
            Err(source) => crate::startup::record(
                app.world_mut(),
                crate::startup::StartupFailure::Listen {
                    what: "serve metrics on",
                    addr,
                    source,
                },
            ),
        }
    }
}

/// Serves the endpoints of `app` on `addr` and keeps the listener as the [`MetricsEndpoint`]
/// resource. Returns the address it listens on (useful with port 0).
fn start(app: &mut App, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let world = app.world_mut();
    let readiness = world.get_resource_or_init::<Readiness>().clone();
    let store = world
        .get_resource::<StorePort>()
        .map(|p| Arc::clone(p.metrics()));
    let tick = world
        .get_resource::<TickMetrics>()
        .map(|t| Arc::clone(&t.stats));
    let tick_period = world
        .get_resource::<TickMetrics>()
        .map_or(Duration::ZERO, TickMetrics::budget);
    let (Some(store), Some(tick)) = (store, tick) else {
        return Err(std::io::Error::other(
            "the metrics endpoint needs the store and the metrics plugin",
        ));
    };
    let front_door = world
        .get_resource::<crate::net::FrontDoor>()
        .map(crate::net::FrontDoor::observer);
    let health = Health {
        tick: Arc::clone(&tick),
        tick_period,
        store: Arc::clone(&store),
        front_door: front_door.clone(),
        readiness,
    };
    let border_age = world
        .get_resource::<crate::zones::border::BorderSnapshotAge>()
        .map(|age| Arc::clone(&age.0));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HearthCollector {
        store,
        tick,
        tick_period,
        front_door,
        border_age,
    }));
    let endpoint = http::serve(addr, registry, health)?;
    let local = endpoint.local_addr();
    world.insert_resource(endpoint);
    Ok(local)
}
