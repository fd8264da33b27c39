//! Linked saves against plain saves: what writing two players together costs.
//!
//! Run: `cargo bench --profile dev --bench linked_saves` (starts its own redis-server and a
//! local 3-master Redis Cluster on free ports; needs `redis-server` and `redis-cli` on PATH).
//! Prints a table of latencies (submit to completion, through the real `RedisStore`,
//! records encoded on the store's task) and asserts only that every save succeeded:
//! - a plain save of one player, and of two players in one job (`StoreJob::Save`);
//! - a linked save of two players whose keys share a slot (`StoreJob::SaveTogether`: one
//!   `save_together.lua` call);
//! - on the cluster, a linked save of two players in different slots (the three-step commit:
//!   prepare on each slot, the decision, finish on each slot, delete the decision).

#[path = "../tests/common/redis_cluster.rs"]
#[allow(dead_code)]
mod redis_cluster;
#[path = "../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bevy_ecs::entity::Entity;
use crossbeam_channel::Receiver;
use hearth::demo_game::Progress;
use hearth::store::redis::cluster::player_slot;
use hearth::store::{RedisStore, StoreSettings};
use hearth_components::{PlayerId, StoreSelection};
use hearth_systems::storage::{
    Lane, PlayerSnapshot, PlayerStore, SaveItem, SaveOutcome, StoreCompletion, StoreJob,
};

/// Saves of each kind measured (after as many to warm up).
const SAMPLES: usize = 500;

struct Bench {
    store: RedisStore,
    completions: Receiver<StoreCompletion>,
    seq: u64,
}

impl Bench {
    fn open(selection: StoreSelection, url: &str) -> Self {
        let config = StoreSettings {
            selection,
            instance_id: "bench".into(),
            store_timeout: Duration::from_secs(10),
            ..StoreSettings::default()
        };
        let (tx, completions) = crossbeam_channel::unbounded();
        let store = RedisStore::open(&config, url, tx).expect("opening the Redis store");
        Self {
            store,
            completions,
            seq: 0,
        }
    }

    fn run(&self, job: StoreJob) -> StoreCompletion {
        self.store.submit(job);
        self.completions
            .recv_timeout(Duration::from_secs(60))
            .expect("the store answered")
    }

    fn join(&self, player: PlayerId) {
        match self.run(StoreJob::Join { ticket: 1, player }) {
            StoreCompletion::Joined { result: Ok(_), .. } => {}
            other => panic!("join of {player} refused: {other:?}"),
        }
    }

    /// One job saving `players` (together or not), timed; panics unless all saved.
    fn save(&mut self, players: &[PlayerId], together: bool) -> Duration {
        self.seq += 1;
        let items = players
            .iter()
            .map(|&player| SaveItem {
                entity: Entity::PLACEHOLDER,
                snapshot: PlayerSnapshot {
                    player,
                    seq: self.seq,
                    sections: vec![(
                        "progress",
                        Box::new(Progress {
                            xp: self.seq,
                            level: 1,
                        }),
                    )],
                    unknown: BTreeMap::new(),
                },
                release: false,
                last_stored_seq: self.seq - 1,
            })
            .collect();
        let job = if together {
            StoreJob::SaveTogether { batch: 1, items }
        } else {
            StoreJob::Save {
                lane: Lane::Interactive,
                batch: 1,
                items,
            }
        };
        let started = Instant::now();
        let done = self.run(job);
        let took = started.elapsed();
        match done {
            StoreCompletion::Saved { results, .. } => assert!(
                results.iter().all(|r| r.outcome == SaveOutcome::Saved),
                "{results:?}"
            ),
            other => panic!("expected saves, got {other:?}"),
        }
        took
    }

    /// Median and p99 of `SAMPLES` saves of `players`, after as many unmeasured.
    fn measure(&mut self, players: &[PlayerId], together: bool) -> (Duration, Duration) {
        for _ in 0..SAMPLES {
            self.save(players, together);
        }
        let mut samples: Vec<Duration> =
            (0..SAMPLES).map(|_| self.save(players, together)).collect();
        samples.sort_unstable();
        (samples[SAMPLES / 2], samples[SAMPLES * 99 / 100])
    }
}

fn row(what: &str, (p50, p99): (Duration, Duration)) {
    println!(
        "| {what} | {:.0} | {:.0} |",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

/// Four players: 1 and a player of 1's slot, and two players of two other slots.
fn players() -> ([PlayerId; 2], [PlayerId; 2]) {
    let one = PlayerId(1);
    let same = (2..)
        .map(PlayerId)
        .find(|p| player_slot(*p) == player_slot(one));
    let mut others = (2..)
        .map(PlayerId)
        .filter(|p| player_slot(*p) != player_slot(one));
    let first = others.next().unwrap();
    let second = others
        .find(|p| player_slot(*p) != player_slot(first))
        .unwrap();
    ([one, same.unwrap()], [first, second])
}

fn main() {
    let (same_slot, across) = players();
    println!("| save (submit to completion) | p50 µs | p99 µs |");
    println!("|---|---|---|");
    let redis = redis_server::RedisServer::start();
    let mut single = Bench::open(StoreSelection::Redis(redis.url()), &redis.url());
    for &p in same_slot.iter().chain(&across) {
        single.join(p);
    }
    row(
        "one Redis: plain save, 1 player",
        single.measure(&same_slot[..1], false),
    );
    row(
        "one Redis: plain save, 2 players in one job",
        single.measure(&across, false),
    );
    row(
        "one Redis: linked save, 2 players",
        single.measure(&across, true),
    );
    drop(single);
    drop(redis);

    let cluster = redis_cluster::RedisCluster::start(3, 0);
    let url = cluster.url();
    let mut bench = Bench::open(StoreSelection::RedisCluster(url.clone()), &url);
    for &p in same_slot.iter().chain(&across) {
        bench.join(p);
    }
    row(
        "cluster: plain save, 1 player",
        bench.measure(&same_slot[..1], false),
    );
    row(
        "cluster: plain save, 2 players of 2 slots in one job",
        bench.measure(&across, false),
    );
    row(
        "cluster: linked save, 2 players of 1 slot",
        bench.measure(&same_slot, true),
    );
    row(
        "cluster: linked save, 2 players of 2 slots (3-step commit)",
        bench.measure(&across, true),
    );
}
