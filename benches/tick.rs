//! Tick cost of persistence for 10,000 players, on the memory store and on a real Redis
//! (a redis-server this bench starts on a free port), with frames of 1/60 s (the default
//! tick rate):
//! - baseline frame (nothing changed),
//! - frame in which every player changed (mark-dirty),
//! - the whole-batch flush (`flush_now`: all 10,000 dirty players snapshotted in one frame,
//!   what the flush did every interval before it was spread),
//! - the spread flush: every player changed once, then every frame of one full flush
//!   interval timed (each player is saved once, a slice every 100 ms); the worst frame is
//!   what persistence adds at most. The lease refresh is paced too (a slice every 100 ms,
//!   each lease once per `lease_refresh_interval`): the frames handing a slice of leases to
//!   the store are timed, with the most leases one frame sent.
//!
//! - a frame after every player moved: the demo game replicates `Position` (issue 17), so the
//!   replication round that follows copies 10,000 changed positions into the shared round
//!   (every frame above takes its rounds too: one every 50 ms).
//!
//! On Redis it also prints redis-server's CPU time (`INFO cpu`) and the round trips for
//! saving 10,000 players once: in one batch, spread in 100 ms slices, and spread one slice
//! per frame (the alternative the slice length was chosen against).
//!
//! Goal (docs/benchmarks.md): no frame of the spread flush adds more than 1 ms over the
//! baseline frame, on either store; no frame exceeds the tick budget.
//! Run: `cargo bench --bench tick`

#[allow(dead_code)]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy_ecs::entity::Entity;
use bevy_time::TimeUpdateStrategy;
use hearth::demo_game::Progress;
use hearth::testing::{TestServer, test_config};
use hearth_components::{PlayerId, Position};
use hearth_systems::{FlushSchedule, FlushStats, StorePort};
use redis_server::RedisServer;

const PLAYERS: u64 = 10_000;
const ROUNDS: usize = 30;

fn touch_all(server: &mut TestServer, entities: &[Entity]) {
    for &e in entities {
        server
            .world_mut()
            .get_mut::<Progress>(e)
            .expect("player")
            .xp += 1;
    }
}

/// Moves every player a little (back and forth, so they stay where they are on average).
fn move_all(server: &mut TestServer, entities: &[Entity], round: usize) {
    let step = if round.is_multiple_of(2) { 0.25 } else { -0.25 };
    for &e in entities {
        server.world_mut().get_mut::<Position>(e).expect("player").x += step;
    }
}

fn timed_frame(server: &mut TestServer) -> Duration {
    let started = Instant::now();
    server.app().update();
    let took = started.elapsed();
    server.wait_for_store();
    took
}

fn median(samples: &[Duration]) -> Duration {
    let mut samples = samples.to_vec();
    samples.sort();
    samples[samples.len() / 2]
}

fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut samples = samples.to_vec();
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn p_max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

fn flushed(server: &TestServer) -> u64 {
    server.world().resource::<FlushStats>().players_flushed
}

fn refreshes(server: &TestServer) -> u64 {
    let metrics = server.world().resource::<StorePort>().metrics();
    metrics.refreshes.load(Ordering::Relaxed) + metrics.refresh_errors.load(Ordering::Relaxed)
}

fn round_trips(server: &TestServer) -> u64 {
    let port = server.world().resource::<StorePort>();
    port.metrics().round_trips.load(Ordering::Relaxed)
}

/// CPU seconds redis-server has used (main thread and I/O), from `INFO cpu`.
fn redis_cpu(redis: Option<&RedisServer>) -> f64 {
    let Some(redis) = redis else { return 0.0 };
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query(&mut redis.connection())
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// What saving every player once cost the store: redis-server CPU and round trips.
struct StoreCost {
    redis_cpu: f64,
    round_trips: u64,
}

impl StoreCost {
    fn start(server: &TestServer, redis: Option<&RedisServer>) -> Self {
        Self {
            redis_cpu: redis_cpu(redis),
            round_trips: round_trips(server),
        }
    }

    fn since(self, server: &TestServer, redis: Option<&RedisServer>, times: usize) -> Self {
        Self {
            redis_cpu: (redis_cpu(redis) - self.redis_cpu) / times as f64,
            round_trips: (round_trips(server) - self.round_trips) / times as u64,
        }
    }

    fn line(&self, what: &str) -> String {
        format!(
            "  {what:<44} redis-server CPU {:>7.1} ms, {:>4} round trips",
            self.redis_cpu * 1e3,
            self.round_trips
        )
    }
}

/// One interval of the spread flush after every player changed once: every frame's time,
/// the most saves one frame submitted, and the frames that refreshed leases.
struct Spread {
    frames: Vec<Duration>,
    /// The frames that handed a slice to the store.
    slice_frames: Vec<Duration>,
    most_saves: u64,
    /// Players saved within the interval (all, unless the store failed or was slow).
    saved: u64,
    refresh_frames: Vec<Duration>,
    /// The most leases one frame handed to the store.
    most_refreshes: u64,
    cost: StoreCost,
}

fn spread_interval(
    server: &mut TestServer,
    entities: &[Entity],
    redis: Option<&RedisServer>,
    frame: Duration,
    interval: Duration,
) -> Spread {
    touch_all(server, entities);
    timed_frame(server); // marks everyone dirty
    let cost = StoreCost::start(server, redis);
    let (mut frames, mut slice_frames, mut refresh_frames) = (Vec::new(), Vec::new(), Vec::new());
    let (mut most_saves, mut most_refreshes) = (0, 0);
    let before = flushed(server);
    let count = (interval.as_secs_f64() / frame.as_secs_f64()).ceil() as usize + 2;
    for _ in 0..count {
        let (saved, refreshed) = (flushed(server), refreshes(server));
        let took = timed_frame(server);
        most_saves = most_saves.max(flushed(server) - saved);
        if flushed(server) > saved {
            slice_frames.push(took);
        }
        if refreshes(server) > refreshed {
            refresh_frames.push(took);
            most_refreshes = most_refreshes.max(refreshes(server) - refreshed);
        }
        frames.push(took);
    }
    server.app().update(); // apply the last results
    server.wait_for_store();
    Spread {
        frames,
        slice_frames,
        most_saves,
        saved: flushed(server) - before,
        refresh_frames,
        most_refreshes,
        cost: cost.since(server, redis, 1),
    }
}

fn measure(store: &str, mut server: TestServer, redis: Option<&RedisServer>) {
    let config = test_config("bench");
    let frame = Duration::from_secs_f64(1.0 / config.tick.tick_rate);
    let budget = frame;
    server
        .app()
        .insert_resource(TimeUpdateStrategy::ManualDuration(frame));
    let ids: Vec<PlayerId> = (1..=PLAYERS).map(PlayerId).collect();
    let entities = server.join_many(&ids);
    for _ in 0..5 {
        server.frame();
    }

    // The whole-batch flush, as every interval flushed before.
    let (mut base, mut mark, mut flush) = (Vec::new(), Vec::new(), Vec::new());
    let mut batch_cost = StoreCost {
        redis_cpu: 0.0,
        round_trips: 0,
    };
    for _ in 0..ROUNDS {
        base.push(timed_frame(&mut server));
        touch_all(&mut server, &entities);
        mark.push(timed_frame(&mut server));
        server
            .world_mut()
            .resource_mut::<FlushSchedule>()
            .flush_now();
        let cost = StoreCost::start(&server, redis);
        flush.push(timed_frame(&mut server));
        let cost = cost.since(&server, redis, 1);
        batch_cost.redis_cpu += cost.redis_cpu / ROUNDS as f64;
        batch_cost.round_trips = cost.round_trips;
        server.frame(); // apply the save results
    }
    assert_eq!(
        server.world().resource::<FlushStats>().last_batch_size as u64,
        PLAYERS,
        "every player was in the batch"
    );

    // Every player moved: the next replication round (at most 50 ms, three frames, later)
    // copies 10,000 changed positions; the slowest of the three frames is the one that did.
    let mut moved = Vec::new();
    for round in 0..ROUNDS {
        move_all(&mut server, &entities, round);
        let frames: Vec<Duration> = (0..3).map(|_| timed_frame(&mut server)).collect();
        moved.push(p_max(&frames));
        server
            .world_mut()
            .resource_mut::<FlushSchedule>()
            .flush_now();
        server.frame();
        server.frame(); // the save results
    }

    // The noise floor: as many frames with nothing to save.
    let count =
        (config.persistence.flush_interval.as_secs_f64() / frame.as_secs_f64()).ceil() as usize + 2;
    let quiet: Vec<Duration> = (0..count).map(|_| timed_frame(&mut server)).collect();

    // The spread flush over one interval, slices of 100 ms (the default).
    let spread = spread_interval(
        &mut server,
        &entities,
        redis,
        frame,
        config.persistence.flush_interval,
    );

    let (b, m, f) = (median(&base), median(&mark), median(&flush));
    println!(
        "tick cost, {PLAYERS} players, {store} store, frames of {frame:.3?} (median / p99 / max)"
    );
    println!(
        "  baseline frame (no change), {ROUNDS}          {:>9.3?} / {:>9} / {:>9.3?}",
        b,
        "",
        p_max(&base)
    );
    println!(
        "  frame marking {PLAYERS} players dirty, {ROUNDS} {:>9.3?} / {:>9} / {:>9.3?}  (+{:.3?} over baseline)",
        m,
        "",
        p_max(&mark),
        m.saturating_sub(b)
    );
    println!(
        "  whole-batch flush frame (flush_now), {ROUNDS}  {:>9.3?} / {:>9} / {:>9.3?}  (+{:.3?} median, +{:.3?} worst over baseline)",
        f,
        "",
        p_max(&flush),
        f.saturating_sub(b),
        p_max(&flush).saturating_sub(b)
    );
    println!(
        "  frame after {PLAYERS} players moved (replication round + marking dirty), {ROUNDS} {:>9.3?} / {:>9} / {:>9.3?}  (+{:.3?} over marking dirty alone)",
        median(&moved),
        "",
        p_max(&moved),
        median(&moved).saturating_sub(m)
    );
    let s = &spread.frames;
    let row = |what: &str, frames: &[Duration]| {
        println!(
            "  {what:<44} {:>9.3?} / {:>9.3?} / {:>9.3?}  (+{:.3?} worst over baseline median)",
            median(frames),
            quantile(frames, 0.99),
            p_max(frames),
            p_max(frames).saturating_sub(b)
        )
    };
    row(
        &format!("no change, {} frames (noise floor)", quiet.len()),
        &quiet,
    );
    row(
        &format!(
            "spread flush, all {} frames of {:?}",
            s.len(),
            config.persistence.flush_interval
        ),
        s,
    );
    row(
        &format!(
            "  of which the {} handing over a slice",
            spread.slice_frames.len()
        ),
        &spread.slice_frames,
    );
    println!(
        "    most saves in one frame: {}; saved within the interval: {} of {PLAYERS}",
        spread.most_saves, spread.saved
    );
    row(
        &format!(
            "  of which the {} refreshing leases",
            spread.refresh_frames.len()
        ),
        &spread.refresh_frames,
    );
    println!(
        "    most leases refreshed in one frame: {} of {PLAYERS}",
        spread.most_refreshes
    );
    let longest = p_max(&flush).max(p_max(s));
    println!(
        "  longest frame {longest:.3?} against the tick budget of {budget:.3?} ({})",
        if longest <= budget {
            "within budget"
        } else {
            "OVER BUDGET"
        }
    );
    if redis.is_some() {
        // The same spread with one slice per frame (60 round trips a second).
        server
            .world_mut()
            .insert_resource(FlushSchedule::with_slice(
                config.persistence.flush_interval,
                frame,
            ));
        let per_frame = spread_interval(
            &mut server,
            &entities,
            redis,
            frame,
            config.persistence.flush_interval,
        );
        println!("  saving {PLAYERS} players once:");
        println!("{}", batch_cost.line("in one batch (flush_now)"));
        println!("{}", spread.cost.line("spread, a slice every 100 ms"));
        println!("{}", per_frame.cost.line("spread, a slice every frame"));
        println!(
            "    (slice every frame: worst frame {:.3?}, most saves in one frame {})",
            p_max(&per_frame.frames),
            per_frame.most_saves
        );
    }
}

fn main() {
    measure("memory", TestServer::new(), None);
    let redis = RedisServer::start();
    measure(
        "redis",
        TestServer::on_redis(&redis.url(), test_config("bench")),
        Some(&redis),
    );
}
