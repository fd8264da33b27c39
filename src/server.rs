//! Assembling a server the Bevy way: `App::new().add_plugins(HearthPlugins::new(config))
//! .add_plugins(MyGame).run()`. [`HearthPlugins`] holds every capability, each with its own
//! settings from [`ServerConfig`]; each plugin opens what it owns (the store, the listeners)
//! in `Plugin::finish`, and the runner ([`crate::runner`]) runs the frames.

use bevy_app::{PluginGroup, PluginGroupBuilder, TaskPoolPlugin};
use bevy_time::TimePlugin;
use hearth_systems::{GameMessagesPlugin, SpatialPlugin, StoragePlugin};

use crate::config::ServerConfig;

/// Every capability of a Hearth server, each plugin with its settings from one
/// [`ServerConfig`]. Add your game's plugin after it. Override one plugin's settings with
/// `.set(...)`; leave out the network or the runner with
/// `.build().disable::<FrontDoorPlugin>()` (as the world fixtures do, which bring their own
/// store and time).
///
/// [`FrontDoorPlugin`]: crate::net::FrontDoorPlugin
pub struct HearthPlugins {
    config: ServerConfig,
}

impl HearthPlugins {
    /// The plugins of a server with this configuration.
    pub fn new(config: ServerConfig) -> Self {
        Self { config }
    }
}

impl PluginGroup for HearthPlugins {
    fn build(self) -> PluginGroupBuilder {
        let config = self.config;
        // Order matters for `finish`: the store opens before the listeners that need it, the
        // metrics endpoint last so it can read everything.
        PluginGroupBuilder::start::<Self>()
            .add(TaskPoolPlugin::default())
            .add(TimePlugin)
            .add(config.tick)
            .add(config.zones)
            .add(config.store)
            .add(StoragePlugin)
            .add(config.persistence)
            .add(config.sessions)
            .add(SpatialPlugin::default())
            .add(GameMessagesPlugin)
            .add(config.metrics)
            .add(config.front_door)
            .add(config.metrics_endpoint)
            .add(config.runner)
    }
}
