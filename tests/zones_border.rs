//! Neighbours across a zone border (issue 20, item 4): two `hearth` processes on one Redis
//! serve the two halves of a world; players near the border on either side see each other
//! in their replication updates (by `player_id` and position), see each other's moves, and
//! see a player leave when it walks away. A player handed over is never seen twice. Also
//! prints how stale a remote entity is, against a local neighbour measured the same way
//! (docs/benchmarks.md).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::client::Client;
use common::http;
use common::process::Hearth;
use common::redis_cluster::RedisCluster;
use common::redis_server::{RedisServer, free_port};
use common::zones::{walk_until_handoff, zones_at};
use serde_json::{Value, json};

/// How long a client waits to see something that should come within a few rounds.
const SEE_WITHIN: Duration = Duration::from_secs(10);

/// A two-zone map with the border at `x = 2` (a new player starts at (0, 0), in west, two
/// steps from east).
fn zones() -> (tempfile::TempDir, PathBuf) {
    zones_at(2)
}

/// Reads `client`'s updates until `done` holds of what it sees, checking after every update
/// that no player is seen twice; fails after [`SEE_WITHIN`].
fn watch_until(client: &mut Client, what: &str, players: &[u64], done: impl Fn(&Client) -> bool) {
    let deadline = Instant::now() + SEE_WITHIN;
    while !done(client) {
        assert!(
            Instant::now() < deadline,
            "never saw {what}: {:?}",
            client.seen()
        );
        client.update();
        for &player in players {
            let entities = client.entities_of(player);
            assert!(
                entities.len() <= 1,
                "player {player} seen twice: {entities:?}"
            );
        }
    }
}

/// Whether `client` sees `player` at `(x, y)`.
fn sees_at(client: &Client, player: u64, x: f64, y: f64) -> bool {
    client.seen().get(&player).is_some_and(|p| {
        (p["x"].as_f64().unwrap() - x).abs() < 1e-3 && (p["y"].as_f64().unwrap() - y).abs() < 1e-3
    })
}

fn coordinates(position: &Value) -> (f64, f64) {
    (
        position["x"].as_f64().unwrap(),
        position["y"].as_f64().unwrap(),
    )
}

/// Steps `mover` up and down `rounds` times; after each step, how long `watcher` took (from
/// the move) to see it. Sorted, in milliseconds.
fn time_to_see(mover: &mut Client, id: u64, watcher: &mut Client, rounds: usize) -> Vec<f64> {
    let mut delays = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let dy = if i % 2 == 0 { 1.0 } else { -1.0 };
        let sent = Instant::now();
        let (x, y) = coordinates(&mover.step(0.0, dy));
        watch_until(watcher, "the move", &[id], |c| sees_at(c, id, x, y));
        delays.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    delays.sort_by(f64::total_cmp);
    delays
}

fn summary(delays: &[f64]) -> String {
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} moves",
        at(0.5),
        at(0.9),
        at(1.0),
        delays.len()
    )
}

/// Prints how old east's snapshots were when west swapped them in, from west's
/// `hearth_border_snapshot_age_seconds` histogram.
fn print_snapshot_ages(metrics: std::net::SocketAddr) {
    let (status, exposition) = http::get(metrics, "/metrics");
    assert_eq!(status, 200);
    let name = "hearth_border_snapshot_age_seconds";
    let count = http::sample(&exposition, &format!("{name}_count")).expect("the age histogram");
    assert!(count > 0.0, "west received east's snapshots");
    let sum = http::sample(&exposition, &format!("{name}_sum")).unwrap();
    let within = |le: &str| {
        let n = http::sample(&exposition, &format!("{name}_bucket{{le=\"{le}\"}}")).unwrap();
        format!("{:.1} % within {le} s", 100.0 * n / count)
    };
    println!(
        "snapshot age at swap-in (west, from east): {count} snapshots, mean {:.2} ms; {}; {}; {}; {}",
        1000.0 * sum / count,
        within("0.001"),
        within("0.005"),
        within("0.0167"),
        within("0.025")
    );
}

/// Bob registers in west (at (0, 0), beside `watcher`), is seen there, walks into east and
/// resumes there; `watcher` sees him across the border, never twice on the way. His client
/// at east and his id.
fn cross_to_east(west: &Hearth, east: &Hearth, watcher: &mut Client) -> (Client, u64) {
    let mut bob = west.client();
    let bob_id = bob.register("bob", "password1");
    bob.login("bob", "password1");
    watch_until(watcher, "bob in west", &[bob_id], |c| {
        sees_at(c, bob_id, 0.0, 0.0)
    });
    let handoff = walk_until_handoff(&mut bob, 1);
    assert_eq!(handoff["addr"], east.addr.to_string(), "{handoff}");
    let mut bob = east.client();
    let token = handoff["resume_token"].as_str().unwrap().to_string();
    let (x, y) = coordinates(&bob.resume(&token)["state"]["position"]);
    assert!(x >= 2.0, "bob is in east: {x}");
    watch_until(watcher, "bob across the border", &[bob_id], |c| {
        sees_at(c, bob_id, x, y)
    });
    (bob, bob_id)
}

/// Reads `client`'s updates until one says `entity` left; fails after [`SEE_WITHIN`].
fn wait_for_left(client: &mut Client, entity: u64, what: &str) {
    let deadline = Instant::now() + SEE_WITHIN;
    loop {
        assert!(Instant::now() < deadline, "{what} never left the view");
        let update = client.update();
        if update["left"].as_array().unwrap().contains(&json!(entity)) {
            return;
        }
    }
}

/// Promise (issue 20, item 4): players on either side of a border see each other. Alice
/// stays in west at the border; Bob walks into east (handed over: Alice never sees him twice,
/// as he goes from her process's player to east's remote entity). Each sees the other by
/// `player_id` and position; Bob's moves reach Alice; when Bob walks away east, Alice's
/// updates tell her he left.
#[test]
fn players_see_each_other_across_the_border() {
    let redis = RedisServer::start();
    let (_dir, map) = zones();
    let map = map.to_str().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let west = Hearth::start_with(
        &redis,
        "west-1",
        &[
            "--zones",
            map,
            "--zone",
            "west",
            "--metrics-listen",
            &metrics,
        ],
    );
    let east = Hearth::start_with(&redis, "east-1", &["--zones", map, "--zone", "east"]);

    let mut alice = west.client();
    let alice_id = alice.register("alice", "password1");
    alice.login("alice", "password1");
    let mut carol = west.client();
    let carol_id = carol.register("carol", "password1");
    carol.login("carol", "password1");
    // Bob crosses: from west's player to east's, seen once all along.
    let (mut bob, bob_id) = cross_to_east(&west, &east, &mut alice);
    watch_until(&mut bob, "alice across the border", &[alice_id], |c| {
        sees_at(c, alice_id, 0.0, 0.0) && sees_at(c, carol_id, 0.0, 0.0)
    });

    // Bob moves: Alice sees it. How long it takes, against Carol's moves on Alice's own
    // process (the same measure without the border).
    let across = time_to_see(&mut bob, bob_id, &mut alice, 40);
    let local = time_to_see(&mut carol, carol_id, &mut alice, 40);
    println!(
        "remote entity (bob in east, seen by alice in west): {}",
        summary(&across)
    );
    println!(
        "local entity (carol in west, seen by alice in west): {}",
        summary(&local)
    );
    println!(
        "staleness added by the border (p50 difference): {:.1} ms",
        across[across.len() / 2] - local[local.len() / 2]
    );

    print_snapshot_ages(metrics.parse().unwrap());

    // Bob walks away east, out of the strip: Alice is told he left.
    let bob_entity = alice.entities_of(bob_id)[0];
    for _ in 0..60 {
        bob.step(1.0, 0.0);
    }
    // Alice's updates meanwhile wait in her socket, read now in order.
    wait_for_left(&mut alice, bob_entity, "bob");
    assert!(!alice.seen().contains_key(&bob_id));
    let (x, _) = coordinates(&bob.position().unwrap());
    assert!(x > 52.0, "bob is out of the strip: {x}");
}

/// Promise: on a Redis Cluster too, players on either side of a border see each other: the
/// zones' channels are sharded (`SPUBLISH`/`SSUBSCRIBE`), each on the master of its slot,
/// where `PUBSUB SHARDCHANNELS` lists it while the processes run.
#[test]
fn players_see_each_other_across_the_border_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let (_dir, map) = zones();
    let map = map.to_str().unwrap();
    let start = |zone: &str, instance: &str| {
        Hearth::start_args(&[
            "--store",
            &url,
            "--instance-id",
            instance,
            "--zones",
            map,
            "--zone",
            zone,
        ])
    };
    let (west, east) = (start("west", "west-1"), start("east", "east-1"));
    for zone in ["west", "east"] {
        let channel = format!("hearth:border:{{{zone}}}");
        let master = cluster.master_of_slot(cluster.slot_of(&channel));
        let deadline = Instant::now() + SEE_WITHIN;
        loop {
            // Its subscriber (the other zone's process) subscribes once that one has started.
            let channels: Vec<String> = redis::cmd("PUBSUB")
                .arg("SHARDCHANNELS")
                .query(&mut cluster.connection(master))
                .unwrap();
            if channels.contains(&channel) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{channel} never on {master}, its slot's master: {channels:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut alice = west.client();
    let alice_id = alice.register("alice", "password1");
    alice.login("alice", "password1");
    let (mut bob, _) = cross_to_east(&west, &east, &mut alice);
    watch_until(&mut bob, "alice across the border", &[alice_id], |c| {
        sees_at(c, alice_id, 0.0, 0.0)
    });
}

/// Promise: a neighbour that dies takes its players out of view. East is killed (no clean
/// stop, no last snapshot) while Bob stands at the border: within about a second of east's
/// silence, Alice's updates tell her Bob left.
#[test]
fn a_neighbour_that_dies_takes_its_players_out_of_view() {
    let redis = RedisServer::start();
    let (_dir, map) = zones();
    let map = map.to_str().unwrap();
    let west = Hearth::start_with(&redis, "west-1", &["--zones", map, "--zone", "west"]);
    let east = Hearth::start_with(&redis, "east-1", &["--zones", map, "--zone", "east"]);
    let mut alice = west.client();
    alice.register("alice", "password1");
    alice.login("alice", "password1");
    let (_bob, bob_id) = cross_to_east(&west, &east, &mut alice);
    let bob_entity = alice.entities_of(bob_id)[0];

    east.signal("-KILL");
    wait_for_left(&mut alice, bob_entity, "bob, whose server died,");
    assert!(!alice.seen().contains_key(&bob_id));
}

/// Promise: a single world (no `--zones`) shares nothing: after twenty replication rounds
/// with a player online, Redis has run no `PUBLISH` and has no subscriber; a zone's process
/// does both (its neighbour subscribes to its channel).
#[test]
fn a_single_world_publishes_nothing() {
    let redis = RedisServer::start();
    let single = Hearth::start(&redis, "single-1");
    let mut alice = single.client();
    alice.register("alice", "password1");
    alice.login("alice", "password1");
    for _ in 0..20 {
        alice.update();
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut redis.connection())
        .unwrap();
    assert!(!stats.contains("cmdstat_publish:"), "{stats}");
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut redis.connection())
        .unwrap();
    assert!(channels.is_empty(), "{channels:?}");
    drop(single);

    let (_dir, map) = zones();
    let map = map.to_str().unwrap();
    let _west = Hearth::start_with(&redis, "west-1", &["--zones", map, "--zone", "west"]);
    let _east = Hearth::start_with(&redis, "east-1", &["--zones", map, "--zone", "east"]);
    let deadline = Instant::now() + SEE_WITHIN;
    loop {
        let subscribers: (String, u64, String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("hearth:border:{west}")
            .arg("hearth:border:{east}")
            .query(&mut redis.connection())
            .unwrap();
        if (subscribers.1, subscribers.3) == (1, 1) {
            break;
        }
        assert!(Instant::now() < deadline, "{subscribers:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
