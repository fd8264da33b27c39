//! Zones (issue 20, item 1): a world's zone map and the zone a process serves. A process
//! registers its zone (`<prefix>:zone:{<name>}`, with the address its clients are handed over
//! to) beside its instance; a second live process for the zone refuses to start, naming the
//! first; a clean stop gives the zone back. Whole `hearth` processes on a real Redis.

mod common;

use std::path::PathBuf;

use common::process::{Hearth, run_hearth, stored_record};
use common::redis_server::{RedisServer, free_port};
use common::zones::{walk_until_handoff, zones_at};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A two-zone map with the border at `x = 0`.
fn two_zones() -> (tempfile::TempDir, PathBuf) {
    zones_at(0)
}

/// The registration of `zone` in `redis`, as JSON.
fn zone_registration(redis: &RedisServer, zone: &str) -> Option<serde_json::Value> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("hearth:zone:{{{zone}}}"))
        .query(&mut redis.connection())
        .unwrap();
    raw.map(|raw| serde_json::from_str(&raw).unwrap())
}

/// Promise: one live process per zone. Each of two zones gets its process, registered with
/// the address its clients are handed over to; a third process for a zone already served
/// refuses to start, naming the zone and the process serving it; a clean stop gives the zone
/// back, and a new process for it then starts at once.
#[test]
fn each_zone_is_served_by_one_live_process() {
    let redis = RedisServer::start();
    let (_dir, map) = two_zones();
    let map = map.to_str().unwrap();
    let mut west = Hearth::start_with(
        &redis,
        "west-1",
        &[
            "--zones",
            map,
            "--zone",
            "west",
            "--public-addr",
            "game-west.example:7777",
        ],
    );
    let east = Hearth::start_with(&redis, "east-1", &["--zones", map, "--zone", "east"]);

    let registered = zone_registration(&redis, "west").expect("west is registered");
    assert_eq!(registered["zone"], "west");
    assert_eq!(registered["public_addr"], "game-west.example:7777");
    assert!(
        registered["owner"].as_str().unwrap().starts_with("west-1/"),
        "{registered}"
    );
    let registered = zone_registration(&redis, "east").expect("east is registered");
    assert_eq!(
        registered["public_addr"],
        east.addr.to_string(),
        "without --public-addr, the game listener's address"
    );

    let url = redis.url();
    let refused = run_hearth(&[
        "--store",
        &url,
        "--instance-id",
        "west-2",
        "--zones",
        map,
        "--zone",
        "west",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a second process for west started:\n{stderr}"
    );
    assert!(
        stderr.contains("zone \"west\" is served by another running process")
            && stderr.contains(&format!("pid {}", west.child.id())),
        "{stderr}"
    );
    // The refused process gave its own instance registration back.
    let instance: Option<String> = redis::cmd("GET")
        .arg("hearth:instance:{west-2}")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(
        instance, None,
        "the refused process left its instance registered"
    );

    west.signal("-TERM");
    assert_eq!(west.wait(), 0, "{}", west.log());
    assert_eq!(
        zone_registration(&redis, "west"),
        None,
        "a clean stop gives the zone back"
    );
    let west_again = Hearth::start_with(&redis, "west-2", &["--zones", map, "--zone", "west"]);
    assert!(
        zone_registration(&redis, "west").unwrap()["owner"]
            .as_str()
            .unwrap()
            .starts_with("west-2/")
    );
    drop(west_again);
}

/// Promise: zone settings that make no sense are refused at start, naming the key.
#[test]
fn zone_settings_that_make_no_sense_are_refused_at_start() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (dir, map) = two_zones();
    let map = map.to_str().unwrap();
    let bad_map = dir.path().join("bad.toml");
    std::fs::write(
        &bad_map,
        "[[zone]]\nname = \"a\"\nmin = [0, 0]\nmax = [0, 1]\n",
    )
    .unwrap();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--store", &url, "--zone", "west"],
            "invalid config `zones`: must be set with zone",
        ),
        (
            &["--store", &url, "--zones", map],
            "invalid config `zone`: must be set with zones",
        ),
        (
            &["--store", &url, "--zones", map, "--zone", "north"],
            "\"north\" is not in the zone map (its zones: west, east)",
        ),
        (
            &["--store", "memory", "--zones", map, "--zone", "west"],
            "zones are served by separate processes sharing one store",
        ),
        (
            &[
                "--store",
                &url,
                "--zones",
                bad_map.to_str().unwrap(),
                "--zone",
                "a",
            ],
            "min must be below max",
        ),
        (
            &[
                "--store",
                &url,
                "--zones",
                map,
                "--zone",
                "west",
                "--public-addr",
                "nowhere",
            ],
            "expected host:port",
        ),
        (
            &[
                "--store",
                &url,
                "--zones",
                map,
                "--zone",
                "west",
                "--listen",
                "0.0.0.0:7777",
            ],
            "public_addr",
        ),
    ];
    for (args, expected) in cases {
        // Refused before binding: the port is never listened on.
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:1"]
        };
        let output = run_hearth(&[args, listen].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// The player's stored x, as its `logged_in` state shows it.
fn x_of(logged_in: &Value) -> f64 {
    logged_in["state"]["position"]["x"].as_f64().unwrap()
}

/// Promise (issue 20, item 2): one world across two processes. A player walks from west to
/// east and back: each time the source saves it and hands it over, the client is told where
/// to go with a resume token (no password), and it plays on there with its position and xp;
/// the lease is the destination's. A login at the wrong zone is answered `handoff` at once.
#[test]
fn a_player_walks_across_the_border_and_back_keeping_its_progress() {
    let redis = RedisServer::start();
    // A new player starts at (0, 0): in west, 2 steps from the border.
    let (_dir, map) = zones_at(2);
    let map = map.to_str().unwrap();
    let west = Hearth::start_with(&redis, "west-1", &["--zones", map, "--zone", "west"]);
    let east_ws = format!("127.0.0.1:{}", free_port());
    let east = Hearth::start_with(
        &redis,
        "east-1",
        &["--zones", map, "--zone", "east", "--listen-ws", &east_ws],
    );

    let mut client = west.client();
    let id = client.register("alice", "password1");
    assert_eq!(x_of(&client.login("alice", "password1")), 0.0);
    let handoff = walk_until_handoff(&mut client, 1);
    assert_eq!(handoff["addr"], east.addr.to_string(), "{handoff}");
    assert_eq!(
        handoff["ws_addr"], east_ws,
        "WebSocket clients go to east's WebSocket listener"
    );

    // What west saved before handing over is what east plays on with (each step is 10 xp;
    // a step refused at the border before west saw east's process is not).
    let saved = stored_record(&redis, id).expect("west saved alice");
    let mut there = east.client();
    let logged_in = there
        .try_enter(json!({"type": "resume", "token": handoff["resume_token"]}))
        .unwrap_or_else(|e| panic!("the handoff token was refused at east: {e}\n{}", east.log()));
    assert_eq!(logged_in["player_id"], id);
    assert_eq!(
        logged_in["state"]["position"], saved["sections"]["position"],
        "{saved}"
    );
    assert_eq!(
        logged_in["state"]["progress"], saved["sections"]["progress"],
        "{saved}"
    );
    let x = x_of(&logged_in);
    assert!(
        (2.0..3.0).contains(&x),
        "alice is in east, one step past the border: {x}"
    );
    let lease: String = redis::cmd("GET")
        .arg(format!("hearth:session:{{{id}}}"))
        .query(&mut redis.connection())
        .unwrap();
    assert!(lease.starts_with("east-1/"), "the lease is east's: {lease}");

    // And back west, with the token the handoff gives.
    let handoff = walk_until_handoff(&mut there, -1);
    assert_eq!(handoff["addr"], west.addr.to_string(), "{handoff}");
    assert!(
        handoff.get("ws_addr").is_none(),
        "west has no WebSocket listener: {handoff}"
    );
    let mut back = west.client();
    let logged_in = back
        .try_enter(json!({"type": "resume", "token": handoff["resume_token"]}))
        .unwrap_or_else(|e| panic!("the handoff token was refused at west: {e}"));
    assert!((x_of(&logged_in) - (x - 1.0)).abs() < 1e-4, "{logged_in}");
    let xp = saved["sections"]["progress"]["xp"].as_u64().unwrap();
    assert_eq!(logged_in["state"]["progress"]["xp"], xp + 10, "{logged_in}");

    // Stored in west now: a password login at east is sent west at once.
    back.send(json!({"type": "logout"}));
    back.expect("logged_out");
    let mut wrong = east.client();
    wrong.send(json!({"type": "login", "username": "alice", "password": "password1"}));
    let handoff = wrong.expect("handoff");
    assert_eq!(handoff["addr"], west.addr.to_string(), "{handoff}");
    let mut right = west.client();
    let logged_in = right
        .try_enter(json!({"type": "resume", "token": handoff["resume_token"]}))
        .unwrap_or_else(|e| panic!("the login's handoff token was refused: {e}"));
    assert!((x_of(&logged_in) - (x - 1.0)).abs() < 1e-4, "{logged_in}");
}

/// Promise (issue 20, item 5): towards a zone no process serves, a walking player stays at
/// the border (told `zone_unavailable`, not kicked), and a player stored there is refused at
/// login (`unavailable`, naming the zone).
#[test]
fn a_zone_without_a_server_keeps_players_at_the_border() {
    let redis = RedisServer::start();
    let (_dir, map) = zones_at(2);
    let map = map.to_str().unwrap();
    let west = Hearth::start_with(&redis, "west-1", &["--zones", map, "--zone", "west"]);

    let mut client = west.client();
    client.register("bob", "password1");
    client.login("bob", "password1");
    let refused = loop {
        client.send(json!({"type": "move", "dx": 1, "dy": 0}));
        if let Some(message) = client.next(Duration::from_millis(150))
            && message["type"] == "error"
        {
            break message;
        }
    };
    assert_eq!(refused["code"], "zone_unavailable", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("\"east\""),
        "{refused}"
    );
    client.send(json!({"type": "logout"}));
    client.expect_any(&["logged_out"]);
    let logged_in = client.login("bob", "password1");
    let x = x_of(&logged_in);
    assert!(
        (1.99..2.0).contains(&x),
        "bob stays in west, at the border: {x}"
    );

    // A player stored in east (walked there while east ran) cannot play while east is down.
    let mut east = Hearth::start_with(&redis, "east-1", &["--zones", map, "--zone", "east"]);
    let handoff = walk_until_handoff(&mut client, 1);
    let mut there = east.client();
    let in_east = there
        .try_enter(json!({"type": "resume", "token": handoff["resume_token"]}))
        .unwrap();
    there.send(json!({"type": "logout"}));
    there.expect("logged_out");
    east.signal("-TERM");
    assert_eq!(east.wait(), 0);
    std::thread::sleep(Duration::from_secs(1)); // west's directory sees east gone
    let mut again = west.client();
    again.send(json!({"type": "login", "username": "bob", "password": "password1"}));
    let error = again.expect_error("unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("\"east\""),
        "{error}"
    );
    // A resume is refused the same way and keeps its token: asked again, the answer is the
    // same `unavailable`, not an unknown token.
    for attempt in 0..2 {
        let error = loop {
            let mut resuming = west.client();
            resuming.send(json!({"type": "resume", "token": in_east["resume_token"]}));
            let error = resuming.expect_any(&["error", "logged_in"]);
            // The previous refusal's player is still leaving west for a moment.
            if error["code"] != "already_online" {
                break error;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(error["code"], "unavailable", "attempt {attempt}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains("\"east\""),
            "attempt {attempt}: {error}"
        );
    }
}

/// Promise: every process of a world reads the same zone map. A neighbour registered with
/// another map (here east thinks the border is at x = 3, west at x = 2) gets no player: a
/// player walking toward it stays at the border, told `zone_unavailable`, and the log says
/// why, with both maps' fingerprints; each zone's registration carries its map's.
#[test]
fn a_neighbour_serving_another_zone_map_gets_no_players() {
    let redis = RedisServer::start();
    let (_west_dir, west_map) = zones_at(2);
    let (_east_dir, east_map) = zones_at(3);
    let west = Hearth::start_with(
        &redis,
        "west-1",
        &["--zones", west_map.to_str().unwrap(), "--zone", "west"],
    );
    let _east = Hearth::start_with(
        &redis,
        "east-1",
        &["--zones", east_map.to_str().unwrap(), "--zone", "east"],
    );
    let (west_fingerprint, east_fingerprint) = (
        zone_registration(&redis, "west").unwrap()["map"].clone(),
        zone_registration(&redis, "east").unwrap()["map"].clone(),
    );
    assert!(west_fingerprint.as_str().is_some_and(|m| m.len() == 16));
    assert_ne!(west_fingerprint, east_fingerprint);
    west.wait_for_log("another zone map");

    let mut client = west.client();
    client.register("bob", "password1");
    let logged_in = client.login("bob", "password1");
    assert_eq!(
        x_of(&logged_in),
        0.0,
        "new players start at the origin, in west"
    );
    let message = loop {
        client.send(json!({"type": "move", "dx": 1, "dy": 0}));
        if let Some(message) = client.next(Duration::from_millis(150))
            && (message["type"] == "error" || message["type"] == "handoff")
        {
            break message;
        }
    };
    assert_eq!(message["code"], "zone_unavailable", "{message}");
}

/// Promise (issue 20, item 3): a zone's process that crashed does not keep its zone for the
/// registration's TTL (a minute here): once its liveness key is gone (`liveness_ttl`, 3 s) a
/// replacement takes the zone over and starts, and the players stored in the zone play again.
#[test]
fn a_crashed_zone_process_is_replaced_within_the_failover_time() {
    let redis = RedisServer::start();
    // A new player starts at (0, 0): in west.
    let (_dir, map) = zones_at(2);
    let map = map.to_str().unwrap();
    let slow_ttl = ["--lease-ttl", "60s", "--lease-refresh-interval", "10s"];
    let url = redis.url();
    let args = |instance: &'static str| -> Vec<String> {
        [
            ["--store", url.as_str(), "--instance-id", instance].as_slice(),
            &["--zones", map, "--zone", "west"],
            &slow_ttl,
        ]
        .concat()
        .into_iter()
        .map(String::from)
        .collect()
    };
    let first_args = args("west-1");
    let first = Hearth::start_args(&first_args.iter().map(String::as_str).collect::<Vec<_>>());
    let pid = first.child.id();
    first.signal("-KILL");
    let started = Instant::now();
    let replacement_args = args("west-2");
    let replacement_args: Vec<&str> = replacement_args.iter().map(String::as_str).collect();
    let replacement = loop {
        match Hearth::try_start_args(&replacement_args) {
            Ok(server) => break server,
            Err(log) => {
                assert!(
                    log.contains("zone \"west\" is served by another running process"),
                    "{log}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the zone was not taken over from the dead process (pid {pid}):\n{log}"
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    };
    eprintln!(
        "the replacement started {} ms after the crash",
        started.elapsed().as_millis()
    );
    assert!(
        zone_registration(&redis, "west").unwrap()["owner"]
            .as_str()
            .unwrap()
            .starts_with("west-2/"),
        "{}",
        replacement.log()
    );
    let mut client = replacement.client();
    client.register("carol", "password1");
    client.login("carol", "password1");
}
