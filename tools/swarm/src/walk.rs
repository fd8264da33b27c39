//! Where the bot walked, checked against where the server says it is.
//!
//! The server applies each `move` as one step of 1.0 in the normalised direction at its next
//! tick, clamped to the world's edge (docs/protocol.md). It does not acknowledge moves, and
//! several moves within one tick collapse into the latest (a rate-limited one is dropped), so
//! when an update reports the bot's position, the server has processed some prefix of the
//! moves sent, each applied or skipped. The check keeps every explanation of what the server
//! reported so far: an exact position and the first move not yet processed. A report must be
//! reached from one of them by applying some of the moves sent since, in order, each one
//! skipped or applied; a wrong position, a step taken twice or a move invented fails.
//!
//! The search is exhaustive over the moves in flight, with two prunings that lose nothing:
//! a position farther from the report than the moves left can cover, and skipping a move to
//! apply an equal step right after it (applying the first reaches the same position with an
//! earlier unprocessed move, which explains everything the other does; so a walk in one
//! direction costs a handful of states however the server collapsed it). Per position only
//! that earliest explanation is kept. A report is a violation only while the explanations
//! are surely complete (every search so far finished within [`MAX_NODES`] and nothing was
//! dropped): so a correct server never fails it. When a search is cut short, a later report
//! that no kept explanation leads to ends the bot's checking instead, counted as unchecked.
//!
//! Positions are computed in `f32` the way the server computes them, so in JSON (exact
//! floats) they must agree exactly; in binary within the quantisation, 1/128 of a unit.

use std::collections::{HashSet, VecDeque};

/// The world is the square [-EDGE, EDGE]².
const EDGE: f32 = 1000.0;

/// A `move`'s direction is sent as multiples of this (2^-12), exact in decimal and in both
/// encodings' floats, so the server reads exactly the numbers the bot computes with.
const DIRECTION_UNIT: f64 = 4096.0;

/// Explanations kept at most (one per position; several positions arise only from
/// coincidences within the precision); steps explored at most per report (bounds the bot's CPU when the server lags far
/// behind; a report that cannot be checked within it ends the bot's checking, counted).
const MAX_EXPLANATIONS: usize = 32;
const MAX_NODES: usize = 20_000;

/// A direction as sent: multiples of 2^-12, not both zero.
pub(crate) fn direction(dx: f64, dy: f64) -> (f64, f64) {
    let q = |v: f64| (v * DIRECTION_UNIT).round() / DIRECTION_UNIT;
    match (q(dx), q(dy)) {
        (0.0, 0.0) => (1.0, 0.0),
        quantised => quantised,
    }
}

/// The unit step the server takes for a `move` of (`dx`, `dy`): scaled by the larger
/// component first, then normalised, in `f32` (the demo game's `MoveIntent::new`).
fn server_step(dx: f64, dy: f64) -> (f32, f32) {
    let (dx, dy) = (dx as f32, dy as f32);
    let largest = dx.abs().max(dy.abs());
    let (sx, sy) = (dx / largest, dy / largest);
    let length = sx.hypot(sy);
    (sx / length, sy / length)
}

fn apply(at: (f32, f32), step: (f32, f32)) -> (f32, f32) {
    (
        (at.0 + step.0).clamp(-EDGE, EDGE),
        (at.1 + step.1).clamp(-EDGE, EDGE),
    )
}

/// How a report compares with an explanation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Precision {
    /// JSON: the same `f32`.
    Exact,
    /// Binary: within half of 1/64 on each axis.
    Quantised,
}

impl Precision {
    fn agrees(self, exact: (f32, f32), reported: (f32, f32)) -> bool {
        match self {
            Precision::Exact => exact == reported,
            Precision::Quantised => {
                let close = |a: f32, b: f32| (f64::from(a) - f64::from(b)).abs() <= 1.0 / 128.0;
                close(exact.0, reported.0) && close(exact.1, reported.1)
            }
        }
    }
}

/// What a check found.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    Agrees,
    /// No sequence of the moves sent leads there.
    Disagrees(String),
    /// Too many moves in flight to explore; checking stops for this bot.
    Unchecked,
}

/// The moves a bot sent and the positions the server may have it at.
pub(crate) struct Walk {
    precision: Precision,
    /// Steps sent (as the server computes them), from move number `first` on.
    sent: VecDeque<(f32, f32)>,
    first: u64,
    /// (exact position, number of the first move not processed).
    explanations: Vec<((f32, f32), u64)>,
    /// False after a failed or unchecked report: later ones are not checked.
    checking: bool,
    /// True while `explanations` surely holds the server's state (every search so far was
    /// exhaustive and nothing was dropped): only then is a report no explanation leads to
    /// a violation; otherwise it ends the checking, counted as unchecked.
    complete: bool,
}

impl Walk {
    /// A walk from `start` (the position of `logged_in`), no move sent yet.
    pub(crate) fn new(start: (f32, f32), precision: Precision) -> Self {
        Self {
            precision,
            sent: VecDeque::new(),
            first: 0,
            explanations: vec![(start, 0)],
            checking: true,
            complete: true,
        }
    }

    /// The server held the bot where its moves do not lead (at the border of a zone without
    /// a server): later reports are not checked.
    pub(crate) fn stop_checking(&mut self) {
        self.checking = false;
        self.sent.clear();
    }

    /// Records a move sent (before its bytes are written).
    pub(crate) fn sent(&mut self, dx: f64, dy: f64) {
        if self.checking {
            self.sent.push_back(server_step(dx, dy));
        }
    }

    /// Checks the position an update reported for the bot.
    pub(crate) fn check(&mut self, reported: (f32, f32)) -> Verdict {
        if !self.checking {
            return Verdict::Agrees;
        }
        let mut found = Vec::new();
        let mut nodes = 0;
        let mut visited = HashSet::new();
        for &(at, next) in &self.explanations {
            let pending: Vec<(f32, f32)> = self
                .sent
                .iter()
                .skip((next - self.first) as usize)
                .copied()
                .collect();
            let mut search = Search {
                reported,
                found: &mut found,
                nodes: &mut nodes,
                visited: &mut visited,
                precision: self.precision,
            };
            search.explore(at, next, &pending);
        }
        if nodes >= MAX_NODES {
            self.complete = false;
        }
        // Per position only the earliest unprocessed move: it explains all a later one does
        // (the many ways to apply k of n steps of one direction reach one position).
        found.sort_by(|a, b| {
            (a.0.0.total_cmp(&b.0.0))
                .then(a.0.1.total_cmp(&b.0.1))
                .then(a.1.cmp(&b.1))
        });
        found.dedup_by(|later, earlier| later.0 == earlier.0);
        found.sort_by_key(|&(_, next)| next);
        if found.len() > MAX_EXPLANATIONS {
            found.truncate(MAX_EXPLANATIONS);
            self.complete = false;
        }
        if found.is_empty() && !self.complete {
            self.checking = false;
            self.sent.clear();
            return Verdict::Unchecked;
        }
        if found.is_empty() {
            let verdict = Verdict::Disagrees(format!(
                "the server has the bot at ({}, {}), where none of its {} moves in flight lead from {:?} ({} explanations)",
                reported.0,
                reported.1,
                self.sent.len(),
                self.explanations
                    .iter()
                    .take(3)
                    .map(|e| e.0)
                    .collect::<Vec<_>>(),
                self.explanations.len(),
            ));
            self.checking = false;
            self.sent.clear();
            return verdict;
        }
        let processed = found
            .iter()
            .map(|&(_, next)| next)
            .min()
            .unwrap_or(self.first);
        while self.first < processed {
            self.sent.pop_front();
            self.first += 1;
        }
        self.explanations = found;
        Verdict::Agrees
    }
}

/// One search for explanations of a report.
struct Search<'a> {
    reported: (f32, f32),
    precision: Precision,
    found: &'a mut Vec<((f32, f32), u64)>,
    nodes: &'a mut usize,
    /// States explored (position bits, next move): one reached again has nothing new.
    visited: &'a mut HashSet<(u32, u32, u64)>,
}

impl Search<'_> {
    /// Depth first over `pending` (move number `next` first), each applied or skipped;
    /// records every state right after an applied move (and the start) that agrees with the
    /// report.
    fn explore(&mut self, at: (f32, f32), next: u64, pending: &[(f32, f32)]) {
        if !self.visited.insert((at.0.to_bits(), at.1.to_bits(), next)) {
            return;
        }
        *self.nodes += 1;
        if self.precision.agrees(at, self.reported) {
            self.found.push((at, next));
        }
        // Each step covers at most 1.0: too far to reach with what is left.
        let reported = self.reported;
        let distance = f64::from(at.0 - reported.0).hypot(f64::from(at.1 - reported.1));
        if distance > pending.len() as f64 + 0.02 {
            return;
        }
        // Skipping a move to apply the same step right after it is never needed: applying
        // the first reaches the same position with an earlier unprocessed move, which
        // explains all the other does. So only the first move of each run of equal steps is
        // a choice.
        for (index, &step) in pending.iter().enumerate() {
            if index > 0 && pending[index - 1] == step {
                continue;
            }
            if *self.nodes >= MAX_NODES {
                return;
            }
            self.explore(
                apply(at, step),
                next + index as u64 + 1,
                &pending[index + 1..],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quantised(at: (f32, f32)) -> (f32, f32) {
        let q = hearth_components::wire::QuantisedPosition::from_world(at.0, at.1);
        q.to_world()
    }

    #[test]
    fn every_honest_report_agrees() {
        let mut walk = Walk::new((0.0, 0.0), Precision::Exact);
        let moves = [(0.6, 0.8), (1.0, 0.0), (0.6, 0.8), (0.0, -1.0), (-0.3, 0.2)];
        for &(dx, dy) in &moves {
            let (dx, dy) = direction(dx, dy);
            walk.sent(dx, dy);
        }
        // The server applied the first two, skipped the third (collapsed), applied the fourth.
        let mut at = (0.0, 0.0);
        for index in [0, 1] {
            let (dx, dy) = direction(moves[index].0, moves[index].1);
            at = apply(at, server_step(dx, dy));
            assert_eq!(walk.check(at), Verdict::Agrees);
        }
        let (dx, dy) = direction(moves[3].0, moves[3].1);
        at = apply(at, server_step(dx, dy));
        assert_eq!(walk.check(at), Verdict::Agrees);
        // A step invented (the same one twice) disagrees.
        at = apply(at, server_step(dx, dy));
        assert!(matches!(walk.check(at), Verdict::Disagrees(_)));
        // Checking has stopped.
        assert_eq!(walk.check((500.0, 500.0)), Verdict::Agrees);
    }

    /// 40 random steps in flight, two collapsed: beyond an exhaustive search, so the bot
    /// stops checking (counted), never calling it wrong.
    #[test]
    fn too_many_random_moves_in_flight_end_the_checking_not_in_a_violation() {
        let mut walk = Walk::new((0.0, 0.0), Precision::Quantised);
        let mut at = (0.0, 0.0);
        for k in 0..40 {
            let angle = f64::from(k) * 2.399;
            let (dx, dy) = direction(angle.cos(), angle.sin());
            walk.sent(dx, dy);
            if k != 7 && k != 23 {
                at = apply(at, server_step(dx, dy));
            }
        }
        assert_eq!(walk.check(quantised(at)), Verdict::Unchecked);
        assert_eq!(
            walk.check((500.0, 500.0)),
            Verdict::Agrees,
            "no longer checked"
        );
    }

    /// A walk out of 200 steps in one direction, then 100 random ones, the server collapsing
    /// about a third of the moves and reporting after one in twelve: the walk out always
    /// agrees, and no report disagrees, in both precisions.
    #[test]
    fn a_long_walk_out_with_collapses_agrees() {
        for (seed, precision) in
            (0..40).flat_map(|s| [(s, Precision::Quantised), (s, Precision::Exact)])
        {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut walk = Walk::new((0.0, 0.0), precision);
            let mut at = (0.0f32, 0.0f32);
            // The bot walks out in one direction, then wanders.
            let (dx, dy) = direction(0.7, -0.3);
            for k in 0..300 {
                let (dx, dy) = if k < 200 {
                    (dx, dy)
                } else {
                    direction(rng.f64() - 0.5, rng.f64() - 0.5)
                };
                walk.sent(dx, dy);
                if rng.f64() > 0.3 {
                    at = apply(at, server_step(dx, dy));
                }
                if rng.f64() < 0.08 {
                    let report = match precision {
                        Precision::Quantised => quantised(at),
                        Precision::Exact => at,
                    };
                    let verdict = walk.check(report);
                    let context = format!("seed {seed} step {k} {precision:?}: {verdict:?}");
                    if k < 200 {
                        assert_eq!(verdict, Verdict::Agrees, "{context}");
                    } else {
                        // Random steps, a third collapsed: a report may be beyond the search
                        // (then unchecked), never wrong.
                        assert!(!matches!(verdict, Verdict::Disagrees(_)), "{context}");
                    }
                }
            }
        }
    }

    /// 60 steps of one direction in flight, the server applying 40 of them, then the bot
    /// wanders: the one position of the 40 steps is kept once, with the earliest move not
    /// processed, and the next step is explained from it.
    #[test]
    fn one_position_reached_many_ways_is_one_explanation() {
        let mut walk = Walk::new((0.0, 0.0), Precision::Quantised);
        let (dx, dy) = direction(0.49, 0.87);
        let step = server_step(dx, dy);
        let mut at = (0.0, 0.0);
        for k in 0..60 {
            walk.sent(dx, dy);
            if k < 40 {
                at = apply(at, step);
            }
        }
        assert_eq!(walk.check(quantised(at)), Verdict::Agrees);
        assert_eq!(walk.explanations.len(), 1);
        let (wx, wy) = direction(-0.6, 0.8);
        walk.sent(wx, wy);
        at = apply(at, server_step(wx, wy));
        assert_eq!(walk.check(quantised(at)), Verdict::Agrees);
    }

    #[test]
    fn binary_reports_agree_within_the_quantisation_and_the_edge_clamps() {
        let mut walk = Walk::new((999.5, 3.25), Precision::Quantised);
        let (dx, dy) = direction(0.6, 0.8);
        walk.sent(dx, dy);
        walk.sent(dx, dy);
        let step = server_step(dx, dy);
        let once = apply((999.5, 3.25), step);
        assert_eq!(once.0, 1000.0, "clamped at the edge");
        assert_eq!(walk.check(quantised(once)), Verdict::Agrees);
        let twice = apply(once, step);
        assert_eq!(walk.check(quantised(twice)), Verdict::Agrees);
        assert!(matches!(
            walk.check(quantised(apply(twice, (0.0, 1.0)))),
            Verdict::Disagrees(_)
        ));
    }

    #[test]
    fn directions_are_exact_in_text() {
        let (dx, dy) = direction(0.123456789, -0.987654321);
        let text = serde_json::to_string(&(dx, dy)).unwrap();
        let (x, y): (f32, f32) = serde_json::from_str(&text).unwrap();
        assert_eq!((f64::from(x), f64::from(y)), (dx, dy));
        assert_eq!(direction(0.0001, 0.0), (1.0, 0.0));
    }
}
