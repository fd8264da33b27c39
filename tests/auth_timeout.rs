//! `store_timeout` bounds what a client waits for the account store (issue 18 item 8, H1): a
//! login, a resume and a registration while Redis hangs are each answered `unavailable` after
//! about one store timeout, not one per call and retry (the fault campaign measured 6.0, 4.0
//! and 6.1 s at a 2 s timeout). The whole `hearth` binary on a real, frozen `redis-server`.

mod common;

use std::time::{Duration, Instant};

use common::process::Hearth;
use common::redis_server::RedisServer;
use serde_json::json;

/// Promise: a hung Redis answers a login, a resume and a registration within one store timeout
/// (2 s). The times are printed (`-- --nocapture`); the bound asserted, 1.9 timeouts, only
/// tells one timeout from two or three, so a loaded machine does not fail it.
#[test]
fn a_hung_redis_answers_login_resume_and_register_within_one_store_timeout() {
    const STORE_TIMEOUT: Duration = Duration::from_secs(2);
    let redis = RedisServer::start();
    let server = Hearth::start_with(&redis, "hung", &["--store-timeout", "2s"]);
    let mut c = server.client();
    c.register("alice", "password1");
    let token = c.login("alice", "password1")["resume_token"]
        .as_str()
        .unwrap()
        .to_string();
    c.send(json!({"type": "logout"}));
    c.expect("logged_out");

    redis.freeze();
    let requests = [
        (
            "login",
            json!({"type": "login", "username": "alice", "password": "password1"}),
        ),
        ("resume", json!({"type": "resume", "token": token})),
        (
            "register",
            json!({"type": "register", "username": "newcomer", "password": "password1"}),
        ),
    ];
    let mut times = Vec::new();
    for (what, request) in requests {
        let mut client = server.client();
        let started = Instant::now();
        client.send(request);
        let error = client.expect("error");
        let took = started.elapsed();
        assert_eq!(error["code"], "unavailable", "{what}: {error}");
        times.push((what, took));
    }
    redis.thaw();
    for (what, took) in &times {
        eprintln!(
            "{what} answered after {} ms while Redis hung (store_timeout {} ms)",
            took.as_millis(),
            STORE_TIMEOUT.as_millis()
        );
    }
    for (what, took) in times {
        assert!(
            took < STORE_TIMEOUT.mul_f32(1.9),
            "{what} took {took:?}: more than one store timeout\n{}",
            server.log()
        );
    }
}
