//! A line-protocol test client and an in-process server with its front door on a free port.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth::HearthPlugins;
use hearth::config::ServerConfig;
use hearth::demo_game::DemoGamePlugin;
use hearth::store::accounts::AccountStoreFactory;
use hearth::store::{AccountStores, MemoryBackend, MemoryStore, StoreClock};
use hearth::testing::ServerThread;
use hearth_systems::storage::StorePort;
use serde_json::{Value, json};

/// How long a client waits for an expected message before failing the test.
pub const CLIENT_WAIT: Duration = Duration::from_secs(15);

/// A server running in this process on real time, reachable over TCP: the demo game on
/// `HearthPlugins`, run by Hearth's runner on a thread ([`ServerThread`]).
pub struct NetServer {
    pub addr: SocketAddr,
    /// The WebSocket listener, when the config set `listen_ws` (bound to a free port).
    pub ws_addr: Option<SocketAddr>,
    pub backend: Option<Arc<MemoryBackend>>,
    server: ServerThread,
}

impl NetServer {
    /// A server on a fresh memory store.
    pub fn memory(config: ServerConfig) -> Self {
        Self::memory_with(config, |_| {})
    }

    /// A server on a fresh memory store whose app `setup` extends (a game's plugin, say)
    /// before its plugins open what they own.
    pub fn memory_with(
        config: ServerConfig,
        setup: impl FnOnce(&mut bevy_app::App) + Send + 'static,
    ) -> Self {
        let backend = MemoryBackend::new(StoreClock::Real(Instant::now()));
        let (_, port) = MemoryStore::open(Arc::clone(&backend), &config.store.settings);
        let owner = config.store.settings.lease_owner();
        let accounts = hearth::store::memory_account_stores(Arc::clone(&backend), &owner);
        let mut server = Self::start_with(config, port, accounts, setup);
        server.backend = Some(backend);
        server
    }

    /// A server on the store `config` selects, opened by its own `StorePlugin` as the binary
    /// opens it; it listens on a free port of 127.0.0.1.
    pub fn start(config: ServerConfig) -> Self {
        Self::run(config, |_| {})
    }

    /// A server on the store and accounts given, whose app `setup` extends first. It listens
    /// on a free port of 127.0.0.1, whatever `config` says.
    pub fn start_with(
        config: ServerConfig,
        port: StorePort,
        accounts: AccountStoreFactory,
        setup: impl FnOnce(&mut bevy_app::App) + Send + 'static,
    ) -> Self {
        Self::run(config, move |app| {
            app.insert_resource(port)
                .insert_resource(AccountStores(accounts));
            setup(app);
        })
    }

    /// The demo game on `HearthPlugins`, extended by `setup`, run on a free port of 127.0.0.1.
    fn run(
        mut config: ServerConfig,
        setup: impl FnOnce(&mut bevy_app::App) + Send + 'static,
    ) -> Self {
        config.front_door.listen = "127.0.0.1:0".parse().unwrap();
        if config.front_door.listen_ws.is_some() {
            config.front_door.listen_ws = Some("127.0.0.1:0".parse().unwrap());
        }
        let server = ServerThread::start(move || {
            let mut app = bevy_app::App::new();
            app.add_plugins(HearthPlugins::new(config))
                .add_plugins(DemoGamePlugin);
            setup(&mut app);
            app
        })
        .expect("the server starts");
        Self {
            addr: server.game_addr(),
            ws_addr: server.addrs().ws,
            backend: None,
            server,
        }
    }

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server gracefully and returns its exit code.
    pub fn stop(self) -> i32 {
        self.server.stop()
    }

    /// Waits for the server to stop by itself (a drain) and returns its exit code.
    pub fn join(self) -> i32 {
        self.server.join()
    }
}

/// One client connection speaking newline-delimited JSON.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Lines read while looking for something else, served first by [`Client::next`].
    backlog: VecDeque<Value>,
    /// Our player id and last known position, once logged in.
    me: Option<(u64, Value)>,
    /// The world as replication updates built it: entity id → its components (JSON).
    world: HashMap<u64, Value>,
    /// Our entity id, from the `replication` message.
    you: Option<u64>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).expect("connect to server"))
    }

    /// Connects from a chosen local address (on Linux every 127.x.y.z is this machine), so
    /// a test can be several client addresses at once.
    pub fn connect_from(local: IpAddr, addr: SocketAddr) -> Self {
        Self::from_stream(super::connect_from(local, addr))
    }

    fn from_stream(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Self {
            stream,
            reader,
            backlog: VecDeque::new(),
            me: None,
            world: HashMap::new(),
            you: None,
        }
    }

    /// A second handle on the socket, to write from another thread while this one reads.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().unwrap()
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Sends one JSON message.
    pub fn send(&mut self, message: Value) {
        let mut line = message.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
    }

    /// The next line (backlog first), or `None` once the server closed the connection.
    /// Panics when nothing arrives before `deadline`.
    fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        if let Some(message) = self.backlog.pop_front() {
            return Some(message);
        }
        self.read_line(deadline)
    }

    fn read_line(&mut self, deadline: Instant) -> Option<Value> {
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with('\n') => {
                    let message: Value = serde_json::from_str(&line).expect("server sends JSON");
                    self.absorb(&message);
                    return Some(message);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    assert!(
                        Instant::now() < deadline,
                        "nothing from the server within {CLIENT_WAIT:?}"
                    );
                }
                Err(_) => return None,
            }
        }
    }

    /// The next line from the server, or `None` once it closed the connection.
    pub fn next(&mut self, wait: Duration) -> Option<Value> {
        self.next_before(Instant::now() + wait)
    }

    /// Applies a replication message to the world this client rebuilds (an update for an
    /// entity it was never told of fails the test).
    fn absorb(&mut self, message: &Value) {
        match message["type"].as_str() {
            Some("replication") => {
                self.you = message["you"].as_u64();
                self.world.clear();
            }
            Some("update") => {
                for entered in message["entered"].as_array().expect("entered") {
                    let id = entered["id"].as_u64().expect("an id");
                    self.world.insert(id, entered.clone());
                }
                for changed in message["changed"].as_array().expect("changed") {
                    let id = changed["id"].as_u64().expect("an id");
                    let known = self
                        .world
                        .get_mut(&id)
                        .unwrap_or_else(|| panic!("a change of unknown entity {id}"));
                    for (key, value) in changed.as_object().unwrap() {
                        known[key] = value.clone();
                    }
                }
                for left in message["left"].as_array().expect("left") {
                    let id = left.as_u64().expect("an id");
                    assert!(self.world.remove(&id).is_some(), "unknown entity {id} left");
                }
            }
            _ => {}
        }
    }

    /// Players this client sees (from replication): player id → position.
    pub fn seen(&self) -> HashMap<u64, Value> {
        self.world
            .values()
            .filter_map(|e| Some((e["player_id"].as_u64()?, e["position"].clone())))
            .collect()
    }

    /// The ids of the entities that carry `player`'s id (more than one: the client sees the
    /// player twice).
    pub fn entities_of(&self, player: u64) -> Vec<u64> {
        self.world
            .iter()
            .filter(|(_, e)| e["player_id"].as_u64() == Some(player))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Our own position as replication last showed it.
    fn replicated_position(&self) -> Option<Value> {
        let you = self.you?;
        self.world.get(&you).map(|e| e["position"].clone())
    }

    /// Reads until a message of one of `kinds` arrives (skipping replication and `queued` notices), failing on
    /// anything else or after [`CLIENT_WAIT`].
    pub fn expect_any(&mut self, kinds: &[&str]) -> Value {
        let deadline = Instant::now() + CLIENT_WAIT;
        loop {
            let message = self
                .next_before(deadline)
                .unwrap_or_else(|| panic!("connection closed while waiting for {kinds:?}"));
            match message["type"].as_str() {
                Some(t) if kinds.contains(&t) => return message,
                Some("update" | "replication" | "queued") => assert!(
                    Instant::now() < deadline,
                    "no {kinds:?} within {CLIENT_WAIT:?}"
                ),
                _ => panic!("expected one of {kinds:?}, got {message}"),
            }
        }
    }

    /// Reads until a message of `kind` arrives (skipping replication).
    pub fn expect(&mut self, kind: &str) -> Value {
        self.expect_any(&[kind])
    }

    /// Reads until an `error` with `code` arrives (skipping replication).
    pub fn expect_error(&mut self, code: &str) -> Value {
        let error = self.expect("error");
        assert_eq!(error["code"], code, "{error}");
        error
    }

    /// Whether the server closes the connection (within [`CLIENT_WAIT`], skipping lines).
    pub fn is_closed(&mut self) -> bool {
        let deadline = Instant::now() + CLIENT_WAIT;
        while Instant::now() < deadline {
            if self.next_before(deadline).is_none() {
                return true;
            }
        }
        false
    }

    /// Registers and returns the player id.
    pub fn register(&mut self, username: &str, password: &str) -> u64 {
        self.send(json!({"type": "register", "username": username, "password": password}));
        self.expect("registered")["player_id"].as_u64().unwrap()
    }

    /// Logs in and returns the `logged_in` message.
    pub fn login(&mut self, username: &str, password: &str) -> Value {
        self.send(json!({"type": "login", "username": username, "password": password}));
        let logged_in = self.expect("logged_in");
        let id = logged_in["player_id"].as_u64().unwrap();
        self.me = Some((id, logged_in["state"]["position"].clone()));
        logged_in
    }

    /// Sends `message` (a `login` or `resume`) and returns the `logged_in` (this client then
    /// plays as that player), or the `error` it got instead.
    pub fn try_enter(&mut self, message: Value) -> Result<Value, Value> {
        self.send(message);
        let answer = self.expect_any(&["logged_in", "error"]);
        if answer["type"] != "logged_in" {
            return Err(answer);
        }
        let id = answer["player_id"].as_u64().unwrap();
        self.me = Some((id, answer["state"]["position"].clone()));
        Ok(answer)
    }

    /// Logs in with a resume token and returns the `logged_in` message (carrying the next
    /// token).
    pub fn resume(&mut self, token: &str) -> Value {
        self.send(json!({"type": "resume", "token": token}));
        let logged_in = self.expect("logged_in");
        let id = logged_in["player_id"].as_u64().unwrap();
        self.me = Some((id, logged_in["state"]["position"].clone()));
        logged_in
    }

    /// Takes one step and waits until an update shows it, so each `move` is exactly one
    /// step however slow the server's frames are. Other messages are kept for later reads.
    /// Returns the new position.
    pub fn step(&mut self, dx: f32, dy: f32) -> Value {
        self.try_step(dx, dy)
            .expect("connection closed while stepping")
    }

    /// Like [`Client::step`], but `None` when the connection closes first (the server died).
    pub fn try_step(&mut self, dx: f32, dy: f32) -> Option<Value> {
        let (id, before) = self.me.clone().expect("log in before stepping");
        if self
            .stream
            .write_all(format!("{}\n", json!({"type": "move", "dx": dx, "dy": dy})).as_bytes())
            .is_err()
        {
            return None;
        }
        let deadline = Instant::now() + CLIENT_WAIT;
        loop {
            let message = self.read_line(deadline)?;
            if message["type"] != "update" {
                if message["type"] != "replication" {
                    self.backlog.push_back(message);
                }
                continue;
            }
            if let Some(now) = self.replicated_position()
                && now != before
            {
                self.me = Some((id, now.clone()));
                return Some(now);
            }
            assert!(
                Instant::now() < deadline,
                "the step never showed in an update"
            );
        }
    }

    /// Removes and returns the messages of type `kind` read so far but not yet consumed
    /// (e.g. the `level_up`s that arrived while stepping).
    pub fn take(&mut self, kind: &str) -> Vec<Value> {
        let (taken, kept): (Vec<Value>, Vec<Value>) =
            self.backlog.drain(..).partition(|m| m["type"] == kind);
        self.backlog = kept.into();
        taken
    }

    /// The next replication `update` (waiting up to [`CLIENT_WAIT`]); other messages are
    /// kept for later.
    pub fn update(&mut self) -> Value {
        let deadline = Instant::now() + CLIENT_WAIT;
        loop {
            let message = self
                .read_line(deadline)
                .expect("connection closed while waiting for an update");
            match message["type"].as_str() {
                Some("update") => return message,
                Some("replication") => {}
                _ => self.backlog.push_back(message),
            }
        }
    }

    /// Sends a `ping` and waits (up to [`CLIENT_WAIT`]) for its `pong`; replication is
    /// skipped, other messages kept for later.
    pub fn ping(&mut self, nonce: u64) {
        self.send(json!({"type": "ping", "nonce": nonce}));
        let deadline = Instant::now() + CLIENT_WAIT;
        loop {
            let message = self
                .read_line(deadline)
                .expect("connection closed while waiting for a pong");
            match message["type"].as_str() {
                Some("pong") if message["nonce"] == nonce => return,
                Some("update" | "replication" | "queued") => {}
                _ => self.backlog.push_back(message),
            }
        }
    }

    /// Our last known position (from `logged_in` or the last step), once logged in.
    pub fn position(&self) -> Option<Value> {
        self.me.as_ref().map(|(_, position)| position.clone())
    }
}
