//! Zones in Redis: registrations read from `<prefix>:zone:{<name>}` (with the holder's
//! liveness key), handoffs with `handoff.lua`, on blocking connections of the zones worker's
//! own (`blocking.rs`), one Redis or a cluster.

use std::time::Duration;

use hearth_components::PlayerId;
use redis::Script;

use super::Keys;
use super::blocking::BlockingNodes;
use super::scripts::HANDOFF_LUA;
use crate::store::accounts::{TOKENS_PER_PLAYER, TokenHash};
use crate::store::zones::{HandOver, ZoneHolder, ZoneStore, ZoneStoreError};

/// Zone lookups and handoffs on the Redis at a URL, for the process whose lease owner is
/// `owner`.
pub struct RedisZones {
    nodes: BlockingNodes,
    keys: Keys,
    owner: String,
    handoff: Script,
}

impl RedisZones {
    /// Zones on the Redis at `url` (`redis://...` or `redis+cluster://...`); connections open
    /// on first use and persist.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        owner: &str,
    ) -> Result<Self, ZoneStoreError> {
        Ok(Self {
            nodes: BlockingNodes::new(url, timeout).map_err(unavailable)?,
            keys: Keys::new(prefix),
            owner: owner.to_string(),
            handoff: Script::new(HANDOFF_LUA),
        })
    }
}

fn unavailable(e: impl std::fmt::Display) -> ZoneStoreError {
    ZoneStoreError(e.to_string())
}

impl ZoneStore for RedisZones {
    fn read_zones(&mut self, zones: &[String]) -> Result<Vec<Option<ZoneHolder>>, ZoneStoreError> {
        let mut holders = Vec::with_capacity(zones.len());
        for zone in zones {
            let key = self.keys.zone(zone);
            let registration: Option<String> = self
                .nodes
                .on_key(&key, |c| redis::cmd("GET").arg(&key).query(c))
                .map_err(unavailable)?;
            let Some(registration) = registration else {
                holders.push(None);
                continue;
            };
            let fields: serde_json::Value = serde_json::from_str(&registration).unwrap_or_default();
            let text = |name: &str| fields[name].as_str().unwrap_or_default().to_string();
            let (owner, public_addr) = (text("owner"), text("public_addr"));
            let alive_key = self.keys.alive(&owner);
            let alive: bool = self
                .nodes
                .on_key(&alive_key, |c| {
                    redis::cmd("EXISTS").arg(&alive_key).query(c)
                })
                .map_err(unavailable)?;
            holders.push(Some(ZoneHolder {
                owner,
                public_addr,
                public_ws_addr: fields["public_ws_addr"].as_str().map(String::from),
                alive,
                map: text("map"),
            }));
        }
        Ok(holders)
    }

    fn hand_over(
        &mut self,
        player: PlayerId,
        to_owner: &str,
        hold: Duration,
        token: &TokenHash,
        token_ttl: Duration,
    ) -> Result<HandOver, ZoneStoreError> {
        let keys = [
            self.keys.session(player),
            self.keys.released(player),
            self.keys.resume(player),
            self.keys.handoff(player),
        ];
        let (script, owner) = (&self.handoff, &self.owner);
        let done: i64 = self
            .nodes
            .on_key(&keys[0], |c| {
                script
                    .key(&keys[0])
                    .key(&keys[1])
                    .key(&keys[2])
                    .key(&keys[3])
                    .arg(owner)
                    .arg(to_owner)
                    .arg(hold.as_millis().max(1) as u64)
                    .arg(token.as_str())
                    .arg(token_ttl.as_millis().max(1) as u64)
                    .arg(TOKENS_PER_PLAYER)
                    .invoke(c)
            })
            .map_err(unavailable)?;
        Ok(if done == 1 {
            HandOver::Done
        } else {
            HandOver::Refused
        })
    }
}
