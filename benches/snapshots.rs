//! Cost of building every player's snapshot (players within the view radius) with the
//! spatial grid, against the naive all-pairs scan it replaces, for 1,000 and 10,000 players
//! spread uniformly over the world; and of encoding them as protocol lines: as a
//! game-defined message (a `GameLine` of the demo game's `Snapshot`, what the server sends,
//! encoded by the connection task that writes it) against serialising a plain tagged struct plus a newline (what the core's own
//! `ServerMessage::to_line` does, and what snapshots cost before they became the demo game's
//! messages).
//!
//! Run: `cargo bench --bench snapshots`

use std::hint::black_box;
use std::time::{Duration, Instant};

use hearth::components::protocol::GameLine;
use hearth::demo_game::{SNAPSHOT_LIMIT, Snapshot, SnapshotEntry, VIEW_RADIUS, WORLD_HALF_EXTENT};
use hearth_systems::spatial::SpatialGrid;

/// Deterministic positions (a small LCG), uniform over the world.
fn positions(n: usize) -> Vec<(f32, f32, u64)> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 * WORLD_HALF_EXTENT - WORLD_HALF_EXTENT
    };
    (0..n as u64).map(|id| (next(), next(), id)).collect()
}

fn with_grid(players: &[(f32, f32, u64)], grid: &mut SpatialGrid<u64>) -> usize {
    grid.clear();
    for &(x, y, id) in players {
        grid.insert(x, y, id);
    }
    let mut near = Vec::new();
    let mut total = 0;
    for &(x, y, _) in players {
        grid.near(x, y, VIEW_RADIUS, SNAPSHOT_LIMIT, &mut near);
        total += near.len();
    }
    total
}

fn all_pairs(players: &[(f32, f32, u64)]) -> usize {
    let r2 = VIEW_RADIUS * VIEW_RADIUS;
    let mut total = 0;
    for &(x, y, _) in players {
        let mut seen = 0;
        for &(px, py, _) in players {
            if (px - x).powi(2) + (py - y).powi(2) <= r2 && seen < SNAPSHOT_LIMIT {
                seen += 1;
            }
        }
        total += seen;
    }
    total
}

fn median_of(rounds: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut samples = Vec::with_capacity(rounds);
    let mut result = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        result = black_box(f());
        samples.push(started.elapsed());
    }
    samples.sort();
    (samples[rounds / 2], result)
}

/// The shape snapshots were serialised in before (an internally tagged enum variant).
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Tagged<'a> {
    Snapshot {
        tick: u64,
        players: &'a [SnapshotEntry],
    },
}

/// What every player's snapshot lists: the players near it, as the grid returns them.
fn near_lists(players: &[(f32, f32, u64)]) -> Vec<Vec<(f32, f32, u64)>> {
    let mut grid = SpatialGrid::new(VIEW_RADIUS, WORLD_HALF_EXTENT);
    for &(x, y, id) in players {
        grid.insert(x, y, id);
    }
    players
        .iter()
        .map(|&(x, y, _)| {
            let mut near = Vec::new();
            grid.near(x, y, VIEW_RADIUS, SNAPSHOT_LIMIT, &mut near);
            near
        })
        .collect()
}

fn entries(near: &[(f32, f32, u64)]) -> Vec<SnapshotEntry> {
    near.iter()
        .map(|&(x, y, id)| SnapshotEntry { id, x, y })
        .collect()
}

/// Each snapshot built and encoded as the demo game does now: a game line.
fn encode_as_game_lines(all: &[Vec<(f32, f32, u64)>]) -> usize {
    all.iter()
        .map(|near| {
            let snapshot = Snapshot {
                tick: 42,
                players: entries(near),
            };
            let line = GameLine::new("snapshot", snapshot);
            line.line().expect("a snapshot encodes").len()
        })
        .sum()
}

/// Each snapshot built and encoded as before: a tagged enum variant plus a newline.
fn encode_as_tagged_lines(all: &[Vec<(f32, f32, u64)>]) -> usize {
    all.iter()
        .map(|near| {
            let players = entries(near);
            let mut line = serde_json::to_string(&Tagged::Snapshot {
                tick: 42,
                players: &players,
            })
            .expect("a snapshot encodes");
            line.push('\n');
            line.len()
        })
        .sum()
}

fn main() {
    println!(
        "snapshot building for every player (radius {VIEW_RADIUS}, limit {SNAPSHOT_LIMIT}), median of rounds"
    );
    println!(
        "{:>8}  {:>14}  {:>14}  {:>8}",
        "players", "spatial grid", "all pairs", "speedup"
    );
    for n in [1_000, 10_000] {
        let players = positions(n);
        let mut grid = SpatialGrid::new(VIEW_RADIUS, WORLD_HALF_EXTENT);
        let (grid_time, grid_found) = median_of(21, || with_grid(&players, &mut grid));
        let rounds = if n > 5_000 { 3 } else { 11 };
        let (naive_time, naive_found) = median_of(rounds, || all_pairs(&players));
        assert_eq!(grid_found, naive_found, "both find the same neighbours");
        println!(
            "{n:>8}  {grid_time:>14.3?}  {naive_time:>14.3?}  {:>7.0}x",
            naive_time.as_secs_f64() / grid_time.as_secs_f64()
        );
    }
    println!();
    println!(
        "building and encoding every player's snapshot as one protocol line (players clustered on a 4-unit lattice), median of 21 rounds"
    );
    println!(
        "{:>8}  {:>12}  {:>16}  {:>16}  {:>10}",
        "players", "per snapshot", "game line", "tagged struct", "game/tagged"
    );
    for n in [1_000, 10_000] {
        let clustered: Vec<(f32, f32, u64)> = positions(n)
            .into_iter()
            .map(|(x, y, id)| ((x / 40.0).round() * 4.0, (y / 40.0).round() * 4.0, id))
            .collect();
        let all = near_lists(&clustered);
        let per_snapshot = all.iter().map(Vec::len).sum::<usize>() / all.len();
        let (game, game_bytes) = median_of(21, || encode_as_game_lines(&all));
        let (tagged, tagged_bytes) = median_of(21, || encode_as_tagged_lines(&all));
        assert_eq!(game_bytes, tagged_bytes, "the same lines, byte for byte");
        println!(
            "{n:>8}  {per_snapshot:>12}  {game:>16.3?}  {tagged:>16.3?}  {:>10.2}",
            game.as_secs_f64() / tagged.as_secs_f64()
        );
    }
}
