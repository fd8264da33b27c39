//! Replication: a game declares which components its clients see
//! ([`ReplicationAppExt::replicate`]) and Hearth sends each logged-in player the entities in
//! its area of interest as *entered* / *changed* / *left* updates, within a byte budget, in
//! the connection's encoding.
//!
//! The tick only copies changed values into a shared round ([`round`]) at the replication
//! rate; interest ([`interest`]), priority ([`priority`]), deltas against each client's
//! baseline ([`view`]) and encoding ([`encode`]) run in the connection tasks, off the tick.

pub mod encode;
pub mod interest;
pub mod priority;
pub mod registry;
pub mod replica;
pub mod round;
pub mod view;

use std::sync::Arc;

use bevy_app::{App, Plugin, PostUpdate};
use bevy_ecs::prelude::*;

pub use encode::{Introduction, write_binary, write_json};
pub use interest::{InterestRule, InterestTags, SharedLayer};
pub use registry::{
    ComponentEncodeError, ComponentValue, QuantisedPositionEncoding, ReplicatedComponent,
    ReplicationEncoding, ReplicationRegistry, SerdeEncoding,
};
pub use replica::{EncodedReplica, EncodedValue};
pub use round::{ReplicationFeed, ReplicationRound, RoundEntity, RoundSettings};
pub use view::{ClientView, Composed};

use round::Staging;

/// Ordering of the replication round in `PostUpdate`: after the game's changes of the frame
/// (anything in `Update`, `FixedUpdate` or earlier in `PostUpdate` before this set).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicationSystems {
    /// The round clock.
    Clock,
    /// Replicated components copied (at a round).
    Collect,
    /// The round published (at a round).
    Publish,
}

/// Replication, with its settings. [`ReplicationAppExt::replicate`] adds it with the defaults
/// when it is missing; add it yourself first to change them.
#[derive(Clone, Copy, Debug)]
pub struct ReplicationPlugin {
    /// The round settings (rate, radius, candidates, budget).
    pub settings: RoundSettings,
}

impl Default for ReplicationPlugin {
    /// 20 rounds a second; interest within 50 units on a ±1000 world; at most 128 candidates
    /// per client per round; 4,096 bytes a second per client (204 a round): a 64-player crowd
    /// moving 5 times a second fits (2.3 KB/s per player in binary, measured with hearth-swarm).
    fn default() -> Self {
        Self {
            settings: RoundSettings {
                rate_hz: 20.0,
                radius: 50.0,
                half_extent: 1000.0,
                max_candidates: 128,
                bytes_per_second: 4096,
            },
        }
    }
}

impl Plugin for ReplicationPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ReplicationRegistry>()
            .insert_resource(ReplicationFeed::new(self.settings))
            .insert_resource(Staging::new(self.settings))
            .configure_sets(
                PostUpdate,
                (
                    ReplicationSystems::Clock,
                    ReplicationSystems::Collect,
                    ReplicationSystems::Publish,
                )
                    .chain(),
            )
            .configure_sets(
                PostUpdate,
                (ReplicationSystems::Collect, ReplicationSystems::Publish).run_if(round::round_due),
            )
            .add_systems(
                PostUpdate,
                (
                    round::advance_clock.in_set(ReplicationSystems::Clock),
                    round::collect_encoded.in_set(ReplicationSystems::Collect),
                    round::publish.in_set(ReplicationSystems::Publish),
                ),
            );
    }
}

/// Declaring what replicates.
pub trait ReplicationAppExt {
    /// Replicates `C` to every client whose area of interest holds the entity, under the
    /// name of its type in snake_case (`PlayerId` → `player_id`): MessagePack in binary, its
    /// serde JSON in JSON. Its `JsonSchema` types it in the bindings (`hearth schema`).
    fn replicate<C>(&mut self) -> &mut Self
    where
        C: Component + Clone + serde::Serialize + schemars::JsonSchema;

    /// Replicates `C` with the encoding `E` (such as [`QuantisedPositionEncoding`]), whose
    /// JSON form is `C`'s serde JSON (what `C`'s `JsonSchema` describes).
    fn replicate_with<C, E>(&mut self) -> &mut Self
    where
        C: Component + Clone + schemars::JsonSchema,
        E: ReplicationEncoding<C>;

    /// Sets the game's visibility rule (the default: [`SharedLayer`]).
    fn set_interest_rule(&mut self, rule: impl InterestRule) -> &mut Self;
}

impl ReplicationAppExt for App {
    fn replicate<C>(&mut self) -> &mut Self
    where
        C: Component + Clone + serde::Serialize + schemars::JsonSchema,
    {
        self.replicate_with::<C, SerdeEncoding>()
    }

    fn replicate_with<C, E>(&mut self) -> &mut Self
    where
        C: Component + Clone + schemars::JsonSchema,
        E: ReplicationEncoding<C>,
    {
        if !self.is_plugin_added::<ReplicationPlugin>() {
            self.add_plugins(ReplicationPlugin::default());
        }
        let name = registry::component_name::<C>();
        let component = ReplicatedComponent {
            name: name.clone(),
            encoding: E::NAME,
        };
        self.world_mut()
            .get_resource_or_init::<crate::schema::MessageSchemas>()
            .add_replicated::<C>(&name);
        let index = self
            .world_mut()
            .resource_mut::<ReplicationRegistry>()
            .add(name, E::NAME);
        self.world_mut()
            .resource_mut::<Staging>()
            .add_component(component);
        self.add_systems(
            PostUpdate,
            round::collect::<C, E>(index).in_set(ReplicationSystems::Collect),
        )
    }

    fn set_interest_rule(&mut self, rule: impl InterestRule) -> &mut Self {
        if !self.is_plugin_added::<ReplicationPlugin>() {
            self.add_plugins(ReplicationPlugin::default());
        }
        self.world_mut()
            .resource_mut::<Staging>()
            .set_rule(Arc::new(rule));
        self
    }
}

#[cfg(test)]
mod tests;
