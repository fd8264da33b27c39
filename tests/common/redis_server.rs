//! A real `redis-server` per test, on a free port, killed on drop.
//!
//! Modelled on redis-rs's own test harness: pick a free port, spawn
//! `redis-server --port P --bind 127.0.0.1 --save "" --logfile <tmp>`, retry until it answers
//! PING. A durable server (`--appendonly yes --appendfsync always`) keeps its data across
//! [`RedisServer::restart`], for "nothing lost" tests. A missing `redis-server` is a test
//! failure with an install hint, never a silent skip.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str =
    "redis-server not found: install it with `apt-get install -y redis-server`";

/// One redis-server process owned by a test.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    durable: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// A throwaway server: no RDB snapshots, no append-only file.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A server with `appendonly yes` and `appendfsync always`: every acknowledged write
    /// survives a kill and [`RedisServer::restart`].
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        let mut dir = tempfile::tempdir().expect("creating a temp dir for redis-server");
        for attempt in 0.. {
            let mut server = Self {
                port: free_port(),
                dir,
                durable,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) if attempt < 5 => {
                    eprintln!("redis-server did not start ({e}); trying another port");
                    dir = server.take_dir();
                }
                Err(e) => panic!("redis-server did not start: {e}\n{}", server.log()),
            }
        }
        unreachable!()
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .arg("--appendonly")
            .arg(if self.durable { "yes" } else { "no" });
        if self.durable {
            cmd.arg("--appendfsync").arg("always");
        }
        let child = match cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("redis-server exited with {status}"));
            }
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("redis-server did not answer PING within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain (sync) connection as the default user, for inspecting and poking.
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("valid URL");
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connecting to the test redis-server");
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
        conn
    }

    /// `CONFIG SET name value` on a new connection: changes how the server behaves (its idle
    /// `timeout`, its `maxmemory`) until it restarts.
    pub fn config_set(&self, name: &str, value: &str) {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .exec(&mut self.connection())
            .unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"));
    }

    /// `INFO stats` field `name` as a number, asked on a new connection.
    pub fn info_stat(&self, name: &str) -> u64 {
        self.info_stat_on(&mut self.connection(), name)
    }

    /// `INFO stats` field `name` as a number, asked on `conn` (opens no connection).
    pub fn info_stat_on(&self, conn: &mut redis::Connection, name: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(conn)
            .expect("INFO stats");
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO stats has no numeric {name}"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// Freezes the process (SIGSTOP): connections are accepted by the kernel, nothing is
    /// answered. A hung Redis.
    pub fn freeze(&self) {
        assert!(signal(self.pid(), "-STOP"), "kill -STOP failed");
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        assert!(signal(self.pid(), "-CONT"), "kill -CONT failed");
    }

    /// Kills the process (SIGKILL: a crash, no final save) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the server again on the same port and data directory (kills it first if it
    /// still runs). A durable server comes back with every acknowledged write.
    pub fn restart(&mut self) {
        self.kill();
        let started = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    eprintln!("redis-server restart: {e}; retrying");
                    self.kill();
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("redis-server did not restart: {e}\n{}", self.log()),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_ref() {
            signal(child.id(), "-CONT"); // harmless if it was not frozen
        }
        self.kill();
    }
}

/// Sends a signal with `kill`; whether it was delivered.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port nothing listens on right now, and never handed out before by this test process:
/// the OS may offer a port again as soon as it is free, so two ports taken one after the other
/// (a game listener and a WebSocket listener, before either binds) could otherwise be one.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding a free port")
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}
