//! Drain for rolling deploys: SIGUSR1 (or a `DrainSignal` set from code) refuses logins with
//! `draining`, saves and releases every player before telling it to reconnect, and exits 0;
//! a drained player logs in on another server at once, long before its lease would expire.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::client::{Client, NetServer};
use common::process::Hearth;
use common::redis_server::RedisServer;
use hearth::runner::DrainSignal;
use hearth::store::{MemoryBackend, MemoryStore, StoreClock};
use hearth::systems::net::DRAINED_KICK_REASON;
use hearth::testing::test_config;
use hearth_components::PlayerId;
use serde_json::{Value, json};

/// Waits (up to 20 s) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn login(client: &mut Client, username: &str) {
    client.send(json!({"type": "login", "username": username, "password": "password1"}));
}

/// Kicked by a drain (not by a shutdown or a takeover): the drain's own reason.
fn assert_told_to_reconnect(kicked: &Value) {
    assert_eq!(kicked["type"], "kicked", "{kicked}");
    assert_eq!(kicked["code"], "drain", "{kicked}");
    assert_eq!(kicked["reason"], DRAINED_KICK_REASON, "{kicked}");
}

/// In-process, with a paused store so the drain lasts as long as the test wants: a login
/// during the drain is refused with `draining`; a join in flight when the drain began is
/// released too; each player is kicked only once its save is durable and its lease released.
#[test]
fn a_drain_refuses_logins_and_kicks_each_player_once_saved_and_released() {
    let mut config = test_config("drain-in-process");
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    // Nothing but the drain talks to the store while it is paused.
    config.persistence.flush_interval = Duration::from_secs(3600);
    config.sessions.lease_refresh_interval = Duration::from_secs(3600);
    config.store.settings.lease_ttl = Duration::from_secs(7200);
    config.runner.shutdown_deadline = Duration::from_secs(60);
    let backend = MemoryBackend::new(StoreClock::Real(Instant::now()));
    let (store, port) = MemoryStore::open(Arc::clone(&backend), &config.store.settings);
    let accounts = hearth::store::account_stores(&config.store.settings).unwrap();
    let drain = Arc::new(AtomicBool::new(false));
    let signal = DrainSignal(Arc::clone(&drain));
    let readiness = hearth::observability::Readiness::default();
    let ready = readiness.clone();
    let server = NetServer::start_with(config, port, accounts, move |app| {
        app.insert_resource(signal).insert_resource(ready);
    });

    let mut playing = server.client();
    let playing_id = playing.register("jade", "password1");
    playing.login("jade", "password1");
    playing.step(1.0, 0.0);
    let mut joining = server.client();
    let joining_id = joining.register("lee", "password1");
    let mut late = server.client();
    late.register("kim", "password1");

    store.pause();
    login(&mut joining, "lee");
    wait_until("lee's join reaches the store", || store.held_jobs() == 1);
    assert!(!readiness.is_draining());
    drain.store(true, Ordering::SeqCst);
    // jade's final save reaches the (paused) store only once the drain has begun.
    wait_until("the drain saves jade", || store.held_jobs() == 2);
    assert!(readiness.is_draining(), "/readyz answers 503 draining");

    login(&mut late, "kim");
    let refused = late.expect_error("draining");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("another server"),
        "{refused}"
    );

    store.resume();
    let kicked = playing.expect("kicked");
    assert_told_to_reconnect(&kicked);
    let record = backend.record(PlayerId(playing_id)).expect("jade saved");
    assert_eq!(record.sections["position"]["x"], 1.0);
    assert_eq!(
        backend.lease_owner(PlayerId(playing_id)),
        None,
        "released before the kick"
    );
    assert!(playing.is_closed());

    joining.expect("logged_in");
    assert_told_to_reconnect(&joining.expect("kicked"));
    assert_eq!(backend.lease_owner(PlayerId(joining_id)), None);
    assert!(joining.is_closed());

    // A connection without a player hears it too, as the door closes at the end.
    let kicked = late.expect("kicked");
    assert_eq!(kicked["code"], "drain", "{kicked}");
    assert!(
        kicked["reason"]
            .as_str()
            .unwrap()
            .contains("another server"),
        "{kicked}"
    );
    assert_eq!(server.join(), 0, "a drain that saved everyone exits 0");
}

/// Two processes on one Redis with a 30 s lease TTL: SIGUSR1 drains A; its players are
/// kicked with a reason to reconnect, A exits 0, and every drained player logs in on B at
/// the first try (its lease was released, not left to expire) with its progress; the new
/// version of A starts at once under the same instance id.
#[test]
fn sigusr1_drains_a_server_and_its_players_continue_on_another_at_once() {
    let redis = RedisServer::start();
    let long_lease = ["--lease-ttl", "30s", "--lease-refresh-interval", "5s"];
    let mut a = Hearth::start_with(&redis, "server-a", &long_lease);
    let b = Hearth::start_with(&redis, "server-b", &long_lease);
    let mut players = Vec::new();
    for (steps, name) in ["ann", "ben", "cat"].into_iter().enumerate() {
        let mut client = a.client();
        client.register(name, "password1");
        client.login(name, "password1");
        let mut position = Value::Null;
        for _ in 0..=steps {
            position = client.step(1.0, 0.0);
        }
        players.push((name, client, position));
    }
    let mut late = a.client();
    late.register("dan", "password1");

    a.signal("-USR1");
    // A keeps its door open while it drains: a login then hears `draining`. Once A is gone
    // the connection ends instead; never does the login succeed.
    login(&mut late, "dan");
    match late.next(Duration::from_secs(20)) {
        None => {}
        Some(answer) if answer["type"] == "kicked" => {}
        Some(answer) => assert_eq!(answer["code"], "draining", "{answer}"),
    }

    for (_, client, _) in &mut players {
        assert_told_to_reconnect(&client.expect("kicked"));
        assert!(client.is_closed());
    }
    // Drained, not shut down: every player was kicked with the drain's reason (above).
    assert_eq!(a.wait(), 0, "the drain saved everyone:\n{}", a.log());

    for (steps, (name, _, position)) in players.iter().enumerate() {
        let mut on_b = b.client();
        let state = on_b.login(name, "password1")["state"].clone();
        assert_eq!(state["position"], *position, "{name}");
        let xp = 10 * (steps as u64 + 1);
        assert_eq!(state["progress"]["xp"], xp, "{name}");
    }
    // The next version starts under the same instance id at once: the drain unregistered A.
    let next = Hearth::start_with(&redis, "server-a", &long_lease);
    let mut on_next = next.client();
    on_next.register("eve", "password1");
    on_next.login("eve", "password1");
}

/// Promise (D2): a drain while Redis hangs for 5 s still tells every player "your progress is
/// saved", and counts no lease lost. The final save-and-release times out, Redis runs it late,
/// and the retry recognises that write as its own (the release marker) instead of reading it
/// as another server's.
#[test]
fn a_drain_during_a_5_s_redis_hang_tells_players_their_progress_is_saved() {
    let redis = RedisServer::start();
    let mut a = Hearth::start_with(
        &redis,
        "server-a",
        &[
            "--lease-ttl",
            "60s",
            "--lease-refresh-interval",
            "20s",
            "--shutdown-deadline",
            "30s",
        ],
    );
    let mut players = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let mut client = a.client();
        let id = client.register(name, "password1");
        client.login(name, "password1");
        let position = client.step(1.0, 0.0);
        players.push((id, client, position));
    }
    redis.freeze();
    a.signal("-USR1");
    std::thread::sleep(Duration::from_secs(5));
    redis.thaw();
    for (id, client, position) in &mut players {
        let kicked = client.expect("kicked");
        assert_told_to_reconnect(&kicked);
        let record = common::process::stored_record(&redis, *id).expect("saved");
        assert_eq!(&record["sections"]["position"], position, "player {id}");
    }
    assert_eq!(a.wait(), 0, "a drain that saved everyone exits 0");
    let log = a.log();
    assert!(!log.contains("lease lost"), "no lease counted lost:\n{log}");
}
