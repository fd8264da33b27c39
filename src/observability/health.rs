//! Liveness and readiness: what `/healthz` and `/readyz` answer, as plain rules over the
//! figures the tick, the store and the front door publish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bevy_ecs::resource::Resource;
use hearth_systems::TickStats;
use hearth_systems::storage::StoreMetrics;

use crate::net::FrontDoorObserver;

/// The tick counts as stalled when no frame completed for this long, or for
/// [`STALL_TICKS`] tick periods when that is longer. A fixed floor rather than a multiple
/// alone: at 60 Hz, 5 periods are 83 ms, and one slow frame on a loaded host would flap the
/// probe; a stall an orchestrator should act on lasts seconds.
pub const STALL_FLOOR: Duration = Duration::from_secs(2);

/// See [`STALL_FLOOR`].
pub const STALL_TICKS: u32 = 5;

/// Whether the tick is stalled: no frame completed for `since_last_frame`.
pub fn tick_stalled(since_last_frame: Duration, tick_period: Duration) -> bool {
    since_last_frame > STALL_FLOOR.max(tick_period * STALL_TICKS)
}

/// The store lane whose health readiness follows (see [`Health::ready`]).
const READINESS_LANE: &str = "periodic";

/// Readiness conditions set from outside the endpoint. Today one: draining, for the drain
/// work (a server handing its players over should get no new ones: set it and `/readyz`
/// answers 503 `draining`). A resource present whenever the runner started the server.
#[derive(Resource, Clone, Default)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
}

impl Readiness {
    /// Marks the server draining (not ready for new players) or not.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Why the server is not alive (`/healthz` answers 503 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotLive {
    /// The tick completed no frame for longer than [`tick_stalled`] allows.
    #[error("tick stalled: no frame completed for {since:?}")]
    TickStalled { since: Duration },
}

/// One reason the server is not ready for new players.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReadyReason {
    /// Not alive, so not ready either.
    #[error(transparent)]
    NotLive(#[from] NotLive),
    /// The store lane readiness follows is down.
    #[error("store unreachable: {lane} lane down")]
    StoreUnreachable { lane: &'static str },
    /// The front door refuses logins.
    #[error("front door not accepting logins")]
    FrontDoorClosed,
    /// The server is draining its players to others.
    #[error("draining")]
    Draining,
}

/// Every reason the server is not ready (`/readyz` answers 503 with them, one a line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.0))]
pub struct NotReady(pub Vec<NotReadyReason>);

fn display_lines(reasons: &[NotReadyReason]) -> String {
    let lines: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Everything liveness and readiness read.
#[derive(Clone)]
pub struct Health {
    pub tick: Arc<TickStats>,
    pub tick_period: Duration,
    pub store: Arc<StoreMetrics>,
    /// `None` when the server has no front door (embedded, tests).
    pub front_door: Option<FrontDoorObserver>,
    pub readiness: Readiness,
}

impl Health {
    /// Alive while the tick completes frames; otherwise why not.
    pub fn live(&self) -> Result<(), NotLive> {
        let since = self.tick.since_last_frame();
        if tick_stalled(since, self.tick_period) {
            return Err(NotLive::TickStalled { since });
        }
        Ok(())
    }

    /// Ready for new players when alive, the store is reachable, the front door accepts
    /// logins and the server is not draining; otherwise every reason why not, one a line.
    ///
    /// The store counts as reachable while its periodic lane is up: that lane sends the
    /// instance heartbeat every lease refresh interval, so its health follows Redis within
    /// one interval. The interactive lane learns only from logins; gating on it would keep
    /// a server unready forever after one failed login (no logins come to an unready
    /// server, so none would prove Redis is back). Both lanes are exported as metrics.
    pub fn ready(&self) -> Result<(), NotReady> {
        let mut reasons: Vec<NotReadyReason> =
            self.live().err().into_iter().map(Into::into).collect();
        for (lane, down) in self.store.lanes_down() {
            if down && lane == READINESS_LANE {
                reasons.push(NotReadyReason::StoreUnreachable { lane });
            }
        }
        if let Some(door) = &self.front_door
            && !door.accepting()
        {
            reasons.push(NotReadyReason::FrontDoorClosed);
        }
        if self.readiness.is_draining() {
            reasons.push(NotReadyReason::Draining);
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(NotReady(reasons))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_stalled_after_the_floor_or_five_periods_whichever_is_longer() {
        let at_60hz = Duration::from_secs_f64(1.0 / 60.0);
        let ms = Duration::from_millis;
        assert!(!tick_stalled(ms(500), at_60hz), "a slow frame is no stall");
        assert!(!tick_stalled(ms(2000), at_60hz));
        assert!(tick_stalled(ms(2001), at_60hz));
        let at_1_per_second = Duration::from_secs(1);
        assert!(!tick_stalled(ms(4000), at_1_per_second), "5 periods: 5 s");
        assert!(tick_stalled(ms(5001), at_1_per_second));
    }

    #[test]
    fn readiness_lists_every_reason() {
        let health = Health {
            tick: Arc::default(),
            tick_period: Duration::from_millis(16),
            store: Arc::default(),
            front_door: None,
            readiness: Readiness::default(),
        };
        assert_eq!(health.ready(), Ok(()), "a fresh server is within the floor");
        health.store.set_lane_down("interactive", true);
        assert_eq!(
            health.ready(),
            Ok(()),
            "the interactive lane learns only from logins"
        );
        health.store.set_lane_down("periodic", true);
        health.readiness.set_draining(true);
        let not_ready = health.ready().unwrap_err();
        assert_eq!(
            not_ready,
            NotReady(vec![
                NotReadyReason::StoreUnreachable { lane: "periodic" },
                NotReadyReason::Draining
            ])
        );
        assert_eq!(
            not_ready.to_string(),
            "store unreachable: periodic lane down\ndraining",
            "one reason a line, as /readyz answers"
        );
        health.store.set_lane_down("periodic", false);
        health.readiness.set_draining(false);
        assert_eq!(health.ready(), Ok(()));
    }
}
