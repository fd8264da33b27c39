//! Tick cost of persistence for 10,000 players, on the memory store and on a real Redis
//! (a redis-server this bench starts on a free port):
//! - baseline frame (nothing changed),
//! - frame in which every player changed (mark-dirty),
//! - frame that snapshots all 10,000 dirty players and hands the batch to the store.
//!
//! Goal (docs/benchmarks.md): the flush snapshot adds under 5 ms to the tick, no flush frame
//! exceeds the tick budget (1 / tick_rate), and a Redis flush costs the tick no more than a
//! memory one (the tick does no Redis I/O).
//! Run: `cargo bench --bench tick`

#[allow(dead_code)]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use bevy_ecs::entity::Entity;
use hearth::testing::{TestServer, test_config};
use hearth_components::{PlayerId, Progress};
use hearth_systems::FlushSchedule;

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

fn timed_frame(server: &mut TestServer) -> Duration {
    let started = Instant::now();
    server.app().update();
    let took = started.elapsed();
    server.wait_for_store();
    took
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn p_max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

fn measure(store: &str, mut server: TestServer) {
    let ids: Vec<PlayerId> = (1..=PLAYERS).map(PlayerId).collect();
    let entities = server.join_many(&ids);
    for _ in 0..5 {
        server.frame();
    }
    let (mut base, mut mark, mut flush) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        base.push(timed_frame(&mut server));
        touch_all(&mut server, &entities);
        mark.push(timed_frame(&mut server));
        server
            .world_mut()
            .resource_mut::<FlushSchedule>()
            .flush_now();
        flush.push(timed_frame(&mut server));
        server.frame(); // apply the save results
    }
    let stats = server
        .world()
        .resource::<hearth_systems::FlushStats>()
        .clone();
    assert_eq!(
        stats.last_batch_size as u64, PLAYERS,
        "every player was in the batch"
    );
    let (b, m, f) = (
        median(base.clone()),
        median(mark.clone()),
        median(flush.clone()),
    );
    println!("tick cost, {PLAYERS} players, {store} store, {ROUNDS} rounds (median / max)");
    println!(
        "  baseline frame (no change)            {:>9.3?} / {:>9.3?}",
        b,
        p_max(&base)
    );
    println!(
        "  frame marking {PLAYERS} players dirty     {:>9.3?} / {:>9.3?}  (+{:.3?} over baseline)",
        m,
        p_max(&mark),
        m.saturating_sub(b)
    );
    println!(
        "  frame flushing {PLAYERS} dirty players    {:>9.3?} / {:>9.3?}  (+{:.3?} over baseline; goal < 5ms)",
        f,
        p_max(&flush),
        f.saturating_sub(b)
    );
    let budget = Duration::from_secs_f64(1.0 / test_config("bench").tick_rate);
    let longest = p_max(&flush);
    println!(
        "  longest flush frame {longest:.3?} against the tick budget of {budget:.3?} ({})",
        if longest <= budget {
            "within budget"
        } else {
            "OVER BUDGET"
        }
    );
}

fn main() {
    measure("memory", TestServer::new());
    let redis = redis_server::RedisServer::start();
    measure(
        "redis",
        TestServer::on_redis(&redis.url(), test_config("bench")),
    );
}
