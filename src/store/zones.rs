//! The zone port: what the zones module needs from the store, behind a trait like the
//! accounts ([`super::accounts`]). Where each zone is served (its registration and whether
//! that process is alive), and the handoff of a player who just left this server to the
//! server of the zone it walked into. Only a Redis store serves zones (processes share it).

use std::sync::Arc;
use std::time::Duration;

use hearth_components::PlayerId;

use super::accounts::TokenHash;

/// The process serving a zone, as its registration says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneHolder {
    /// Its lease owner: a handoff gives the player's lease to it.
    pub owner: String,
    /// Where its clients connect (`host:port`).
    pub public_addr: String,
    /// Where its WebSocket clients connect (`host:port`), if it has a WebSocket listener.
    pub public_ws_addr: Option<String>,
    /// Whether its liveness key exists: a crashed process's registration outlives it.
    pub alive: bool,
    /// The fingerprint of the zone map it serves by (`ZoneMap::digest` in the zones module).
    pub map: String,
}

/// What became of a handoff ([`ZoneStore::hand_over`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOver {
    /// The destination holds the player's lease, and the token is stored for the client to
    /// resume with there.
    Done,
    /// Another server held or wrote the player since it left here: nothing changed (the
    /// client logs in again, wherever it is sent).
    Refused,
}

/// Why a zone store call failed: the store did not answer (retry).
#[derive(Debug, thiserror::Error)]
#[error("zone store unavailable: {0}")]
pub struct ZoneStoreError(pub String);

/// Zone lookups and handoffs (one per zones worker thread, with its own connection).
pub trait ZoneStore: Send {
    /// Who serves each of `zones` (in order; `None` where nobody is registered).
    fn read_zones(&mut self, zones: &[String]) -> Result<Vec<Option<ZoneHolder>>, ZoneStoreError>;

    /// Hands `player`, whose final save here released its lease, to the process whose lease
    /// owner is `to_owner`: it holds the player's lease for `hold` (until the client
    /// resumes there), and `token` is stored among the player's resume tokens (the set's
    /// lifetime set to `token_ttl`). Safe to repeat: a repeat of a done handoff is `Done`.
    fn hand_over(
        &mut self,
        player: PlayerId,
        to_owner: &str,
        hold: Duration,
        token: &TokenHash,
        token_ttl: Duration,
    ) -> Result<HandOver, ZoneStoreError>;
}

/// Makes one zone store per thread that needs one.
pub type ZoneStoreFactory = Arc<dyn Fn() -> Box<dyn ZoneStore> + Send + Sync>;
