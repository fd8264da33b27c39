//! The maintenance port: what `hearth admin` reads and repairs in the store besides accounts
//! (records, session leases, instance registrations), from outside any running server. The
//! Redis adapter is `RedisMaintenance` (`store/redis/maintenance.rs`: one Redis or a
//! cluster); the memory adapter is the shared `MemoryBackend` itself (`store/memory.rs`).
//! Adapters depend on this port, never the reverse.

use std::time::Duration;

use hearth_components::{PlayerId, PlayerRecord};

/// Why a maintenance operation failed: the store did not answer, or refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MaintenanceError(pub String);

/// A player's session lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease owner (`<instance id>/<boot token>`).
    pub owner: String,
    /// How long it still lives unless refreshed.
    pub ttl: Duration,
}

/// What became of an imported record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Written.
    Written,
    /// Not written: the stored record's sequence (as the store reads it) is equal or newer.
    Kept { stored_seq: String },
}

/// Records, leases and registrations as `hearth admin` sees them.
pub trait Maintenance {
    /// A player's stored record (JSON), if any.
    fn record(&mut self, player: PlayerId) -> Result<Option<String>, MaintenanceError>;
    /// A player's session lease, if one is held.
    fn lease(&mut self, player: PlayerId) -> Result<Option<Lease>, MaintenanceError>;
    /// Every held lease: the player and the lease owner (in no particular order).
    fn leases(&mut self) -> Result<Vec<(PlayerId, String)>, MaintenanceError>;
    /// The registration (JSON) of the process running under `instance`, if it is alive.
    fn registration(&mut self, instance: &str) -> Result<Option<String>, MaintenanceError>;
    /// Whether the process with lease owner `owner` is alive: it renews its liveness key.
    fn alive(&mut self, owner: &str) -> Result<bool, MaintenanceError>;
    /// Deletes a player's lease if `owner` still holds it; whether it did.
    fn release_lease(&mut self, player: PlayerId, owner: &str) -> Result<bool, MaintenanceError>;
    /// Every player with a stored record, in id order.
    fn players(&mut self) -> Result<Vec<PlayerId>, MaintenanceError>;
    /// Writes `record` (in the current layout) unless the stored one is as new or newer,
    /// or regardless with `overwrite_newer`.
    fn import(
        &mut self,
        record: &PlayerRecord,
        overwrite_newer: bool,
    ) -> Result<Imported, MaintenanceError>;
}
