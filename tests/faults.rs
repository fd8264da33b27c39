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
    let login_and_out = |name: &str| {
        let mut client = server.client();
        client.login(name, "password1");
        client.send(json!({"type": "logout"}));
        client.expect("logged_out");
    };
    // Redis closes every connection idle for 1 s: the auth workers' and the store's.
    let mut conn = redis.connection();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("timeout")
        .arg("1")
        .exec(&mut conn)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    for name in &names[..3] {
        login_and_out(name); // one per auth worker and then some: none is refused
    }
    redis.restart();
    for name in &names[3..] {
        login_and_out(name);
    }
    assert!(
        !server.log().contains("account storage unavailable"),
        "{}",
        server.log()
    );
}
