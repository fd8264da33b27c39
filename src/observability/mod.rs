//! Operations endpoints on an HTTP listener of their own (`ServerConfig::metrics_listen`,
//! off by default): Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness
//! (`/readyz`). Everything here reads figures the server already keeps (store counters,
//! tick stats, front door counters) at request time; nothing runs on the tick.

pub mod collector;
pub mod health;
pub mod http;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bevy_app::App;
use hearth_components::ServerConfig;
use hearth_systems::TickMetrics;
use hearth_systems::storage::StorePort;
use prometheus_client::registry::Registry;

pub use collector::HearthCollector;
pub use health::{Health, NotLive, NotReady, NotReadyReason, Readiness};
pub use http::MetricsEndpoint;

/// Serves the endpoints of `app` on `addr` (after the store and the front door are open, so
/// their figures are there to read) and keeps the listener as the [`MetricsEndpoint`]
/// resource. Returns the address it listens on (useful with port 0).
pub fn start(app: &mut App, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let world = app.world_mut();
    let config = world.resource::<ServerConfig>();
    let tick_period = Duration::from_secs_f64(1.0 / config.tick_rate);
    let readiness = world.get_resource_or_init::<Readiness>().clone();
    let store = world
        .get_resource::<StorePort>()
        .map(|p| Arc::clone(p.metrics()));
    let tick = world
        .get_resource::<TickMetrics>()
        .map(|t| Arc::clone(&t.stats));
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
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HearthCollector {
        store,
        tick,
        tick_period,
        front_door,
    }));
    let endpoint = http::serve(addr, registry, health)?;
    let local = endpoint.local_addr();
    world.insert_resource(endpoint);
    Ok(local)
}
