//! Zones: one world cut into rectangles, each served by its own Hearth process (issue 20).
//! Every process of the world reads the same zone map (`--zones FILE`, [`ZoneMap`]) and
//! serves the zone named by `--zone`; the store registers it (`<prefix>:zone:{<name>}`, with
//! the address its clients are handed over to, `--public-addr`), so a second process for the
//! zone refuses to start and the others can find where a zone is served. Both keys unset
//! keeps a single world, exactly as before. Players near a border see their neighbours
//! across it ([`border`]).

pub mod border;
mod handoff;
mod map;
mod worker;

use std::sync::Arc;

use bevy_app::{App, Plugin, PostUpdate, PreUpdate};
use bevy_ecs::prelude::*;
use hearth_systems::net::NetSystems;

use self::handoff::{PendingHandoffs, detect_crossings, finish_hand_overs, send_hand_overs};
pub use self::map::{Zone, ZoneMap, ZoneMapError};
use self::worker::{ZoneDirectory, ZonesWorker};
use crate::startup::{self, StartupFailure};
use crate::store::{AdvertisedZone, ZoneStores};

/// The zone settings of a process: the world's map, the zone it serves, and where its
/// clients connect.
#[derive(Clone, Debug, Default)]
pub struct ZonesPlugin {
    /// The world's zone map (the `zones` key: a TOML file every process of the world shares),
    /// read and checked when the configuration loads.
    pub map: Option<Arc<ZoneMap>>,
    /// The zone this process serves (the `zone` key), a name in `map`.
    pub zone: Option<String>,
    /// Where this zone's clients connect, `host:port` (the `public_addr` key): players are
    /// handed over to it. Defaults to the game listener's address.
    pub public_addr: Option<String>,
    /// Where this zone's WebSocket clients connect, `host:port` (the `public_ws_addr` key).
    /// Defaults to the WebSocket listener's address.
    pub public_ws_addr: Option<String>,
}

/// The zone this process serves, for its systems: the world's map and its own rectangle.
#[derive(Resource, Clone, Debug)]
pub struct ServedZone {
    pub map: Arc<ZoneMap>,
    pub zone: Zone,
}

impl Plugin for ZonesPlugin {
    fn build(&self, app: &mut App) {
        // `ServerConfig::validate` checked that both are set (or neither) and that the zone
        // is in the map.
        let (Some(map), Some(name)) = (&self.map, &self.zone) else {
            return;
        };
        let Some(zone) = map.zone(name) else {
            return;
        };
        app.insert_resource(AdvertisedZone {
            name: zone.name.clone(),
            map: map.digest(),
            public_addr: self.public_addr.clone(),
            public_ws_addr: self.public_ws_addr.clone(),
        });
        app.insert_resource(ServedZone {
            map: Arc::clone(map),
            zone: zone.clone(),
        })
        .init_resource::<PendingHandoffs>()
        .init_resource::<ZoneDirectory>()
        .add_systems(
            PreUpdate,
            finish_hand_overs
                .after(NetSystems::Receive)
                .run_if(resource_exists::<ZonesWorker>),
        )
        .add_systems(
            PostUpdate,
            (
                detect_crossings.before(NetSystems::Send),
                send_hand_overs.after(NetSystems::Send),
            )
                .run_if(resource_exists::<ZonesWorker>),
        );
        border::build(app);
    }

    /// Starts the zones worker on the store's zone connections (the store opened in its own
    /// `finish`, before this one).
    fn finish(&self, app: &mut App) {
        let Some(served) = app.world().get_resource::<ServedZone>() else {
            return;
        };
        let Some(stores) = app.world().get_resource::<ZoneStores>() else {
            // The store failed to open (recorded already) or serves no zones (refused by
            // the configuration's checks).
            return;
        };
        let zones = served.map.zones().iter().map(|z| z.name.clone()).collect();
        let own = served.zone.name.clone();
        let map = served.map.digest();
        let directory = app.world().resource::<ZoneDirectory>().clone();
        match ZonesWorker::start(Arc::clone(&stores.0), zones, &own, map, directory) {
            Ok(worker) => {
                tracing::info!(zone = %own, "serving zone");
                app.insert_resource(worker);
            }
            Err(e) => startup::record(app.world_mut(), StartupFailure::Zones(e.to_string())),
        }
        border::start(app);
    }
}
