//! The fault campaign, as tests: whole `hearth` processes and real Redis servers under
//! crashes, restarts, hangs, misconfiguration and corrupt data. Each test names the promise
//! it guards (a player is never online twice, nothing is lost, bad input harms nothing else).

mod common;

use std::time::Duration;

use common::process::{Hearth, run_hearth};
use common::redis_server::RedisServer;
use serde_json::json;

#[test]
fn a_second_process_with_the_same_instance_id_refuses_to_start_naming_the_first() {
    let redis = RedisServer::start();
    let first = Hearth::start(&redis, "same-id");
    let out = run_hearth(&[
        "--store",
        &redis.url(),
        "--instance-id",
        "same-id",
        "--listen",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("\"same-id\""), "names the id: {err}");
    assert!(
        err.contains(&first.addr.to_string()),
        "names the other process's address: {err}"
    );
    assert!(
        err.contains(&format!("pid {}", first.child.id())),
        "names the other process: {err}"
    );
    assert!(err.contains("started at 20"), "says when it started: {err}");
    // The first one is unharmed.
    let mut client = first.client();
    client.register("alice", "password1");
    client.login("alice", "password1");
}

#[test]
fn a_clean_stop_releases_the_instance_id_for_an_immediate_restart() {
    let redis = RedisServer::start();
    let mut first = Hearth::start(&redis, "restarts");
    first.signal("-TERM");
    assert_eq!(first.wait(), 0, "{}", first.log());
    let again = Hearth::start(&redis, "restarts");
    let mut client = again.client();
    client.register("bob", "password1");
    client.login("bob", "password1");
}

#[test]
fn a_lease_belongs_to_one_process_start_not_to_a_shared_instance_id() {
    let redis = RedisServer::start();
    let mut first = Hearth::start_with(&redis, "same-id", &["--lease-ttl", "30s"]);
    let mut on_first = first.client();
    on_first.register("carol", "password1");
    on_first.login("carol", "password1");
    first.signal("-KILL");
    first.wait();
    // As if the crashed process's registration had expired while carol's lease (refreshed
    // until the crash, 30 s TTL) still holds: a process with the same id may start.
    let mut conn = redis.connection();
    let _: () = redis::cmd("DEL")
        .arg("hearth:instance:{same-id}")
        .query(&mut conn)
        .unwrap();
    let second = Hearth::start_with(&redis, "same-id", &["--lease-ttl", "30s"]);
    let mut on_second = second.client();
    on_second.send(json!({"type": "login", "username": "carol", "password": "password1"}));
    on_second.expect_error("already_online");
    let owner: String = redis::cmd("GET")
        .arg("hearth:session:{1}")
        .query(&mut conn)
        .unwrap();
    assert!(
        owner.starts_with("same-id/"),
        "the lease is the first process's: {owner}"
    );
}

#[test]
fn logins_right_after_redis_closed_idle_connections_or_restarted_succeed() {
    let mut redis = RedisServer::start_durable();
    let server = Hearth::start(&redis, "a");
    let names: Vec<String> = (0..6).map(|i| format!("player{i}")).collect();
    let mut setup = server.client();
    for name in &names {
        setup.register(name, "password1");
    }
    drop(setup);
    // Every account storage call works: the lookup (or the login would answer
    // `unavailable`) and storing the resume token (or `logged_in` would come without one).
    let login_and_out = |name: &str| {
        let mut client = server.client();
        let logged_in = client.login(name, "password1");
        assert!(
            logged_in["resume_token"].is_string(),
            "{name}: logged in without a resume token (its storage failed): {logged_in}"
        );
        client.send(json!({"type": "logout"}));
        client.expect("logged_out");
    };
    // Redis closes every connection idle for 1 s: the auth workers' and the store's.
    redis.config_set("timeout", "1");
    std::thread::sleep(Duration::from_millis(2500));
    for name in &names[..3] {
        login_and_out(name); // one per auth worker and then some: none is refused
    }
    redis.restart();
    for name in &names[3..] {
        login_and_out(name);
    }
}

/// How Redis fails in an outage test.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGKILL, then a restart (AOF keeps the data).
    Crash,
    /// SIGSTOP, then SIGCONT: nothing answers meanwhile.
    Hang,
    /// Over `maxmemory`: writes refused with OOM, lease refreshes still work.
    OutOfMemory,
}

/// Players keep walking (a level-up, an immediate save, every second) through a 3 s outage
/// and after it, until every lane that reported the outage reported its end. Each of the
/// two lanes must report the outage once: not twice, and not never.
fn an_outage_is_logged_once_per_lane(outage: Outage) {
    let mut redis = RedisServer::start_durable();
    let server = Hearth::start(&redis, "a");
    let mut players = Vec::new();
    for i in 0..2 {
        let mut client = server.client();
        let name = format!("walker{i}");
        client.register(&name, "password1");
        client.login(&name, "password1");
        players.push(client);
    }
    match outage {
        Outage::Crash => redis.kill(),
        Outage::Hang => redis.freeze(),
        Outage::OutOfMemory => redis.config_set("maxmemory", "1"),
    }
    let walk = |players: &mut Vec<common::client::Client>, rounds: usize| {
        for _ in 0..rounds {
            for client in players.iter_mut() {
                client.send(json!({"type": "move", "dx": 1, "dy": 0}));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    walk(&mut players, 30);
    match outage {
        Outage::Crash => redis.restart(),
        Outage::Hang => redis.thaw(),
        Outage::OutOfMemory => redis.config_set("maxmemory", "0"),
    }
    let lines = |log: &str, what: &str, lane: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains(&format!("lane=\"{lane}\"")))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        walk(&mut players, 5);
        let log = server.log();
        let settled = ["periodic", "interactive"].iter().all(|lane| {
            lines(&log, "Redis unavailable", lane) == lines(&log, "Redis reachable again", lane)
        });
        if settled {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{outage:?}: an outage never ended in the log:\n{log}"
        );
    }
    // Both lanes met the outage (the walkers' immediate saves go on the interactive one,
    // flushes and lease refreshes on the periodic one): each reports it exactly once.
    let log = server.log();
    for lane in ["periodic", "interactive"] {
        let down = lines(&log, "Redis unavailable", lane);
        assert_eq!(
            down, 1,
            "{outage:?}: {down} reports on the {lane} lane for one outage:\n{log}"
        );
    }
}

#[test]
fn a_redis_crash_is_logged_once_per_lane() {
    an_outage_is_logged_once_per_lane(Outage::Crash);
}

#[test]
fn a_hung_redis_is_logged_once_per_lane() {
    an_outage_is_logged_once_per_lane(Outage::Hang);
}

#[test]
fn a_redis_out_of_memory_is_logged_once_per_lane() {
    an_outage_is_logged_once_per_lane(Outage::OutOfMemory);
}

/// The resident memory of process `pid`, in KiB (`VmRSS` in /proc).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[test]
fn password_hashing_does_not_grow_the_server_by_argon2s_memory_each_time() {
    // Every argon2 hash allocates and frees 19 MiB. Before the allocator was told to return
    // large blocks, 20 registrations grew the server by about 200 MiB and 60 by 850 MiB.
    let redis = RedisServer::start();
    let server = Hearth::start_with(&redis, "rss", &["--registrations-per-minute", "1000"]);
    let mut client = server.client();
    client.register("warmup", "password1");
    let before = rss_kib(server.child.id());
    for i in 0..20 {
        client.register(&format!("account{i}"), "password1");
    }
    let grown_mib = rss_kib(server.child.id()).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 60,
        "20 registrations grew the server by {grown_mib} MiB"
    );
}
