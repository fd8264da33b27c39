//! `hearth admin` against a real redis-server, next to a running server: show a player,
//! list who is online, release a lease (refused while its holder lives), reset a password
//! from stdin, export and import records. Exit codes are what a script relies on.

mod common;

use std::process::{Command, Output};

use common::process::Hearth;
use common::redis_server::RedisServer;
use serde_json::json;

/// Runs `hearth admin <args>` against `redis`, feeding `stdin`.
fn admin(redis: &RedisServer, args: &[&str], stdin: &str) -> Output {
    common::process::run_admin(&redis.url(), args, stdin)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn admin_shows_lists_releases_and_resets_with_exit_codes_a_script_can_use() {
    let redis = RedisServer::start();
    let server = Hearth::start(&redis, "eu-1");
    let mut alice = server.client();
    let alice_id = alice.register("alice", "password1");
    alice.login("alice", "password1");
    alice.step(1.0, 0.0);
    let mut bob = server.client();
    bob.register("bob", "password1");

    // player show, by name and by id; an unknown one is exit 3.
    let out = admin(&redis, &["player", "show", "alice"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains(&format!("player {alice_id}")), "{shown}");
    assert!(shown.contains("lease: held by eu-1/"), "{shown}");
    let out = admin(&redis, &["player", "show", "nobody"], "");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // online: grouped by the holding process, which is alive.
    let out = admin(&redis, &["online"], "");
    let online = text(&out);
    assert_eq!(out.status.code(), Some(0), "{online}");
    assert!(
        online.contains("eu-1/") && online.contains("alive"),
        "{online}"
    );
    assert!(online.contains("1 players online"), "{online}");

    // lease release: refused while eu-1 plays alice (exit 4), done with --force.
    let id = alice_id.to_string();
    let out = admin(&redis, &["lease", "release", &id], "");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("alive"), "{}", text(&out));
    let mut conn = redis.connection();
    let lease: Option<String> = redis::cmd("GET")
        .arg(format!("hearth:session:{{{alice_id}}}"))
        .query(&mut conn)
        .unwrap();
    assert!(lease.is_some(), "a refused release leaves the lease");
    let out = admin(&redis, &["lease", "release", &id, "--force"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lease: Option<String> = redis::cmd("GET")
        .arg(format!("hearth:session:{{{alice_id}}}"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(lease, None);

    // reset-password reads stdin: the new password works, the old one no longer does.
    let out = admin(
        &redis,
        &["account", "reset-password", "bob"],
        "new password 2\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    bob.send(json!({"type": "login", "username": "bob", "password": "password1"}));
    bob.expect_error("invalid_credentials");
    bob.login("bob", "new password 2");
    let out = admin(&redis, &["account", "reset-password", "bob"], "short\n");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad password is a usage error"
    );
}

#[test]
fn export_then_import_copies_records_and_refuses_to_overwrite_newer_ones() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    for (id, seq) in [(1u64, 5u64), (2, 9)] {
        let record = format!(
            r#"{{"version":2,"seq":{seq},"id":{id},"sections":{{"progress":{{"xp":{},"level":1}}}}}}"#,
            id * 10
        );
        let _: () = redis::cmd("SET")
            .arg(format!("hearth:player:{{{id}}}"))
            .arg(record)
            .query(&mut conn)
            .unwrap();
    }
    let out = admin(&redis, &["export"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let exported = String::from_utf8(out.stdout).unwrap();
    assert_eq!(exported.lines().count(), 2, "{exported}");

    // Into another prefix: both written.
    let out = admin(&redis, &["import", "--key-prefix", "copy"], &exported);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let copied: String = redis::cmd("GET")
        .arg("copy:player:{2}")
        .query(&mut conn)
        .unwrap();
    assert!(
        copied.starts_with(r#"{"version":2,"seq":9,"id":2,"#),
        "{copied}"
    );

    // Player 2 moved on meanwhile (seq 12): importing the old export again skips it (exit 4)
    // unless told to overwrite.
    let newer = r#"{"version":2,"seq":12,"id":2,"sections":{}}"#;
    let _: () = redis::cmd("SET")
        .arg("copy:player:{2}")
        .arg(newer)
        .query(&mut conn)
        .unwrap();
    let out = admin(&redis, &["import", "--key-prefix", "copy"], &exported);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("player 2"), "{}", text(&out));
    let kept: String = redis::cmd("GET")
        .arg("copy:player:{2}")
        .query(&mut conn)
        .unwrap();
    assert_eq!(kept, newer, "the newer record is kept");
    let out = admin(
        &redis,
        &["import", "--key-prefix", "copy", "--overwrite-newer"],
        &exported,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Garbage is a usage error naming the line.
    let out = admin(&redis, &["import"], "{\"version\":2}\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("line 1"), "{}", text(&out));
}

#[test]
fn admin_against_the_memory_store_says_why_it_cannot() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["admin", "online", "--store", "memory"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("memory store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
