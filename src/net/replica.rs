//! One connection's side of replication, off the tick: it waits for each new round, composes
//! this client's update from the round and its [`ClientView`], writes it in the connection's
//! encoding, and confirms it to the view only once it was written.

use std::sync::Arc;

use hearth_components::PlayerId;
use hearth_systems::replication::{
    ClientView, Composed, ReplicationFeed, ReplicationRound, write_binary, write_json,
};
use tokio::sync::watch;

use super::encoding::Encoding;

/// A connection's replication state: the round feed and, while a player plays on the
/// connection, its view.
pub struct Replica {
    rounds: Option<Rounds>,
    playing: Option<(PlayerId, ClientView)>,
    /// No update written since the player joined: it follows every round, early ones
    /// included, until its first update is written.
    fresh: bool,
    /// The number of the newest round composed from: an older one never is (a view never
    /// goes back), which matters when the view moves from every round to the cadence's.
    last: u64,
}

/// The feed's two cells ([`ReplicationFeed`]).
struct Rounds {
    cadence: watch::Receiver<Arc<ReplicationRound>>,
    arrivals: watch::Receiver<Arc<ReplicationRound>>,
}

impl Replica {
    /// Follows `feed` (`None`: the game replicates nothing).
    pub fn new(feed: Option<&ReplicationFeed>) -> Self {
        Self {
            rounds: feed.map(|feed| Rounds {
                cadence: feed.subscribe(),
                arrivals: feed.subscribe_arrivals(),
            }),
            playing: None,
            fresh: false,
            last: 0,
        }
    }

    /// A player joined on this connection (`logged_in` written): a fresh view, so its first
    /// update is full state, composed from the latest round right away (or from the early
    /// round of the frame it joined in, if that is newer).
    pub fn joined(&mut self, player: PlayerId) {
        self.playing = Some((player, ClientView::new()));
        self.fresh = true;
        self.last = 0;
        if let Some(rounds) = &mut self.rounds {
            rounds.arrivals.mark_changed();
        }
    }

    /// The player left (`logged_out`): no more updates.
    pub fn left(&mut self) {
        self.playing = None;
    }

    /// Whether updates are due (a player plays and the game replicates).
    pub fn active(&self) -> bool {
        self.playing.is_some() && self.rounds.is_some()
    }

    /// Waits for a round newer than the last one composed from (only the newest: a
    /// connection that fell behind skips the rounds in between): every round while the view
    /// is fresh, the cadence's after. Never ready without a feed.
    pub async fn next_round(&mut self) -> Arc<ReplicationRound> {
        let Some(rounds) = &mut self.rounds else {
            return std::future::pending().await;
        };
        loop {
            let cell = if self.fresh {
                &mut rounds.arrivals
            } else {
                &mut rounds.cadence
            };
            if cell.changed().await.is_err() {
                return std::future::pending().await;
            }
            let round = Arc::clone(&cell.borrow_and_update());
            if round.number() > self.last {
                self.last = round.number();
                return round;
            }
        }
    }

    /// This round's update for the player, appended to `out` in `encoding`: `None` when there
    /// is nothing to write (no player, not in the round yet, nothing to encode).
    pub fn compose(
        &mut self,
        round: &Arc<ReplicationRound>,
        encoding: Encoding,
        out: &mut Vec<u8>,
    ) -> Option<Composed> {
        let (player, view) = self.playing.as_mut()?;
        let update = view.compose(round, *player, round.settings().round_budget())?;
        let start = out.len();
        let written = match encoding {
            Encoding::Binary => write_binary(&update, out).map_err(|e| e.to_string()),
            Encoding::Json => {
                let mut text = String::new();
                let written = write_json(&update, &mut text).map_err(|e| e.to_string());
                out.extend_from_slice(text.as_bytes());
                written
            }
        };
        match written {
            Ok(()) => Some(update),
            Err(reason) => {
                out.truncate(start);
                tracing::error!(%reason, "a replication update could not be encoded");
                None
            }
        }
    }

    /// The update was written: the view's baseline advances to it.
    pub fn confirm(&mut self, update: Composed) {
        if let Some((_, view)) = &mut self.playing {
            view.confirm(update);
            self.fresh = false;
        }
    }
}
