//! Replication costs, printed (no assertions):
//! - the tick's side: a frame that takes a round (10,000 replicated players, a quarter of
//!   them moved since the previous round: 5 moves/s at 20 rounds/s) against the same frame
//!   without replication (the baseline, in the same run);
//! - the connection's side: composing, encoding (binary) and confirming one client's update
//!   with 5,000 players in range, per client per round, and the view's memory;
//! - bytes per player per second in a 64-player crowd at 20 rounds/s moving 5 times a second
//!   (binary and JSON), computed from the composed updates.
//!
//! Run: `cargo bench --bench replication`

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::App;
use bevy_ecs::prelude::*;
use bevy_time::{TimePlugin, TimeUpdateStrategy};
use hearth_components::{PlayerId, Position};
use hearth_systems::replication::{
    ClientView, QuantisedPositionEncoding, ReplicationAppExt, ReplicationFeed, ReplicationPlugin,
    ReplicationRound, write_binary, write_json,
};

const ROUNDS: usize = 40;

/// A xorshift generator: the bench needs cheap, repeatable randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f32 {
        (self.next() % 1_000_000) as f32 / 1_000_000.0
    }
}

fn app(replicated: bool) -> App {
    let mut app = App::new();
    app.add_plugins(TimePlugin)
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
            50,
        )));
    if replicated {
        app.replicate_with::<Position, QuantisedPositionEncoding>()
            .replicate::<PlayerId>();
    }
    app.update();
    app
}

/// Spawns `n` players at positions from `at`.
fn spawn(app: &mut App, n: u64, mut at: impl FnMut(u64) -> (f32, f32)) -> Vec<Entity> {
    (0..n)
        .map(|i| {
            let (x, y) = at(i);
            app.world_mut()
                .spawn((PlayerId(i + 1), Position { x, y }))
                .id()
        })
        .collect()
}

/// Moves a quarter of the players one step (what 5 moves/s look like at 20 rounds/s).
fn move_quarter(app: &mut App, players: &[Entity], rng: &mut Rng) {
    for &e in players {
        if rng.next().is_multiple_of(4) {
            let mut p = app.world_mut().get_mut::<Position>(e).unwrap();
            p.x = (p.x + rng.unit() - 0.5).clamp(-1000.0, 1000.0);
            p.y = (p.y + rng.unit() - 0.5).clamp(-1000.0, 1000.0);
        }
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn tick_side() {
    println!("tick side: 10,000 players spread over the world, a quarter moving per round");
    for replicated in [false, true] {
        let mut app = app(replicated);
        let mut rng = Rng(7);
        let players = spawn(&mut app, 10_000, |_| (0.0, 0.0));
        for &e in &players {
            let mut p = app.world_mut().get_mut::<Position>(e).unwrap();
            p.x = rng.unit() * 2000.0 - 1000.0;
            p.y = rng.unit() * 2000.0 - 1000.0;
        }
        app.update();
        let mut samples = Vec::new();
        for _ in 0..ROUNDS {
            move_quarter(&mut app, &players, &mut rng);
            let started = Instant::now();
            app.update();
            samples.push(started.elapsed());
        }
        let label = if replicated {
            "with replication (every frame takes a round)"
        } else {
            "baseline, no replication"
        };
        println!(
            "  {label:46} median {:>8.1?}  p99 {:>8.1?}",
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.99)
        );
    }
}

fn latest(app: &mut App) -> Arc<ReplicationRound> {
    app.update();
    app.world().resource::<ReplicationFeed>().latest()
}

fn compose_side() {
    println!("connection side: 5,000 players in one spot (all within the radius)");
    let mut app = app(true);
    let mut rng = Rng(11);
    let players = spawn(&mut app, 5_000, |i| {
        ((i % 70) as f32 * 0.5 - 17.0, (i / 70) as f32 * 0.5 - 17.0)
    });
    let budget = ReplicationPlugin::default().settings.round_budget();
    let viewers: Vec<u64> = (1..=200).collect();
    let mut views: Vec<ClientView> = viewers.iter().map(|_| ClientView::new()).collect();
    let mut samples = Vec::new();
    let mut out = Vec::new();
    for round in 0..ROUNDS {
        move_quarter(&mut app, &players, &mut rng);
        let r = latest(&mut app);
        let started = Instant::now();
        for (view, &viewer) in views.iter_mut().zip(&viewers) {
            out.clear();
            let update = view
                .compose(&r, PlayerId(viewer), budget)
                .expect("in the round");
            write_binary(&update, &mut out).expect("encodes");
            view.confirm(update);
        }
        // The first round also builds the round's grid (once per round, shared).
        if round > 0 {
            samples.push(started.elapsed() / viewers.len() as u32);
        }
    }
    let heap: usize = views.iter().map(ClientView::heap_bytes).sum::<usize>() / views.len();
    println!(
        "  compose + binary encode + confirm, per client per round: median {:?}, p99 {:?}",
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99)
    );
    println!(
        "  view memory per client: about {} bytes ({} entities known)",
        heap,
        views[0].known()
    );
}

fn crowd_bytes() {
    println!("a 64-player crowd, 20 rounds/s, each player moving 5 times a second");
    let mut app = app(true);
    let mut rng = Rng(5);
    let players = spawn(&mut app, 64, |i| {
        ((i % 8) as f32 * 3.0, (i / 8) as f32 * 3.0)
    });
    let budget = ReplicationPlugin::default().settings.round_budget();
    let mut views: Vec<ClientView> = players.iter().map(|_| ClientView::new()).collect();
    let (mut binary, mut json) = (0usize, 0usize);
    let warmup = 40;
    let measured = 200;
    for round in 0..warmup + measured {
        move_quarter(&mut app, &players, &mut rng);
        let r = latest(&mut app);
        for (i, view) in views.iter_mut().enumerate() {
            let update = view.compose(&r, PlayerId(i as u64 + 1), budget).unwrap();
            let mut bytes = Vec::new();
            write_binary(&update, &mut bytes).unwrap();
            let mut text = String::new();
            write_json(&update, &mut text).unwrap();
            if round >= warmup {
                binary += bytes.len();
                json += text.len();
            }
            view.confirm(update);
        }
    }
    let seconds = measured as f64 / 20.0;
    let per = |total: usize| total as f64 / players.len() as f64 / seconds;
    println!(
        "  binary: {:.0} bytes/s per player; JSON: {:.0} bytes/s per player (budget {} bytes/s, binary measure)",
        per(binary),
        per(json),
        ReplicationPlugin::default().settings.bytes_per_second
    );
}

fn main() {
    tick_side();
    compose_side();
    crowd_bytes();
}
