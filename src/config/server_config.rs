//! The whole configuration of a server: every plugin of [`crate::HearthPlugins`] with its
//! settings. Each setting lives in the plugin that uses it (one owner); [`super::KEYS`]
//! fills them from the config file, `HEARTH_*` variables and flags, and
//! [`crate::HearthPlugins::new`] adds the plugins as they are.

use std::time::Duration;

use hearth_components::ConfigError;
use hearth_systems::{MetricsPlugin, PersistencePlugin, SessionPlugin};

use crate::net::FrontDoorPlugin;
use crate::observability::MetricsEndpointPlugin;
use crate::runner::{RunnerPlugin, TickRatePlugin};
use crate::store::StorePlugin;
use crate::zones::ZonesPlugin;

/// Every configurable plugin of a server, each holding its own settings (its defaults are
/// the plugins' `Default`s). Change one before starting, or override one plugin later with
/// `HearthPlugins::new(config).set(...)`: no system reads this struct, so the two never
/// disagree.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// Fixed game ticks per second.
    pub tick: TickRatePlugin,
    /// The store: which one, its keys, this process's identity, leases and call bounds.
    pub store: StorePlugin,
    /// How soon a changed player is saved.
    pub persistence: PersistencePlugin,
    /// How often leases are refreshed.
    pub sessions: SessionPlugin,
    /// Verbose summaries and their latency threshold.
    pub metrics: MetricsPlugin,
    /// The client listener: address, limits, timeouts, resume tokens.
    pub front_door: FrontDoorPlugin,
    /// The HTTP listener for `/metrics`, `/healthz` and `/readyz`.
    pub metrics_endpoint: MetricsEndpointPlugin,
    /// Shutdown's deadline.
    pub runner: RunnerPlugin,
    /// The world's zone map and the zone this process serves (none: a single world).
    pub zones: ZonesPlugin,
}

impl ServerConfig {
    /// Zones: a map and a zone together or neither, the zone in the map, and a store that
    /// processes share (Redis), since zones are served by separate processes.
    fn validate_zones(&self) -> Result<(), ConfigError> {
        let zones = &self.zones;
        match (&zones.map, &zones.zone) {
            (None, None) if zones.public_addr.is_some() => Err(ConfigError::new(
                "public_addr",
                "is where a zone's clients are handed over to: set it with --zones and --zone",
            )),
            (None, None) => Ok(()),
            (Some(_), None) => Err(ConfigError::new(
                "zone",
                "must be set with zones: the zone of the map this process serves",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "zones",
                "must be set with zone: the zone map file the zone is in",
            )),
            (Some(map), Some(name)) => {
                if map.zone(name).is_none() {
                    let names: Vec<&str> = map.zones().iter().map(|z| z.name.as_str()).collect();
                    return Err(ConfigError::new(
                        "zone",
                        format!(
                            "{name:?} is not in the zone map (its zones: {})",
                            names.join(", ")
                        ),
                    ));
                }
                let listen = self.front_door.listen;
                if zones.public_addr.is_none()
                    && (listen.port() == 0 || listen.ip().is_unspecified())
                {
                    return Err(ConfigError::new(
                        "public_addr",
                        format!(
                            "must be set when listen ({listen}) is not an address clients can connect to: handoffs send players to it"
                        ),
                    ));
                }
                if let Some(ws) = self.front_door.listen_ws
                    && zones.public_ws_addr.is_none()
                    && (ws.port() == 0 || ws.ip().is_unspecified())
                {
                    return Err(ConfigError::new(
                        "public_ws_addr",
                        format!(
                            "must be set when listen_ws ({ws}) is not an address clients can connect to: handoffs send WebSocket players to it"
                        ),
                    ));
                }
                if self.store.settings.selection == hearth_components::StoreSelection::Memory {
                    return Err(ConfigError::new(
                        "zone",
                        "zones are served by separate processes sharing one store: use --store redis://... (or redis+cluster://...)",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The value of every lease this process holds (`<instance_id>/<boot_token>`).
    pub fn lease_owner(&self) -> String {
        self.store.settings.lease_owner()
    }

    /// Settings that are valid but risky, one sentence each naming the keys and values, for
    /// the server to log at start: a risk nobody is told about is found in an outage.
    /// - `lease_refresh_interval` over a third of `lease_ttl`: one lost refresh leaves the
    ///   lease one refresh from expiry (operations.md recommends at most a third);
    /// - `store_timeout` not shorter than `lease_refresh_interval`: a refresh that times out
    ///   can still be in flight when the next one starts.
    pub fn warnings(&self) -> Vec<String> {
        let (ttl, refresh) = (
            self.store.settings.lease_ttl,
            self.sessions.lease_refresh_interval,
        );
        let store_timeout = self.store.settings.store_timeout;
        let mut warnings = Vec::new();
        if refresh.checked_mul(3).is_none_or(|thrice| thrice > ttl) {
            warnings.push(format!(
                "lease_refresh_interval ({refresh:?}) is over a third of lease_ttl ({ttl:?}): one lost \
                 refresh leaves a lease one refresh from expiry; keep it at most a third"
            ));
        }
        if store_timeout >= refresh {
            warnings.push(format!(
                "store_timeout ({store_timeout:?}) is not shorter than lease_refresh_interval ({refresh:?}): a \
                 refresh can still be in flight when the next one is due; keep it well below"
            ));
        }
        warnings
    }

    /// Checks values that parse but make no sense, alone or together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let store = &self.store.settings;
        let front_door = &self.front_door;
        let positive = |key, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::new(key, "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        positive("flush_interval", self.persistence.flush_interval)?;
        positive("lease_ttl", store.lease_ttl)?;
        positive(
            "lease_refresh_interval",
            self.sessions.lease_refresh_interval,
        )?;
        positive("shutdown_deadline", self.runner.shutdown_deadline)?;
        positive("store_timeout", store.store_timeout)?;
        positive("metrics_interval", self.metrics.metrics_interval)?;
        positive("idle_timeout", front_door.idle_timeout)?;
        if front_door.resume_ttl < Duration::from_secs(1) {
            return Err(ConfigError::new("resume_ttl", "must be at least 1s"));
        }
        if store.liveness_ttl < Duration::from_millis(300) {
            return Err(ConfigError::new("liveness_ttl", "must be at least 300ms"));
        }
        if store.lease_ttl < Duration::from_millis(100) {
            return Err(ConfigError::new("lease_ttl", "must be at least 100ms"));
        }
        if self.sessions.lease_refresh_interval >= store.lease_ttl {
            return Err(ConfigError::new(
                "lease_refresh_interval",
                format!(
                    "must be shorter than lease_ttl ({:?}), or leases expire between refreshes",
                    store.lease_ttl
                ),
            ));
        }
        self.validate_zones()?;
        let rate = self.tick.tick_rate;
        if !(rate.is_finite() && rate > 0.0 && rate <= 1000.0) {
            return Err(ConfigError::new(
                "tick_rate",
                "must be greater than 0 and at most 1000 ticks per second",
            ));
        }
        let prefix_ok = !store.key_prefix.is_empty()
            && store.key_prefix.len() <= 64
            && store
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
        if !prefix_ok {
            return Err(ConfigError::new(
                "key_prefix",
                "must be 1-64 characters of [A-Za-z0-9_-.:]",
            ));
        }
        if store.instance_id.is_empty()
            || store.instance_id.len() > 128
            || store.instance_id.chars().any(char::is_whitespace)
        {
            return Err(ConfigError::new(
                "instance_id",
                "must be 1-128 characters without whitespace",
            ));
        }
        if store.boot_token.is_empty() || store.boot_token.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "boot_token",
                "must be non-empty without whitespace",
            ));
        }
        if front_door.registrations_per_minute == 0 {
            return Err(ConfigError::new(
                "registrations_per_minute",
                "must be at least 1",
            ));
        }
        if front_door.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be at least 1"));
        }
        if front_door.max_connections_per_address == 0 {
            return Err(ConfigError::new(
                "max_connections_per_address",
                "must be at least 1",
            ));
        }
        if front_door.tls_cert.is_some() != front_door.tls_key.is_some() {
            let missing = if front_door.tls_cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            };
            return Err(ConfigError::new(
                missing,
                "tls_cert and tls_key go together: set both for TLS, or neither",
            ));
        }
        if front_door.listen_ws == Some(front_door.listen) && front_door.listen.port() != 0 {
            return Err(ConfigError::new(
                "listen_ws",
                "must differ from listen (the game's TCP listener)",
            ));
        }
        if !(1..=100_000).contains(&store.batch_chunk) {
            return Err(ConfigError::new(
                "batch_chunk",
                "must be between 1 and 100000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ServerConfig {
        let mut config = ServerConfig::default();
        config.store.settings.instance_id = "test".into();
        config
    }

    #[test]
    fn a_zero_tick_rate_is_refused_with_a_range_that_excludes_it() {
        for rate in [0.0, -1.0, 1000.5, f64::NAN] {
            let mut config = valid();
            config.tick.tick_rate = rate;
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, "tick_rate");
            assert!(
                err.reason.contains("greater than 0 and at most 1000"),
                "{rate}: {err}"
            );
        }
        for rate in [0.5, 60.0, 1000.0] {
            let mut config = valid();
            config.tick.tick_rate = rate;
            assert_eq!(config.validate(), Ok(()), "{rate}");
        }
    }

    #[test]
    fn the_defaults_are_not_risky() {
        assert_eq!(valid().warnings(), Vec::<String>::new());
    }

    #[test]
    fn a_refresh_interval_over_a_third_of_the_ttl_is_warned_about() {
        let mut config = valid();
        config.store.settings.lease_ttl = Duration::from_secs(60);
        config.sessions.lease_refresh_interval = Duration::from_secs(21);
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("lease_refresh_interval (21s)"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("lease_ttl (60s)"), "{warnings:?}");
        // Exactly a third is what operations.md recommends: no warning.
        config.sessions.lease_refresh_interval = Duration::from_secs(20);
        assert_eq!(config.warnings(), Vec::<String>::new());
    }

    #[test]
    fn a_store_timeout_not_below_the_refresh_interval_is_warned_about() {
        let mut config = valid();
        config.sessions.lease_refresh_interval = Duration::from_secs(2);
        config.store.settings.store_timeout = Duration::from_secs(2);
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("store_timeout (2s)"), "{warnings:?}");
        assert!(
            warnings[0].contains("lease_refresh_interval (2s)"),
            "{warnings:?}"
        );
        config.store.settings.store_timeout = Duration::from_millis(1999);
        assert_eq!(config.warnings(), Vec::<String>::new());
    }
}
