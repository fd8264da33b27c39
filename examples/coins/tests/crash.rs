//! The crash property: gifts between random pairs of players while real `coins` server
//! processes are SIGKILLed at random moments, on a real `redis-server` and on a real 3-master
//! Redis Cluster (where most pairs live in different slots, so a gift takes the three-step
//! commit across slots); after every crash
//! the total of all coins in the store is what the players started with. A gift's two wallets
//! are written together (a linked save) or not at all; saved one by one, a kill between the
//! two writes would create or destroy coins.
//!
//! Seeded: `COINS_CRASH_SEED=<n>` replays a run (the seed is printed).

// The Hearth suite's harnesses: a real redis-server on a free port, and a local Redis
// Cluster, killed on drop.
#[allow(dead_code)]
#[path = "../../../tests/common/redis_cluster.rs"]
mod redis_cluster;
#[allow(dead_code)]
#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;
#[allow(dead_code)] // The fuzz tests' part of it.
#[path = "../../../tests/common/rng.rs"]
mod rng;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coins::STARTING_COINS;
use redis::Commands;
use redis_cluster::{RedisCluster, TestRedis};
use redis_server::{RedisServer, free_port};
use rng::Rng;
use serde_json::{Value, json};

const PLAYERS: usize = 6;
const CRASHES: usize = 5;
/// A guard against a hang (a server that never listens, a login never answered), not a
/// timing assertion.
const WAIT: Duration = Duration::from_secs(20);

/// A `coins` server process on `redis`, with short leases and flushes (a killed server's
/// players can log in again a second later).
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(redis_url: &str, instance: &str) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let listen = addr.to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_coins"))
            .args(["--store", redis_url, "--instance-id", instance])
            .args(["--lease-ttl", "1s", "--lease-refresh-interval", "300ms"])
            .args(["--flush-interval", "200ms", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the coins binary");
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < WAIT, "coins did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, addr }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().ok();
    }
}

/// One player's connection.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// Gifts this player gave that were answered `gifted` (durable on both sides).
    gifted: u64,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to coins");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Self {
            stream,
            reader,
            gifted: 0,
        }
    }

    fn send(&mut self, message: Value) {
        // A write to a server just killed fails; the round is over then anyway.
        self.stream
            .write_all(format!("{message}\n").as_bytes())
            .ok();
    }

    /// The next line whose type is `kind` or `error` (others, such as replication, skipped).
    fn expect(&mut self, kind: &str) -> Value {
        loop {
            let mut line = String::new();
            let read = self.reader.read_line(&mut line).expect("a line in time");
            assert!(read > 0, "connection closed waiting for {kind}");
            let message: Value = serde_json::from_str(&line).expect("JSON");
            if message["type"] == kind || message["type"] == "error" {
                return message;
            }
        }
    }

    /// Logs in, retrying while the killed server's lease has not expired yet.
    fn login(addr: SocketAddr, name: &str) -> Self {
        let started = Instant::now();
        loop {
            let mut client = Self::connect(addr);
            client.send(json!({"type": "login", "username": name, "password": "password1"}));
            let answer = client.expect("logged_in");
            if answer["type"] == "logged_in" {
                return client;
            }
            assert_eq!(answer["code"], "already_online", "{answer}");
            assert!(started.elapsed() < WAIT, "{name} never logged in again");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Counts the `gifted` answers already received, without waiting.
    fn drain(&mut self) {
        self.stream.set_nonblocking(true).unwrap();
        let mut buffer = [0u8; 4096];
        let mut text = Vec::new();
        loop {
            match self.reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        self.stream.set_nonblocking(false).ok();
        let needle = br#""type":"gifted""#;
        self.gifted += text.windows(needle.len()).filter(|w| w == needle).count() as u64;
    }
}

/// The coins a load of each player would find (a player never saved holds the starting
/// coins): its record, or, on a cluster, the pending record a killed server's committed
/// linked save left (a load rolls it forward; an undecided one it aborts).
fn stored_coins(redis: &dyn TestRedis, ids: &[u64]) -> Vec<u64> {
    let mut conn = redis.inspector();
    let coins = |record: &str| -> (u64, u64) {
        let record: Value = serde_json::from_str(record).unwrap();
        let seq = record["seq"].as_u64().unwrap();
        (seq, record["sections"]["wallet"]["coins"].as_u64().unwrap())
    };
    ids.iter()
        .map(|id| {
            let record: Option<String> = conn.get(format!("hearth:player:{{{id}}}")).unwrap();
            let stored = record.as_deref().map(coins);
            let pending: std::collections::HashMap<String, String> =
                conn.hgetall(format!("hearth:pending:{{{id}}}")).unwrap();
            let committed = match pending.get("link") {
                Some(link) => {
                    let decision: Option<String> =
                        conn.get(format!("hearth:link:{{{link}}}")).unwrap();
                    decision.as_deref() == Some("committed")
                }
                None => false,
            };
            let rolled = committed.then(|| coins(&pending["record"]));
            match (stored, rolled) {
                (Some(s), Some(p)) if p.0 > s.0 => p.1,
                (None, Some(p)) => p.1,
                (Some(s), _) => s.1,
                (None, None) => STARTING_COINS,
            }
        })
        .collect()
}

#[test]
fn gifts_conserve_every_coin_across_random_sigkills_on_one_redis() {
    gifts_conserve_every_coin_across_random_sigkills(&RedisServer::start());
}

#[test]
fn gifts_conserve_every_coin_across_random_sigkills_on_a_redis_cluster() {
    gifts_conserve_every_coin_across_random_sigkills(&RedisCluster::start(3, 0));
}

fn gifts_conserve_every_coin_across_random_sigkills(redis: &dyn TestRedis) {
    let seed = Rng::seed_from_env("COINS_CRASH_SEED");
    let mut rng = Rng(seed);
    let url = redis.url();
    let names: Vec<String> = (0..PLAYERS).map(|i| format!("player{i}")).collect();
    let mut server = Server::start(&url, "coins-0");
    let ids: Vec<u64> = names
        .iter()
        .map(|name| {
            let mut client = Client::connect(server.addr);
            client.send(json!({"type": "register", "username": name, "password": "password1"}));
            let answer = client.expect("registered");
            answer["player_id"].as_u64().expect("registered")
        })
        .collect();
    let total = PLAYERS as u64 * STARTING_COINS;
    let mut gifted = 0;
    for crash in 0..CRASHES {
        let mut clients: Vec<Client> = names
            .iter()
            .map(|name| Client::login(server.addr, name))
            .collect();
        let until = Instant::now() + Duration::from_millis(200 + rng.below(1000));
        while Instant::now() < until {
            let from = rng.below(PLAYERS as u64) as usize;
            let to = (from + 1 + rng.below(PLAYERS as u64 - 1) as usize) % PLAYERS;
            let amount = 1 + rng.below(30);
            clients[from].send(json!({"type": "gift", "to": ids[to], "amount": amount}));
            std::thread::sleep(Duration::from_millis(5));
            clients[from].drain();
        }
        server.kill();
        for client in &mut clients {
            client.drain();
            gifted += client.gifted;
        }
        let coins = stored_coins(redis, &ids);
        assert_eq!(
            coins.iter().sum::<u64>(),
            total,
            "after crash {crash} (seed {seed}): {coins:?}"
        );
        server = Server::start(&url, &format!("coins-{}", crash + 1));
    }
    server.kill();
    let coins = stored_coins(redis, &ids);
    println!("{gifted} gifts acknowledged durable; wallets now {coins:?}");
    assert!(gifted > 0, "gifts were made and saved");
    assert_ne!(
        coins,
        vec![STARTING_COINS; PLAYERS],
        "gifts reached the store"
    );
}
