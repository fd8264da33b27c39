//! A game over real TCP in a test: [`TcpGameServer`] runs `HearthPlugins` plus the game on a
//! thread of the test (the runner, real time, its front door on a free port of 127.0.0.1,
//! the bound address read from [`crate::startup::BoundAddresses`], never guessed), and
//! [`TcpClient`] speaks the JSON lines a player's client would.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bevy_app::{App, Plugin};
use serde_json::{Value, json};

use super::server_thread::{NotStarted, ServerThread};
use crate::HearthPlugins;
use crate::config::ServerConfig;

/// How long a [`TcpClient`] waits for a line before failing the test: a guard against a
/// hang, not a timing assertion.
pub const TCP_CLIENT_WAIT: Duration = Duration::from_secs(15);

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

    /// A new connection to it.
    pub fn client(&self) -> TcpClient {
        TcpClient::connect(self.addr())
    }

    /// Stops it gracefully and returns its exit code (0: every player saved).
    pub fn stop(self) -> i32 {
        self.server.stop()
    }
}

/// One connection speaking newline-delimited JSON, as a player's client does.
pub struct TcpClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl TcpClient {
    /// Connects to `addr` (panics if it cannot: a test failure).
    pub fn connect(addr: SocketAddr) -> Self {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        stream
            .set_read_timeout(Some(TCP_CLIENT_WAIT))
            .expect("setting a read timeout");
        let reader = BufReader::new(stream.try_clone().expect("cloning the socket"));
        Self { stream, reader }
    }

    /// Sends one message as a line.
    pub fn send(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.stream
            .write_all(line.as_bytes())
            .expect("writing to the server");
    }

    /// The next line the server sends, whatever its type (panics on a closed connection or
    /// none within [`TCP_CLIENT_WAIT`]).
    pub fn next_message(&mut self) -> Value {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(_) => serde_json::from_str(&line).expect("the server sends JSON lines"),
            Err(e) => panic!("no line within {TCP_CLIENT_WAIT:?}: {e}"),
        }
    }

    /// The next message other than replication (`replication`, `update`), which must be of
    /// type `kind`: anything else fails the test, so an unexpected line is never missed.
    pub fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next_message();
            let replication = matches!(message["type"].as_str(), Some("replication" | "update"));
            if replication && kind != "replication" && kind != "update" {
                continue;
            }
            assert_eq!(message["type"], kind, "expected {kind}, got {message}");
            return message;
        }
    }

    /// Sends `message` and returns the answer, which must be of type `kind`.
    pub fn ask(&mut self, message: Value, kind: &str) -> Value {
        self.send(message);
        self.expect(kind)
    }

    /// Registers `username` and logs in; returns the player id and the `logged_in` message
    /// (its `state` holds the stored record's sections).
    pub fn register_and_login(&mut self, username: &str, password: &str) -> (u64, Value) {
        let registered = self.ask(
            json!({"type": "register", "username": username, "password": password}),
            "registered",
        );
        let id = registered["player_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("a player id in {registered}"));
        (id, self.login(username, password))
    }

    /// Logs in an existing account; returns the `logged_in` message.
    pub fn login(&mut self, username: &str, password: &str) -> Value {
        self.ask(
            json!({"type": "login", "username": username, "password": password}),
            "logged_in",
        )
    }

    /// Logs out; returns once the final save is durable (`logged_out`).
    pub fn logout(&mut self) {
        self.ask(json!({"type": "logout"}), "logged_out");
    }
}
