//! Store adapters behind the storage port: memory (default) and Redis (one server or a
//! Redis Cluster).

pub mod accounts;
mod dispatch;
pub mod maintenance;
pub mod memory;
mod plugin;
pub mod redis;
mod settings;
pub mod zones;

use std::sync::Arc;

use hearth_components::StoreSelection;
use hearth_systems::storage::{PlayerStore, StorePort};

pub use self::redis::RedisStore;
pub use memory::{MemoryBackend, MemoryStore, StoreClock};
pub use plugin::{
    AccountStores, AdvertisedListen, AdvertisedWsListen, AdvertisedZone, ResumeTokenLifetime,
    StorePlugin, ZoneStores, account_stores, memory_account_stores,
};
pub use settings::{StoreSettings, ZoneRegistration};

/// Why a store could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot reach Redis at {url}: {reason}")]
    Redis { url: String, reason: String },
    /// Another running process is registered under this instance id.
    #[error(
        "instance id {id:?} is in use by another running process ({holder}). A session lease belongs to one running process, so this one does not start: give each process its own --instance-id (or leave it unset to generate one). If that process is gone, start this one again after its liveness_ttl (3s by default): a dead process's registration is taken over once its liveness key expires"
    )]
    InstanceTaken {
        id: String,
        holder: String,
        expires_in: std::time::Duration,
    },
    /// Another running process serves this zone.
    #[error(
        "zone {zone:?} is served by another running process ({holder}). One process serves a zone, so this one does not start: pick another --zone, or drain that process first. If that process is gone, start this one again after its liveness_ttl (3s by default): a dead process's registration is taken over once its liveness key expires"
    )]
    ZoneTaken {
        zone: String,
        holder: String,
        expires_in: std::time::Duration,
    },
}

/// Opens the store the config selects and returns the port systems use. For Redis this
/// connects (bounded by `store_timeout`) and fails with an error naming the URL when Redis
/// cannot be reached.
pub fn open(config: &StoreSettings) -> Result<StorePort, OpenError> {
    open_with_backend(config).map(|(port, _)| port)
}

/// [`open`], also returning the memory backend when the store is memory, so the front
/// door's accounts can see its leases (a resume token is not spent on a player online).
pub fn open_with_backend(
    config: &StoreSettings,
) -> Result<(StorePort, Option<Arc<MemoryBackend>>), OpenError> {
    match &config.selection {
        StoreSelection::Memory => {
            let backend = MemoryBackend::new(StoreClock::Real(std::time::Instant::now()));
            let port = MemoryStore::open(Arc::clone(&backend), config).1;
            Ok((port, Some(backend)))
        }
        StoreSelection::Redis(url) | StoreSelection::RedisCluster(url) => {
            let (tx, rx) = crossbeam_channel::unbounded();
            let store: Arc<dyn PlayerStore> = Arc::new(RedisStore::open(config, url, tx)?);
            Ok((StorePort::new(store, rx), None))
        }
    }
}
