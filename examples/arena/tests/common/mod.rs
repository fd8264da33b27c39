//! The arena over real TCP: the arena app running in this process on real time with its
//! front door on a free port, and a line client that reads what a player would.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use arena::ArenaPlugin;
use hearth::prelude::*;
use hearth::testing::ServerThread;
use serde_json::{Value, json};

/// How long a client waits for a line before failing the test (a guard against a hang, not
/// a timing assertion).
pub const CLIENT_WAIT: Duration = Duration::from_secs(15);

/// The arena server in this process, on the store `config` selects, until stopped or dropped:
/// `App::new().add_plugins(HearthPlugins::new(config)).add_plugins(ArenaPlugin)`, run by
/// Hearth's runner as the binary runs it, listening on a free port of 127.0.0.1.
pub struct ArenaServer {
    addr: SocketAddr,
    server: ServerThread,
}

impl ArenaServer {
    /// Starts the arena (its plugins open the store and accounts `config` selects).
    pub fn start(mut config: ServerConfig) -> Self {
        config.front_door.listen = "127.0.0.1:0".parse().unwrap();
        let server = ServerThread::start(move || {
            let mut app = App::new();
            app.add_plugins(HearthPlugins::new(config))
                .add_plugins(ArenaPlugin);
            app
        })
        .expect("the arena starts");
        Self {
            addr: server.game_addr(),
            server,
        }
    }

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server gracefully (everyone saved) and returns its exit code.
    pub fn stop(self) -> i32 {
        self.server.stop()
    }
}

/// One connection speaking newline-delimited JSON.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Replicated entities (entity id → components as JSON), from Hearth's `update`s.
    world: HashMap<u64, Value>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to the arena");
        stream.set_read_timeout(Some(CLIENT_WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Self {
            stream,
            reader,
            world: HashMap::new(),
        }
    }

    /// Sends one message.
    pub fn send(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.stream
            .write_all(line.as_bytes())
            .expect("write to the arena");
    }

    /// The next message other than replication (applied to the world as it comes), which
    /// must be of type `kind` (anything else fails the test: the arena sends nothing
    /// unasked, so every line a test does not expect is a bug).
    pub fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self.next(kind);
            if !self.absorb(&message) {
                assert_eq!(message["type"], kind, "expected {kind}, got {message}");
                return message;
            }
        }
    }

    fn next(&mut self, waiting_for: &str) -> Value {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("the connection closed while waiting for {waiting_for}"),
            Ok(_) => {}
            Err(e) => panic!("no {waiting_for} within {CLIENT_WAIT:?}: {e}"),
        }
        serde_json::from_str(&line).expect("the server sends JSON")
    }

    /// Applies a replication message; whether it was one.
    fn absorb(&mut self, message: &Value) -> bool {
        match message["type"].as_str() {
            Some("replication") => self.world.clear(),
            Some("update") => {
                for e in message["entered"].as_array().unwrap() {
                    self.world.insert(e["id"].as_u64().unwrap(), e.clone());
                }
                for e in message["changed"].as_array().unwrap() {
                    let known = self.world.get_mut(&e["id"].as_u64().unwrap());
                    let known = known.expect("a change of an entity the client was told of");
                    for (key, value) in e.as_object().unwrap() {
                        known[key] = value.clone();
                    }
                }
                for id in message["left"].as_array().unwrap() {
                    self.world.remove(&id.as_u64().unwrap());
                }
            }
            _ => return false,
        }
        true
    }

    /// Reads replication updates until the player `player` is seen at `position`.
    pub fn until_seen(&mut self, player: u64, position: Value) {
        let seen = |world: &HashMap<u64, Value>| {
            world
                .values()
                .any(|e| e["player_id"] == player && e["position"] == position)
        };
        while !seen(&self.world) {
            let message = self.next("an update");
            assert!(self.absorb(&message), "unexpected {message}");
        }
    }

    /// Sends `message` and returns the answer, which must be of type `kind`.
    pub fn ask(&mut self, message: Value, kind: &str) -> Value {
        self.send(message);
        self.expect(kind)
    }

    /// Registers an account; returns its player id.
    pub fn register(&mut self, username: &str, password: &str) -> u64 {
        let request = json!({"type": "register", "username": username, "password": password});
        self.ask(request, "registered")["player_id"]
            .as_u64()
            .unwrap()
    }

    /// Logs in; returns the player's stored state (the record's sections).
    pub fn login(&mut self, username: &str, password: &str) -> Value {
        let request = json!({"type": "login", "username": username, "password": password});
        self.ask(request, "logged_in")["state"].clone()
    }

    /// Logs out; returns once the final save is durable (`logged_out`).
    pub fn logout(&mut self) {
        self.ask(json!({"type": "logout"}), "logged_out");
    }

    /// Picks one `item` up; returns the count now carried.
    pub fn pickup(&mut self, item: &str) -> u64 {
        let reply = self.ask(json!({"type": "pickup", "item": item}), "picked_up");
        assert_eq!(reply["item"], item, "{reply}");
        reply["count"].as_u64().unwrap()
    }
}
