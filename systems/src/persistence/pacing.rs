//! Which dirty players a flush slice saves, so saving is spread over the flush interval.
//!
//! Every dirty player is queued with a due time: the moment it became dirty plus
//! `flush_interval`. Due times only grow (a player queued later is due later), so the queue is
//! in due order. Each slice saves the players at the front that must go now for the rest to
//! make their due times at a steady `rate` (players per second): as late as possible, never
//! faster than needed. A lone change waits its whole interval, as before; ten thousand
//! players who became dirty in one frame are saved `rate × slice` per slice across the
//! interval instead of all in one frame.

use std::collections::VecDeque;
use std::time::Duration;

use bevy_ecs::entity::Entity;

/// Players that became dirty together (in one frame) and are due at the same time.
struct Run {
    due: Duration,
    entities: VecDeque<Entity>,
}

/// Dirty players in due order, grouped by due time.
#[derive(Default)]
pub(super) struct DueQueue {
    runs: VecDeque<Run>,
    len: usize,
}

impl DueQueue {
    /// Queues players due at `due`, behind every player queued before (a due time earlier
    /// than the last one queued is raised to it, so the queue stays in due order).
    pub(super) fn push_back(&mut self, due: Duration, entities: impl IntoIterator<Item = Entity>) {
        let due = self.runs.back().map_or(due, |last| last.due.max(due));
        let mut entities = entities.into_iter().peekable();
        if entities.peek().is_none() {
            return;
        }
        if self.runs.back().is_none_or(|last| last.due != due) {
            self.runs.push_back(Run {
                due,
                entities: VecDeque::new(),
            });
        }
        let run = self.runs.back_mut().expect("a run was just ensured");
        let before = run.entities.len();
        run.entities.extend(entities);
        self.len += run.entities.len() - before;
    }

    /// Puts a player taken from the front back at the front (its save had to wait).
    pub(super) fn push_front(&mut self, due: Duration, entity: Entity) {
        match self.runs.front_mut() {
            Some(run) if run.due == due => run.entities.push_front(entity),
            _ => self.runs.push_front(Run {
                due,
                entities: VecDeque::from([entity]),
            }),
        }
        self.len += 1;
    }

    /// Takes the player due first.
    pub(super) fn pop_front(&mut self) -> Option<(Duration, Entity)> {
        loop {
            let run = self.runs.front_mut()?;
            match run.entities.pop_front() {
                Some(entity) => {
                    self.len -= 1;
                    return Some((run.due, entity));
                }
                None => {
                    self.runs.pop_front();
                }
            }
        }
    }

    /// Keeps only the players `keep` accepts, in order.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(Entity) -> bool) {
        for run in &mut self.runs {
            run.entities.retain(|&e| keep(e));
        }
        self.runs.retain(|run| !run.entities.is_empty());
        self.len = self.runs.iter().map(|run| run.entities.len()).sum();
    }

    /// Players queued.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// How many players, taken from the front, must be saved by `by` so that saving the rest
    /// at `rate` players per second still meets every due time: the largest excess, over all
    /// due times, of the players due by then over what `rate` saves until then. Overdue
    /// players always count. Rounded down, so a player is not saved early for a fraction.
    pub(super) fn must_take(&self, by: Duration, rate: f64) -> usize {
        let mut queued = 0usize;
        let mut excess = 0f64;
        for run in &self.runs {
            queued += run.entities.len();
            let until_due = run.due.saturating_sub(by).as_secs_f64();
            excess = excess.max(queued as f64 - rate * until_due);
        }
        // The float-to-int cast saturates; `excess` is at most `queued`.
        (excess.floor() as usize).min(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities(n: u32) -> Vec<Entity> {
        (0..n)
            .map(Entity::from_raw_u32)
            .map(Option::unwrap)
            .collect()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_lone_player_waits_until_it_is_due() {
        let mut queue = DueQueue::default();
        queue.push_back(secs(30.0), entities(1));
        // A slow pace (one player online) or a fast one (ten thousand): not before its time.
        for rate in [1.0 / 30.0, 10_000.0 / 30.0] {
            assert_eq!(queue.must_take(secs(29.9), rate), 0);
            assert_eq!(queue.must_take(secs(30.0), rate), 1);
        }
    }

    #[test]
    fn players_dirty_together_are_spread_over_the_interval() {
        let mut queue = DueQueue::default();
        queue.push_back(secs(30.0), entities(10_000));
        let rate = 10_000.0 / 30.0;
        let mut most = 0;
        let mut slices = 0;
        let mut now = 0.0;
        while queue.len() > 0 {
            now += 0.1;
            let take = queue.must_take(secs(now), rate);
            most = most.max(take);
            for _ in 0..take {
                queue.pop_front().unwrap();
            }
            slices += 1;
        }
        assert!(now <= 30.0 + 1e-9, "all saved by their due time ({now})");
        assert!(
            most <= 35,
            "at most about 10,000 / 300 per slice, took {most}"
        );
        assert!(slices >= 295, "spread over the interval ({slices} slices)");
    }

    #[test]
    fn overdue_players_are_all_taken_and_order_is_kept() {
        let mut queue = DueQueue::default();
        let [a, b, c] = entities(3).try_into().unwrap();
        queue.push_back(secs(1.0), [a]);
        queue.push_back(secs(2.0), [b]);
        queue.push_back(secs(0.5), [c]); // raised to 2.0: due order holds
        assert_eq!(queue.must_take(secs(5.0), 0.0), 3);
        assert_eq!(queue.pop_front(), Some((secs(1.0), a)));
        queue.push_front(secs(1.0), a);
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.pop_front(), Some((secs(1.0), a)));
        assert_eq!(queue.pop_front(), Some((secs(2.0), b)));
        assert_eq!(queue.pop_front(), Some((secs(2.0), c)));
        assert_eq!(queue.pop_front(), None);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn retain_keeps_the_chosen_players_in_order() {
        let mut queue = DueQueue::default();
        let [a, b, c] = entities(3).try_into().unwrap();
        queue.push_back(secs(1.0), [a, b]);
        queue.push_back(secs(2.0), [c]);
        queue.retain(|e| e != b);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.pop_front(), Some((secs(1.0), a)));
        assert_eq!(queue.pop_front(), Some((secs(2.0), c)));
        queue.push_back(secs(3.0), [a]);
        queue.retain(|_| false);
        assert_eq!((queue.len(), queue.pop_front()), (0, None));
    }
}
