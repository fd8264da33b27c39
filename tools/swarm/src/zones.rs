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
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Deserialize;

/// How long a bot tries to resume at a handoff's destination before it counts as lost.
pub(crate) const FOLLOW_TIMEOUT: Duration = Duration::from_secs(10);

/// Own positions remembered per bot for the staleness match (about 6 s of walking at 5
/// moves/s, longer than any staleness worth measuring).
const HISTORY: usize = 32;

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
            side: AtomicI32::new(0),
            resync: Mutex::new(None),
        }
    }
}

/// A bot's course across its border: to `depth` past it on one side, then the other.
pub(crate) struct Crossing {
    point: (f64, f64),
    normal: (f64, f64),
    depth: f64,
    /// The side it walks to now: 1 or -1 (0 before it chose).
    side: AtomicI32,
    /// Where the server has the bot, when that differs from where its moves lead (it was
    /// held at a border): the writer walks on from there.
    resync: Mutex<Option<(f64, f64)>>,
}

impl Crossing {
    /// Where the bot walks now, from `position`: the end of its current leg. The first leg
    /// goes to the side `position` is on.
    pub(crate) fn target(&self, position: (f64, f64)) -> (f64, f64) {
        let mut side = self.side.load(Relaxed);
        if side == 0 {
            let across = (position.0 - self.point.0) * self.normal.0
                + (position.1 - self.point.1) * self.normal.1;
            side = if across < 0.0 { -1 } else { 1 };
            self.side.store(side, Relaxed);
        }
        let reach = self.depth * f64::from(side);
        (
            self.point.0 + self.normal.0 * reach,
            self.point.1 + self.normal.1 * reach,
        )
    }

    /// The server has the bot at `at`, not where its moves lead.
    pub(crate) fn resync(&self, at: (f64, f64)) {
        *self.resync.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// Where the server has the bot, if that changed since the last call.
    pub(crate) fn take_resync(&self) -> Option<(f64, f64)> {
        self.resync.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The bot reached the end of its leg: walk to the other side.
    pub(crate) fn turn(&self) {
        let side = self.side.load(Relaxed);
        self.side.store(if side < 0 { 1 } else { -1 }, Relaxed);
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
    /// Staleness samples whose position the watched bot never saw itself at (its own
    /// report had not arrived, or fell out of [`HISTORY`]).
    pub(crate) unmatched: AtomicU64,
    histograms: Mutex<Windows>,
    /// Player id → bot number, as bots learn their ids.
    players: Mutex<std::collections::HashMap<u64, usize>>,
    /// Per bot: its own positions as its server reported them, and when.
    own: Vec<Mutex<OwnHistory>>,
}

/// A bot's latest own positions (as `f32` bits) and when each arrived, oldest first.
type OwnHistory = VecDeque<((u32, u32), u64)>;

struct Windows {
    gap: Histogram<u64>,
    staleness: Histogram<u64>,
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
    /// Remote-entity staleness, in milliseconds (see the module), and its samples.
    pub staleness_p50_ms: Option<f64>,
    pub staleness_p99_ms: Option<f64>,
    pub staleness_max_ms: Option<f64>,
    pub staleness_samples: u64,
    pub staleness_unmatched: u64,
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
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 1 minute, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
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
            histograms: Mutex::new(Windows {
                gap: histogram(),
                staleness: histogram(),
            }),
            players: Mutex::new(std::collections::HashMap::new()),
            own: (0..bots).map(|_| Mutex::new(VecDeque::new())).collect(),
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

    /// Bot `n`'s server reported it at `at` (received at `now_us`).
    pub(crate) fn own_position(&self, n: usize, at: (f32, f32), now_us: u64) {
        let mut own = self.own[n].lock().unwrap_or_else(|p| p.into_inner());
        if own.len() == HISTORY {
            own.pop_front();
        }
        own.push_back((position_key(at), now_us));
    }

    /// Another bot saw bot `n` at `at` as a remote entity, at `now_us`: records how much
    /// later than bot `n` saw itself there (the latest time it did).
    pub(crate) fn remote_seen(&self, n: usize, at: (f32, f32), now_us: u64) {
        let key = position_key(at);
        let seen_own = {
            let own = self.own[n].lock().unwrap_or_else(|p| p.into_inner());
            own.iter().rev().find(|(k, _)| *k == key).map(|&(_, t)| t)
        };
        match seen_own {
            Some(t) => self
                .histograms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .staleness
                .saturating_record(now_us.saturating_sub(t).max(1)),
            None => {
                self.unmatched.fetch_add(1, Relaxed);
            }
        }
    }

    /// A handoff completed after a gap of `gap_us`.
    pub(crate) fn handoff_done(&self, gap_us: u64) {
        self.handoffs.fetch_add(1, Relaxed);
        self.histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .gap
            .saturating_record(gap_us.max(1));
    }

    pub(crate) fn counters(&self) -> ZoneCounters {
        ZoneCounters {
            handoffs: self.handoffs.load(Relaxed),
            login_handoffs: self.login_handoffs.load(Relaxed),
            lost: self.lost.load(Relaxed),
            updates_after_handoff: self.updates_after_handoff.load(Relaxed),
            zone_refusals: self.zone_refusals.load(Relaxed),
            unmatched: self.unmatched.load(Relaxed),
        }
    }

    /// A hold starts: its gaps and staleness count from now.
    pub(crate) fn start_hold(&self) {
        let mut windows = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        windows.gap.reset();
        windows.staleness.reset();
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
            staleness_p50_ms: ms(&windows.staleness, 0.5),
            staleness_p99_ms: ms(&windows.staleness, 0.99),
            staleness_max_ms: ms(&windows.staleness, 1.0),
            staleness_samples: windows.staleness.len(),
            staleness_unmatched: now.unmatched - at_hold.unmatched,
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
    fn a_crossing_alternates_sides_of_its_border() {
        let map = map(THREE).unwrap();
        for n in 0..30 {
            let crossing = map.crossing(n, 10.0);
            let start = (crossing.point.0 - 3.0 * crossing.normal.0, crossing.point.1);
            let first = crossing.target(start);
            let zone = |p: (f64, f64)| map.zone_at(p.0 as f32, p.1 as f32);
            crossing.turn();
            let second = crossing.target(first);
            assert_ne!(zone(first), zone(second), "bot {n}: {first:?} {second:?}");
            assert!((first.0 - second.0).hypot(first.1 - second.1) - 20.0 < 1e-9);
        }
    }

    #[test]
    fn staleness_is_matched_to_the_latest_own_report_of_that_position() {
        let stats = ZoneStats::new(map(THREE).unwrap(), 2);
        stats.own_position(0, (1.0, 2.0), 1_000);
        stats.own_position(0, (1.5, 2.0), 2_000);
        stats.own_position(0, (1.0, 2.0), 9_000);
        stats.remote_seen(0, (1.0, 2.0), 12_000);
        stats.remote_seen(0, (7.0, 2.0), 12_000);
        let zero = ZoneCounters::default();
        let figures = stats.figures(&zero, &zero, 1.0);
        assert_eq!(figures.staleness_samples, 1);
        let max = figures.staleness_max_ms.expect("one sample");
        assert!(
            (max - 3.0).abs() < 0.01,
            "3 ms after its latest own report: {max}"
        );
        assert_eq!(figures.staleness_unmatched, 1);
    }
}
