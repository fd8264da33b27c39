//! A game over real TCP in a test: [`TcpGameServer`] runs `HearthPlugins` plus the game on a
//! thread of the test (the runner, real time, its front door on a free port of 127.0.0.1,
//! the bound address read from [`crate::startup::BoundAddresses`], never guessed). Players
//! connect to [`TcpGameServer::addr`] with the Rust client crate, `hearth_client`.

use std::net::SocketAddr;

use bevy_app::{App, Plugin};

use super::server_thread::{NotStarted, ServerThread};
use crate::HearthPlugins;
use crate::config::ServerConfig;

/// A game's whole server on a thread of the test, listening on a free port, until stopped
/// or dropped (a graceful stop: everyone saved).
pub struct TcpGameServer {
    server: ServerThread,
}

impl TcpGameServer {
    /// Starts `HearthPlugins::new(config)` plus `game`, with `listen` (and `listen_ws`, if
    /// set) on port 0 of 127.0.0.1. `Err` says what could not be opened (the store, a
    /// listener).
    pub fn start(mut config: ServerConfig, game: impl Plugin) -> Result<Self, NotStarted> {
        config.front_door.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        if config.front_door.listen_ws.is_some() {
            config.front_door.listen_ws = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let server = ServerThread::start(move || {
            let mut app = App::new();
            app.add_plugins(HearthPlugins::new(config))
                .add_plugins(game);
            app
        })?;
        Ok(Self { server })
    }

    /// Where the game listens.
    pub fn addr(&self) -> SocketAddr {
        self.server.game_addr()
    }

    /// Where its WebSocket listener is (when the config set `listen_ws`).
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.server.addrs().ws
    }

    /// Stops it gracefully and returns its exit code (0: every player saved).
    pub fn stop(self) -> i32 {
        self.server.stop()
    }
}
