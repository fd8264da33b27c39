//! [`StorePlugin`]: opens the store its settings select, and the account store beside it,
//! when the app finishes building.

use std::sync::Arc;

use bevy_app::{App, Plugin};
use bevy_ecs::resource::Resource;
use hearth_components::StoreSelection;
use hearth_systems::storage::StorePort;

use super::accounts::{AccountError, AccountStore, AccountStoreFactory, MemoryAccounts};
use super::{MemoryBackend, StoreSettings, open_with_backend};
use crate::startup::{self, StartupFailure};
use crate::store::ZoneRegistration;
use crate::store::redis::accounts::RedisAccounts;
use crate::store::redis::border::BorderBus;
use crate::store::redis::cluster::ClusterUrl;
use crate::store::redis::resume_undo::ResumeUndos;
use crate::store::redis::zones::RedisZones;
use crate::store::zones::{ZoneStore, ZoneStoreFactory};

/// The game listener's configured address, which the instance registration records so an
/// operator sees where a process serves. The front door plugin inserts it when built.
#[derive(Resource, Clone, Copy, Debug)]
pub struct AdvertisedListen(pub std::net::SocketAddr);

/// The WebSocket listener's configured address (when there is one), inserted by the front
/// door plugin: a zone's registration tells handoffs of WebSocket clients to go there.
#[derive(Resource, Clone, Copy, Debug)]
pub struct AdvertisedWsListen(pub std::net::SocketAddr);

/// The account stores the front door's auth workers use (one per worker, from this factory).
#[derive(Resource, Clone)]
pub struct AccountStores(pub AccountStoreFactory);

/// The zone this process serves, as the zones plugin advertises it (inserted in its `build`):
/// the store registers it beside the instance. An address left `None` defaults to the
/// matching listener's.
#[derive(Resource, Clone, Debug)]
pub struct AdvertisedZone {
    pub name: String,
    /// The fingerprint of the zone map (`ZoneMap::digest` in the zones module).
    pub map: String,
    pub public_addr: Option<String>,
    pub public_ws_addr: Option<String>,
}

/// How long a resume token stays usable (the front door's `resume_ttl`, inserted by it): a
/// token issued for a handoff lives as long.
#[derive(Resource, Clone, Copy)]
pub struct ResumeTokenLifetime(pub std::time::Duration);

/// The zone stores of the zones module (one per worker, from this factory): present when the
/// process serves a zone (on Redis).
#[derive(Resource, Clone)]
pub struct ZoneStores(pub ZoneStoreFactory);

/// Opens the store [`StoreSettings::selection`] names (and its account store) in
/// `Plugin::finish`: after every plugin's `build`, so a test or an embedder that inserted its
/// own [`StorePort`] (and [`AccountStores`]) first keeps it, and before the listeners that
/// need it. A store that cannot be opened is recorded in [`crate::startup::StartupFailures`]
/// and the runner exits 1 naming it.
#[derive(Clone, Debug, Default)]
pub struct StorePlugin {
    /// Which store, its keys, this process's identity, leases and call bounds.
    pub settings: StoreSettings,
}

impl Plugin for StorePlugin {
    fn build(&self, _app: &mut App) {}

    fn finish(&self, app: &mut App) {
        if app.world().contains_resource::<StorePort>() {
            return;
        }
        let mut settings = self.settings.clone();
        settings.listen = app.world().get_resource::<AdvertisedListen>().map(|a| a.0);
        let ws_listen = app
            .world()
            .get_resource::<AdvertisedWsListen>()
            .map(|a| a.0);
        settings.zone = app
            .world()
            .get_resource::<AdvertisedZone>()
            .map(|zone| ZoneRegistration {
                name: zone.name.clone(),
                map: zone.map.clone(),
                public_addr: zone.public_addr.clone().unwrap_or_else(|| {
                    settings
                        .listen
                        .map(|addr| addr.to_string())
                        .unwrap_or_default()
                }),
                public_ws_addr: zone
                    .public_ws_addr
                    .clone()
                    .or_else(|| ws_listen.map(|addr| addr.to_string())),
            });
        let opened = open_with_backend(&settings)
            .map_err(|e| StartupFailure::Store(Box::new(e)))
            .and_then(|(port, backend)| {
                let accounts = match backend {
                    Some(backend) => memory_account_stores(backend, &settings.lease_owner()),
                    None => account_stores(&self.settings)
                        .map_err(|e| StartupFailure::Store(Box::new(e)))?,
                };
                Ok((port, accounts))
            });
        match opened {
            Ok((port, accounts)) => {
                let info = port.info();
                let instance = &self.settings.instance_id;
                if info.durable {
                    tracing::info!(store = info.backend, location = %info.location, %instance, "store ready");
                } else {
                    tracing::warn!(store = info.backend, %instance, "store ready: the {} store is NOT durable; everything is lost when the process exits (use --store redis://...)", info.backend);
                }
                app.insert_resource(port)
                    .insert_resource(AccountStores(accounts));
                if let Some(zones) = zone_stores(&settings) {
                    app.insert_resource(ZoneStores(zones));
                }
                if let Some(bus) = border_bus(&settings) {
                    app.insert_resource(bus);
                }
            }
            Err(failure) => startup::record(app.world_mut(), failure),
        }
    }
}

/// Account storage matching the selected store: memory, or Redis (one server or a cluster) at
/// the same URL.
pub fn account_stores(settings: &StoreSettings) -> Result<AccountStoreFactory, AccountError> {
    match &settings.selection {
        StoreSelection::Memory => {
            let shared = MemoryAccounts::default();
            Ok(Arc::new(move || {
                Box::new(shared.clone()) as Box<dyn AccountStore>
            }))
        }
        StoreSelection::Redis(url) | StoreSelection::RedisCluster(url) => {
            let owner = settings.lease_owner();
            RedisAccounts::new(url, &settings.key_prefix, settings.store_timeout, &owner)?; // URL check at start
            let (url, prefix, timeout) = (
                url.clone(),
                settings.key_prefix.clone(),
                settings.store_timeout,
            );
            let undos = ResumeUndos::start(&url, &prefix, timeout, &owner)
                .map_err(|e| AccountError::Unavailable(e.to_string()))?;
            Ok(Arc::new(move || {
                Box::new(
                    RedisAccounts::new(&url, &prefix, timeout, &owner)
                        .expect("URL validated at start")
                        .with_undos(undos.clone()),
                ) as Box<dyn AccountStore>
            }))
        }
    }
}

/// Zone stores on the Redis the settings select, for a process that serves a zone (`None`
/// otherwise: the memory store serves no zones).
fn zone_stores(settings: &StoreSettings) -> Option<ZoneStoreFactory> {
    settings.zone.as_ref()?;
    let (StoreSelection::Redis(url) | StoreSelection::RedisCluster(url)) = &settings.selection
    else {
        return None;
    };
    let (url, prefix, timeout, owner) = (
        url.clone(),
        settings.key_prefix.clone(),
        settings.store_timeout,
        settings.lease_owner(),
    );
    Some(Arc::new(move || -> Box<dyn ZoneStore> {
        Box::new(RedisZones::new(&url, &prefix, timeout, &owner).expect("URL validated at start"))
    }))
}

/// The border channels on the Redis (or cluster) the settings select, for a process that
/// serves a zone (`None` otherwise).
fn border_bus(settings: &StoreSettings) -> Option<BorderBus> {
    settings.zone.as_ref()?;
    match &settings.selection {
        StoreSelection::Redis(url) => Some(BorderBus::new(url, &settings.key_prefix)),
        StoreSelection::RedisCluster(url) => match ClusterUrl::parse(url) {
            Ok(cluster) => Some(BorderBus::cluster(cluster, &settings.key_prefix)),
            Err(e) => {
                tracing::error!(error = %e, "border sharing is off: the cluster URL does not parse");
                None
            }
        },
        StoreSelection::Memory => None,
    }
}

/// Memory accounts that see the leases of the memory store `backend` (as `resume.lua` sees
/// the Redis leases) for the server whose lease owner is `owner`: a resume token presented
/// while its player is online is kept, and one spent takes the lease with it.
pub fn memory_account_stores(backend: Arc<MemoryBackend>, owner: &str) -> AccountStoreFactory {
    let shared = MemoryAccounts::on_leases(backend, owner);
    Arc::new(move || Box::new(shared.clone()) as Box<dyn AccountStore>)
}
