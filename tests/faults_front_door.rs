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
use common::rng::Rng;
use hearth::config::ServerConfig;
use hearth::prelude::*;
use hearth::testing::test_config;
use hearth_components::PlayerId;
use serde_json::json;

/// `shout`: asks for an [`Echo`].
#[derive(Deserialize, Debug, JsonSchema)]
struct Shout {}

/// `echo`: a large answer (60 KB).
#[derive(Serialize, Debug, JsonSchema)]
struct Echo {
    text: String,
}

/// Answers every `shout` with a 60 KB `echo`.
fn echo(mut shouts: MessageReader<FromClient<Shout>>, to_clients: ToClients<Echo>) {
    for shout in shouts.read() {
        to_clients.send(
            shout.entity,
            Echo {
                text: "x".repeat(60_000),
            },
        );
    }
}

/// A memory-store server with a short idle timeout.
fn config(name: &str) -> ServerConfig {
    let mut config = test_config(name);
    config.front_door.idle_timeout = Duration::from_secs(1);
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
fn a_silent_logged_in_client_is_kicked_saved_and_released_though_updates_flow() {
    // A long flush interval: only the kick's final save can put x = 1 in the store.
    let server = NetServer::memory(config("idle-silent"));
    let (mut c, id) = player(&server, "silent");
    let kicked = c.expect("kicked"); // updates keep arriving meanwhile, and are skipped
    assert_eq!(kicked["code"], "idle", "{kicked}");
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
    assert_eq!(kicked["code"], "idle", "{kicked}");
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
    config.front_door.registrations_per_minute = 3;
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
    config.front_door.registrations_per_minute = 1_000; // the flood must reach the auth queue
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
    config.front_door.max_connections_per_address = 3;
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
    config.front_door.max_connections = 3;
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

/// One fuzzed line (no newline): random text, truncated or deeply nested JSON, huge
/// numbers, wrong types, unknown types.
fn fuzz_line(rng: &mut Rng) -> String {
    let valid = [
        r#"{"type":"register","username":"fuzzer","password":"password1"}"#,
        r#"{"type":"login","username":"fuzzer","password":"password1"}"#,
        r#"{"type":"move","dx":1,"dy":0}"#,
        r#"{"type":"ping","nonce":7}"#,
        r#"{"type":"logout"}"#,
    ];
    let values = [
        "null",
        "true",
        "[]",
        "{}",
        "\"x\"",
        "-1",
        "1.5",
        "1e400",
        "-1e400",
        "18446744073709551616",
        "99999999999999999999999999999",
        "\"\\ud800\"",
        "[[[]]]",
    ];
    match rng.index(6) {
        0 => (0..1 + rng.index(200))
            .map(|_| match rng.index(4) {
                0 => char::from_u32(0x20 + u32::try_from(rng.index(0x5f)).unwrap()).unwrap(),
                1 => char::from_u32(u32::try_from(rng.index(0xd7ff)).unwrap()).unwrap_or('?'),
                2 => rng
                    .pick(&["{", "}", "\"", ":", ",", "\\", "\r", "\0"])
                    .chars()
                    .next()
                    .unwrap(),
                _ => char::from_u32(0x1_0000 + u32::try_from(rng.index(0xffff)).unwrap())
                    .unwrap_or('?'),
            })
            .filter(|c| *c != '\n')
            .collect(),
        1 => {
            let line = rng.pick(&valid);
            line[..rng.index(line.len())].to_string()
        }
        2 => {
            let depth = 1 + rng.index(10_000); // within 64 KiB either way
            let (open, close) = rng.pick(&["[|]", "{\"a\":|}"]).split_once('|').unwrap();
            let closed = if rng.index(2) == 0 { depth } else { 0 };
            format!("{}1{}", open.repeat(depth), close.repeat(closed))
        }
        3 => {
            let field = rng.pick(&["nonce", "dx", "dy"]);
            let kind = if field == "nonce" { "ping" } else { "move" };
            let number = rng.pick(&[
                "1e400",
                "-1e400",
                "18446744073709551616",
                "-1",
                "1.5",
                "1e99999",
            ]);
            format!(r#"{{"type":"{kind}","{field}":{number},"dx":0,"dy":0}}"#)
        }
        4 => {
            let field = rng.pick(&["username", "password", "nonce", "dx", "dy", "type"]);
            let kind = rng.pick(&["register", "login", "move", "ping"]);
            format!(r#"{{"type":"{kind}","{field}":{}}}"#, rng.pick(&values))
        }
        _ => {
            let kind: String = (0..rng.index(40))
                .map(|_| char::from(b'a' + u8::try_from(rng.index(26)).unwrap()))
                .collect();
            format!(r#"{{"type":"{kind}","extra":{}}}"#, rng.pick(&values))
        }
    }
}

/// Whether the server could take `line` for a real request (those are not fuzz cases): a
/// core message, or a `move` of the demo game, decoded as the front door decodes it.
fn is_a_request(line: &str) -> bool {
    use hearth::systems::GameMessagesAppExt;
    use hearth::systems::game_messages::ClientMessageTypes;
    thread_local! {
        static GAME: ClientMessageTypes = {
            let mut app = bevy_app::App::new();
            app.add_client_message::<hearth::demo_game::Move>("move");
            app.world().resource::<ClientMessageTypes>().clone()
        };
    }
    line.trim().is_empty()
        || serde_json::from_str::<hearth_components::protocol::ClientMessage>(line).is_ok()
        || GAME.with(|game| matches!(game.decode("move", line), Some(Ok(_))))
}

#[test]
fn fuzzed_input_only_ever_gets_errors_and_other_clients_are_unaffected() {
    let server = NetServer::memory(test_config("fuzz"));
    let (mut other, other_id) = player(&server, "bystander");
    // A fixed seed: the fuzz cases are the same every run.
    let mut rng = Rng(0x4845_4152_5448_2121);
    // 4 connections x 100 fuzzed lines, each line answered bad_request, in order, and the
    // connection still serves afterwards (100 lines stay inside the per-connection burst).
    for round in 0..4 {
        let cases: Vec<String> = std::iter::repeat_with(|| fuzz_line(&mut rng))
            .filter(|line| !is_a_request(line))
            .take(100)
            .collect();
        let mut c = server.client();
        let mut batch = String::new();
        for line in &cases {
            batch.push_str(line);
            batch.push('\n');
        }
        c.send_raw(batch.as_bytes());
        for line in &cases {
            let error = c.expect("error");
            assert_eq!(
                error["code"],
                "bad_request",
                "{error} for {:?}",
                &line[..line.len().min(200)]
            );
        }
        c.send(json!({"type": "ping", "nonce": round}));
        assert_eq!(c.expect("pong")["nonce"], round);
    }
    // Random bytes that are not UTF-8: bad_request, then the connection closes.
    for _ in 0..8 {
        let mut bytes: Vec<u8> = (0..1 + rng.below(300))
            .map(|_| u8::try_from(rng.below(256)).unwrap())
            .filter(|b| *b != b'\n')
            .collect();
        bytes.push(0xff);
        bytes.push(b'\n');
        let mut c = server.client();
        c.send_raw(&bytes);
        c.expect_error("bad_request");
        assert!(c.is_closed());
    }
    // Valid requests with extreme numbers, from a logged-in player: ignored or applied, never
    // a position outside the world.
    let (mut extreme, _) = player(&server, "extreme");
    for (dx, dy) in [
        ("1e38", "0"),
        ("-1e39", "1e39"),
        ("1e-45", "-0.0"),
        ("0", "0"),
        ("-3.4028235e38", "3.4028235e38"),
    ] {
        extreme.send_raw(format!("{{\"type\":\"move\",\"dx\":{dx},\"dy\":{dy}}}\n").as_bytes());
    }
    let position = extreme.step(0.0, 1.0);
    for axis in ["x", "y"] {
        let v = position[axis].as_f64().unwrap();
        assert!(v.is_finite() && v.abs() <= 1000.0, "{position}");
    }
    // The bystander never noticed.
    other.step(1.0, 0.0);
    other.send(json!({"type": "ping", "nonce": 99}));
    assert_eq!(other.expect("pong")["nonce"], 99);
    other.send(json!({"type": "logout"}));
    other.expect("logged_out");
    let record = server.backend.as_ref().unwrap().record(PlayerId(other_id));
    assert_eq!(record.unwrap().sections["position"]["x"], 2.0);
    assert_eq!(
        server.stop(),
        0,
        "the server shuts down cleanly: nothing panicked"
    );
}

#[test]
fn thousands_of_silent_connections_do_not_stop_a_player_being_served() {
    // Both ends live in this process: two descriptors per connection. The front door raises
    // the soft open-file limit to the hard one; scale to what that leaves (3,000 when it can).
    let files = hearth::net::fd_limit::raise_to_hard().unwrap().soft;
    let count = usize::try_from(files.saturating_sub(512) / 2)
        .unwrap_or(usize::MAX)
        .min(3_000);
    assert!(
        count >= 500,
        "only {files} open files for this test process"
    );
    let mut config = test_config("silent-crowd");
    config.front_door.max_connections_per_address = 10_000;
    let server = NetServer::memory(config);
    let (mut c, _) = player(&server, "busy");
    let silent: Vec<TcpStream> = (0..count)
        .map(|_| TcpStream::connect(server.addr).expect("connect"))
        .collect();
    // A connection made after all of them is served: every silent one was accepted first.
    let mut last = server.client();
    last.send(json!({"type": "ping", "nonce": 1}));
    last.expect("pong");
    let before = c.step(1.0, 0.0);
    assert_eq!(before["x"], 2.0);
    c.send(json!({"type": "ping", "nonce": 2}));
    assert_eq!(c.expect("pong")["nonce"], 2);
    drop(silent);
}

#[test]
fn a_logged_in_client_that_never_reads_is_disconnected_saved_and_released() {
    // A game whose answer is large: each `shout` is answered with a 60 KB `echo`.
    let server = NetServer::memory_with(test_config("never-reads"), |app| {
        app.add_client_message::<Shout>("shout")
            .add_server_message::<Echo>("echo")
            .add_systems(PreUpdate, echo.after(NetSystems::Receive));
    });
    let (mut other, _) = player(&server, "reader");
    let (stalled, id) = player(&server, "deaf");
    // The deaf client keeps sending (within its message rate) requests whose answers are
    // large, and never reads one of them: the socket buffers fill and the server's write
    // stalls.
    let mut writer = stalled.writer();
    let sender = std::thread::spawn(move || {
        let line = "{\"type\":\"shout\"}\n";
        loop {
            for _ in 0..50 {
                if writer.write_all(line.as_bytes()).is_err() {
                    return; // the server closed the connection
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    // Meanwhile the other player keeps getting replication updates.
    let backend = server.backend.as_ref().unwrap();
    let mut updates = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while backend.lease_owner(PlayerId(id)).is_some() {
        assert!(
            Instant::now() < deadline,
            "the deaf client was never cut loose"
        );
        other.update();
        updates += 1;
    }
    assert!(updates > 0);
    wait_saved_and_released(&server, id, 1.0);
    sender.join().unwrap();
    let first = other.update()["round"].as_u64().unwrap();
    let later = other.update()["round"].as_u64().unwrap();
    assert!(later > first, "updates keep coming");
    drop(stalled);
}
