//! Hearth's behaviour: one Plugin per capability. Systems reach storage only through the
//! port in [`storage`].

pub mod game_messages;
pub mod metrics;
pub mod net;
pub mod persistence;
pub mod players;
pub mod replication;
pub mod schema;
pub mod sessions;
pub mod shared_json;
pub mod spatial;
pub mod storage;

pub use game_messages::{
    AnswerTo, FromClient, GameMessagesAppExt, GameMessagesPlugin, Refusals, ToClients,
};
pub use metrics::{MetricsPlugin, TickMetrics, TickStats};
pub use net::{NetBridgePlugin, NetSystems};
pub use persistence::{
    FlushSchedule, FlushStats, PersistencePlugin, PersistenceSystems, PersistentAppExt,
    PersistentRegistry,
};
pub use players::{Players, Playing};
pub use replication::{
    ClientView, QuantisedPositionEncoding, ReplicationAppExt, ReplicationFeed, ReplicationPlugin,
    ReplicationRound, ReplicationSystems,
};
pub use schema::MessageSchemas;
pub use sessions::{LeaseRefreshSchedule, OnlinePlayers, SessionPlugin, SessionSystems};
pub use shared_json::{EntryList, SharedEntries};
pub use spatial::{FrameCount, Nearby, NearbyPlayers, SpatialIndex, SpatialPlugin};
pub use storage::{StoragePlugin, StorePort};
