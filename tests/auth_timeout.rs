//! `store_timeout` bounds what a client waits for the account store (issue 18 item 8, H1): a
//! login, a resume and a registration while Redis hangs are each answered `unavailable` after
//! about one store timeout, not one per call and retry (the fault campaign measured 6.0, 4.0
//! and 6.1 s at a 2 s timeout). The whole `hearth` binary on a real, frozen `redis-server`.

mod common;

use std::time::{Duration, Instant};

use common::client::Client;
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

/// Sends a resume with each token at once, from a client each, and returns the clients.
fn resume_at_once(server: &Hearth, tokens: &[String]) -> Vec<Client> {
    tokens
        .iter()
        .map(|token| {
            let mut client = server.client();
            client.send(json!({"type": "resume", "token": token}));
            client
        })
        .collect()
}

/// Promise (issue 18 item 1, R8): a resume answered `unavailable` while Redis hangs changed
/// nothing. A timed-out `resume.lua` is still in Redis's input and runs once Redis reads
/// again; it is undone (`resume_undo.lua`): the token works again and the player's lease is
/// not left held. Without the undo, the late run spends the token (the resume below is
/// refused as unknown) and holds the lease for 10 s.
#[test]
fn a_resume_answered_unavailable_while_redis_hangs_keeps_its_token_and_holds_no_lease() {
    let redis = RedisServer::start();
    let server = Hearth::start_with(&redis, "hung", &["--store-timeout", "1s"]);
    let (mut ids, mut tokens) = (Vec::new(), Vec::new());
    for name in ["alice", "bob"] {
        let mut c = server.client();
        c.register(name, "password1");
        let logged_in = c.login(name, "password1");
        c.send(json!({"type": "logout"}));
        c.expect("logged_out");
        ids.push(logged_in["player_id"].as_u64().unwrap());
        tokens.push(logged_in["resume_token"].as_str().unwrap().to_string());
    }
    // Both resumes at once while Redis pauses for a moment: each resume worker takes one and
    // opens its connection, so the resumes below go out on open connections (a worker still
    // connecting when Redis hangs never sends its script at all).
    redis.freeze();
    let mut warming = resume_at_once(&server, &tokens);
    std::thread::sleep(Duration::from_millis(200));
    redis.thaw();
    for (client, token) in warming.iter_mut().zip(&mut tokens) {
        let logged_in = client.expect("logged_in");
        *token = logged_in["resume_token"].as_str().unwrap().to_string();
        client.send(json!({"type": "logout"}));
        client.expect("logged_out");
    }

    redis.freeze();
    for mut client in resume_at_once(&server, &tokens) {
        let error = client.expect("error");
        assert_eq!(error["code"], "unavailable", "{error}");
    }
    redis.thaw();

    // The undo marks each resume cancelled (and reverses it if it ran) once Redis answers;
    // waited for here (at most 5 s, half the lease a late run holds) so the checks below see
    // its outcome.
    let mut conn = redis.connection();
    let deadline = Instant::now() + Duration::from_secs(5);
    for id in &ids {
        let cancelled = format!("hearth:resume:{{{id}}}:cancelled");
        while Instant::now() < deadline
            && !redis::cmd("EXISTS")
                .arg(&cancelled)
                .query::<bool>(&mut conn)
                .unwrap()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for id in &ids {
        let lease: Option<String> = redis::cmd("GET")
            .arg(format!("hearth:session:{{{id}}}"))
            .query(&mut conn)
            .unwrap();
        assert_eq!(lease, None, "a failed resume left player {id}'s lease held");
    }
    for (mut client, token) in resume_at_once(&server, &tokens).into_iter().zip(&tokens) {
        let answer = client.expect_any(&["logged_in", "error"]);
        assert_eq!(
            answer["type"],
            "logged_in",
            "the token {token} a failed resume presented no longer works: {answer}\n{}",
            server.log()
        );
    }
}
