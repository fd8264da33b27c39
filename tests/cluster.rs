//! Several `hearth` server processes sharing one real Redis (and one real Redis Cluster): a
//! player is never online twice, a crashed server's players come back once their lease
//! expires, SIGTERM saves everyone, and bad configuration is refused at start.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{Hearth, run_hearth};
use common::redis_cluster::RedisCluster;
use common::redis_server::{RedisServer, free_port};
use serde_json::json;

#[test]
fn a_player_online_on_one_server_is_refused_on_another_until_logout() {
    let redis = RedisServer::start();
    let a = Hearth::start(&redis, "server-a");
    let b = Hearth::start(&redis, "server-b");
    let mut on_a = a.client();
    on_a.register("alice", "password1");
    on_a.login("alice", "password1");
    for _ in 0..4 {
        on_a.step(1.0, 0.0);
    }
    let mut on_b = b.client();
    on_b.send(json!({"type": "login", "username": "alice", "password": "password1"}));
    on_b.expect_error("already_online");
    on_a.send(json!({"type": "logout"}));
    on_a.expect("logged_out");
    let state = on_b.login("alice", "password1");
    assert_eq!(
        state["state"]["position"]["x"], 4.0,
        "server b loads what server a saved at logout"
    );
    let mut again_on_a = a.client();
    again_on_a.send(json!({"type": "login", "username": "alice", "password": "password1"}));
    again_on_a.expect_error("already_online");
}

#[test]
fn two_servers_on_a_redis_cluster_register_play_and_hand_players_over() {
    // The whole server on a 3-master cluster: accounts, records, leases and registrations
    // spread over the masters; a player online on one server is refused on the other until
    // logout, then loads there what the first saved.
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let start = |instance: &str| {
        Hearth::start_args(&[
            "--store",
            &url,
            "--instance-id",
            instance,
            "--lease-ttl",
            "2s",
            "--lease-refresh-interval",
            "500ms",
            "--flush-interval",
            "500ms",
        ])
    };
    let (a, b) = (start("server-a"), start("server-b"));
    let names: Vec<String> = (0..6).map(|i| format!("player{i}")).collect();
    let mut on_a = Vec::new();
    for (steps, name) in names.iter().enumerate() {
        let mut client = a.client();
        client.register(name, "password1");
        client.login(name, "password1");
        for _ in 0..=steps {
            client.step(1.0, 0.0);
        }
        on_a.push(client);
    }
    for name in &names {
        let mut on_b = b.client();
        on_b.send(json!({"type": "login", "username": name, "password": "password1"}));
        on_b.expect_error("already_online");
    }
    for client in &mut on_a {
        client.send(json!({"type": "logout"}));
        client.expect("logged_out");
    }
    for (steps, name) in names.iter().enumerate() {
        let state = b.client().login(name, "password1");
        assert_eq!(
            state["state"]["position"]["x"],
            (steps + 1) as f64,
            "{name}: server b loads what server a saved at logout"
        );
    }
    let masters = cluster.masters();
    let on = |pattern: &str| -> Vec<usize> {
        masters
            .iter()
            .map(|&port| cluster.keys_on(port, pattern).len())
            .collect()
    };
    assert_eq!(on("hearth:account:*").iter().sum::<usize>(), 6);
    assert_eq!(on("hearth:player:*").iter().sum::<usize>(), 6);
    assert!(
        on("hearth:player:*").iter().filter(|&&n| n > 0).count() >= 2,
        "records on several masters: {:?}",
        on("hearth:player:*")
    );
}

#[test]
fn a_crashed_servers_player_can_log_in_elsewhere_once_the_lease_expires() {
    let redis = RedisServer::start();
    let mut a = Hearth::start(&redis, "server-a");
    let b = Hearth::start(&redis, "server-b");
    let mut on_a = a.client();
    on_a.register("bob", "password1");
    on_a.login("bob", "password1");
    a.signal("-KILL");
    a.wait();
    let mut on_b = b.client();
    on_b.send(json!({"type": "login", "username": "bob", "password": "password1"}));
    on_b.expect_error("already_online");
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let mut retry = b.client();
        retry.send(json!({"type": "login", "username": "bob", "password": "password1"}));
        let answer = retry.expect_any(&["logged_in", "error"]);
        if answer["type"] == "logged_in" {
            break;
        }
        assert_eq!(answer["code"], "already_online");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "lease of the crashed server never expired"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the lease held until it expired"
    );
}

#[test]
fn sigterm_saves_every_player_releases_leases_and_exits_zero() {
    let redis = RedisServer::start();
    let mut a = Hearth::start(&redis, "server-a");
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = a.client();
        let name = format!("player{i}");
        c.register(&name, "password1");
        c.login(&name, "password1");
        c.step(0.0, 1.0);
        clients.push(c);
    }
    a.signal("-TERM");
    assert_eq!(a.wait(), 0, "{}", a.log());
    let mut conn = redis.connection();
    let sessions: Vec<String> = redis::cmd("KEYS")
        .arg("hearth:session:*")
        .query(&mut conn)
        .unwrap();
    assert!(
        sessions.is_empty(),
        "every lease released: {sessions:?}\n{}",
        a.log()
    );
    let records: Vec<String> = redis::cmd("KEYS")
        .arg("hearth:player:*")
        .query(&mut conn)
        .unwrap();
    assert_eq!(records.len(), 3, "every player saved");
    for key in records {
        let raw: String = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        let record: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(record["sections"]["position"]["y"], 1.0, "{key}: {raw}");
    }
}

#[test]
fn bad_config_and_unreachable_redis_are_refused_at_start() {
    let out = run_hearth(&["--flush-interval", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("flush_interval"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .env("HEARTH_VERBOSE", "1")
        .env("HEARTH_LEASE_TTL", "10s")
        .env("HEARTH_LEASE_REFRESH_INTERVAL", "20s")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("lease_refresh_interval"),
        "HEARTH_* variables are read and checked: {err}"
    );

    let url = format!("redis://127.0.0.1:{}/", free_port());
    let out = run_hearth(&["--store", &url, "--listen", "127.0.0.1:0"]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url), "the message names the URL: {err}");
}

#[test]
fn players_on_live_masters_save_and_keep_their_tokens_while_one_master_is_dead() {
    // A 3-master cluster without replicas; the master that dies is first in the store URL
    // (the first seed asked for the slot table). The live masters go on serving their slots
    // (`cluster-require-full-coverage no`; with the default they refuse every command once
    // a slot is unserved, and no client can do better).
    let cluster = RedisCluster::start(3, 0);
    cluster.config_set("cluster-require-full-coverage", "no");
    let masters = cluster.masters();
    let dead = masters[0];
    let seeds: Vec<String> = masters.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let url = format!("redis+cluster://{}", seeds.join(","));
    let resume_ttl = Duration::from_secs(3);
    let server = Hearth::start_args(&[
        "--store",
        &url,
        "--instance-id",
        "server-a",
        "--lease-ttl",
        "2s",
        "--lease-refresh-interval",
        "500ms",
        "--flush-interval",
        "500ms",
        "--resume-ttl",
        "3s",
        "--registrations-per-minute",
        "1000",
    ]);
    let master_of =
        |id: u64| cluster.master_of_slot(cluster.slot_of(&format!("hearth:player:{{{id}}}")));
    // Players until eight live on the master that dies and four on the others.
    let (mut live, mut on_dead) = (Vec::new(), Vec::new());
    for i in 0..100 {
        if live.len() >= 4 && on_dead.len() >= 8 {
            break;
        }
        let name = format!("player{i}");
        let mut client = server.client();
        let id = client.register(&name, "password1");
        let logged_in = client.login(&name, "password1");
        let token = logged_in["resume_token"].as_str().unwrap().to_string();
        if master_of(id) == dead {
            on_dead.push(client);
        } else {
            live.push((id, client, token));
        }
    }
    assert!(
        live.len() >= 4 && on_dead.len() >= 8,
        "players on every master"
    );
    // Frozen (SIGSTOP): connections to it open but nothing answers, the costliest way for a
    // master to be dead.
    cluster.freeze(dead);
    let killed = Instant::now();

    // Every player keeps playing. Those on the dead master level up too: their immediate
    // saves fail and are retried every second, and must not hold up the others' (eight of
    // them each waiting the 2 s store timeout would hold a live player's `level_up` longer
    // than the client waits).
    let move_line = format!("{}\n", json!({"type": "move", "dx": 1.0, "dy": 0.0}));
    for level in 2..=4u64 {
        for client in &mut on_dead {
            for _ in 0..10 {
                use std::io::Write;
                let _ = client.writer().write_all(move_line.as_bytes());
            }
        }
        for (id, client, _) in &mut live {
            for _ in 0..10 {
                client.step(1.0, 0.0);
            }
            let level_up = client.expect("level_up");
            assert_eq!(level_up["level"], level, "player {id}: {level_up}");
        }
    }
    // Past the tokens' lifetime since their login: only renewal kept them.
    while killed.elapsed() < resume_ttl * 2 {
        std::thread::sleep(Duration::from_millis(200));
    }
    for (id, mut client, token) in live {
        client.send(json!({"type": "logout"}));
        client.expect("logged_out");
        let resumed = server.client().resume(&token);
        assert_eq!(
            resumed["state"]["progress"]["level"], 4,
            "player {id} resumed with every level saved: {resumed}"
        );
    }
}

#[test]
fn the_slot_table_is_read_past_a_frozen_first_seed() {
    use hearth::store::accounts::AccountStore;
    use hearth::store::redis::accounts::RedisAccounts;

    let cluster = RedisCluster::start(3, 0);
    cluster.config_set("cluster-require-full-coverage", "no");
    let masters = cluster.masters();
    let frozen = masters[0];
    let seeds: Vec<String> = masters.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let url = format!("redis+cluster://{}", seeds.join(","));
    // An account name whose key lives on a live master (asked before the freeze).
    let owners = cluster.slot_owners();
    let name = (0..)
        .map(|i| format!("user{i}"))
        .find(|name| {
            owners[usize::from(cluster.slot_of(&format!("hearth:account:{{{name}}}")))] != frozen
        })
        .unwrap();
    cluster.freeze(frozen);
    // A store timeout far longer than the test waits: asking the frozen first seed before
    // the others would hold the answer that long.
    let (answer, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut accounts =
            RedisAccounts::new(&url, "hearth", Duration::from_secs(600), "").unwrap();
        answer
            .send(accounts.find(&name).map(|found| found.is_none()))
            .ok();
    });
    let found = answered
        .recv_timeout(Duration::from_secs(60))
        .expect("the slot table was read from a live seed, not after the frozen one");
    assert!(matches!(found, Ok(true)), "{found:?}");
    cluster.thaw(frozen);
}
