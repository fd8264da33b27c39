//! Zones (issue 20, item 1): a world's zone map and the zone a process serves. A process
//! registers its zone (`<prefix>:zone:{<name>}`, with the address its clients are handed over
//! to) beside its instance; a second live process for the zone refuses to start, naming the
//! first; a clean stop gives the zone back. Whole `hearth` processes on a real Redis.

mod common;

use std::path::PathBuf;

use common::process::{Hearth, run_hearth};
use common::redis_server::RedisServer;

/// A two-zone map in a temporary file.
fn two_zones() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zones.toml");
    std::fs::write(
        &path,
        "[[zone]]\nname = \"west\"\nmin = [-1000, -1000]\nmax = [0, 1000]\n\n\
         [[zone]]\nname = \"east\"\nmin = [0, -1000]\nmax = [1000, 1000]\n",
    )
    .unwrap();
    (dir, path)
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
        "127.0.0.1:0",
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
    let cases: [(&[&str], &str); 6] = [
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
    ];
    for (args, expected) in cases {
        let output = run_hearth(&[args, &["--listen", "127.0.0.1:0"]].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
