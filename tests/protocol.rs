//! docs/protocol.md as a client reads it, against the server over real TCP: every behaviour
//! the document states beyond the basics of tests/net.rs (request order, what a logged-in
//! connection may not send, move limits, bounded lines, `kicked` codes, the lockout
//! boundary, idle and blank lines, the `already_online` window, a drain's answers).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::client::{Client, NetServer};
use hearth::components::protocol::{MAX_ERROR_LINE_BYTES, MAX_ERROR_MESSAGE_CHARS};
use hearth::runner::DrainSignal;
use hearth::store::accounts::{AccountStore, AccountStoreFactory, MemoryAccounts};
use hearth::store::maintenance::Maintenance;
use hearth::store::{MemoryBackend, MemoryStore, StoreClock};
use hearth::testing::test_config;
use hearth_components::PlayerId;
use serde_json::{Value, json};

fn server(name: &str) -> NetServer {
    NetServer::memory(test_config(name))
}

/// Several messages in one write, so the server has them all before it answers any.
fn send_together(client: &mut Client, messages: &[Value]) {
    let lines: String = messages.iter().map(|m| format!("{m}\n")).collect();
    client.send_raw(lines.as_bytes());
}

/// The next message that is not replication, whatever its type.
fn next_answer(client: &mut Client) -> Value {
    client.expect_any(&[
        "registered",
        "logged_in",
        "logged_out",
        "pong",
        "error",
        "kicked",
    ])
}

/// The types (and error codes) of the next `n` answers, in order.
fn answers(client: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let answer = next_answer(client);
            match answer["type"].as_str().unwrap() {
                "error" => format!("error {}", answer["code"].as_str().unwrap()),
                kind => kind.to_string(),
            }
        })
        .collect()
}

#[test]
fn answers_come_in_the_order_of_the_requests() {
    let server = server("order");
    let mut c = server.client();
    let register = json!({"type": "register", "username": "ada", "password": "password1"});
    let login = json!({"type": "login", "username": "ada", "password": "password1"});
    send_together(
        &mut c,
        &[register, login.clone(), json!({"type": "ping", "nonce": 1})],
    );
    assert_eq!(answers(&mut c, 3), ["registered", "logged_in", "pong"]);

    let mut d = server.client();
    d.register("bea", "password1");
    let login = json!({"type": "login", "username": "bea", "password": "password1"});
    send_together(
        &mut d,
        &[
            login.clone(),
            login,
            json!({"type": "logout"}),
            json!({"type": "logout"}),
            json!({"type": "ping", "nonce": 2}),
        ],
    );
    assert_eq!(
        answers(&mut d, 5),
        [
            "logged_in",
            "error bad_request",
            "logged_out",
            "error not_logged_in",
            "pong"
        ]
    );
}

#[test]
fn register_login_and_resume_while_logged_in_are_bad_requests() {
    let server = server("logged-in");
    let mut c = server.client();
    c.register("cal", "password1");
    let token = c.login("cal", "password1")["resume_token"]
        .as_str()
        .unwrap()
        .to_string();
    for request in [
        json!({"type": "register", "username": "other", "password": "password1"}),
        json!({"type": "login", "username": "cal", "password": "password1"}),
        json!({"type": "resume", "token": token}),
    ] {
        c.send(request.clone());
        let error = c.expect_error("bad_request");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("already logged in"),
            "{request}: {error}"
        );
    }
    // Nothing was created: the name is free.
    let mut d = server.client();
    d.register("other", "password1");
}

/// Promise (issue 21, "types"): a position is an f32 written as its shortest decimal, the
/// same in `update` and in `logged_in` (once `0.70710677` in one and `0.7071067690849304`
/// in the other). A diagonal step is (√½, √½) in f32.
#[test]
fn a_position_reads_the_same_in_an_update_and_in_logged_in() {
    let server = server("f32-form");
    let mut c = server.client();
    c.register("fay", "password1");
    c.login("fay", "password1");
    let stepped = c.step(1.0, 1.0);
    let shortest: f64 = format!("{}", std::f32::consts::FRAC_1_SQRT_2)
        .parse()
        .unwrap();
    assert_eq!(stepped["x"].as_f64(), Some(shortest), "update: {stepped}");
    assert_ne!(shortest, f64::from(std::f32::consts::FRAC_1_SQRT_2));
    c.send(json!({"type": "logout"}));
    c.expect("logged_out");
    let logged_in = c.login("fay", "password1");
    let position = &logged_in["state"]["position"];
    assert_eq!(
        position["x"].as_f64(),
        Some(shortest),
        "logged_in: {position}"
    );
    assert_eq!(
        position["y"].as_f64(),
        Some(shortest),
        "logged_in: {position}"
    );
}

/// A field named twice is a `bad_request`, with a request `id` or without (a core message
/// with an `id` is read in two steps, which once kept the last value silently).
#[test]
fn a_field_named_twice_is_a_bad_request_with_or_without_an_id() {
    let server = server("twice");
    let mut c = server.client();
    for line in [
        r#"{"type":"ping","nonce":1,"nonce":2}"#,
        r#"{"type":"ping","nonce":1,"nonce":2,"id":3}"#,
        r#"{"type":"ping","id":3,"nonce":1,"nonce":2}"#,
    ] {
        c.send_raw(format!("{line}\n").as_bytes());
        let error = c.expect_error("bad_request");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("duplicate field `nonce`"),
            "{line}: {error}"
        );
    }
    c.ping(7); // the connection stays open
}

#[test]
fn a_move_out_of_range_is_a_bad_request_naming_the_field() {
    let server = server("moves");
    let mut c = server.client();
    c.register("dee", "password1");
    c.login("dee", "password1");
    for (dx, dy, field) in [
        ("1e39", "0", "dx"),
        ("1e300", "1", "dx"),
        ("1e-50", "0", "dx"),
        ("1", "-2e6", "dy"),
        ("0", "1e-7", "dy"),
    ] {
        c.send_raw(format!("{{\"type\":\"move\",\"dx\":{dx},\"dy\":{dy}}}\n").as_bytes());
        let error = c.expect_error("bad_request");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("not a valid move: field `{field}`: ")),
            "({dx}, {dy}): {message}"
        );
        assert!(message.contains("out of range"), "{message}");
    }
    // The limits themselves are steps; (0, 0) is accepted and moves nothing.
    c.send(json!({"type": "move", "dx": 0, "dy": 0}));
    c.ping(1);
    assert_eq!(c.step(1e-5, 0.0)["x"], 1.0);
    assert_eq!(c.step(0.0, 1e6)["y"], 1.0);
}

#[test]
fn an_error_echoing_a_huge_line_stays_within_the_error_line_bound() {
    let server = server("echo");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let junk = "x".repeat(65_000);
    for line in [
        format!("{{\"type\":\"ping\",\"nonce\":\"{junk}\"}}\n"),
        format!("{{\"type\":\"{junk}\"}}\n"),
        format!("{junk}\n"),
    ] {
        stream.write_all(line.as_bytes()).unwrap();
    }
    let mut reader = BufReader::new(stream);
    for quoting in [true, true, false] {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.len() <= MAX_ERROR_LINE_BYTES, "{} bytes", line.len());
        let error: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(error["code"], "bad_request", "{error}");
        let message = error["message"].as_str().unwrap();
        if quoting {
            assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS, "cut");
            assert!(message.ends_with("..."), "{message}");
        }
    }
}

#[test]
fn blank_lines_reset_the_idle_timer_and_silence_is_kicked_with_code_idle() {
    let mut config = test_config("idle");
    config.front_door.idle_timeout = Duration::from_millis(500);
    let server = NetServer::memory(config);
    let mut c = server.client();
    // Three idle timeouts of nothing but blank lines: still connected.
    let until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < until {
        c.send_raw(b"\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.send(json!({"type": "ping", "nonce": 3}));
    assert_eq!(c.expect("pong")["nonce"], 3);
    let kicked = c.expect("kicked");
    assert_eq!(kicked["code"], "idle", "{kicked}");
    assert!(c.is_closed());
}

#[test]
fn the_sixth_failed_login_is_still_answered_and_the_seventh_is_locked_out() {
    let server = server("lockout");
    let mut c = server.client();
    c.register("eli", "password1");
    let wrong = json!({"type": "login", "username": "eli", "password": "wrong-password"});
    for n in 1..=6 {
        c.send(wrong.clone());
        let error = c.expect("error");
        assert_eq!(error["code"], "invalid_credentials", "failure {n}: {error}");
    }
    // Locked out now: even the right password is refused, for the whole lockout.
    c.send(json!({"type": "login", "username": "eli", "password": "password1"}));
    c.expect_error("rate_limited");
}

#[test]
fn a_login_right_after_the_own_connection_dropped_may_be_already_online_then_works() {
    let server = server("window");
    let mut first = server.client();
    first.register("fay", "password1");
    first.login("fay", "password1");
    first.step(1.0, 0.0);
    drop(first);
    let mut again = server.client();
    let mut refused = 0;
    let state = loop {
        again.send(json!({"type": "login", "username": "fay", "password": "password1"}));
        let answer = again.expect_any(&["logged_in", "error"]);
        if answer["type"] == "logged_in" {
            break answer["state"].clone();
        }
        assert_eq!(answer["code"], "already_online", "{answer}");
        refused += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(state["position"]["x"], 1.0, "after {refused} refusals");
}

/// During a drain (kept going by a player whose final save the paused store holds), a
/// `register` still creates the account while a `resume` is refused like a login.
#[test]
fn during_a_drain_register_works_and_resume_is_draining_keeping_its_token() {
    let mut config = test_config("drain-answers");
    config.persistence.flush_interval = Duration::from_secs(3600);
    config.sessions.lease_refresh_interval = Duration::from_secs(3600);
    config.store.settings.lease_ttl = Duration::from_secs(7200);
    config.runner.shutdown_deadline = Duration::from_secs(60);
    let backend = MemoryBackend::new(StoreClock::Real(Instant::now()));
    let (store, port) = MemoryStore::open(Arc::clone(&backend), &config.store.settings);
    let accounts = hearth::store::account_stores(&config.store.settings).unwrap();
    let accounts_again = Arc::clone(&accounts);
    let drain = Arc::new(AtomicBool::new(false));
    let signal = DrainSignal(Arc::clone(&drain));
    let server = NetServer::start_with(config, port, accounts, move |app| {
        app.insert_resource(signal);
    });
    let mut playing = server.client();
    playing.register("gus", "password1");
    playing.login("gus", "password1");
    let mut away = server.client();
    away.register("hal", "password1");
    let token = away.login("hal", "password1")["resume_token"].clone();
    away.send(json!({"type": "logout"}));
    away.expect("logged_out");

    store.pause();
    drain.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.held_jobs() == 0 {
        assert!(Instant::now() < deadline, "the drain saves gus");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut late = server.client();
    late.register("ivo", "password1");
    late.send(json!({"type": "resume", "token": token}));
    late.expect_error("draining");

    store.resume();
    assert_eq!(playing.expect("kicked")["code"], "drain");
    assert_eq!(late.expect("kicked")["code"], "drain");
    assert_eq!(server.join(), 0);

    // The resume refused by the draining server spent nothing: the token works on the next.
    let mut config = test_config("drain-answers-next");
    config.store.settings.lease_ttl = Duration::from_secs(7200);
    let (_, port) = MemoryStore::open(Arc::clone(&backend), &config.store.settings);
    let next = NetServer::start_with(config, port, accounts_again, |_| {});
    let mut back = next.client();
    back.send(json!({"type": "resume", "token": token}));
    back.expect("logged_in");
}

/// Two servers on one store: a player's lease is released behind its server's back and
/// another server takes the player; the first finds out at its next lease refresh and
/// kicks its client with code `takeover`.
#[test]
fn a_session_taken_over_by_another_server_is_kicked_with_code_takeover() {
    let backend = MemoryBackend::new(StoreClock::Real(Instant::now()));
    // One set of accounts, seen by each server as its own lease owner.
    let accounts = MemoryAccounts::on_leases(Arc::clone(&backend), "");
    let start = |name: &str, refresh: Duration| {
        let mut config = test_config(name);
        config.sessions.lease_refresh_interval = refresh;
        let (_, port) = MemoryStore::open(Arc::clone(&backend), &config.store.settings);
        let mine = accounts.for_server(&config.lease_owner());
        let stores: AccountStoreFactory =
            Arc::new(move || Box::new(mine.clone()) as Box<dyn AccountStore>);
        NetServer::start_with(config, port, stores, |_| {})
    };
    let a = start("takeover-a", Duration::from_millis(200));
    let b = start("takeover-b", Duration::from_secs(20));
    let mut on_a = a.client();
    let id = PlayerId(on_a.register("joe", "password1"));
    on_a.login("joe", "password1");
    let mut maintenance = Arc::clone(&backend);
    let mut on_b = b.client();
    // A's refresh may re-claim a lease released a moment before B's login reaches the
    // store: release it again until B's login wins.
    loop {
        if let Some(lease) = maintenance.lease(id).unwrap() {
            maintenance.release_lease(id, &lease.owner).unwrap();
        }
        on_b.send(json!({"type": "login", "username": "joe", "password": "password1"}));
        let answer = on_b.expect_any(&["logged_in", "error"]);
        if answer["type"] == "logged_in" {
            break;
        }
        assert_eq!(answer["code"], "already_online", "{answer}");
    }

    let kicked = on_a.expect("kicked");
    assert_eq!(kicked["code"], "takeover", "{kicked}");
    assert!(on_a.is_closed());
    on_b.ping(4);
}

#[test]
fn every_answer_carries_the_request_id_right_after_its_type() {
    let server = server("ids");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut ask = |request: &str| -> String {
        stream.write_all(format!("{request}\n").as_bytes()).unwrap();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if !line.starts_with("{\"type\":\"update\"")
                && !line.starts_with("{\"type\":\"replication\"")
            {
                return line;
            }
        }
    };
    assert_eq!(
        ask(r#"{"type":"ping","nonce":7,"id":5}"#),
        "{\"type\":\"pong\",\"id\":5,\"nonce\":7}\n"
    );
    assert_eq!(
        ask(r#"{"id":"r-1","type":"register","username":"kit","password":"password1"}"#),
        "{\"type\":\"registered\",\"id\":\"r-1\",\"player_id\":1}\n"
    );
    assert!(
        ask(r#"{"type":"move","id":3,"dx":1,"dy":0}"#)
            .starts_with("{\"type\":\"error\",\"id\":3,\"code\":\"not_logged_in\""),
    );
    assert!(
        ask(
            r#"{"type":"login","id":18446744073709551615,"username":"kit","password":"password1"}"#
        )
        .starts_with("{\"type\":\"logged_in\",\"id\":18446744073709551615,\"player_id\":1,"),
    );
    assert!(
        ask(r#"{"type":"login","id":4,"username":"kit","password":"password1"}"#)
            .starts_with("{\"type\":\"error\",\"id\":4,\"code\":\"bad_request\""),
    );
    assert_eq!(
        ask(r#"{"type":"logout","id":"bye"}"#),
        "{\"type\":\"logged_out\",\"id\":\"bye\"}\n"
    );
    // A bad id is refused naming the field, and the answer carries no id.
    let long = "x".repeat(65);
    for bad in ["-1", "1.5", "[1]", "null", &format!("\"{long}\"")] {
        let answer = ask(&format!(r#"{{"type":"ping","nonce":1,"id":{bad}}}"#));
        assert!(
            answer.starts_with(
                "{\"type\":\"error\",\"code\":\"bad_request\",\"message\":\"field `id`: "
            ),
            "{bad}: {answer}"
        );
    }
}

#[test]
fn in_binary_an_answer_carries_the_request_id_right_after_its_type() {
    use std::io::Read;
    let server = server("ids-binary");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // docs/protocol.md, "Request ids": {"type":"ping","nonce":7,"id":5} as a frame.
    let preamble = [0x00, 0x48, 0x52, 0x54, 0x48, 0x01];
    let ping: &[u8] = &[
        0x17, 0x01, 0x83, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0xa5, 0x6e,
        0x6f, 0x6e, 0x63, 0x65, 0x07, 0xa2, 0x69, 0x64, 0x05,
    ];
    stream.write_all(&preamble).unwrap();
    stream.write_all(ping).unwrap();
    let pong: &[u8] = &[
        0x17, 0x01, 0x83, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa4, 0x70, 0x6f, 0x6e, 0x67, 0xa2, 0x69,
        0x64, 0x05, 0xa5, 0x6e, 0x6f, 0x6e, 0x63, 0x65, 0x07,
    ];
    let mut answer = vec![0; preamble.len() + pong.len()];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[..6], preamble);
    assert_eq!(&answer[6..], pong, "{answer:02x?}");
}

/// The demo world's edge, as docs/protocol.md states it (a world fixture: walking 1,000
/// steps to the edge over TCP would only make the test slow): a diagonal step at the edge
/// slides along it, a step straight into it moves nothing.
#[test]
fn a_diagonal_step_at_the_worlds_edge_slides_along_it() {
    use hearth::demo_game::{Move, WORLD_HALF_EXTENT};
    use hearth::prelude::Position;
    let mut server = hearth::testing::TestServer::new();
    let at_edge = Position {
        x: WORLD_HALF_EXTENT,
        y: 0.0,
    };
    let player = server.spawn_player(PlayerId(1), at_edge);
    let position =
        |server: &hearth::testing::TestServer| *server.world().get::<Position>(player).unwrap();
    server.client_message(player, Move { dx: 1.0, dy: 1.0 });
    server.frame();
    let slid = position(&server);
    assert_eq!(slid.x, WORLD_HALF_EXTENT, "{slid:?}");
    assert!(
        (slid.y - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6,
        "{slid:?}"
    );
    server.client_message(player, Move { dx: 1.0, dy: 0.0 });
    server.frame();
    assert_eq!(position(&server), slid, "straight into the edge: no move");
}
