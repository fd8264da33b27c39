//! The front door under faults and abuse, over real TCP: silent and dribbling clients are
//! idle-kicked (saved and released), floods from one address leave room for others,
//! connection counts are capped, fuzzed input only ever gets errors, and clients that never
//! read are cut loose without slowing anyone else.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::client::{Client, NetServer};
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
