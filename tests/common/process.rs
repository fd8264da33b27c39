//! The `hearth` binary as a child process on a real Redis, for tests of whole servers
//! (several sharing one Redis, signals, start-up refusals).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::client::Client;
use super::redis_server::{RedisServer, free_port};

/// A `hearth` server process.
pub struct Hearth {
    pub child: Child,
    pub addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Hearth {
    /// A server on `redis` named `instance`, with short lease and flush timings.
    pub fn start(redis: &RedisServer, instance: &str) -> Self {
        Self::start_with(redis, instance, &[])
    }

    /// Like [`Hearth::start`], with more flags as `--flag value` pairs (replacing a default).
    pub fn start_with(redis: &RedisServer, instance: &str, extra: &[&str]) -> Self {
        let url = redis.url();
        let mut flags: Vec<(&str, &str)> = vec![
            ("--store", &url),
            ("--instance-id", instance),
            ("--lease-ttl", "2s"),
            ("--lease-refresh-interval", "500ms"),
            ("--flush-interval", "500ms"),
        ];
        for pair in extra.chunks(2) {
            let [flag, value] = pair else {
                panic!("extra flags come in pairs: {extra:?}")
            };
            flags.retain(|(f, _)| f != flag);
            flags.push((flag, value));
        }
        let args: Vec<&str> = flags.iter().flat_map(|(f, v)| [*f, *v]).collect();
        Self::start_args(&args)
    }

    /// The binary with exactly `args` plus `--listen` on a free port, once it listens.
    pub fn start_args(args: &[&str]) -> Self {
        Self::start_args_in(Path::new("."), args)
    }

    /// Like [`Hearth::start_args`], run in directory `cwd` (where `assets/server.toml` is
    /// looked for).
    pub fn start_args_in(cwd: &Path, args: &[&str]) -> Self {
        Self::try_start_args_in(cwd, args).unwrap_or_else(|log| panic!("{log}"))
    }

    /// Like [`Hearth::start_args`], or `Err` with its log when it exits instead of listening
    /// (a refusal at start).
    #[allow(dead_code)]
    pub fn try_start_args(args: &[&str]) -> Result<Self, String> {
        Self::try_start_args_in(Path::new("."), args)
    }

    fn try_start_args_in(cwd: &Path, args: &[&str]) -> Result<Self, String> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let listen = addr.to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .current_dir(cwd)
            .args(args)
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("starting the hearth binary");
        let mut server = Self { child, addr, log };
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("hearth exited with {status}:\n{}", server.log()));
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "hearth did not listen:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// A client connected to it.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Its log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits (up to 20 s) until its log contains `needle`; returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no {needle:?} in the log within 20 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends it a signal (`-TERM`, `-KILL`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait(&mut self) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "hearth did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Hearth {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Runs the binary to completion with `args` (killed, failing the test, if it still runs
/// after 30 s: every use expects it to stop by itself).
pub fn run_hearth(args: &[&str]) -> Output {
    run_command(&mut Command::new(env!("CARGO_BIN_EXE_hearth")), args)
}

fn run_command(command: &mut Command, args: &[&str]) -> Output {
    let child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running hearth");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output().expect("waiting for hearth");
        done.send(()).ok();
        output
    });
    if finished.recv_timeout(Duration::from_secs(30)).is_err() {
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .ok();
        let output = waiter.join().expect("hearth waiter");
        panic!(
            "hearth {args:?} still ran after 30 s:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    waiter.join().expect("hearth waiter")
}

/// The record of player `id` as stored in `redis` (default key prefix), or `None` when
/// nothing is stored: what any server would load for that player.
pub fn stored_record(redis: &RedisServer, id: u64) -> Option<serde_json::Value> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("hearth:player:{{{id}}}"))
        .query(&mut redis.connection())
        .expect("GET the player record");
    raw.map(|raw| serde_json::from_str(&raw).expect("a stored record is JSON"))
}

/// Runs the binary to completion with `args` in directory `cwd` (see [`run_hearth`]).
pub fn run_hearth_in(cwd: &Path, args: &[&str]) -> Output {
    run_command(
        Command::new(env!("CARGO_BIN_EXE_hearth")).current_dir(cwd),
        args,
    )
}

/// Runs `hearth admin <args> --store <store_url>`, feeding `stdin`, and waits for it.
pub fn run_admin(store_url: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("admin")
        .args(args)
        .args(["--store", store_url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running hearth admin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("hearth admin finishes")
}
