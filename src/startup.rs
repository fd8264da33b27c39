//! What went wrong while the plugins opened what they own. A plugin that cannot open its
//! store or bind its listener (in `Plugin::finish`, which cannot return an error) records why
//! here; the runner reads the record before the first frame and exits 1 naming each failure,
//! so a server that cannot serve never says it runs.

use std::net::SocketAddr;

use bevy_ecs::resource::Resource;

/// One thing that could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum StartupFailure {
    /// The store the config selects, or the account store beside it (the store plugin's
    /// own error, boxed so this module depends on no plugin).
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
    /// The front door needs a store and accounts, and neither was opened nor inserted.
    #[error(
        "the front door needs a store: add StorePlugin or insert a StorePort and AccountStores"
    )]
    NoStore,
    /// A listener could not bind (or its runtime could not start).
    #[error("cannot {what} {addr}: {source}")]
    Listen {
        /// What the listener was for: `listen on` (game clients) or `serve metrics on`.
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used (the front door's own error, boxed).
    #[error(transparent)]
    Tls(Box<dyn std::error::Error + Send + Sync>),
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler: {reason}")]
    Signal {
        signal: &'static str,
        reason: String,
    },
    /// The zones worker could not start.
    #[error("cannot start the zones worker: {0}")]
    Zones(String),
}

/// Every failure recorded while the app's plugins finished, in order. Empty: ready to run.
#[derive(Resource, Default, Debug)]
pub struct StartupFailures(pub Vec<StartupFailure>);

/// Records `failure` in the app's [`StartupFailures`].
pub fn record(world: &mut bevy_ecs::world::World, failure: StartupFailure) {
    world
        .get_resource_or_init::<StartupFailures>()
        .0
        .push(failure);
}

/// Where this server's listeners are bound, published once each is open: read it to reach a
/// server started on port 0 (tests), or to log it.
#[derive(Resource, Default, Debug, Clone, Copy)]
pub struct BoundAddresses {
    /// The game client listener (the front door plugin's).
    pub game: Option<SocketAddr>,
    /// The WebSocket listener (the front door plugin's, when `listen_ws` is set).
    pub ws: Option<SocketAddr>,
    /// The `/metrics`, `/healthz`, `/readyz` listener (the metrics endpoint plugin's).
    pub metrics: Option<SocketAddr>,
}
