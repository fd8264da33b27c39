//! What a game needs, in one import: `use hearth::prelude::*;`. A game crate depends on
//! `hearth` (and `serde` for its message types) and never has to match Bevy versions: the
//! Bevy crates Hearth is built on are re-exported here, and Bevy's derives (`Component`,
//! `Resource`, `Message`, `SystemParam`) find them through this import; so does schemars'
//! `JsonSchema` derive, which every message type has (it types the bindings `hearth schema`
//! writes). `tracing` is here for
//! its logging macros (`tracing::info!`), and [`crate::config::parse_cli`] reads the
//! server's flags without a `clap` dependency. Test fixtures are in `hearth::testing` (the
//! `testing` feature, for a game's dev-dependencies).

pub use bevy_app;
pub use bevy_ecs;
pub use bevy_time;
pub use schemars;
pub use tracing;

pub use bevy_app::{
    App, AppExit, First, FixedUpdate, Last, Plugin, PluginGroup, PostUpdate, PreUpdate, Startup,
    Update,
};
pub use bevy_ecs::prelude::*;
pub use bevy_time::{Real, Time, Timer, TimerMode};
pub use schemars::JsonSchema;
pub use serde::{Deserialize, Serialize};

pub use hearth_components::protocol::RequestId;
pub use hearth_components::{
    JoinRefusal, JoinRefused, LeaveRequest, Leaving, OwnershipLost, PlayerId, PlayerJoined,
    PlayerLeft, Position, SaveNowRequest, SaveTogether, SavedNow, SavedTogether, TogetherOutcome,
};
pub use hearth_systems::replication::{
    InterestTags, QuantisedPositionEncoding, ReplicationAppExt, ReplicationPlugin, RoundSettings,
};
pub use hearth_systems::{
    AnswerTo, EntryList, FromClient, GameMessagesAppExt, Nearby, NearbyPlayers, NetSystems,
    PersistenceSystems, PersistentAppExt, Players, Playing, Refusals, SessionSystems,
    SharedEntries, ToClients,
};

pub use crate::HearthPlugins;
pub use crate::config::ServerConfig;
pub use crate::net::FrontDoorPlugin;
pub use crate::runner::{DrainSignal, RunnerPlugin, StopSignal, TickRatePlugin};
pub use crate::startup::BoundAddresses;
