//! The fault campaign's experiments on whole `hearth` processes that held, kept as tests:
//! racing logins on two servers, a server killed with SIGKILL, a Redis killed and restarted,
//! a hung Redis. Each runs the real binary on a real `redis-server` and checks what a player
//! was shown against what is stored.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::client::Client;
use common::process::{Hearth, stored_record};
use common::redis_server::RedisServer;
use serde_json::{Value, json};

const PASSWORD: &str = "password1";

/// Registers `name` and logs it in on `server`; returns the client and the player id.
fn player(server: &Hearth, name: &str) -> (Client, u64) {
    let mut client = server.client();
    let id = client.register(name, PASSWORD);
    client.login(name, PASSWORD);
    (client, id)
}

/// Sends `logout` and reads until `logged_out`; returns the `level_up`s read on the way.
fn log_out(client: &mut Client) -> Vec<Value> {
    client.send(json!({"type": "logout"}));
    let mut level_ups = client.take("level_up");
    loop {
        let message = client.expect_any(&["logged_out", "level_up"]);
        if message["type"] == "logged_out" {
            return level_ups;
        }
        level_ups.push(message);
    }
}

/// The stored `(x, xp, level)` of player `id`.
fn stored_progress(redis: &RedisServer, id: u64) -> (f64, u64, u64) {
    let record = stored_record(redis, id).unwrap_or_else(|| panic!("player {id} is stored"));
    let sections = &record["sections"];
    (
        sections["position"]["x"].as_f64().unwrap(),
        sections["progress"]["xp"].as_u64().unwrap(),
        sections["progress"]["level"].as_u64().unwrap(),
    )
}

/// The highest level announced by `level_up` messages (1 when none).
fn highest_level(level_ups: &[Value]) -> u64 {
    level_ups
        .iter()
        .map(|m| m["level"].as_u64().unwrap())
        .max()
        .unwrap_or(1)
}

/// Promise: a player is never logged in twice. The same account logs in on two servers
/// sharing one Redis at the same moment, 20 times over: exactly one `logged_in`, the other
/// `already_online`, and the lease belongs to the winner.
#[test]
fn simultaneous_logins_on_two_servers_let_exactly_one_in() {
    const ACCOUNTS: usize = 20;
    let redis = RedisServer::start();
    let a = Hearth::start_with(&redis, "race-a", &["--registrations-per-minute", "100"]);
    let b = Hearth::start(&redis, "race-b");
    let mut registrar = a.client();
    let ids: Vec<u64> = (0..ACCOUNTS)
        .map(|i| registrar.register(&format!("racer{i}"), PASSWORD))
        .collect();
    let barrier = Arc::new(Barrier::new(2));
    let race = |server: &Hearth| {
        let (addr, barrier) = (server.addr, Arc::clone(&barrier));
        thread::spawn(move || {
            let mut clients: Vec<Client> = (0..ACCOUNTS).map(|_| Client::connect(addr)).collect();
            let mut answers = Vec::new();
            for (i, client) in clients.iter_mut().enumerate() {
                barrier.wait(); // both servers get this account's login at the same moment
                client.send(
                    json!({"type": "login", "username": format!("racer{i}"), "password": PASSWORD}),
                );
                answers.push(client.expect_any(&["logged_in", "error"]));
            }
            (answers, clients) // the clients stay connected: winners stay online
        })
    };
    let (on_a, on_b) = (race(&a), race(&b));
    let (answers_a, _clients_a) = on_a.join().expect("racing on a");
    let (answers_b, _clients_b) = on_b.join().expect("racing on b");
    let mut conn = redis.connection();
    let won_on_a = answers_a
        .iter()
        .filter(|m| m["type"] == "logged_in")
        .count();
    eprintln!(
        "racing logins: {won_on_a} won on a, {} on b",
        ACCOUNTS - won_on_a
    );
    for (i, (x, y)) in answers_a.iter().zip(&answers_b).enumerate() {
        let winner = match (x["type"].as_str(), y["type"].as_str()) {
            (Some("logged_in"), Some("error")) if y["code"] == "already_online" => "race-a/",
            (Some("error"), Some("logged_in")) if x["code"] == "already_online" => "race-b/",
            _ => panic!("racer{i}: exactly one login and one already_online, got {x} and {y}"),
        };
        let owner: String = redis::cmd("GET")
            .arg(format!("hearth:session:{{{}}}", ids[i]))
            .query(&mut conn)
            .unwrap();
        assert!(
            owner.starts_with(winner),
            "racer{i}: the lease is the winner's ({winner}): {owner}"
        );
    }
}

/// What one walking player saw before its server was killed.
struct Walk {
    id: u64,
    /// x of the last step a snapshot showed (each step is +1 x and +10 xp from 0).
    shown_x: f64,
    level_ups: Vec<Value>,
    /// Whether it logged out (and got `logged_out`) before the kill.
    logged_out: bool,
}

/// Promise: a crash loses at most one flush interval of play, and nothing acknowledged.
///
/// The bound asserted: with `flush_interval` F = 500 ms and each player taking at most one
/// step per PACE = 150 ms (it sleeps PACE after each step it was shown), a player's stored x
/// is at least its last shown x minus floor(F/PACE) + 1 = 4 steps (40 xp), and at most one
/// step ahead (a move applied, flushed, but never shown). Why it holds: every flush
/// snapshots all dirty players and the flush timer fires every F, so at the kill the newest
/// stored snapshot is at most F plus one write's latency old; in F a player walks at most
/// floor(F/PACE) steps, and the extra step covers the frame the flush waits for and the
/// write in flight. A level-up is saved at once, which would hide a slow flush: the walkers
/// are killed 7 to 9 steps past their last level-up (steps 27-29), so only the flush can
/// keep them within 4 steps. Acknowledged progress is exact: a player that got `logged_out`
/// is stored as last shown, and every `level_up` received is stored.
#[test]
fn a_killed_server_loses_at_most_one_flush_interval_and_nothing_acknowledged() {
    const PACE: Duration = Duration::from_millis(150);
    const FLUSH: Duration = Duration::from_millis(500);
    /// Steps the walkers reach before the kill, and the last one they take (the 30th would
    /// be a level-up, saved at once).
    const KILL_AT: u64 = 27;
    const LAST_STEP: u64 = 29;
    let bound_steps = (FLUSH.as_millis() / PACE.as_millis()) as f64 + 1.0;
    let redis = RedisServer::start();
    let mut doomed = Hearth::start_with(
        &redis,
        "doomed",
        &[
            "--flush-interval",
            "500ms",
            "--registrations-per-minute",
            "100",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut walkers = Vec::new();
    let mut counters = Vec::new();
    for i in 0..4 {
        let (mut client, id) = player(&doomed, &format!("walker{i}"));
        let steps_taken = Arc::new(AtomicU64::new(0));
        counters.push(Arc::clone(&steps_taken));
        let stop = Arc::clone(&stop);
        // Two log out after 12 steps (one level up); two walk until the server dies.
        let leaves_after = (i < 2).then_some(12);
        walkers.push(thread::spawn(move || {
            let mut walk = Walk {
                id,
                shown_x: 0.0,
                level_ups: Vec::new(),
                logged_out: false,
            };
            let mut steps = 0;
            while !stop.load(Ordering::SeqCst) {
                if leaves_after == Some(steps) {
                    walk.level_ups.extend(log_out(&mut client));
                    walk.logged_out = true;
                    return walk;
                }
                if steps == LAST_STEP {
                    thread::sleep(Duration::from_millis(20)); // wait for the kill
                    continue;
                }
                let Some(position) = client.try_step(1.0, 0.0) else {
                    break; // the server is gone
                };
                walk.shown_x = position["x"].as_f64().unwrap();
                walk.level_ups.extend(client.take("level_up"));
                steps += 1;
                steps_taken.fetch_add(1, Ordering::SeqCst);
                thread::sleep(PACE);
            }
            walk.level_ups.extend(client.take("level_up"));
            walk
        }));
    }
    // Kill once the first two logged out and the others walked KILL_AT steps.
    let started = Instant::now();
    while !(walkers[..2].iter().all(|w| w.is_finished())
        && counters[2..]
            .iter()
            .all(|c| c.load(Ordering::SeqCst) >= KILL_AT))
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "walkers stalled"
        );
        thread::sleep(Duration::from_millis(20));
    }
    doomed.signal("-KILL");
    doomed.wait();
    stop.store(true, Ordering::SeqCst);
    let walks: Vec<Walk> = walkers
        .into_iter()
        .map(|w| w.join().expect("walker"))
        .collect();

    let survivor = Hearth::start(&redis, "survivor");
    for (i, walk) in walks.iter().enumerate() {
        let (x, xp, level) = stored_progress(&redis, walk.id);
        assert_eq!(xp, 10 * x as u64, "walker{i}: xp matches the steps stored");
        eprintln!(
            "walker{i}: last shown x {}, stored x {x} ({} steps behind), logged out: {}",
            walk.shown_x,
            walk.shown_x - x,
            walk.logged_out
        );
        if walk.logged_out {
            assert_eq!(x, walk.shown_x, "walker{i} got logged_out: stored exactly");
        } else {
            assert!(
                x >= walk.shown_x - bound_steps && x <= walk.shown_x + 1.0,
                "walker{i}: stored x {x}, last shown {}, allowed {bound_steps} steps behind",
                walk.shown_x
            );
        }
        assert!(
            level >= highest_level(&walk.level_ups),
            "walker{i}: every level_up received is stored ({level} stored, {:?} received)",
            walk.level_ups
        );
        assert!(
            !walk.level_ups.is_empty(),
            "walker{i} walked past 100 xp and heard of it"
        );
        // Another server loads exactly the stored record, once the dead server's lease expires.
        let started = Instant::now();
        let loaded = loop {
            let mut client = survivor.client();
            client.send(
                json!({"type": "login", "username": format!("walker{i}"), "password": PASSWORD}),
            );
            let answer = client.expect_any(&["logged_in", "error"]);
            if answer["type"] == "logged_in" {
                break answer;
            }
            assert_eq!(answer["code"], "already_online", "{answer}");
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "walker{i}'s lease never expired"
            );
            thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(loaded["state"]["position"]["x"], x, "walker{i}");
        assert_eq!(loaded["state"]["progress"]["xp"], xp, "walker{i}");
    }
}

/// Steps every client once and pings each; returns the replication round seen after.
fn play_round(clients: &mut [(Client, u64)], nonce: u64) -> u64 {
    let mut tick = 0;
    for (client, _) in clients.iter_mut() {
        client.step(1.0, 0.0);
        client.ping(nonce);
        tick = client.update()["round"].as_u64().unwrap();
    }
    tick
}

/// Logs every client out and checks its stored record is the last state it was shown, and
/// that no one was kicked.
fn log_out_all_and_check_stored(redis: &RedisServer, clients: &mut [(Client, u64)]) {
    for (i, (client, id)) in clients.iter_mut().enumerate() {
        let shown_x = client.position().unwrap()["x"].as_f64().unwrap();
        let level_ups = log_out(client);
        assert!(client.take("kicked").is_empty(), "player {i} was kicked");
        let (x, xp, level) = stored_progress(redis, *id);
        assert_eq!(x, shown_x, "player {i}: stored as last shown");
        assert_eq!(
            xp,
            10 * shown_x as u64,
            "player {i}: every step's xp stored"
        );
        assert_eq!(level, xp / 100 + 1, "player {i}");
        assert!(level >= highest_level(&level_ups), "player {i}");
    }
}

/// Flags of a server riding out a Redis outage: leases (10 s) outlive it, refreshes and store
/// calls fail fast, and the test's registrations are not rate limited.
const OUTAGE_TIMINGS: &[&str] = &[
    "--lease-ttl",
    "10s",
    "--lease-refresh-interval",
    "1s",
    "--store-timeout",
    "500ms",
    "--registrations-per-minute",
    "100",
];

/// Promise: a Redis outage pauses saving, not the game, and loses nothing. Redis (AOF,
/// `appendfsync always`) is SIGKILLed while three players play; they keep walking, get
/// pongs and snapshots with an advancing tick, no one is kicked; after Redis is restarted
/// each logs out and its stored record is the last state it was shown.
#[test]
fn a_redis_killed_and_restarted_pauses_saving_not_the_game_and_loses_nothing() {
    let mut redis = RedisServer::start_durable();
    let server = Hearth::start_with(&redis, "steady", OUTAGE_TIMINGS);
    let mut clients: Vec<(Client, u64)> = (0..3)
        .map(|i| player(&server, &format!("steady{i}")))
        .collect();
    let mut latecomer = server.client();
    latecomer.register("latecomer", PASSWORD);
    play_round(&mut clients, 1);

    redis.kill();
    let mut tick = 0;
    for round in 0..8 {
        let now = play_round(&mut clients, 100 + round);
        assert!(now > tick, "the tick advances while Redis is down");
        tick = now;
    }
    latecomer.send(json!({"type": "login", "username": "latecomer", "password": PASSWORD}));
    latecomer.expect_error("unavailable");

    redis.restart();
    play_round(&mut clients, 200);
    log_out_all_and_check_stored(&redis, &mut clients);
}

/// Promise: a hung Redis (SIGSTOP: connections accepted, nothing answered) stops neither the
/// game nor the front door: players walk, pongs and advancing snapshots arrive while it is
/// frozen, a login answers `unavailable` instead of hanging, and after SIGCONT every player's
/// state is saved and logins work again.
#[test]
fn a_hung_redis_stops_neither_the_game_nor_logins_and_loses_nothing() {
    let redis = RedisServer::start();
    let server = Hearth::start_with(&redis, "patient", OUTAGE_TIMINGS);
    let mut clients: Vec<(Client, u64)> = (0..3)
        .map(|i| player(&server, &format!("patient{i}")))
        .collect();
    let mut latecomer = server.client();
    latecomer.register("latecomer", PASSWORD);
    play_round(&mut clients, 1);

    redis.freeze();
    let mut tick = 0;
    for round in 0..8 {
        let now = play_round(&mut clients, 100 + round);
        assert!(now > tick, "the tick advances while Redis is hung");
        tick = now;
    }
    let asked = Instant::now();
    latecomer.send(json!({"type": "login", "username": "latecomer", "password": PASSWORD}));
    latecomer.expect_error("unavailable"); // while still frozen: it did not wait for Redis
    eprintln!(
        "login answered unavailable after {:?} of a hung Redis",
        asked.elapsed()
    );
    let now = play_round(&mut clients, 300);
    assert!(now > tick, "the game went on while the login was answered");

    redis.thaw();
    play_round(&mut clients, 200);
    log_out_all_and_check_stored(&redis, &mut clients);
    let started = Instant::now();
    loop {
        latecomer.send(json!({"type": "login", "username": "latecomer", "password": PASSWORD}));
        let answer = latecomer.expect_any(&["logged_in", "error"]);
        if answer["type"] == "logged_in" {
            break;
        }
        assert_eq!(answer["code"], "unavailable", "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "logins never worked again after Redis came back"
        );
        thread::sleep(Duration::from_millis(200));
    }
}
