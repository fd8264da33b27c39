//! Resume tokens over real TCP, on both stores: a `logged_in` carries one, `resume`
//! exchanges it (once) for a login and a fresh one, it expires, it is revoked by a password
//! reset, failed resumes are throttled like failed logins, and with Redis it survives a
//! server restart; on a Redis Cluster, renewal renews every master it can reach.

mod common;

use std::time::Duration;

use common::client::{Client, NetServer};
use common::process::Hearth;
use common::redis_cluster::RedisCluster;
use common::redis_server::RedisServer;
use hearth::config::ServerConfig;
use hearth::testing::test_config;
use hearth_components::StoreSelection;
use serde_json::{Value, json};

/// Where a test server keeps its players and accounts.
enum Store<'a> {
    Memory,
    Redis(&'a RedisServer),
}

fn server(store: &Store, mut config: ServerConfig) -> NetServer {
    match store {
        Store::Memory => NetServer::memory(config),
        Store::Redis(redis) => {
            config.store.settings.selection = StoreSelection::Redis(redis.url());
            NetServer::start(config)
        }
    }
}

fn token(logged_in: &Value) -> String {
    logged_in["resume_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no resume_token in {logged_in}"))
        .to_string()
}

/// Sends `resume` with `token` and expects the error `code`.
fn refused(client: &mut Client, token: &str, code: &str) -> Value {
    client.send(json!({"type": "resume", "token": token}));
    client.expect_error(code)
}

/// Logs out on `client` and waits for the answer (the lease is released by then).
fn log_out(client: &mut Client) {
    client.send(json!({"type": "logout"}));
    client.expect("logged_out");
}

fn a_token_logs_in_once_and_the_next_comes_with_it(store: Store) {
    let server = server(&store, test_config("resume-a"));
    let mut first = server.client();
    let id = first.register("alice", "password1");
    let logged_in = first.login("alice", "password1");
    let t1 = token(&logged_in);
    first.step(1.0, 0.0);
    drop(first); // the connection drops, as on a network failure

    let mut second = server.client();
    let resumed = loop {
        // Until the dropped connection's player has left (its lease released).
        second.send(json!({"type": "resume", "token": t1}));
        let answer = second.expect_any(&["logged_in", "error"]);
        if answer["type"] == "logged_in" {
            break answer;
        }
        assert_eq!(answer["code"], "already_online", "{answer}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(resumed["player_id"], id);
    assert_eq!(
        resumed["state"]["position"]["x"], 1.0,
        "the state stepped to"
    );
    let t2 = token(&resumed);
    assert_ne!(t1, t2, "rotated on use");
    log_out(&mut second);

    let mut third = server.client();
    let error = refused(&mut third, &t1, "invalid_credentials");
    assert!(
        error["message"].as_str().unwrap().contains("resume token"),
        "{error}"
    );
    assert!(
        !error.to_string().contains(&t1[3..]),
        "never echoed: {error}"
    );
    let again = third.resume(&t2);
    assert_eq!(again["player_id"], id);
    assert_ne!(token(&again), t2);
}

fn a_password_login_keeps_working_and_a_bad_token_is_a_bad_credential(store: Store) {
    let server = server(&store, test_config("resume-b"));
    let mut c = server.client();
    c.register("bob", "password1");
    for bad in [
        "",
        "garbage",
        "1.AAAA",
        "999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        refused(&mut c, bad, "invalid_credentials");
    }
    c.send(json!({"type": "resume"}));
    c.expect_error("bad_request");
    c.send(json!({"type": "resume", "token": 42}));
    c.expect_error("bad_request");
    // Four failures so far from this address: the fifth is still counted, not locked.
    let logged_in = c.login("bob", "password1");
    c.send(json!({"type": "resume", "token": token(&logged_in)}));
    c.expect_error("bad_request"); // already logged in
}

fn failed_resumes_lock_the_address_out_like_failed_logins(store: Store) {
    let server = server(&store, test_config("resume-c"));
    let mut c = server.client();
    c.register("carol", "password1");
    let logged_in = c.login("carol", "password1");
    let good = token(&logged_in);
    log_out(&mut c);
    let wrong = format!("{}AAAA", &good[..good.len() - 4]);
    for _ in 0..hearth::net::auth::FAILED_LOGINS_PER_MINUTE + 1 {
        refused(&mut c, &wrong, "invalid_credentials");
    }
    refused(&mut c, &good, "rate_limited");
    c.send(json!({"type": "login", "username": "carol", "password": "password1"}));
    c.expect_error("rate_limited");
}

fn an_expired_token_is_refused_but_playing_keeps_it_alive(store: Store) {
    let mut config = test_config("resume-d");
    config.front_door.resume_ttl = Duration::from_secs(1);
    let server = server(&store, config);
    let mut c = server.client();
    c.register("dave", "password1");
    let played = token(&c.login("dave", "password1"));
    // Online for three lifetimes: the tokens of a player online here are kept alive.
    for nonce in 0..30 {
        c.ping(nonce);
        std::thread::sleep(Duration::from_millis(100));
    }
    log_out(&mut c);
    let resumed = c.resume(&played);
    let left = token(&resumed);
    log_out(&mut c);
    // Gone for longer than a lifetime: expired.
    std::thread::sleep(Duration::from_millis(1500));
    refused(&mut c, &left, "invalid_credentials");
}

fn resuming_a_player_online_elsewhere_is_refused_like_a_login(store: Store) {
    let server = server(&store, test_config("resume-e"));
    let mut playing = server.client();
    let id = playing.register("erin", "password1");
    let t = token(&playing.login("erin", "password1"));
    let mut other = server.client();
    refused(&mut other, &t, "already_online");
    other.send(json!({"type": "login", "username": "erin", "password": "password1"}));
    other.expect_error("already_online");
    playing.ping(1); // still playing, untouched
    // The lease is checked before the token is taken: it stays usable.
    log_out(&mut playing);
    assert_eq!(other.resume(&t)["player_id"], id);
}

mod memory {
    use super::*;

    #[test]
    fn a_token_logs_in_once_and_the_next_comes_with_it() {
        super::a_token_logs_in_once_and_the_next_comes_with_it(Store::Memory);
    }
    #[test]
    fn a_password_login_keeps_working_and_a_bad_token_is_a_bad_credential() {
        super::a_password_login_keeps_working_and_a_bad_token_is_a_bad_credential(Store::Memory);
    }
    #[test]
    fn failed_resumes_lock_the_address_out_like_failed_logins() {
        super::failed_resumes_lock_the_address_out_like_failed_logins(Store::Memory);
    }
    #[test]
    fn an_expired_token_is_refused_but_playing_keeps_it_alive() {
        super::an_expired_token_is_refused_but_playing_keeps_it_alive(Store::Memory);
    }
    #[test]
    fn resuming_a_player_online_elsewhere_is_refused_like_a_login() {
        super::resuming_a_player_online_elsewhere_is_refused_like_a_login(Store::Memory);
    }
}

mod redis {
    use super::*;

    #[test]
    fn a_token_logs_in_once_and_the_next_comes_with_it() {
        let redis = RedisServer::start();
        super::a_token_logs_in_once_and_the_next_comes_with_it(Store::Redis(&redis));
    }
    #[test]
    fn a_password_login_keeps_working_and_a_bad_token_is_a_bad_credential() {
        let redis = RedisServer::start();
        super::a_password_login_keeps_working_and_a_bad_token_is_a_bad_credential(Store::Redis(
            &redis,
        ));
    }
    #[test]
    fn failed_resumes_lock_the_address_out_like_failed_logins() {
        let redis = RedisServer::start();
        super::failed_resumes_lock_the_address_out_like_failed_logins(Store::Redis(&redis));
    }
    #[test]
    fn an_expired_token_is_refused_but_playing_keeps_it_alive() {
        let redis = RedisServer::start();
        super::an_expired_token_is_refused_but_playing_keeps_it_alive(Store::Redis(&redis));
    }
    #[test]
    fn resuming_a_player_online_elsewhere_is_refused_like_a_login() {
        let redis = RedisServer::start();
        super::resuming_a_player_online_elsewhere_is_refused_like_a_login(Store::Redis(&redis));
    }
}

/// Runs `hearth admin account reset-password <username>` with the password on stdin.
fn reset_password(redis: &RedisServer, username: &str, password: &str) -> String {
    let out = common::process::run_admin(
        &redis.url(),
        &["account", "reset-password", username],
        &format!("{password}\n"),
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_token_survives_a_server_restart_on_redis_and_never_shows_in_its_logs() {
    let redis = RedisServer::start();
    let verbose = ["--verbose", "true"];
    let mut first = Hearth::start_with(&redis, "eu-1", &verbose);
    let mut c = first.client();
    let id = c.register("frank", "password1");
    let t = token(&c.login("frank", "password1"));
    c.step(0.0, 1.0);
    first.signal("-TERM");
    assert_eq!(first.wait(), 0, "{}", first.log());
    let secret = t.split_once('.').unwrap().1.to_string();
    assert!(!first.log().contains(&secret), "{}", first.log());

    let second = Hearth::start_with(&redis, "eu-2", &verbose);
    let mut c = second.client();
    let resumed = c.resume(&t);
    assert_eq!(resumed["player_id"], id);
    assert_eq!(resumed["state"]["position"]["y"], 1.0);
    let next = token(&resumed);
    // Only digests are stored: neither token is in Redis.
    let mut conn = redis.connection();
    let stored: Vec<String> = ::redis::cmd("HKEYS")
        .arg(format!("hearth:resume:{{{id}}}"))
        .query(&mut conn)
        .unwrap();
    assert!(!stored.is_empty());
    for token in [&t, &next] {
        assert!(
            !stored
                .iter()
                .any(|s| token.contains(s.as_str()) || s.contains(&token[2..]))
        );
    }
    let log = second.log();
    for token in [&t, &next] {
        assert!(!log.contains(token.split_once('.').unwrap().1), "{log}");
    }
}

#[test]
fn a_password_reset_revokes_every_resume_token_of_the_account() {
    let redis = RedisServer::start();
    let server = Hearth::start(&redis, "eu-1");
    let mut c = server.client();
    c.register("gina", "password1");
    let first = token(&c.login("gina", "password1"));
    log_out(&mut c);
    let second = token(&c.login("gina", "password1"));
    log_out(&mut c);
    let mut h = server.client();
    h.register("hank", "password1");
    let other = token(&h.login("hank", "password1"));
    log_out(&mut h);

    let said = reset_password(&redis, "gina", "new password 2");
    assert!(said.contains("revoked"), "{said}");
    for t in [&first, &second] {
        refused(&mut c, t, "invalid_credentials");
    }
    let fresh = token(&c.login("gina", "new password 2"));
    log_out(&mut c);
    c.resume(&fresh);
    assert_eq!(
        h.resume(&other)["type"],
        "logged_in",
        "other accounts keep theirs"
    );
}

#[test]
fn renewal_renews_the_tokens_on_every_live_master_when_one_master_is_down() {
    use hearth::store::accounts::{AccountStore, TokenHash};
    use hearth::store::redis::accounts::RedisAccounts;

    let mut cluster = RedisCluster::start(3, 0);
    let timeout = Duration::from_millis(500);
    let mut accounts = RedisAccounts::new(&cluster.url(), "hearth", timeout, "").unwrap();
    let players: Vec<u64> = (1..=30).collect();
    for &player in &players {
        let fresh = TokenHash::from_digest(format!("{player:064x}"));
        accounts
            .resume(player, None, &fresh, Duration::from_secs(60))
            .unwrap();
    }
    let key = |player: u64| format!("hearth:resume:{{{player}}}");
    let owners = cluster.slot_owners();
    let masters: Vec<u16> = players
        .iter()
        .map(|&p| owners[usize::from(cluster.slot_of(&key(p)))])
        .collect();
    // The master of the first player's tokens: the first the renewal sends to.
    let down = masters[0];
    cluster.kill(down);
    let renewed = accounts.extend_resume(&players, Duration::from_secs(600));
    let error = renewed.expect_err("a master is down").to_string();
    assert!(error.contains("of 30 players"), "{error}");
    let live: Vec<(u64, u16)> = players
        .iter()
        .copied()
        .zip(masters.iter().copied())
        .filter(|&(_, master)| master != down)
        .collect();
    assert!(!live.is_empty(), "players on the live masters");
    for (player, master) in live {
        let ttl_ms: i64 = ::redis::cmd("PTTL")
            .arg(key(player))
            .query(&mut cluster.connection(master))
            .unwrap();
        assert!(
            ttl_ms > 60_000,
            "player {player}: renewed although another master is down ({ttl_ms} ms left)"
        );
    }
}
