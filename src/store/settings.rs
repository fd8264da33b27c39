//! The store's settings: which store, how its keys are named, who this process is (the lease
//! owner) and how store calls are bounded. [`crate::store::StorePlugin`] owns them; the
//! adapters and `hearth admin` open a store from them.

use std::time::Duration;

use hearth_components::StoreSelection;

/// Everything a store adapter needs to open: the `store`, `key_prefix`, `instance_id`,
/// `lease_ttl`, `liveness_ttl`, `store_timeout`, `batch_chunk` and `durable_replicas` keys, and
/// this process's boot token.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Backing store (the `store` key).
    pub selection: StoreSelection,
    /// Prefix of every store key (`hearth:player:{42}`).
    pub key_prefix: String,
    /// This server's name, chosen by the operator (or generated); registered in the store
    /// while the process runs, so a second process started with the same id refuses to start.
    pub instance_id: String,
    /// Random per process start (fresh in every `StoreSettings::default()`). With
    /// `instance_id` it makes the lease owner ([`StoreSettings::lease_owner`]), so a lease
    /// belongs to one running process, never to a name that two processes could share.
    pub boot_token: String,
    /// Lifetime of a session lease that is not refreshed. The instance registration is
    /// renewed every third of it.
    pub lease_ttl: Duration,
    /// Lifetime of this process's liveness key (`<prefix>:alive:{<lease owner>}`), renewed
    /// every third of it. A claim takes over a lease whose holder's key is gone, so this, not
    /// `lease_ttl`, is how long a crashed server's players wait to get back in; and a server
    /// cut off from Redis for longer loses its players to the next server they reach.
    pub liveness_ttl: Duration,
    /// Upper bound on any single store call (a Redis pipeline chunk, a login).
    pub store_timeout: Duration,
    /// Saves or refreshes per pipelined round trip.
    pub batch_chunk: usize,
    /// Replicas that must confirm a save (`WAIT`) before it counts as durable; 0: the
    /// master's reply is enough. With 1 or more, a failover cannot roll back a save a
    /// player was told about.
    pub durable_replicas: u32,
    /// Not a key: the game listener's address, written into the instance registration so an
    /// operator sees where the process serves. [`crate::store::StorePlugin`] fills it from
    /// the [`crate::store::AdvertisedListen`] the front door plugin inserts.
    pub listen: Option<std::net::SocketAddr>,
    /// Not a key: the zone this process serves in a world cut into zones, registered beside
    /// the instance so a second process for the zone refuses to start. [`crate::store::StorePlugin`]
    /// fills it from the `AdvertisedZone` the zones plugin inserts.
    pub zone: Option<ZoneRegistration>,
}

/// What the store registers for the zone this process serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRegistration {
    /// The zone's name in the zone map.
    pub name: String,
    /// The zone map's fingerprint (`ZoneMap::digest` in the zones module).
    pub map: String,
    /// Where its clients connect (`host:port`): handoffs send players there.
    pub public_addr: String,
    /// Where its WebSocket clients connect (`host:port`), if it has a WebSocket listener.
    pub public_ws_addr: Option<String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            selection: StoreSelection::Memory,
            key_prefix: "hearth".into(),
            instance_id: String::new(),
            boot_token: fresh_boot_token(),
            lease_ttl: Duration::from_secs(60),
            liveness_ttl: Duration::from_secs(3),
            store_timeout: Duration::from_secs(2),
            batch_chunk: 1000,
            durable_replicas: 0,
            listen: None,
            zone: None,
        }
    }
}

impl StoreSettings {
    /// The value of every lease this process holds: `<instance_id>/<boot_token>`. Two
    /// processes never share it, even when misconfigured with the same instance id.
    pub fn lease_owner(&self) -> String {
        format!("{}/{}", self.instance_id, self.boot_token)
    }

    /// How often the instance registration is renewed: a third of `lease_ttl`, so one lost
    /// renewal never lets it expire under a live process.
    pub fn registration_heartbeat(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// How often the liveness key is renewed: a third of `liveness_ttl`, so one lost renewal
    /// never lets it expire under a live process.
    pub fn liveness_heartbeat(&self) -> Duration {
        self.liveness_ttl / 3
    }
}

/// 16 hex digits that differ between process starts: a randomly keyed hasher (std seeds its
/// keys from the OS) over the process id and the time.
fn fresh_boot_token() -> String {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_start_has_its_own_lease_owner() {
        let a = StoreSettings {
            instance_id: "eu-1".into(),
            ..StoreSettings::default()
        };
        let b = StoreSettings {
            instance_id: "eu-1".into(),
            ..StoreSettings::default()
        };
        assert!(a.lease_owner().starts_with("eu-1/"), "{}", a.lease_owner());
        assert_ne!(
            a.lease_owner(),
            b.lease_owner(),
            "two starts with one instance id must not share a lease owner"
        );
        assert_eq!(
            a.clone().lease_owner(),
            a.lease_owner(),
            "one process keeps its owner"
        );
    }
}
