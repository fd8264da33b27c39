//! Crash failover (issue 18 item 9): a server that dies holds its players' leases for
//! `lease_ttl` (60 s), but its liveness key (`liveness_ttl`, 3 s) is gone within seconds, and
//! a claim or resume on another server takes such a lease over. Whole `hearth` processes on
//! a real Redis (and a real 3-master cluster), default lease and liveness settings: a
//! SIGKILLed server's players are back on a second server within seconds, by resume token or
//! password, with every change they were told was saved; a frozen (SIGSTOP) server whose
//! players moved on is fenced and writes nothing over them.
//!
//! Each test prints the failover times (`cargo test --test failover <name> -- --nocapture`);
//! the assertion on them is only a generous bound that tells the liveness key (seconds) from
//! the lease TTL (a minute), so a loaded machine does not fail it.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::client::Client;
use common::process::{Hearth, stored_record};
use common::redis_cluster::RedisCluster;
use common::redis_server::RedisServer;
use serde_json::{Value, json};

const PASSWORD: &str = "password1";

/// Far below `lease_ttl` (60 s), far above `liveness_ttl` (3 s) plus a retry and a loaded
/// machine: a failover that waits for the lease instead of the liveness key fails it.
const GENEROUS: Duration = Duration::from_secs(30);

/// A server at default lease, refresh, flush and liveness settings on `store`, allowed the
/// test's registrations from one address.
fn server(store: &str, instance: &str) -> Hearth {
    Hearth::start_args(&[
        "--store",
        store,
        "--instance-id",
        instance,
        "--registrations-per-minute",
        "1000",
    ])
}

/// A player on the doomed server: registered, logged in, walked to level 2 (the `level_up`
/// is sent only once that save is durable: an acknowledged change).
struct Player {
    name: String,
    client: Client,
    token: String,
    /// Where it connects from: players are on addresses of their own, as the per-address
    /// login queue expects.
    address: std::net::IpAddr,
}

fn play_to_level_2(server: &Hearth, name: &str, n: u8) -> Player {
    let address = std::net::IpAddr::from([127, 0, 1, n]);
    let mut client = Client::connect_from(address, server.addr);
    client.register(name, PASSWORD);
    let logged_in = client.login(name, PASSWORD);
    let token = logged_in["resume_token"].as_str().unwrap().to_string();
    let mut level_ups = Vec::new();
    while level_ups.is_empty() {
        client.step(1.0, 0.0);
        level_ups.extend(client.take("level_up"));
    }
    assert_eq!(level_ups[0]["level"], 2, "{name}: {level_ups:?}");
    Player {
        name: name.to_string(),
        client,
        token,
        address,
    }
}

/// Tries every second on `addr` (resume with `token`, or the password) until `logged_in`;
/// `already_online` is the only refusal expected meanwhile. Returns the client (playing), the
/// `logged_in` and how long since `since` it took.
fn back_in(
    addr: std::net::SocketAddr,
    player: &Player,
    by_token: bool,
    since: Instant,
) -> (Client, Value, Duration) {
    loop {
        let mut client = Client::connect_from(player.address, addr);
        let message = if by_token {
            json!({"type": "resume", "token": player.token})
        } else {
            json!({"type": "login", "username": player.name, "password": PASSWORD})
        };
        match client.try_enter(message) {
            Ok(logged_in) => return (client, logged_in, since.elapsed()),
            Err(error) => assert_eq!(error["code"], "already_online", "{}: {error}", player.name),
        }
        assert!(
            since.elapsed() < GENEROUS,
            "{} still locked out after {GENEROUS:?}",
            player.name
        );
        thread::sleep(Duration::from_secs(1));
    }
}

/// Kills `doomed` with SIGKILL, brings every player back on `survivor` (even ones by resume
/// token, odd ones by password, each on its own thread retrying every second) and checks
/// each loaded at least what it was told was saved. Returns the times, sorted.
fn fail_over(doomed: &mut Hearth, survivor: &Hearth, players: Vec<Player>) -> Vec<Duration> {
    doomed.signal("-KILL");
    doomed.wait();
    let killed = Instant::now();
    let addr = survivor.addr;
    let waiting: Vec<_> = players
        .into_iter()
        .enumerate()
        .map(|(i, player)| {
            thread::spawn(move || {
                let by_token = i % 2 == 0;
                let (_client, logged_in, took) = back_in(addr, &player, by_token, killed);
                let level = logged_in["state"]["progress"]["level"].as_u64().unwrap();
                assert!(
                    level >= 2,
                    "{}: the acknowledged level-up is loaded: {logged_in}",
                    player.name
                );
                took
            })
        })
        .collect();
    let mut times: Vec<Duration> = waiting
        .into_iter()
        .map(|w| w.join().expect("a player got back in"))
        .collect();
    times.sort();
    times
}

fn report(what: &str, times: &[Duration]) {
    let ms = |d: Duration| d.as_millis();
    eprintln!(
        "{what}: {} players back in after SIGKILL: min {} ms, median {} ms, max {} ms (lease_ttl 60 s, liveness_ttl 3 s)",
        times.len(),
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}

/// Promise: a crashed server's players are back within seconds. 50 players play on a server
/// that is SIGKILLed; each retries every second on a second server, half by resume token,
/// half by password, and gets in long before the dead server's 60 s leases expire, with its
/// acknowledged level-up.
#[test]
fn a_killed_servers_50_players_are_back_on_another_server_within_seconds() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut doomed = server(&url, "doomed");
    let survivor = server(&url, "survivor");
    let players: Vec<Player> = (0..50u8)
        .map(|i| play_to_level_2(&doomed, &format!("player{i}"), i + 1))
        .collect();
    let times = fail_over(&mut doomed, &survivor, players);
    report("single Redis", &times);
    assert!(times[times.len() - 1] < GENEROUS);
}

/// The same on a 3-master Redis Cluster, where the liveness key lives in another slot than
/// the leases (a separate `EXISTS` before the takeover).
#[test]
fn on_a_cluster_a_killed_servers_players_are_back_within_seconds() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let mut doomed = server(&url, "doomed");
    let survivor = server(&url, "survivor");
    let players: Vec<Player> = (0..12u8)
        .map(|i| play_to_level_2(&doomed, &format!("clustered{i}"), i + 1))
        .collect();
    let times = fail_over(&mut doomed, &survivor, players);
    report("3-master cluster", &times);
    assert!(times[times.len() - 1] < GENEROUS);
}

/// Promise: a server that was only frozen (or cut off) when its players moved on cannot write
/// over them. A server is SIGSTOPped; its player logs in on a second server (the first is not
/// alive), plays on to level 3 there; the first is resumed (SIGCONT): its copy of the player
/// is dropped as taken over, and what is stored is exactly what the second server saved.
#[test]
fn a_frozen_server_whose_player_moved_on_is_fenced_and_writes_nothing() {
    let redis = RedisServer::start();
    let url = redis.url();
    // Quick flush and refresh, so the frozen server, once thawed, tries to write at once.
    let quick = [
        "--flush-interval",
        "300ms",
        "--lease-refresh-interval",
        "1s",
    ];
    let frozen = Hearth::start_args(
        &[
            ["--store", &url, "--instance-id", "frozen"].as_slice(),
            &quick,
        ]
        .concat(),
    );
    let other = Hearth::start_args(
        &[
            ["--store", &url, "--instance-id", "other"].as_slice(),
            &quick,
        ]
        .concat(),
    );
    let mut alice = play_to_level_2(&frozen, "alice", 1);
    frozen.signal("-STOP");
    // Moves the frozen server will apply, unsaved, when it runs again.
    for _ in 0..3 {
        alice
            .client
            .send(json!({"type": "move", "dx": -1.0, "dy": 0.0}));
    }
    let stopped = Instant::now();
    let (mut moved_on, _, took) = back_in(other.addr, &alice, false, stopped);
    eprintln!(
        "alice back in on another server {} ms after the freeze",
        took.as_millis()
    );
    let mut level_ups = Vec::new();
    while level_ups.is_empty() {
        moved_on.step(1.0, 0.0);
        level_ups.extend(moved_on.take("level_up"));
    }
    assert_eq!(level_ups[0]["level"], 3);
    frozen.signal("-CONT");
    // The thawed server applies the queued moves, tries to save them and finds the player
    // taken over: its client is told and closed.
    let kicked = alice.client.expect("kicked");
    assert_eq!(kicked["code"], "takeover", "{kicked}");
    let shown = moved_on.position().unwrap();
    moved_on.send(json!({"type": "logout"}));
    moved_on.expect("logged_out");
    let stored = stored_record(&redis, 1).expect("alice is stored");
    assert_eq!(stored["sections"]["position"], shown, "{stored}");
    assert_eq!(stored["sections"]["progress"]["level"], 3, "{stored}");
}
