//! Redis flush and lease refresh: what one persistent connection with pipelined,
//! owner-checked scripts buys over the system Hearth replaces.
//!
//! Run: `cargo bench --bench redis_flush` (starts its own redis-server on a free port; needs
//! `redis-server` and `redis-benchmark` on PATH). Prints a table; asserts nothing.
//!
//! For N = 1,000 and 10,000 players with ~1 KiB records:
//! - (a) the system we replace: a new connection per call. Save = connect + `GET` the lease,
//!   compare in the client, connect + `SET` the record (verify-then-write, not atomic).
//!   Refresh = connect + `PEXPIRE` per session (unchecked).
//! - (b) one persistent connection, one call at a time: the owner-checked script by
//!   `EVALSHA`, waiting for each reply.
//! - (c) Hearth: a `StoreJob` submitted to the real `RedisStore` (encoding included),
//!   timed from submit to completion; median of 5 runs after a warm-up.
//!
//! Physical references from the same redis-server: `redis-benchmark -P 1000 -t set`, and a raw
//! pipelined `EVALSHA` of the save script with pre-encoded records (no store around it).
//!
//! Then (c) at N = 10,000 on a local 3-master Redis Cluster (`redis+cluster://`, started by
//! `tests/common/redis_cluster.rs`), against (c) on the single redis-server of the same run:
//! rates, round trips per batch over all masters, CPU per op summed over the masters, and the
//! connections the store opened.

#[path = "../tests/common/redis_cluster.rs"]
#[allow(dead_code)]
mod redis_cluster;
#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::collections::BTreeMap;
use std::process::Command;
use std::slice::from_mut;
use std::time::{Duration, Instant};

use bevy_ecs::entity::Entity;
use crossbeam_channel::Receiver;
use hearth::demo_game::{Progress, Vitals};
use hearth::store::RedisStore;
use hearth::store::StoreSettings;
use hearth::store::redis::cluster::player_slot;
use hearth::store::redis::scripts::{Keys, Scripts};
use hearth_components::{PlayerId, Position, StoreSelection};
use hearth_systems::storage::{
    Lane, LeaseItem, PlayerSnapshot, PlayerStore, RefreshOutcome, SaveItem, SaveOutcome,
    StoreCompletion, StoreJob, StoreMetrics,
};
use redis_cluster::RedisCluster;
use redis_server::RedisServer;

/// The bench server's instance id and boot token, fixed so the leases it claims by hand hold
/// the store's lease owner (`<instance id>/<boot token>`).
const INSTANCE: &str = "bench";
const BOOT: &str = "run";
const OWNER: &str = "bench/run";
/// Inventory items per record, for records of about 1 KiB.
const INVENTORY_ITEMS: u64 = 24;
const SIZES: [u64; 2] = [1_000, 10_000];
const RUNS: usize = 5;

fn main() {
    let redis = RedisServer::start();
    let keys = Keys::new("hearth");
    let scripts = Scripts::default();
    let version = Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let config = StoreSettings {
        selection: StoreSelection::Redis(redis.url()),
        instance_id: INSTANCE.into(),
        boot_token: BOOT.into(),
        store_timeout: Duration::from_secs(10),
        ..StoreSettings::default()
    };
    assert_eq!(config.lease_owner(), OWNER);
    let (tx, rx) = crossbeam_channel::unbounded();
    let store = RedisStore::open(&config, &redis.url(), tx).expect("opening the Redis store");
    let mut probe = redis.connection();
    let mut seq = 0u64;

    if let Ok(what) = std::env::var("HEARTH_BENCH_PROFILE") {
        // Only (c) at N = 10,000, repeated, for `perf record`: HEARTH_BENCH_PROFILE=save|refresh;
        // or only the record encoding: HEARTH_BENCH_PROFILE=encode.
        if what == "encode" {
            println!("{:.2} µs per record", encoding_cost(10_000) * 1e6);
            return;
        }
        claim_leases(&mut redis.connection(), &keys, players(10_000));
        for _ in 0..30 {
            seq += 1;
            let sample = match what.as_str() {
                "refresh" => store_refresh(&store, &rx, from_mut(&mut probe), 10_000),
                _ => store_save(&store, &rx, from_mut(&mut probe), 10_000, seq),
            };
            println!("{}", per_sec(sample.rate));
        }
        return;
    }

    let sample = snapshot(PlayerId(1), 1).encode().unwrap();
    println!("Redis flush and lease refresh");
    println!(
        "{version}; 127.0.0.1:{}; records of {} bytes; chunk {}; {} cores",
        redis.port(),
        sample.len(),
        config.batch_chunk,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    let mut rows = Vec::new();
    for n in SIZES {
        claim_leases(&mut redis.connection(), &keys, players(n));
        seq += 1;
        let a = per_call_connection_verify_then_save(&redis, &keys, n, seq);
        seq += 1;
        let b = persistent_one_at_a_time_save(&redis, &keys, &scripts, n, seq);
        let trips = StoreMetrics::get(&store.metrics().round_trips);
        reset_command_stats(&mut probe);
        let mut samples = Vec::new();
        for run in 0..=RUNS {
            seq += 1;
            let sample = store_save(&store, &rx, from_mut(&mut probe), n, seq);
            if run > 0 {
                samples.push(sample); // run 0 warms up
            }
        }
        let trips = (StoreMetrics::get(&store.metrics().round_trips) - trips) / (RUNS as u64 + 1);
        let script_us = script_execution_us(&mut probe, n * (RUNS as u64 + 1));
        rows.push(Row::new("save", n, a, b, samples, trips, script_us));

        let a = per_call_connection_refresh(&redis, &keys, n);
        let b = persistent_one_at_a_time_refresh(&redis, &keys, &scripts, n);
        let trips = StoreMetrics::get(&store.metrics().round_trips);
        reset_command_stats(&mut probe);
        let mut samples = Vec::new();
        for run in 0..=RUNS {
            let sample = store_refresh(&store, &rx, from_mut(&mut probe), n);
            if run > 0 {
                samples.push(sample);
            }
        }
        let trips = (StoreMetrics::get(&store.metrics().round_trips) - trips) / (RUNS as u64 + 1);
        let script_us = script_execution_us(&mut probe, n * (RUNS as u64 + 1));
        rows.push(Row::new("refresh", n, a, b, samples, trips, script_us));
    }

    println!(
        "| operation | N | (a) connection per call (save: verify-then-write) | (b) persistent, one call at a time | (c) Hearth: persistent, pipelined scripts | (c)/(a) | (c) round trips per batch | (c) CPU per op: redis-server / store | (c) of which script execution |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.0}x | {} | {:.1} µs / {:.1} µs | {:.1} µs |",
            row.op,
            row.n,
            per_sec(row.a),
            per_sec(row.b),
            per_sec(row.c),
            row.c / row.a,
            row.trips,
            row.redis_us,
            row.store_us,
            row.script_us
        );
    }
    println!();
    let m = store.metrics();
    let save = m.save_batch_latency.summary();
    let refresh = m.refresh_batch_latency.summary();
    println!(
        "(c) latency per pipelined chunk of {}: save p50 {:?} p99 {:?}; refresh p50 {:?} p99 {:?}",
        config.batch_chunk, save.p50, save.p99, refresh.p50, refresh.p99
    );
    println!();

    println!(
        "Record encoding on the store's thread (1 KiB snapshot to JSON bytes), median of 5 x 10000: {:.2} µs per record",
        encoding_cost(10_000) * 1e6
    );
    println!();

    let single = rows
        .iter()
        .filter(|row| row.n == CLUSTER_N)
        .map(|row| (row.op, row.c))
        .collect::<Vec<_>>();
    on_a_cluster(&config, &keys, &single, seq);
    println!();

    println!("Physical reference (same redis-server):");
    let (raw, raw_redis_us) =
        raw_pipelined_evalsha(&redis, &keys, &scripts, &mut probe, 10_000, seq + 1);
    println!(
        "- raw pipelined EVALSHA save.lua, one player per call, records encoded beforehand, chunks of 1000, N = 10000: {} (redis-server CPU {raw_redis_us:.1} µs per save)",
        per_sec(raw)
    );
    let (raw, raw_redis_us) = raw_pipelined_refresh(&redis, &keys, &scripts, &mut probe, 10_000);
    println!(
        "- raw pipelined EVALSHA refresh.lua, one lease per call, chunks of 1000, N = 10000: {} (redis-server CPU {raw_redis_us:.1} µs per refresh)",
        per_sec(raw)
    );
    for args in [
        vec!["-q", "-n", "100000", "-P", "1000", "-t", "set"],
        vec![
            "-q", "-n", "100000", "-P", "1000", "-t", "set", "-d", "1024",
        ],
    ] {
        let output = Command::new("redis-benchmark")
            .arg("-p")
            .arg(redis.port().to_string())
            .args(&args)
            .output();
        let text = match output {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .split('\r')
                .next_back()
                .unwrap_or_default()
                .trim()
                .to_string(),
            Err(e) => format!("cannot run redis-benchmark: {e}"),
        };
        println!("- `redis-benchmark -p <port> {}`: {text}", args.join(" "));
    }
    drop(store);
}

/// Players of the cluster comparison.
const CLUSTER_N: u64 = 10_000;

/// (c) on a local 3-master Redis Cluster (`redis+cluster://`), against (c) on the single
/// redis-server of the same run (`single`: rate per operation at [`CLUSTER_N`]).
fn on_a_cluster(config: &StoreSettings, keys: &Keys, single: &[(&str, f64)], mut seq: u64) {
    let cluster = RedisCluster::start(3, 0);
    let masters = cluster.masters();
    let config = StoreSettings {
        selection: StoreSelection::RedisCluster(cluster.url()),
        ..config.clone()
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let store = RedisStore::open(&config, &cluster.url(), tx).expect("opening the cluster store");
    let opened_at_start = StoreMetrics::get(&store.metrics().connections_opened);
    let owners = cluster.slot_owners();
    for &port in &masters {
        let on_port = players(CLUSTER_N).filter(|&p| owners[usize::from(player_slot(p))] == port);
        claim_leases(&mut cluster.connection(port), keys, on_port);
    }
    let mut probes: Vec<redis::Connection> = masters
        .iter()
        .map(|&port| cluster.connection(port))
        .collect();
    let trips = StoreMetrics::get(&store.metrics().round_trips);
    let mut saves = Vec::new();
    for run in 0..=RUNS {
        seq += 1;
        let sample = store_save(&store, &rx, &mut probes, CLUSTER_N, seq);
        if run > 0 {
            saves.push(sample);
        }
    }
    let save_trips = (StoreMetrics::get(&store.metrics().round_trips) - trips) / (RUNS as u64 + 1);
    let trips = StoreMetrics::get(&store.metrics().round_trips);
    let mut refreshes = Vec::new();
    for run in 0..=RUNS {
        let sample = store_refresh(&store, &rx, &mut probes, CLUSTER_N);
        if run > 0 {
            refreshes.push(sample);
        }
    }
    let refresh_trips =
        (StoreMetrics::get(&store.metrics().round_trips) - trips) / (RUNS as u64 + 1);
    let opened = StoreMetrics::get(&store.metrics().connections_opened);
    println!(
        "Redis Cluster, {} masters on this machine (redis+cluster://), N = {CLUSTER_N}, same run:",
        masters.len()
    );
    println!(
        "| operation | cluster | single redis-server | cluster / single | round trips per batch (all masters) | CPU per op: redis-servers (sum) / store |"
    );
    println!("|---|---|---|---|---|---|");
    for (op, samples, trips) in [
        ("save", saves, save_trips),
        ("refresh", refreshes, refresh_trips),
    ] {
        let row = Row::new(op, CLUSTER_N, 0.0, 0.0, samples, trips, 0.0);
        let single = single
            .iter()
            .find(|(o, _)| *o == op)
            .map_or(f64::NAN, |(_, c)| *c);
        println!(
            "| {op} | {} | {} | {:.2} | {} | {:.1} µs / {:.1} µs |",
            per_sec(row.c),
            per_sec(single),
            row.c / single,
            row.trips,
            row.redis_us,
            row.store_us
        );
    }
    println!(
        "connections opened by the store: {opened_at_start} at start (one per master per lane, plus one per lane to read the slot table), {} during the runs",
        opened - opened_at_start
    );
    drop(store);
}

/// One row of the table.
struct Row {
    op: &'static str,
    n: u64,
    a: f64,
    b: f64,
    c: f64,
    trips: u64,
    redis_us: f64,
    store_us: f64,
    script_us: f64,
}

impl Row {
    fn new(
        op: &'static str,
        n: u64,
        a: f64,
        b: f64,
        samples: Vec<Sample>,
        trips: u64,
        script_us: f64,
    ) -> Self {
        let ops = (n * samples.len() as u64) as f64;
        let redis_us = samples.iter().map(|s| s.redis_cpu).sum::<f64>() * 1e6 / ops;
        let store_us = samples.iter().map(|s| s.own_cpu).sum::<f64>() * 1e6 / ops;
        Self {
            op,
            n,
            a,
            b,
            c: median(samples.iter().map(|s| s.rate).collect()),
            trips,
            redis_us,
            store_us,
            script_us,
        }
    }
}

/// One (c) run: its rate and the CPU seconds spent between submit and completion by
/// redis-server and by this process (the bench thread only waits: that is the store).
struct Sample {
    rate: f64,
    redis_cpu: f64,
    own_cpu: f64,
}

/// A ~1 KiB record like a game's: position, vitals, progress and an inventory of items
/// whose values differ per player and per save (all typed components, as registered ones
/// are).
fn snapshot(player: PlayerId, seq: u64) -> PlayerSnapshot {
    let mut state = player.0.wrapping_mul(6364136223846793005).wrapping_add(seq);
    let mut next = move |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let inventory = Inventory {
        items: (0..INVENTORY_ITEMS)
            .map(|slot| Item {
                id: format!("item-{}", next(100_000)),
                qty: next(100) as u32,
                slot: slot as u32,
            })
            .collect(),
    };
    PlayerSnapshot {
        player,
        seq,
        sections: vec![
            (
                "position",
                Box::new(Position {
                    x: next(10_000) as f32 / 7.0,
                    y: next(10_000) as f32 / 3.0,
                }),
            ),
            (
                "vitals",
                Box::new(Vitals {
                    hp: next(100) as u32,
                    max_hp: 100,
                }),
            ),
            (
                "progress",
                Box::new(Progress {
                    xp: next(1_000_000),
                    level: next(60) as u32,
                }),
            ),
            ("inventory", Box::new(inventory)),
        ],
        unknown: BTreeMap::new(),
    }
}

#[derive(serde::Serialize)]
struct Inventory {
    items: Vec<Item>,
}

#[derive(serde::Serialize)]
struct Item {
    id: String,
    qty: u32,
    slot: u32,
}

fn players(n: u64) -> impl Iterator<Item = PlayerId> {
    (1..=n).map(PlayerId)
}

/// Claims the leases of `players` for this bench's store, in one pipeline on `conn`.
fn claim_leases(
    conn: &mut redis::Connection,
    keys: &Keys,
    players: impl Iterator<Item = PlayerId>,
) {
    let mut pipe = redis::pipe();
    for p in players {
        pipe.cmd("SET")
            .arg(keys.session(p))
            .arg(OWNER)
            .arg("PX")
            .arg(600_000)
            .ignore();
    }
    pipe.exec(conn).expect("claiming leases");
}

/// A plain client, as the replaced system had.
fn client(redis: &RedisServer) -> redis::Client {
    redis::Client::open(redis.url()).unwrap()
}

/// A connection with `TCP_NODELAY`, as the store uses (pipelines otherwise stall on Nagle's
/// algorithm + delayed ACKs).
fn fast_connection(redis: &RedisServer) -> redis::Connection {
    use redis::IntoConnectionInfo;
    let info = redis
        .url()
        .into_connection_info()
        .unwrap()
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    redis::Client::open(info).unwrap().get_connection().unwrap()
}

/// (a) save, as the replaced system did it: a new connection for every call. Per player:
/// connect + `GET` the lease, compare in the client, then connect + `SET` the record
/// (verify-then-write, not atomic).
fn per_call_connection_verify_then_save(redis: &RedisServer, keys: &Keys, n: u64, seq: u64) -> f64 {
    let client = client(redis);
    let records: Vec<Vec<u8>> = players(n)
        .map(|p| snapshot(p, seq).encode().unwrap())
        .collect();
    let started = Instant::now();
    for (p, record) in players(n).zip(&records) {
        let owner: Option<String> = redis::cmd("GET")
            .arg(keys.session(p))
            .query(&mut client.get_connection().expect("connect"))
            .unwrap();
        if owner.as_deref() == Some(OWNER) {
            redis::cmd("SET")
                .arg(keys.player(p))
                .arg(record.as_slice())
                .exec(&mut client.get_connection().expect("connect"))
                .unwrap();
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// (a) refresh, as the replaced system did it: one TTL refresh per session on a new
/// connection (connect + `PEXPIRE`; it did not even check the owner).
fn per_call_connection_refresh(redis: &RedisServer, keys: &Keys, n: u64) -> f64 {
    let client = client(redis);
    let started = Instant::now();
    for p in players(n) {
        redis::cmd("PEXPIRE")
            .arg(keys.session(p))
            .arg(600_000)
            .exec(&mut client.get_connection().expect("connect"))
            .unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// (b) save: one connection, `EVALSHA save.lua` per player, one at a time.
fn persistent_one_at_a_time_save(
    redis: &RedisServer,
    keys: &Keys,
    scripts: &Scripts,
    n: u64,
    seq: u64,
) -> f64 {
    let mut conn = fast_connection(redis);
    scripts.save.load(&mut conn).unwrap();
    let records: Vec<Vec<u8>> = players(n)
        .map(|p| snapshot(p, seq).encode().unwrap())
        .collect();
    let started = Instant::now();
    for (p, record) in players(n).zip(&records) {
        let outcome: Vec<String> = redis::cmd("EVALSHA")
            .arg(scripts.save.get_hash())
            .arg(2)
            .arg(keys.player(p))
            .arg(keys.session(p))
            .arg(OWNER)
            .arg(600_000)
            .arg(seq)
            .arg(seq - 1)
            .arg(record.as_slice())
            .arg("0")
            .query(&mut conn)
            .unwrap();
        assert_eq!(outcome, ["saved"]);
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// (b) refresh: one connection, `EVALSHA refresh.lua` per player, one at a time.
fn persistent_one_at_a_time_refresh(
    redis: &RedisServer,
    keys: &Keys,
    scripts: &Scripts,
    n: u64,
) -> f64 {
    let mut conn = fast_connection(redis);
    scripts.refresh.load(&mut conn).unwrap();
    let started = Instant::now();
    for p in players(n) {
        let refreshed: Vec<i64> = redis::cmd("EVALSHA")
            .arg(scripts.refresh.get_hash())
            .arg(1)
            .arg(keys.session(p))
            .arg(OWNER)
            .arg(600_000)
            .query(&mut conn)
            .unwrap();
        assert_eq!(refreshed, [1]);
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Submits `job` (of `n` players) and waits for its completion: the rate, and the CPU
/// redis-server and this process spent meanwhile.
fn timed_job(
    store: &RedisStore,
    rx: &Receiver<StoreCompletion>,
    probes: &mut [redis::Connection],
    n: u64,
    job: StoreJob,
) -> (Sample, StoreCompletion) {
    let (redis_before, own_before) = (redis_cpu(probes), own_cpu());
    let started = Instant::now();
    store.submit(job);
    let completion = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("completion");
    let elapsed = started.elapsed();
    let sample = Sample {
        rate: n as f64 / elapsed.as_secs_f64(),
        own_cpu: own_cpu() - own_before,
        redis_cpu: redis_cpu(probes) - redis_before,
    };
    (sample, completion)
}

/// (c) save: one `StoreJob::Save` of n players through the store, submit to completion.
fn store_save(
    store: &RedisStore,
    rx: &Receiver<StoreCompletion>,
    probes: &mut [redis::Connection],
    n: u64,
    seq: u64,
) -> Sample {
    let items: Vec<SaveItem> = players(n)
        .map(|p| SaveItem {
            entity: Entity::PLACEHOLDER,
            snapshot: snapshot(p, seq),
            release: false,
            last_stored_seq: seq - 1,
        })
        .collect();
    let job = StoreJob::Save {
        lane: Lane::Periodic,
        batch: seq,
        items,
    };
    let (sample, completion) = timed_job(store, rx, probes, n, job);
    let StoreCompletion::Saved { results, .. } = completion else {
        panic!("expected saves")
    };
    assert!(results.iter().all(|r| r.outcome == SaveOutcome::Saved));
    sample
}

/// (c) refresh: one `StoreJob::Refresh` of n leases through the store.
fn store_refresh(
    store: &RedisStore,
    rx: &Receiver<StoreCompletion>,
    probes: &mut [redis::Connection],
    n: u64,
) -> Sample {
    let leases: Vec<LeaseItem> = players(n)
        .map(|player| LeaseItem {
            entity: Entity::PLACEHOLDER,
            player,
        })
        .collect();
    let job = StoreJob::Refresh { batch: 1, leases };
    let (sample, completion) = timed_job(store, rx, probes, n, job);
    let StoreCompletion::Refreshed { results, .. } = completion else {
        panic!("expected refreshes")
    };
    assert!(
        results
            .iter()
            .all(|r| r.outcome == RefreshOutcome::Refreshed)
    );
    sample
}

/// Reference: pipelined `EVALSHA save.lua`, one player per call, in chunks of 1000, records
/// encoded beforehand.
fn raw_pipelined_evalsha(
    redis: &RedisServer,
    keys: &Keys,
    scripts: &Scripts,
    probe: &mut redis::Connection,
    n: u64,
    seq: u64,
) -> (f64, f64) {
    let mut conn = fast_connection(redis);
    scripts.save.load(&mut conn).unwrap();
    let records: Vec<(PlayerId, Vec<u8>)> = players(n)
        .map(|p| (p, snapshot(p, seq).encode().unwrap()))
        .collect();
    let redis_before = redis_cpu(from_mut(probe));
    let started = Instant::now();
    for chunk in records.chunks(1000) {
        let mut pipe = redis::pipe();
        for (p, record) in chunk {
            pipe.cmd("EVALSHA")
                .arg(scripts.save.get_hash())
                .arg(2)
                .arg(keys.player(*p))
                .arg(keys.session(*p))
                .arg(OWNER)
                .arg(600_000)
                .arg(seq)
                .arg(seq - 1)
                .arg(record.as_slice())
                .arg("0");
        }
        let outcomes: Vec<Vec<String>> = pipe.query(&mut conn).unwrap();
        assert!(outcomes.iter().all(|o| o == &["saved"]));
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    (
        rate,
        (redis_cpu(from_mut(probe)) - redis_before) * 1e6 / n as f64,
    )
}

/// Seconds to encode one snapshot (median of 5 rounds of `n`), as the store does per save.
fn encoding_cost(n: u64) -> f64 {
    let snapshots: Vec<PlayerSnapshot> = players(n).map(|p| snapshot(p, 1)).collect();
    let rounds = (0..5)
        .map(|_| {
            let started = Instant::now();
            let bytes: usize = snapshots.iter().map(|s| s.encode().unwrap().len()).sum();
            std::hint::black_box(bytes);
            started.elapsed().as_secs_f64() / n as f64
        })
        .collect();
    median(rounds)
}

/// Clears redis-server's per-command statistics (`CONFIG RESETSTAT`).
fn reset_command_stats(conn: &mut redis::Connection) {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec(conn)
        .expect("CONFIG RESETSTAT");
}

/// Microseconds redis-server spent executing `EVALSHA`s since the last reset, per player of
/// `ops` (`INFO commandstats`: execution only, without reading, parsing and replying).
fn script_execution_us(conn: &mut redis::Connection, ops: u64) -> f64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    let total: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|stats| stats.split(',').find_map(|f| f.strip_prefix("usec=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    total / ops as f64
}

/// CPU seconds the redis-servers behind `probes` have used (main thread and I/O), from
/// `INFO cpu`, summed.
fn redis_cpu(probes: &mut [redis::Connection]) -> f64 {
    probes
        .iter_mut()
        .map(|conn| {
            let info: String = redis::cmd("INFO").arg("cpu").query(conn).unwrap();
            info.lines()
                .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

/// CPU seconds this process's threads have used, from /proc/self/task/*/schedstat
/// (nanoseconds on CPU; finer than the 10 ms ticks of /proc/self/stat).
fn own_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1e9
}

/// Reference: pipelined `EVALSHA refresh.lua`, one lease per call, in chunks of 1000.
fn raw_pipelined_refresh(
    redis: &RedisServer,
    keys: &Keys,
    scripts: &Scripts,
    probe: &mut redis::Connection,
    n: u64,
) -> (f64, f64) {
    let mut conn = fast_connection(redis);
    scripts.refresh.load(&mut conn).unwrap();
    let sessions: Vec<String> = players(n).map(|p| keys.session(p)).collect();
    let redis_before = redis_cpu(from_mut(probe));
    let started = Instant::now();
    for chunk in sessions.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("EVALSHA")
                .arg(scripts.refresh.get_hash())
                .arg(1)
                .arg(key)
                .arg(OWNER)
                .arg(600_000);
        }
        let refreshed: Vec<Vec<i64>> = pipe.query(&mut conn).unwrap();
        assert!(refreshed.iter().all(|r| r == &[1]));
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    (
        rate,
        (redis_cpu(from_mut(probe)) - redis_before) * 1e6 / n as f64,
    )
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn per_sec(rate: f64) -> String {
    if rate >= 1_000_000.0 {
        format!("{:.2}M/s", rate / 1_000_000.0)
    } else if rate >= 1_000.0 {
        format!("{:.1}k/s", rate / 1_000.0)
    } else {
        format!("{rate:.0}/s")
    }
}
