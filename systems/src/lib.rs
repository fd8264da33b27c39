//! Hearth's behaviour: one Plugin per capability. Systems reach storage only through the
//! port in [`storage`].

pub mod gameplay;
pub mod metrics;
pub mod net;
pub mod persistence;
pub mod sessions;
pub mod spatial;
pub mod storage;

pub use gameplay::GameplayPlugin;
pub use metrics::{MetricsPlugin, TickMetrics};
pub use net::NetBridgePlugin;
pub use persistence::{
    FlushSchedule, FlushStats, PersistencePlugin, PersistenceSystems, PersistentAppExt,
    PersistentRegistry,
};
pub use sessions::{LeaseRefreshSchedule, OnlinePlayers, SessionPlugin, SessionSystems};
pub use storage::{StoragePlugin, StorePort};
