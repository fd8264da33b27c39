//! A line-protocol test client and an in-process server with its front door on a free port.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hearth::net::accounts::AccountStoreFactory;
use hearth::store::{MemoryBackend, MemoryStore, StoreClock};
use hearth_components::ServerConfig;
use hearth_systems::storage::StorePort;
use serde_json::{Value, json};

/// How long a client waits for an expected message before failing the test.
pub const CLIENT_WAIT: Duration = Duration::from_secs(15);

/// A server running in this process on real time, reachable over TCP.
pub struct NetServer {
    pub addr: SocketAddr,
    pub backend: Option<Arc<MemoryBackend>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<i32>>,
}

impl NetServer {
    /// A server on a fresh memory store.
    pub fn memory(mut config: ServerConfig) -> Self {
        config.listen = "127.0.0.1:0".parse().unwrap();
        let backend = MemoryBackend::new(StoreClock::Real(Instant::now()));
        let (tx, rx) = crossbeam_channel::unbounded();
        let store = MemoryStore::new(
            Arc::clone(&backend),
            &config.instance_id,
            config.lease_ttl,
            &config.key_prefix,
            tx,
        );
        let port = StorePort::new(Arc::new(store), rx);
        let accounts = hearth::net::account_stores(&config).unwrap();
        let mut server = Self::start(config, port, accounts);
        server.backend = Some(backend);
        server
    }

    /// A server on the store and accounts given.
    pub fn start(config: ServerConfig, port: StorePort, accounts: AccountStoreFactory) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        // The app is not Send: build it on the thread that runs it.
        let thread = std::thread::spawn(move || {
            let mut app = hearth::build_app(config, port);
            let addr = hearth::net::start(&mut app, accounts).expect("front door starts");
            addr_tx.send(addr).unwrap();
            hearth::server::run(app, flag)
        });
        let addr = addr_rx.recv().expect("server thread reports its address");
        Self {
            addr,
            backend: None,
            stop,
            thread: Some(thread),
        }
    }

    /// A new client connection.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server gracefully and returns its exit code.
    pub fn stop(mut self) -> i32 {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> i32 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map_or(0, |t| t.join().expect("server thread"))
    }
}

impl Drop for NetServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_inner();
        }
    }
}

/// One client connection speaking newline-delimited JSON.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to server");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Self { stream, reader }
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

    /// The next line from the server, or `None` once the server closed the connection.
    pub fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        let mut line = String::new();
        loop {
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with('\n') => {
                    return Some(serde_json::from_str(&line).expect("server sends JSON"));
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
                        "no complete line from the server within {wait:?}"
                    );
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads until a message of `kind` arrives (skipping snapshots), failing on anything else.
    pub fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self
                .next(CLIENT_WAIT)
                .unwrap_or_else(|| panic!("connection closed while waiting for {kind}"));
            match message["type"].as_str() {
                Some(t) if t == kind => return message,
                Some("snapshot") => continue,
                _ => panic!("expected {kind}, got {message}"),
            }
        }
    }

    /// Reads until a message of one of `kinds` arrives (skipping snapshots).
    pub fn expect_any(&mut self, kinds: &[&str]) -> Value {
        loop {
            let message = self
                .next(CLIENT_WAIT)
                .expect("connection closed while waiting");
            match message["type"].as_str() {
                Some(t) if kinds.contains(&t) => return message,
                Some("snapshot") => continue,
                _ => panic!("expected one of {kinds:?}, got {message}"),
            }
        }
    }

    /// Reads until an `error` with `code` arrives (skipping snapshots).
    pub fn expect_error(&mut self, code: &str) -> Value {
        let error = self.expect("error");
        assert_eq!(error["code"], code, "{error}");
        error
    }

    /// Whether the server closed the connection (within the wait, skipping other lines).
    pub fn is_closed(&mut self) -> bool {
        let deadline = Instant::now() + CLIENT_WAIT;
        while Instant::now() < deadline {
            match self.next(CLIENT_WAIT) {
                None => return true,
                Some(_) => continue,
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
        self.expect("logged_in")
    }
}
