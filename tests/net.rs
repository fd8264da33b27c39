//! The front door over real TCP: accounts, login lifecycle, the small game, bad input.

mod common;

use std::time::{Duration, Instant};

use common::client::{CLIENT_WAIT, NetServer};
use hearth::testing::test_config;
use hearth_components::PlayerId;
use serde_json::json;

fn server() -> NetServer {
    let mut config = test_config("net-a");
    config.persistence.flush_interval = Duration::from_millis(300);
    NetServer::memory(config)
}

/// Polls the memory store until `check` holds for the player's record.
fn wait_for_record(
    server: &NetServer,
    player: u64,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let backend = server.backend.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(record) = backend.record(PlayerId(player)) {
            let value = serde_json::to_value(&record).unwrap();
            if check(&value) {
                return value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "record of {player} never satisfied the check"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn register_login_move_and_see_the_state_stored_after_a_flush() {
    let server = server();
    let mut c = server.client();
    let id = c.register("alice", "correct horse");
    let logged_in = c.login("alice", "correct horse");
    assert_eq!(logged_in["player_id"], id);
    assert_eq!(logged_in["state"]["position"], json!({"x": 0.0, "y": 0.0}));
    for _ in 0..3 {
        c.step(1.0, 0.0);
    }
    let record = wait_for_record(&server, id, |r| r["sections"]["position"]["x"] == 3.0);
    assert_eq!(
        record["sections"]["progress"]["xp"], 30,
        "each step earned xp"
    );
    c.update();
    assert_eq!(
        c.seen().get(&id),
        Some(&json!({"x": 3.0, "y": 0.0})),
        "replication shows where we stand"
    );
}

#[test]
fn logout_then_login_returns_exactly_the_state_logged_out_with() {
    let server = server();
    let mut c = server.client();
    c.register("bob", "password1");
    c.login("bob", "password1");
    for _ in 0..5 {
        c.step(0.0, -1.0);
    }
    c.send(json!({"type": "ping", "nonce": 1}));
    c.expect("pong");
    c.send(json!({"type": "logout"}));
    c.expect("logged_out");
    let again = c.login("bob", "password1");
    assert_eq!(
        again["state"]["position"],
        json!({"x": 0.0, "y": -5.0}),
        "no rollback after logout"
    );
    assert_eq!(again["state"]["progress"]["xp"], 50);
}

#[test]
fn a_second_login_of_an_online_player_is_refused_until_the_first_logs_out() {
    let server = server();
    let mut first = server.client();
    first.register("carol", "password1");
    first.login("carol", "password1");
    let mut second = server.client();
    second.send(json!({"type": "login", "username": "carol", "password": "password1"}));
    second.expect_error("already_online");
    first.send(json!({"type": "logout"}));
    first.expect("logged_out");
    second.login("carol", "password1");
}

#[test]
fn a_disconnect_saves_and_releases_the_lease() {
    let server = server();
    let mut c = server.client();
    let id = c.register("dave", "password1");
    c.login("dave", "password1");
    c.step(-1.0, 0.0);
    drop(c);
    wait_for_record(&server, id, |r| r["sections"]["position"]["x"] == -1.0);
    let backend = server.backend.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.lease_owner(PlayerId(id)).is_some() {
        assert!(
            Instant::now() < deadline,
            "lease not released after disconnect"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut again = server.client();
    assert_eq!(
        again.login("dave", "password1")["state"]["position"]["x"],
        -1.0
    );
}

#[test]
fn level_up_arrives_only_after_the_record_holds_the_level() {
    let server = server();
    let mut c = server.client();
    let id = c.register("erin", "password1");
    c.login("erin", "password1");
    for _ in 0..10 {
        c.step(1.0, 1.0);
    }
    let level_up = c.expect("level_up");
    assert_eq!(level_up["level"], 2);
    let record = server
        .backend
        .as_ref()
        .unwrap()
        .record(PlayerId(id))
        .expect("saved before level_up was sent");
    assert!(
        record.sections["progress"]["level"].as_u64().unwrap() >= 2,
        "{record:?}"
    );
}

#[test]
fn malformed_input_gets_errors_and_other_players_are_unaffected() {
    let server = server();
    let mut other = server.client();
    other.register("frank", "password1");
    other.login("frank", "password1");

    let mut c = server.client();
    c.send_raw(b"this is not json\n");
    c.expect_error("bad_request");
    c.send(json!({"type": "fly"}));
    c.expect_error("bad_request");
    c.send(json!({"type": "login", "username": "x"}));
    c.expect_error("bad_request");
    c.send(json!({"type": "move", "dx": 1, "dy": 0}));
    c.expect_error("not_logged_in");
    c.send(json!({"type": "logout"}));
    c.expect_error("not_logged_in");
    c.send(json!({"type": "register", "username": "x", "password": "password1"}));
    c.expect_error("bad_request");
    c.send(json!({"type": "register", "username": "frank", "password": "password1"}));
    c.expect_error("username_taken");
    c.send(json!({"type": "login", "username": "frank", "password": "wrong-password"}));
    c.expect_error("invalid_credentials");
    c.send(json!({"type": "ping", "nonce": 7}));
    assert_eq!(
        c.expect("pong")["nonce"],
        7,
        "the connection still serves after errors"
    );

    let mut utf8 = server.client();
    utf8.send_raw(b"{\"type\":\"ping\",\"nonce\":1}\xff\xfe\n");
    utf8.expect_error("bad_request");
    assert!(utf8.is_closed(), "invalid UTF-8 closes the connection");

    let mut big = server.client();
    let huge = vec![b'a'; 70 * 1024];
    big.send_raw(&huge);
    big.send_raw(b"\n");
    big.expect_error("too_large");
    assert!(big.is_closed(), "an oversized line closes the connection");

    other.send(json!({"type": "ping", "nonce": 9}));
    assert_eq!(
        other.expect("pong")["nonce"],
        9,
        "other players are unaffected"
    );
    other.send(json!({"type": "move", "dx": 1, "dy": 0}));
    other.send(json!({"type": "logout"}));
    other.expect("logged_out");
}

#[test]
fn failed_logins_are_rate_limited_per_address() {
    let server = server();
    let mut c = server.client();
    c.register("gina", "password1");
    for _ in 0..6 {
        c.send(json!({"type": "login", "username": "gina", "password": "nope-nope"}));
        c.expect_error("invalid_credentials");
    }
    c.send(json!({"type": "login", "username": "gina", "password": "password1"}));
    c.expect_error("rate_limited");
}

#[test]
fn a_flooding_client_is_rate_limited_and_others_are_unaffected() {
    let server = server();
    let mut other = server.client();
    other.register("hank", "password1");
    other.login("hank", "password1");
    let mut c = server.client();
    c.register("ivy", "password1");
    c.login("ivy", "password1");

    // 1,000 moves in one write: far beyond 120 per second. A burst is taken, the rest refused
    // one by one (a few more taken as the rate allows) until 120 in a row were refused; then
    // the client is disconnected.
    let flood = r#"{"type":"move","dx":1,"dy":0}"#.to_string() + "\n";
    c.send_raw(flood.repeat(1_000).as_bytes());
    let mut limited = 0;
    let kicked = loop {
        let message = c.expect_any(&["error", "level_up", "kicked"]);
        match message["type"].as_str() {
            Some("kicked") => break message,
            Some("error") => {
                assert_eq!(message["code"], "rate_limited", "{message}");
                limited += 1;
            }
            _ => {}
        }
    };
    assert!(
        limited >= 120,
        "at least 120 refused in a row before the kick, each answered: {limited}"
    );
    assert_eq!(kicked["code"], "rate", "{kicked}");
    assert!(
        kicked["reason"]
            .as_str()
            .unwrap()
            .contains("messages per second"),
        "{kicked}"
    );
    assert!(c.is_closed());

    other.send(json!({"type": "ping", "nonce": 4}));
    assert_eq!(
        other.expect("pong")["nonce"],
        4,
        "other players are unaffected"
    );
    // The disconnect saved the player; only the accepted moves count.
    let mut again = server.client();
    let state = loop {
        again.send(json!({"type": "login", "username": "ivy", "password": "password1"}));
        let answer = again.expect_any(&["logged_in", "error"]);
        if answer["type"] == "logged_in" {
            break answer["state"].clone();
        }
        assert_eq!(answer["code"], "already_online", "{answer}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let x = state["position"]["x"].as_f64().unwrap();
    assert!(
        x >= 1.0 && x <= 1_000.0 - f64::from(limited),
        "some moves were applied, none of the refused ones: x = {x}, refused {limited}"
    );
}

#[test]
fn shutdown_tells_every_client_why_and_players_that_their_progress_is_saved() {
    let server = server();
    let mut player = server.client();
    let id = player.register("jade", "password1");
    player.login("jade", "password1");
    player.step(1.0, 0.0);
    let mut anonymous = server.client();
    anonymous.send(json!({"type": "ping", "nonce": 1}));
    anonymous.expect("pong");
    let backend = server.backend.clone().unwrap();

    assert_eq!(server.stop(), 0, "everyone saved");

    let kicked = player.expect("kicked");
    assert_eq!(kicked["code"], "shutdown", "{kicked}");
    assert!(
        kicked["reason"]
            .as_str()
            .unwrap()
            .contains("progress is saved"),
        "{kicked}"
    );
    assert!(player.is_closed());
    let record = backend.record(PlayerId(id)).expect("saved");
    assert_eq!(record.sections["position"]["x"], 1.0);
    let kicked = anonymous.expect("kicked");
    assert_eq!(kicked["code"], "shutdown", "{kicked}");
    assert!(
        kicked["reason"].as_str().unwrap().contains("shutting down"),
        "{kicked}"
    );
    assert!(anonymous.is_closed());
}

#[test]
fn idle_clients_are_disconnected() {
    let mut config = test_config("net-idle");
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    config.front_door.idle_timeout = Duration::from_millis(300);
    let server = NetServer::start(config);
    let mut c = server.client();
    let kicked = c.expect("kicked");
    assert_eq!(kicked["code"], "idle", "{kicked}");
    assert!(
        kicked["reason"].as_str().unwrap().contains("no message"),
        "{kicked}"
    );
    assert!(c.is_closed());
}

#[test]
fn a_full_auth_queue_answers_server_busy_instead_of_growing() {
    let mut config = test_config("net-busy");
    config.front_door.registrations_per_minute = 1_000; // the queue's limit is under test, not this one
    config.front_door.max_connections_per_address = 100; // more than the address's 64 places
    let server = NetServer::memory(config);
    // 80 connections from one address register at once (a connection has one request in the
    // queue at a time: it reads the next once the last is answered, so the flood comes from
    // many connections): beyond the address's share of the line.
    let mut clients: Vec<_> = (0..80).map(|_| server.client()).collect();
    for (n, c) in clients.iter_mut().enumerate() {
        c.send(
            json!({"type": "register", "username": format!("user{n}"), "password": "password1"}),
        );
    }
    let (mut registered, mut busy) = (0, 0);
    for c in &mut clients {
        let answer = c.expect_any(&["registered", "error"]);
        match answer["type"].as_str() {
            Some("registered") => registered += 1,
            _ => {
                assert_eq!(answer["code"], "server_busy", "{answer}");
                busy += 1;
            }
        }
    }
    assert!(
        busy > 0,
        "80 password hashes at once overflow the address's 64 places in the line"
    );
    assert!(registered > 0, "queued requests are still served");
    let c = &mut clients[0];
    c.send(json!({"type": "ping", "nonce": 3}));
    assert_eq!(c.expect("pong")["nonce"], 3);
}

/// Waiting in the line for our answer is not idling: with a 300 ms idle timeout, 40
/// registrations at once (seconds of password hashing for two workers) are all answered,
/// none kicked `idle` while it waits.
#[test]
fn a_request_waiting_in_the_line_is_not_kicked_idle() {
    let mut config = test_config("net-wait-idle");
    config.front_door.registrations_per_minute = 1_000;
    config.front_door.idle_timeout = Duration::from_millis(300);
    let server = NetServer::memory(config);
    let mut clients: Vec<_> = (0..40).map(|_| server.client()).collect();
    for (n, c) in clients.iter_mut().enumerate() {
        c.send(
            json!({"type": "register", "username": format!("patient{n}"), "password": "password1"}),
        );
    }
    for c in &mut clients {
        let answer = c.expect_any(&["registered", "kicked"]);
        assert_eq!(answer["type"], "registered", "{answer}");
    }
}

#[test]
fn a_crowd_registering_at_once_waits_its_turn_told_its_place() {
    let mut config = test_config("net-crowd");
    config.front_door.registrations_per_minute = 1_000; // the line is under test, not this limit
    let server = NetServer::memory(config);
    // 60 connections from one address register at once: far more than the two password
    // workers take, within the address's share of the line.
    let mut clients: Vec<_> = (0..60).map(|_| server.client()).collect();
    for (n, c) in clients.iter_mut().enumerate() {
        c.send(json!({
            "type": "register",
            "id": n,
            "username": format!("crowd{n}"),
            "password": "password1"
        }));
    }
    let mut told = 0;
    for (n, c) in clients.iter_mut().enumerate() {
        let mut positions = Vec::new();
        let answer = loop {
            let message = c
                .next(CLIENT_WAIT)
                .expect("an answer before the server closes");
            match message["type"].as_str() {
                Some("queued") => {
                    assert_eq!(message["id"], n, "a notice names its request: {message}");
                    let position = message["position"].as_u64().unwrap();
                    assert!(position >= 3, "the next two are not told: {message}");
                    assert!(message["eta_s"].as_u64().unwrap() >= 1, "{message}");
                    positions.push(position);
                }
                _ => break message,
            }
        };
        assert_eq!(answer["type"], "registered", "no one refused: {answer}");
        assert_eq!(answer["id"], n, "{answer}");
        assert!(
            positions.windows(2).all(|w| w[1] < w[0]),
            "a place only moves forward: {positions:?}"
        );
        told += usize::from(!positions.is_empty());
    }
    assert!(
        told >= 30,
        "most of a crowd of 60 waits behind others and is told so ({told} were)"
    );
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted_with_either_line_ending() {
    let server = server();
    // A ping padded with spaces to exactly 65,536 bytes, the newline excluded.
    let line = |len: usize| {
        let mut line = json!({"type": "ping", "nonce": len}).to_string();
        line.push_str(&" ".repeat(len - line.len()));
        line
    };
    let mut c = server.client();
    for ending in ["\n", "\r\n"] {
        c.send_raw(format!("{}{ending}", line(65_536)).as_bytes());
        assert_eq!(c.expect("pong")["nonce"], 65_536, "ending {ending:?}");
    }
    for ending in ["\n", "\r\n"] {
        let mut c = server.client();
        c.send_raw(format!("{}{ending}", line(65_537)).as_bytes());
        c.expect_error("too_large");
        assert!(c.is_closed(), "ending {ending:?}");
    }
}
