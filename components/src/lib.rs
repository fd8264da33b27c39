//! Hearth's data: components, ECS messages, the persisted player record and config values.
//!
//! This crate holds no behaviour and does no I/O, so game code, systems and store adapters can
//! all depend on it without pulling in tokio or Redis.

pub mod config;
pub mod messages;
pub mod player;
pub mod position;
pub mod protocol;
pub mod record;
pub mod wire;

pub use config::{ConfigError, StoreSelection, StoreUrlError};
pub use messages::{
    JoinRefusal, JoinRefused, JoinRequest, LeaveRequest, OwnershipLost, PlayerJoined, PlayerLeft,
    SaveNowRequest, SaveTogether, SavedNow, SavedTogether, TogetherOutcome,
};
pub use player::{
    Dirty, InFlightSave, JustLoaded, Leaving, PlayerId, SaveNowPending, SaveState, SessionOwner,
    UnknownSections,
};
pub use position::Position;
pub use record::{
    CURRENT_RECORD_VERSION, MAX_RECORD_SEQ, MigrationError, PlayerRecord, PlayerSnapshot,
    RecordError, SectionData, SectionValue, SnapshotEncodeError,
};
