//! The Redis side of border sharing: the zones' Pub/Sub channels (`<prefix>:border:{<zone>}`)
//! and plain blocking connections to publish and subscribe on, each owned by a thread of the
//! border link (`src/zones/border`). One Redis only: on a cluster, Pub/Sub would need sharded
//! channels (SPUBLISH/SSUBSCRIBE on each channel's node), which this does not do.

use std::time::Duration;

use super::Keys;
use super::client::client_for;

/// How long connecting, or one write, may take before the link retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where border snapshots travel: the Redis at a URL and its channel names.
#[derive(bevy_ecs::resource::Resource, Clone, Debug)]
pub struct BorderBus {
    url: String,
    keys: Keys,
}

impl BorderBus {
    /// The channels under `prefix` on the (single) Redis at `url`.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_string(),
            keys: Keys::new(prefix),
        }
    }

    /// The channel `zone`'s process publishes its border strip on.
    pub fn channel(&self, zone: &str) -> String {
        self.keys.border(zone)
    }

    /// A new connection whose reads give up after `read_timeout` (so a subscriber can look
    /// up from waiting) and whose writes after a second.
    pub fn connect(&self, read_timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let connection = client_for(&self.url)?.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        connection.set_read_timeout(Some(read_timeout))?;
        connection.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        Ok(connection)
    }
}
