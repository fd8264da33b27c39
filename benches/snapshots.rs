//! Cost of building every player's snapshot (players within the view radius) with the
//! spatial grid, against the naive all-pairs scan it replaces, for 1,000 and 10,000 players
//! spread uniformly over the world; and of one snapshot round as protocol lines, spread and
//! all in one spot: with each snapshot owning its entries (the demo game before) against
//! entries shared by the round (the demo game now, each entry encoded once), split into the
//! tick's part (building the messages) and the connection tasks' part (encoding them).
//!
//! Run: `cargo bench --bench snapshots`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth::components::protocol::GameLine;
use hearth::demo_game::{SNAPSHOT_LIMIT, Snapshot, SnapshotEntry, VIEW_RADIUS, WORLD_HALF_EXTENT};
use hearth_systems::spatial::SpatialGrid;
use hearth_systems::{EntryList, SharedEntries};

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

/// A snapshot with its own copy of every entry: what the demo game sent before entries were
/// shared (the same bytes on the wire).
#[derive(serde::Serialize)]
struct OwnEntriesSnapshot {
    tick: u64,
    players: Vec<SnapshotEntry>,
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

/// Each snapshot with its own entries, as game lines (the tick part: building them).
fn own_entry_lines(all: &[Vec<(f32, f32, u64)>]) -> Vec<GameLine> {
    all.iter()
        .map(|near| {
            let players = near
                .iter()
                .map(|&(x, y, id)| SnapshotEntry { id, x, y })
                .collect();
            GameLine::new("snapshot", OwnEntriesSnapshot { tick: 42, players })
        })
        .collect()
}

/// Each snapshot listing shared entries, as game lines, the way the demo game builds them
/// (the tick part: one entry table per round, indexes per recipient).
fn shared_entry_lines(all: &[Vec<(f32, f32, u64)>]) -> Vec<GameLine> {
    let mut entries = SharedEntries::default();
    // By player (ids are 0..n here, as entity indexes are dense in the server).
    let mut entry_of = vec![None; all.len()];
    let picks: Vec<Vec<u32>> = all
        .iter()
        .map(|near| {
            near.iter()
                .map(|&(x, y, id)| {
                    *entry_of[id as usize]
                        .get_or_insert_with(|| entries.push(SnapshotEntry { id, x, y }))
                })
                .collect()
        })
        .collect();
    let entries = Arc::new(entries);
    picks
        .into_iter()
        .map(|picks| {
            let players = EntryList::new(&entries, picks);
            GameLine::new("snapshot", Snapshot { tick: 42, players })
        })
        .collect()
}

/// The connection tasks' part: every line encoded (and its bytes counted).
fn encode(lines: &[GameLine]) -> usize {
    lines
        .iter()
        .map(|line| line.line().expect("a snapshot encodes").len())
        .sum()
}

/// Median time to build a round's lines (tick) and to encode them (connection tasks), and
/// the bytes encoded.
fn round_costs(rounds: usize, build: impl Fn() -> Vec<GameLine>) -> (Duration, Duration, usize) {
    let (mut on_tick, mut off_tick) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let lines = black_box(build());
        on_tick.push(started.elapsed());
        let started = Instant::now();
        bytes = black_box(encode(&lines));
        off_tick.push(started.elapsed());
    }
    on_tick.sort();
    off_tick.sort();
    (on_tick[rounds / 2], off_tick[rounds / 2], bytes)
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
        "one snapshot round (every player's snapshot as a protocol line), median of 21 rounds: built on the tick / encoded by the connection tasks"
    );
    println!(
        "{:>8}  {:>10}  {:>12}  {:>26}  {:>26}  {:>8}",
        "players",
        "placement",
        "per snapshot",
        "own entries (before)",
        "shared entries",
        "encoding"
    );
    for n in [1_000, 5_000, 10_000] {
        let spread = positions(n);
        // Everyone within a few units of the origin: every snapshot is full.
        let clustered: Vec<(f32, f32, u64)> = spread
            .iter()
            .map(|&(x, y, id)| (x / 1000.0, y / 1000.0, id))
            .collect();
        for (placement, players) in [("spread", &spread), ("clustered", &clustered)] {
            let all = near_lists(players);
            let per_snapshot = all.iter().map(Vec::len).sum::<usize>() / all.len();
            let (own_tick, own_encode, own_bytes) = round_costs(21, || own_entry_lines(&all));
            let (shared_tick, shared_encode, shared_bytes) =
                round_costs(21, || shared_entry_lines(&all));
            assert_eq!(own_bytes, shared_bytes, "the same lines, byte for byte");
            println!(
                "{n:>8}  {placement:>10}  {per_snapshot:>12}  {:>26}  {:>26}  {:>7.1}x",
                format!("{own_tick:.3?} / {own_encode:.3?}"),
                format!("{shared_tick:.3?} / {shared_encode:.3?}"),
                own_encode.as_secs_f64() / shared_encode.as_secs_f64()
            );
        }
    }
}
