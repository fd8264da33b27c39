//! The front door under faults and abuse, over real TCP: silent and dribbling clients are
//! idle-kicked (saved and released), floods from one address leave room for others,
//! connection counts are capped, fuzzed input only ever gets errors, and clients that never
//! read are cut loose without slowing anyone else.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::client::{Client, NetServer};
use common::redis_server::free_port;
use hearth::testing::test_config;
use hearth_components::{PlayerId, ServerConfig};
use serde_json::json;

/// A memory-store server with a short idle timeout.
fn config(name: &str) -> ServerConfig {
    let mut config = test_config(name);
    config.idle_timeout = Duration::from_secs(1);
    config
}

/// Polls until `check` holds, failing after 15 s.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the player's lease is released and its record shows position `x`.
fn wait_saved_and_released(server: &NetServer, player: u64, x: f64) {
    let backend = server.backend.as_ref().unwrap();
    wait_until("lease released", || {
        backend.lease_owner(PlayerId(player)).is_none()
    });
    let record = backend.record(PlayerId(player)).expect("saved");
    assert_eq!(record.sections["position"]["x"], x, "{record:?}");
}

/// A registered, logged-in client that took one step east (to x = 1).
fn player(server: &NetServer, name: &str) -> (Client, u64) {
    let mut c = server.client();
    let id = c.register(name, "password1");
    c.login(name, "password1");
    c.step(1.0, 0.0);
    (c, id)
}

#[test]
fn a_silent_logged_in_client_is_kicked_saved_and_released_though_snapshots_flow() {
    // A long flush interval: only the kick's final save can put x = 1 in the store.
    let server = NetServer::memory(config("idle-silent"));
    let (mut c, id) = player(&server, "silent");
    let kicked = c.expect("kicked"); // snapshots keep arriving meanwhile, and are skipped
    assert!(
        kicked["reason"].as_str().unwrap().contains("no message"),
        "{kicked}"
    );
    assert!(c.is_closed());
    wait_saved_and_released(&server, id, 1.0);
}

#[test]
fn a_client_dribbling_bytes_without_a_newline_is_kicked() {
    let server = NetServer::memory(config("idle-dribble"));
    let (mut c, id) = player(&server, "dribbler");
    let mut writer = c.writer();
    let stop = Arc::new(AtomicBool::new(false));
    let dribble = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // One byte every 300 ms, never a newline: bytes arrive, no line ever does.
            for byte in br#"{"type":"ping","nonce":1}   "#.iter().cycle() {
                if stop.load(Ordering::SeqCst) || writer.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let kicked = c.expect("kicked");
    stop.store(true, Ordering::SeqCst);
    assert!(
        kicked["reason"].as_str().unwrap().contains("no message"),
        "{kicked}"
    );
    dribble.join().unwrap();
    wait_saved_and_released(&server, id, 1.0);
}

#[test]
fn a_client_that_pings_stays_connected_past_the_idle_timeout() {
    let server = NetServer::memory(config("idle-pinger"));
    let (mut c, id) = player(&server, "pinger");
    // Three idle timeouts' worth of pings, one every 300 ms; each is answered.
    for nonce in 0..10 {
        c.send(json!({"type": "ping", "nonce": nonce}));
        assert_eq!(c.expect("pong")["nonce"], nonce);
        std::thread::sleep(Duration::from_millis(300));
    }
    let backend = server.backend.as_ref().unwrap();
    assert!(backend.lease_owner(PlayerId(id)).is_some(), "still online");
    c.step(1.0, 0.0);
}

#[test]
fn registrations_over_the_per_address_limit_are_refused_rate_limited() {
    let mut config = test_config("reg-limit");
    config.registrations_per_minute = 3;
    let server = NetServer::memory(config);
    let mut c = server.client();
    for n in 0..3 {
        c.register(&format!("reg{n}"), "password1");
    }
    c.send(json!({"type": "register", "username": "reg-over", "password": "password1"}));
    let refused = c.expect_error("rate_limited");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("registrations"),
        "{refused}"
    );
    // Per address, not per connection; and logins are not registrations.
    let mut other = server.client();
    other.send(json!({"type": "register", "username": "reg-over", "password": "password1"}));
    other.expect_error("rate_limited");
    other.login("reg0", "password1");
}

#[test]
fn a_registration_flood_from_one_address_leaves_room_for_another_addresss_login() {
    let mut config = test_config("fair-queue");
    config.registrations_per_minute = 1_000; // the flood must reach the auth queue
    let server = NetServer::memory(config);
    let mut alice = Client::connect_from("127.0.0.2".parse().unwrap(), server.addr);
    alice.register("alice", "password1");
    // 4 connections x 100 registrations from 127.0.0.1, each within its message rate, all
    // at once: far more than the auth workers hash in the meantime.
    let mut flooders: Vec<_> = (0..4).map(|_| server.client()).collect();
    for (n, c) in flooders.iter_mut().enumerate() {
        let lines: String = (0..100)
            .map(|i| {
                let register = json!({"type": "register", "username": format!("flood{n}x{i}"), "password": "password1"});
                format!("{register}\n")
            })
            .collect();
        c.send_raw(lines.as_bytes());
    }
    // The first answer to the flood means it is being served: the queue is as full as it gets.
    flooders[0].expect_any(&["registered", "error"]);
    alice.send(json!({"type": "login", "username": "alice", "password": "password1"}));
    let answer = alice.expect_any(&["logged_in", "error"]);
    assert_eq!(answer["type"], "logged_in", "{answer}");
}

/// Opens `n` connections and checks each is served (answers a ping).
fn served_clients(server: &NetServer, n: usize) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mut c = server.client();
            c.send(json!({"type": "ping", "nonce": i}));
            assert_eq!(c.expect("pong")["nonce"], i);
            c
        })
        .collect()
}

/// The next connection is refused: `server_busy` with `why` in the message, then closed.
fn assert_refused(mut c: Client, why: &str) {
    let refused = c.expect_error("server_busy");
    assert!(
        refused["message"].as_str().unwrap().contains(why),
        "{refused}"
    );
    assert!(c.is_closed());
}

#[test]
fn connections_over_the_per_address_limit_are_refused_server_busy() {
    let mut config = test_config("conn-per-address");
    config.max_connections_per_address = 3;
    let server = NetServer::memory(config);
    let mut held = served_clients(&server, 3);
    assert_refused(server.client(), "from your address");
    // Another address still gets in.
    let mut other = Client::connect_from("127.0.0.2".parse().unwrap(), server.addr);
    other.send(json!({"type": "ping", "nonce": 1}));
    other.expect("pong");
    // A closed connection frees its slot (once the server has seen it close).
    drop(held.pop());
    wait_until("a slot is free again", || {
        let mut c = server.client();
        c.send(json!({"type": "ping", "nonce": 2}));
        c.expect_any(&["pong", "error"])["type"] == "pong"
    });
}

#[test]
fn connections_over_the_total_limit_are_refused_server_busy() {
    let mut config = test_config("conn-total");
    config.max_connections = 3;
    let server = NetServer::memory(config);
    let _held = served_clients(&server, 2);
    let mut third = Client::connect_from("127.0.0.3".parse().unwrap(), server.addr);
    third.send(json!({"type": "ping", "nonce": 3}));
    third.expect("pong");
    let refused = Client::connect_from("127.0.0.4".parse().unwrap(), server.addr);
    assert_refused(refused, "the server is full");
}

#[test]
fn the_binary_under_a_low_file_limit_still_serves_a_fresh_client() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    // 256 open files for the whole process; connection limits far beyond what fits in them.
    let mut child = Command::new("sh")
        .args(["-c", r#"ulimit -n 256 && exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_hearth"))
        .args(["--store", "memory", "--listen", &addr.to_string()])
        .args(["--instance-id", "fd-limit", "--idle-timeout", "60s"])
        .args(["--max-connections", "100000"])
        .args(["--max-connections-per-address", "100000"])
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("starting the hearth binary");
    let read_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
    wait_until("hearth listens", || TcpStream::connect(addr).is_ok());
    // More connections than the process has files for, all held open.
    let held: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // The server fitted its limit into the files it has, so it is full, and says so.
    let mut fresh = Client::connect(addr);
    fresh.send(json!({"type": "ping", "nonce": 1}));
    assert_refused(fresh, "the server is full");
    child.kill().ok();
    child.wait().ok();
    drop(held);
    let log = read_log();
    let emfile = log.matches("Too many open files").count();
    assert!(emfile < 5, "{emfile} 'Too many open files' lines:\n{log}");
    assert!(
        log.contains("does not fit"),
        "the clamp of max_connections is logged:\n{log}"
    );
}
