//! Store adapters behind the storage port: memory (default) and Redis.

pub mod memory;

use std::sync::Arc;

use hearth_components::{ServerConfig, StoreSelection};
use hearth_systems::storage::{PlayerStore, StorePort};

pub use memory::{MemoryBackend, MemoryStore, StoreClock};

/// Why a store could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot reach Redis at {url}: {reason}")]
    Redis { url: String, reason: String },
}

/// Opens the store the config selects and returns the port systems use.
pub fn open(config: &ServerConfig) -> Result<StorePort, OpenError> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let store: Arc<dyn PlayerStore> = match &config.store {
        StoreSelection::Memory => Arc::new(MemoryStore::new(
            MemoryBackend::new(StoreClock::Real(std::time::Instant::now())),
            &config.instance_id,
            config.lease_ttl,
            &config.key_prefix,
            tx,
        )),
        StoreSelection::Redis(url) => {
            return Err(OpenError::Redis {
                url: url.clone(),
                reason: "the Redis store is not built yet".into(),
            });
        }
    };
    Ok(StorePort::new(store, rx))
}
