//! `--zones FILE`: bots that walk back and forth across the borders of a zone map (docs/
//! protocol.md, "Zones: handoff"), following every `handoff` to the next server with its
//! resume token, and what that costs them:
//!
//! - **handoffs** completed, and the **handoff gap**: from the last update the source sent
//!   to the first the destination sent (what a player sees as a stall);
//! - **lost players**: bots whose handoff could not be followed (the token refused, the
//!   destination never answered within [`FOLLOW_TIMEOUT`]);
//! - **double holds**: updates the source still sent on a connection after its `handoff`
//!   (the source would still be playing the player that the destination now holds);
//! - **remote-entity staleness**: how much later a bot sees another bot across the border
//!   (a remote entity, shared between the servers through Redis) at a position than that bot
//!   saw itself there from its own server. Both are receive times in this one process, so
//!   the figure is what border sharing adds to a local view, clocks aside.
//!
//! The map is read with the rule the server uses (a point on a border belongs to the zone
//! whose `min` includes it); the swarm reads it itself, like any client: it depends on the
//! wire only.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::stats::histogram;

/// How long a bot tries to resume at a handoff's destination before it counts as lost.
pub(crate) const FOLLOW_TIMEOUT: Duration = Duration::from_secs(10);

/// Own positions remembered per bot for the staleness match (about 6 s of walking at 5
/// moves/s).
const HISTORY: usize = 32;

/// A remote sighting and its bot's own report of the same position are matched within this
/// long of each other (in either order); an own report older than this is an earlier
/// loop's. So staleness above it is not measured: it counts as unmatched (the server drops a
/// neighbour's entities after 1 s of silence anyway).
const MATCH_WINDOW_US: u64 = 1_000_000;

/// Remote sightings kept per bot while its own report of that position has not arrived.
const PENDING: usize = 16;

/// One zone of the map file.
#[derive(Clone, Debug, Deserialize)]
pub struct Zone {
    pub name: String,
    pub min: [f32; 2],
    pub max: [f32; 2],
}

#[derive(Deserialize)]
struct File {
    zone: Vec<Zone>,
}

/// A stretch of border two zones share: the line `axis = at` (axis 0: `x = at`), from
/// `from` to `to` along the other axis.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Border {
    axis: usize,
    at: f32,
    from: f32,
    to: f32,
}

/// The zone map the servers share, and its borders.
#[derive(Clone, Debug)]
pub struct ZoneMap {
    pub path: PathBuf,
    zones: Vec<Zone>,
    world_max: [f32; 2],
    borders: Vec<Border>,
}

impl ZoneMap {
    /// Reads `path`; refuses a map without a border to cross.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let file: File =
            toml::from_str(text).map_err(|e| format!("{}: not a zone map: {e}", path.display()))?;
        let world_max = [0, 1].map(|i| {
            file.zone
                .iter()
                .map(|z| z.max[i])
                .fold(f32::NEG_INFINITY, f32::max)
        });
        let mut borders = Vec::new();
        for a in &file.zone {
            for b in &file.zone {
                for axis in 0..2 {
                    let other = 1 - axis;
                    let from = a.min[other].max(b.min[other]);
                    let to = a.max[other].min(b.max[other]);
                    if a.max[axis] == b.min[axis] && from < to {
                        borders.push(Border {
                            axis,
                            at: a.max[axis],
                            from,
                            to,
                        });
                    }
                }
            }
        }
        if borders.is_empty() {
            return Err(format!(
                "{}: no two zones share a border: there is nothing to cross",
                path.display()
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            zones: file.zone,
            world_max,
            borders,
        })
    }

    /// The index of the zone `(x, y)` is in (`min <= p < max`, or on `max` at the world's
    /// edge), as the server decides it.
    pub(crate) fn zone_at(&self, x: f32, y: f32) -> Option<usize> {
        let point = [x, y];
        self.zones.iter().position(|zone| {
            (0..2).all(|i| {
                zone.min[i] <= point[i]
                    && (point[i] < zone.max[i]
                        || (point[i] == zone.max[i] && zone.max[i] == self.world_max[i]))
            })
        })
    }

    /// Where bot `n` crosses: a random point of one of the borders (bots are dealt to the
    /// borders in turn), away from its ends by `depth` where the border is long enough, and
    /// the unit vector across it.
    pub(crate) fn crossing(&self, n: usize, depth: f64) -> Crossing {
        let border = self.borders[n % self.borders.len()];
        let (from, to) = (f64::from(border.from), f64::from(border.to));
        let margin = depth.min((to - from) / 4.0);
        let along = from + margin + fastrand::f64() * (to - from - 2.0 * margin);
        let at = f64::from(border.at);
        let (point, normal) = if border.axis == 0 {
            ((at, along), (1.0, 0.0))
        } else {
            ((along, at), (0.0, 1.0))
        };
        Crossing {
            point,
            normal,
            depth,
            corner: AtomicUsize::new(NO_CORNER),
            resync: Mutex::new(None),
        }
    }
}

/// A bot's course across its border: a loop through four corners, `depth` past the border
/// on either side and one unit apart along it (across, side step, back, side step), so no
/// position repeats within one loop (what the staleness match needs: the same position on
/// the way out and back would be ambiguous).
pub(crate) struct Crossing {
    point: (f64, f64),
    normal: (f64, f64),
    depth: f64,
    /// The corner walked to now (0-3), [`NO_CORNER`] before the first leg.
    corner: AtomicUsize,
    /// Where the server has the bot, when that differs from where its moves lead (it was
    /// held at a border): the writer walks on from there.
    resync: Mutex<Option<(f64, f64)>>,
}

const NO_CORNER: usize = usize::MAX;

impl Crossing {
    /// Corner `k` of the loop in world coordinates: (across, along) from the border point.
    fn corner_at(&self, k: usize) -> (f64, f64) {
        let (across, along) = [(-1.0, 0.0), (1.0, 0.0), (1.0, 1.0), (-1.0, 1.0)][k % 4];
        let across = across * self.depth;
        let tangent = (self.normal.1, self.normal.0);
        (
            self.point.0 + self.normal.0 * across + tangent.0 * along,
            self.point.1 + self.normal.1 * across + tangent.1 * along,
        )
    }

    /// Where the bot walks now, from `position`: the end of its current leg. The first leg
    /// goes to the corner nearest `position`.
    pub(crate) fn target(&self, position: (f64, f64)) -> (f64, f64) {
        let mut corner = self.corner.load(Relaxed);
        if corner == NO_CORNER {
            let distance = |k: usize| {
                let c = self.corner_at(k);
                (c.0 - position.0).hypot(c.1 - position.1)
            };
            corner = (0..4)
                .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
                .unwrap_or(0);
            self.corner.store(corner, Relaxed);
        }
        self.corner_at(corner)
    }

    /// The bot reached the end of its leg: on to the next corner.
    pub(crate) fn turn(&self) {
        let corner = self.corner.load(Relaxed);
        let next = if corner == NO_CORNER {
            0
        } else {
            (corner + 1) % 4
        };
        self.corner.store(next, Relaxed);
    }

    /// The server has the bot at `at`, not where its moves lead.
    pub(crate) fn resync(&self, at: (f64, f64)) {
        *self.resync.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// Where the server has the bot, if that changed since the last call.
    pub(crate) fn take_resync(&self) -> Option<(f64, f64)> {
        self.resync.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The zone figures every bot adds to.
pub(crate) struct ZoneStats {
    pub(crate) map: ZoneMap,
    /// Handoffs followed to the end (the destination's first update), ever.
    pub(crate) handoffs: AtomicU64,
    /// `handoff` answers to a login or resume (the player was stored in another zone).
    pub(crate) login_handoffs: AtomicU64,
    /// Bots whose handoff could not be followed.
    pub(crate) lost: AtomicU64,
    /// Updates a source sent on a connection after its `handoff`.
    pub(crate) updates_after_handoff: AtomicU64,
    /// `zone_unavailable` refusals (a move toward a zone without a server).
    pub(crate) zone_refusals: AtomicU64,
    /// Remote sightings whose position the watched bot never saw itself at within
    /// [`MATCH_WINDOW_US`].
    pub(crate) unmatched: AtomicU64,
    /// Remote sightings that arrived before the bot's own report of that position (counted
    /// as staleness 0).
    pub(crate) remote_first: AtomicU64,
    histograms: Mutex<Windows>,
    /// Player id → bot number, as bots learn their ids.
    players: Mutex<std::collections::HashMap<u64, usize>>,
    /// Per bot: its own positions as its server reported them, and remote sightings
    /// waiting for one.
    own: Vec<Mutex<Own>>,
}

/// A position (as `f32` bits) and when it was received (µs since the run began).
type Seen = ((u32, u32), u64);

/// One bot's side of the staleness match, oldest first.
#[derive(Default)]
struct Own {
    reports: VecDeque<Seen>,
    pending: VecDeque<Seen>,
}

struct Windows {
    gap: Histogram<u64>,
    /// The gap's parts: last source update → `handoff`; `handoff` → `logged_in` at the
    /// destination; → its first update.
    to_handoff: Histogram<u64>,
    follow: Histogram<u64>,
    first_update: Histogram<u64>,
    /// Between two updates of one connection (no handoff between): the reference.
    interval: Histogram<u64>,
    staleness: Histogram<u64>,
}

/// When each step of one handoff happened, as a bot saw it.
pub(crate) struct HandoffTimes {
    pub(crate) last_update: Instant,
    pub(crate) handoff: Instant,
    pub(crate) logged_in: Instant,
    pub(crate) first_update: Instant,
}

/// The zone figures of one hold.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ZoneFigures {
    /// Handoffs completed during the hold.
    pub handoffs: u64,
    pub handoffs_per_s: f64,
    /// The handoff gap, in milliseconds (see the module).
    pub gap_p50_ms: Option<f64>,
    pub gap_p99_ms: Option<f64>,
    pub gap_max_ms: Option<f64>,
    /// The gap's parts, p50 and p99: the source's last update to its `handoff`; the
    /// `handoff` to the destination's `logged_in` (connect and resume); that to the
    /// destination's first update.
    pub to_handoff_ms: [Option<f64>; 2],
    pub follow_ms: [Option<f64>; 2],
    pub first_update_ms: [Option<f64>; 2],
    /// The reference, p50 and p99: the time between two updates of one connection, no
    /// handoff between (a round period when nothing is late).
    pub interval_ms: [Option<f64>; 2],
    /// Remote-entity staleness, in milliseconds (see the module), and its samples.
    pub staleness_p50_ms: Option<f64>,
    pub staleness_p99_ms: Option<f64>,
    pub staleness_max_ms: Option<f64>,
    pub staleness_samples: u64,
    pub staleness_unmatched: u64,
    /// Sightings that arrived before the watched bot's own report (counted as 0).
    pub staleness_remote_first: u64,
    /// Over the whole step (ramp and hold).
    pub login_handoffs: u64,
    pub lost: u64,
    pub updates_after_handoff: u64,
    pub zone_refusals: u64,
}

/// A copy of the counters, to take the hold's share.
#[derive(Clone, Copy, Default)]
pub(crate) struct ZoneCounters {
    handoffs: u64,
    login_handoffs: u64,
    lost: u64,
    updates_after_handoff: u64,
    zone_refusals: u64,
    unmatched: u64,
    remote_first: u64,
}

fn ms(h: &Histogram<u64>, quantile: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(quantile) as f64 / 1000.0)
}

fn position_key(at: (f32, f32)) -> (u32, u32) {
    (at.0.to_bits(), at.1.to_bits())
}

impl ZoneStats {
    pub(crate) fn new(map: ZoneMap, bots: usize) -> Self {
        Self {
            map,
            handoffs: AtomicU64::new(0),
            login_handoffs: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            updates_after_handoff: AtomicU64::new(0),
            zone_refusals: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            remote_first: AtomicU64::new(0),
            histograms: Mutex::new(Windows {
                gap: histogram(),
                to_handoff: histogram(),
                follow: histogram(),
                first_update: histogram(),
                interval: histogram(),
                staleness: histogram(),
            }),
            players: Mutex::new(std::collections::HashMap::new()),
            own: (0..bots).map(|_| Mutex::new(Own::default())).collect(),
        }
    }

    /// Bot `n` is player `player`.
    pub(crate) fn player_is(&self, player: u64, n: usize) {
        self.players
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(player, n);
    }

    /// The bot playing `player`, if it is one of ours.
    pub(crate) fn bot_of(&self, player: u64) -> Option<usize> {
        self.players
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&player)
            .copied()
    }

    fn staleness(&self, us: u64) {
        self.histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .staleness
            .saturating_record(us.max(1));
    }

    /// Bot `n`'s server reported it at `at` (received at `now_us`); remote sightings of that
    /// position that came first are matched now.
    pub(crate) fn own_position(&self, n: usize, at: (f32, f32), now_us: u64) {
        let key = position_key(at);
        let (mut first, mut unmatched) = (0, 0);
        {
            let mut own = self.own[n].lock().unwrap_or_else(|p| p.into_inner());
            if own.reports.len() == HISTORY {
                own.reports.pop_front();
            }
            own.reports.push_back((key, now_us));
            own.pending.retain(|&(k, t)| {
                let keep = now_us.saturating_sub(t) <= MATCH_WINDOW_US;
                if k == key && keep {
                    first += 1;
                    return false;
                }
                unmatched += u64::from(!keep);
                keep
            });
        }
        for _ in 0..first {
            self.staleness(0);
        }
        self.remote_first.fetch_add(first, Relaxed);
        self.unmatched.fetch_add(unmatched, Relaxed);
    }

    /// Another bot saw bot `n` at `at` as a remote entity, at `now_us`: records how much
    /// later than bot `n` saw itself there, or waits for that report (see
    /// [`MATCH_WINDOW_US`]).
    pub(crate) fn remote_seen(&self, n: usize, at: (f32, f32), now_us: u64) {
        let key = position_key(at);
        let seen_own = {
            let mut own = self.own[n].lock().unwrap_or_else(|p| p.into_inner());
            let seen = own
                .reports
                .iter()
                .rev()
                .take_while(|&&(_, t)| now_us.saturating_sub(t) <= MATCH_WINDOW_US)
                .find(|(k, _)| *k == key)
                .map(|&(_, t)| t);
            if seen.is_none() {
                if own.pending.len() == PENDING {
                    own.pending.pop_front();
                    self.unmatched.fetch_add(1, Relaxed);
                }
                own.pending.push_back((key, now_us));
            }
            seen
        };
        if let Some(t) = seen_own {
            self.staleness(now_us.saturating_sub(t));
        }
    }

    /// Two updates of one connection arrived `us` apart (no handoff between them).
    pub(crate) fn update_interval(&self, us: u64) {
        self.histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .interval
            .saturating_record(us.max(1));
    }

    /// A handoff completed.
    pub(crate) fn handoff_done(&self, times: &HandoffTimes) {
        let us = |from: Instant, to: Instant| (to - from).as_micros() as u64;
        self.handoffs.fetch_add(1, Relaxed);
        let mut guard = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let windows = &mut *guard;
        for (histogram, from, to) in [
            (&mut windows.gap, times.last_update, times.first_update),
            (&mut windows.to_handoff, times.last_update, times.handoff),
            (&mut windows.follow, times.handoff, times.logged_in),
            (
                &mut windows.first_update,
                times.logged_in,
                times.first_update,
            ),
        ] {
            histogram.saturating_record(us(from, to).max(1));
        }
    }

    pub(crate) fn counters(&self) -> ZoneCounters {
        ZoneCounters {
            handoffs: self.handoffs.load(Relaxed),
            login_handoffs: self.login_handoffs.load(Relaxed),
            lost: self.lost.load(Relaxed),
            updates_after_handoff: self.updates_after_handoff.load(Relaxed),
            zone_refusals: self.zone_refusals.load(Relaxed),
            unmatched: self.unmatched.load(Relaxed),
            remote_first: self.remote_first.load(Relaxed),
        }
    }

    /// A hold starts: its gaps and staleness count from now.
    pub(crate) fn start_hold(&self) {
        let mut guard = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let windows = &mut *guard;
        for histogram in [
            &mut windows.gap,
            &mut windows.to_handoff,
            &mut windows.follow,
            &mut windows.first_update,
            &mut windows.interval,
            &mut windows.staleness,
        ] {
            histogram.reset();
        }
    }

    /// The figures of a hold of `hold_s` that began at `at_hold`, within a step that began at
    /// `at_step`.
    pub(crate) fn figures(
        &self,
        at_step: &ZoneCounters,
        at_hold: &ZoneCounters,
        hold_s: f64,
    ) -> ZoneFigures {
        let now = self.counters();
        let windows = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let handoffs = now.handoffs - at_hold.handoffs;
        ZoneFigures {
            handoffs,
            handoffs_per_s: handoffs as f64 / hold_s.max(1e-3),
            gap_p50_ms: ms(&windows.gap, 0.5),
            gap_p99_ms: ms(&windows.gap, 0.99),
            gap_max_ms: ms(&windows.gap, 1.0),
            to_handoff_ms: [0.5, 0.99].map(|q| ms(&windows.to_handoff, q)),
            follow_ms: [0.5, 0.99].map(|q| ms(&windows.follow, q)),
            first_update_ms: [0.5, 0.99].map(|q| ms(&windows.first_update, q)),
            interval_ms: [0.5, 0.99].map(|q| ms(&windows.interval, q)),
            staleness_p50_ms: ms(&windows.staleness, 0.5),
            staleness_p99_ms: ms(&windows.staleness, 0.99),
            staleness_max_ms: ms(&windows.staleness, 1.0),
            staleness_samples: windows.staleness.len(),
            staleness_unmatched: now.unmatched - at_hold.unmatched,
            staleness_remote_first: now.remote_first - at_hold.remote_first,
            login_handoffs: now.login_handoffs - at_step.login_handoffs,
            lost: now.lost - at_step.lost,
            updates_after_handoff: now.updates_after_handoff - at_step.updates_after_handoff,
            zone_refusals: now.zone_refusals - at_step.zone_refusals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> Result<ZoneMap, String> {
        ZoneMap::parse(Path::new("zones.toml"), text)
    }

    const THREE: &str = r#"
        [[zone]]
        name = "west"
        min = [-1000, -1000]
        max = [0, 1000]
        [[zone]]
        name = "north-east"
        min = [0, 0]
        max = [1000, 1000]
        [[zone]]
        name = "south-east"
        min = [0, -1000]
        max = [1000, 0]
    "#;

    #[test]
    fn borders_are_found_and_points_placed_as_the_server_places_them() {
        let map = map(THREE).unwrap();
        let mut borders = map.borders.clone();
        borders.sort_by(|a, b| (a.axis, a.from).partial_cmp(&(b.axis, b.from)).unwrap());
        assert_eq!(
            borders,
            [
                Border {
                    axis: 0,
                    at: 0.0,
                    from: -1000.0,
                    to: 0.0
                },
                Border {
                    axis: 0,
                    at: 0.0,
                    from: 0.0,
                    to: 1000.0
                },
                Border {
                    axis: 1,
                    at: 0.0,
                    from: 0.0,
                    to: 1000.0
                },
            ]
        );
        assert_eq!(
            map.zone_at(0.0, 0.0),
            Some(1),
            "a border point: the zone whose min holds it"
        );
        assert_eq!(map.zone_at(-0.5, 3.0), Some(0));
        assert_eq!(
            map.zone_at(1000.0, -1000.0),
            Some(2),
            "the world's edge is in"
        );
        assert_eq!(map.zone_at(1000.5, 0.0), None);
        let one = "[[zone]]\nname = \"all\"\nmin = [-1, -1]\nmax = [1, 1]\n";
        let refused = ZoneMap::parse(Path::new("one.toml"), one).unwrap_err();
        assert!(refused.contains("nothing to cross"), "{refused}");
    }

    #[test]
    fn a_crossing_loops_across_its_border_without_repeating_a_position() {
        let map = map(THREE).unwrap();
        let zone = |p: (f64, f64)| map.zone_at(p.0 as f32, p.1 as f32);
        for n in 0..30 {
            let crossing = map.crossing(n, 10.0);
            let start = crossing.corner_at(0);
            let mut corners = vec![crossing.target((start.0 + 0.1, start.1 + 0.1))];
            for _ in 0..4 {
                crossing.turn();
                corners.push(crossing.target(corners[corners.len() - 1]));
            }
            assert_eq!(corners[0], corners[4], "bot {n}: a loop of four corners");
            let crossings = (0..4)
                .filter(|&k| zone(corners[k]) != zone(corners[k + 1]))
                .count();
            assert_eq!(crossings, 2, "bot {n}: {corners:?}");
            let legs: Vec<f64> = (0..4)
                .map(|k| (corners[k].0 - corners[k + 1].0).hypot(corners[k].1 - corners[k + 1].1))
                .collect();
            legs.iter()
                .zip(
                    [20.0, 1.0, 20.0, 1.0]
                        .iter()
                        .cycle()
                        .skip(legs[0].lt(&2.0) as usize),
                )
                .for_each(|(leg, expected)| {
                    assert!((leg - expected).abs() < 1e-9, "bot {n}: {legs:?}")
                });
        }
    }

    #[test]
    fn staleness_is_matched_to_the_latest_own_report_of_that_position_in_either_order() {
        let stats = ZoneStats::new(map(THREE).unwrap(), 2);
        stats.own_position(0, (1.0, 2.0), 1_000);
        stats.own_position(0, (1.5, 2.0), 2_000);
        stats.own_position(0, (1.0, 2.0), 9_000);
        stats.remote_seen(0, (1.0, 2.0), 12_000);
        // Seen remotely before its own report came: no later than it.
        stats.remote_seen(0, (7.0, 2.0), 13_000);
        stats.own_position(0, (7.0, 2.0), 14_000);
        // An own report of an earlier loop is too old to match; this one never comes.
        stats.remote_seen(0, (1.5, 2.0), 2_000_000);
        stats.own_position(0, (8.0, 2.0), 3_100_000);
        let zero = ZoneCounters::default();
        let figures = stats.figures(&zero, &zero, 1.0);
        assert_eq!(figures.staleness_samples, 2);
        assert_eq!(figures.staleness_remote_first, 1);
        let max = figures.staleness_max_ms.expect("samples");
        assert!(
            (max - 3.0).abs() < 0.01,
            "3 ms after its latest own report: {max}"
        );
        assert_eq!(figures.staleness_unmatched, 1);
    }
}
