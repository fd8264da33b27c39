//! Zones: one world cut into rectangles, each served by its own Hearth process (issue 20).
//! Every process of the world reads the same zone map (`--zones FILE`, [`ZoneMap`]) and
//! serves the zone named by `--zone`; the store registers it (`<prefix>:zone:{<name>}`, with
//! the address its clients are handed over to, `--public-addr`), so a second process for the
//! zone refuses to start and the others can find where a zone is served. Both keys unset
//! keeps a single world, exactly as before.

mod map;

use std::sync::Arc;

use bevy_app::{App, Plugin};
use bevy_ecs::resource::Resource;

pub use self::map::{Zone, ZoneMap, ZoneMapError};

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
}

/// The zone this process serves, for the systems and the store: its place in the map and
/// the address it advertises (`None`: the game listener's).
#[derive(Resource, Clone, Debug)]
pub struct ServedZone {
    pub map: Arc<ZoneMap>,
    pub zone: Zone,
    pub public_addr: Option<String>,
}

impl Plugin for ZonesPlugin {
    fn build(&self, app: &mut App) {
        // `ServerConfig::validate` checked that both are set (or neither) and that the zone
        // is in the map.
        let (Some(map), Some(name)) = (&self.map, &self.zone) else {
            return;
        };
        if let Some(zone) = map.zone(name) {
            app.insert_resource(ServedZone {
                map: Arc::clone(map),
                zone: zone.clone(),
                public_addr: self.public_addr.clone(),
            });
        }
    }
}
