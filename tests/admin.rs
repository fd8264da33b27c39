//! `hearth admin` against a real redis-server, and against a real 3-master Redis Cluster,
//! next to a running server: show a player, list who is online, release a lease (refused
//! while its holder lives), reset a password from stdin, export and import records. Exit
//! codes are what a script relies on.

mod common;

use std::process::{Command, Output};

use common::process::Hearth;
use common::redis_cluster::RedisCluster;
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
        online.contains("eu-1/") && online.contains("(alive"),
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

    // Garbage is a rejected file (exit 5) naming the line.
    let out = admin(&redis, &["import"], "{\"version\":2}\n");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("line 1"), "{}", text(&out));
}

/// Promise (R13): `hearth admin online` shows a SIGKILLed server as not alive once its
/// liveness key lapses (`liveness_ttl`, 3 s), not only when its registration and leases expire
/// (`lease_ttl`, 60 s here): its players are still listed under it, shown as free to log in
/// elsewhere.
#[test]
fn online_shows_a_killed_server_not_alive_while_its_leases_still_last() {
    let redis = RedisServer::start();
    let mut server = Hearth::start_with(
        &redis,
        "eu-1",
        &["--lease-ttl", "60s", "--lease-refresh-interval", "20s"],
    );
    let mut alice = server.client();
    alice.register("alice", "password1");
    alice.login("alice", "password1");
    let online = text(&admin(&redis, &["online"], ""));
    assert!(online.contains("(alive: host"), "{online}");
    server.signal("-KILL");
    server.wait();
    let killed = std::time::Instant::now();
    let online = loop {
        let online = text(&admin(&redis, &["online"], ""));
        if online.contains("(not alive") {
            break online;
        }
        assert!(
            killed.elapsed() < std::time::Duration::from_secs(30),
            "still shown alive long after the kill: {online}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    eprintln!(
        "shown not alive {} ms after SIGKILL",
        killed.elapsed().as_millis()
    );
    assert!(online.contains("eu-1/"), "{online}");
    assert!(
        online.contains("1 players online"),
        "the lease still lasts: {online}"
    );
}

#[test]
fn import_checks_every_line_like_a_login_before_writing_any() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    let good = |id: u64| {
        format!(
            r#"{{"version":2,"seq":3,"id":{id},"sections":{{"progress":{{"xp":650,"level":2}}}}}}"#
        )
    };
    // Line 1 is fine; line 2 is not JSON; line 3 has the demo game's xp as a string (a
    // record the store's layout accepts but whose section a join cannot decode); line 4 is
    // fine but repeats player 1.
    let file = format!(
        "{}\n{{\"version\":2,\"seq\":3,\n{}\n{}\n",
        good(1),
        good(3).replace("650", "\"650\""),
        good(1)
    );
    let out = admin(&redis, &["import"], &file);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(5), "{said}");
    assert!(said.contains("nothing written"), "{said}");
    assert!(said.contains("line 2:"), "{said}");
    assert!(
        said.contains("line 3:") && said.contains("\"progress\""),
        "the bad section is named: {said}"
    );
    assert!(
        said.contains("line 4: player 1 is also on line 1"),
        "{said}"
    );
    assert!(!said.contains("line 1:"), "line 1 is fine: {said}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert_eq!(keys, Vec::<String>::new(), "nothing was written");

    // The good records alone: all written.
    let file = format!("{}\n{}\n", good(1), good(3));
    let out = admin(&redis, &["import"], &file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("imported 2 records"), "{}", text(&out));
    let stored: String = redis::cmd("GET")
        .arg("hearth:player:{3}")
        .query(&mut conn)
        .unwrap();
    assert!(stored.contains(r#""xp":650"#), "{stored}");
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

#[test]
fn every_admin_command_works_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let admin = |args: &[&str], stdin: &str| common::process::run_admin(&url, args, stdin);
    let server = Hearth::start_args(&["--store", &url, "--instance-id", "eu-1"]);
    // Several players, so accounts, leases and resume tokens spread over the masters.
    let names: Vec<String> = (0..6).map(|i| format!("player{i}")).collect();
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for name in &names {
        let mut client = server.client();
        ids.push(client.register(name, "password1"));
        client.login(name, "password1");
        clients.push(client);
    }
    let masters_of = |keys: &[String]| -> usize {
        let mut masters: Vec<u16> = keys
            .iter()
            .map(|k| cluster.master_of_slot(cluster.slot_of(k)))
            .collect();
        masters.sort_unstable();
        masters.dedup();
        masters.len()
    };
    let leases: Vec<String> = ids
        .iter()
        .map(|id| format!("hearth:session:{{{id}}}"))
        .collect();
    assert!(masters_of(&leases) >= 2, "leases on several masters");

    // player show, by name and by id.
    for (name, id) in names.iter().zip(&ids) {
        let out = admin(&["player", "show", name], "");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let shown = text(&out);
        assert!(shown.contains(&format!("player {id}\n")), "{shown}");
        assert!(shown.contains("lease: held by eu-1/"), "{shown}");
    }
    let out = admin(&["player", "show", &ids[0].to_string()], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = admin(&["player", "show", "nobody"], "");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // online: every lease, from every master, under its live process.
    let out = admin(&["online"], "");
    let online = text(&out);
    assert_eq!(out.status.code(), Some(0), "{online}");
    assert!(
        online.contains("eu-1/") && online.contains("(alive"),
        "{online}"
    );
    assert!(online.contains("6 players online"), "{online}");
    for id in &ids {
        assert!(
            online.split_whitespace().any(|w| w == id.to_string()),
            "{id} listed: {online}"
        );
    }

    // lease release: refused while eu-1 plays the player, done with --force, on the master
    // serving that lease.
    let id = ids[1].to_string();
    let out = admin(&["lease", "release", &id], "");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = admin(&["lease", "release", &id, "--force"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let master = cluster.master_of_slot(cluster.slot_of(&leases[1]));
    let lease: Option<String> = redis::cmd("GET")
        .arg(&leases[1])
        .query(&mut cluster.connection(master))
        .unwrap();
    assert_eq!(lease, None, "the lease is gone from its master");

    // reset-password: the new password works, the old one no longer does, and the
    // player's resume tokens (on its master) are revoked.
    let resume = format!("hearth:resume:{{{}}}", ids[2]);
    let master = cluster.master_of_slot(cluster.slot_of(&resume));
    let tokens: bool = redis::cmd("EXISTS")
        .arg(&resume)
        .query(&mut cluster.connection(master))
        .unwrap();
    assert!(tokens, "a login stored a resume token");
    let out = admin(
        &["account", "reset-password", &names[2]],
        "new password 2\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("resume tokens are revoked"),
        "{}",
        text(&out)
    );
    clients[2].send(json!({"type": "logout"}));
    clients[2].expect("logged_out");
    let mut again = server.client();
    again.send(json!({"type": "login", "username": names[2], "password": "password1"}));
    again.expect_error("invalid_credentials");
    again.login(&names[2], "new password 2");
    let out = admin(&["account", "reset-password", "nobody"], "new password 2\n");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // export and import: records under a prefix of their own, spread over the masters.
    let records: Vec<String> = (1..=9u64)
        .map(|id| format!("seed:player:{{{id}}}"))
        .collect();
    assert!(masters_of(&records) >= 2, "records on several masters");
    for (id, key) in (1..=9u64).zip(&records) {
        let record = format!(
            r#"{{"version":2,"seq":{id},"id":{id},"sections":{{"progress":{{"xp":{},"level":1}}}}}}"#,
            id * 10
        );
        let master = cluster.master_of_slot(cluster.slot_of(key));
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(record)
            .query(&mut cluster.connection(master))
            .unwrap();
    }
    let out = admin(&["export", "--key-prefix", "seed"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let exported = String::from_utf8(out.stdout).unwrap();
    let exported_ids: Vec<u64> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(exported_ids, (1..=9).collect::<Vec<_>>(), "{exported}");
    let out = admin(&["import", "--key-prefix", "copy"], &exported);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("imported 9 records"), "{}", text(&out));
    for id in 1..=9u64 {
        let key = format!("copy:player:{{{id}}}");
        let master = cluster.master_of_slot(cluster.slot_of(&key));
        let copied: String = redis::cmd("GET")
            .arg(&key)
            .query(&mut cluster.connection(master))
            .unwrap();
        assert!(
            copied.starts_with(&format!(r#"{{"version":2,"seq":{id},"id":{id},"#)),
            "{copied}"
        );
    }
    let out = admin(&["import", "--key-prefix", "copy"], &exported);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("skipped 9"), "{}", text(&out));
    let out = admin(
        &["import", "--key-prefix", "copy", "--overwrite-newer"],
        &exported,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
