//! Configuration values of a server. Parsing (file, environment, CLI) lives in the `hearth`
//! crate; this is the validated result every plugin reads.

use std::net::SocketAddr;
use std::time::Duration;

use bevy_ecs::resource::Resource;

/// Which store backs the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSelection {
    /// In-process memory: fast, not durable. The default for a first run and for tests.
    Memory,
    /// A Redis server, by URL (`redis://host:port/db`).
    Redis(String),
    /// A Redis Cluster, by its seed nodes (`redis+cluster://host:port[,host:port...]`).
    RedisCluster(String),
}

/// Why a store selection was refused. Never repeats the value (it may hold a password).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// A `rediss://` URL: this build's Redis client has no TLS.
    #[error(
        "rediss:// (Redis over TLS) is not supported: TLS is not built into this \
         server; reach Redis with redis:// (over a TLS tunnel if needed)"
    )]
    TlsUnsupported,
    /// Neither `memory` nor a scheme this server knows.
    #[error("expected \"memory\", a redis:// URL or a redis+cluster:// URL")]
    UnknownScheme,
}

/// The configuration table (`hearth::config`) still reports a refused value as text.
impl From<StoreUrlError> for String {
    fn from(error: StoreUrlError) -> Self {
        error.to_string()
    }
}

impl StoreSelection {
    /// Parses `memory`, a `redis://` URL or a `redis+cluster://` URL. `rediss://` (TLS) is refused here, as a
    /// configuration error, because this build's Redis client has no TLS support: better
    /// than a server that starts and then finds its store unreachable. The reason never
    /// repeats the value (it may hold a password); the caller shows it, redacted.
    pub fn parse(text: &str) -> Result<Self, StoreUrlError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("memory") {
            Ok(Self::Memory)
        } else if text.starts_with("redis://") {
            Ok(Self::Redis(text.to_string()))
        } else if text.starts_with("redis+cluster://") {
            Ok(Self::RedisCluster(text.to_string()))
        } else if text.starts_with("rediss://") {
            Err(StoreUrlError::TlsUnsupported)
        } else {
            Err(StoreUrlError::UnknownScheme)
        }
    }
}

/// The validated configuration of one server process.
#[derive(Resource, Clone, Debug)]
pub struct ServerConfig {
    /// Backing store.
    pub store: StoreSelection,
    /// A dirty player is saved within this long of its change; the saves are paced over the
    /// interval (a slice at a time, see `hearth_systems::persistence`), not sent in one batch.
    pub flush_interval: Duration,
    /// Lifetime of a session lease that is not refreshed.
    pub lease_ttl: Duration,
    /// How often all leases are refreshed in one batch. Must be well below `lease_ttl`.
    pub lease_refresh_interval: Duration,
    /// Fixed game ticks per second.
    pub tick_rate: f64,
    /// Prefix of every store key (`hearth:player:{42}`).
    pub key_prefix: String,
    /// This server's name, chosen by the operator (or generated); registered in the store
    /// while the process runs, so a second process started with the same id refuses to start.
    pub instance_id: String,
    /// Random per process start (fresh in every `ServerConfig::default()`). With
    /// `instance_id` it makes the lease owner ([`ServerConfig::lease_owner`]), so a lease
    /// belongs to one running process, never to a name that two processes could share.
    pub boot_token: String,
    /// How long shutdown may spend saving everyone before it gives up loudly.
    pub shutdown_deadline: Duration,
    /// Upper bound on any single store call (a Redis pipeline chunk, a login).
    pub store_timeout: Duration,
    /// Saves or refreshes per pipelined round trip.
    pub batch_chunk: usize,
    /// Replicas that must confirm a save (`WAIT`) before it counts as durable; 0: the
    /// master's reply is enough. With 1 or more, a failover cannot roll back a save a
    /// player was told about.
    pub durable_replicas: u32,
    /// Verbose logging and periodic metric summaries.
    pub verbose: bool,
    /// How often verbose mode logs a metrics summary.
    pub metrics_interval: Duration,
    /// Verbose mode warns when a store p99 latency exceeds this.
    pub latency_warn: Duration,
    /// TCP address of the client front door.
    pub listen: SocketAddr,
    /// HTTP address of the metrics and health endpoints; `None` (the default): not served.
    /// Off by default so an operator opts in and chooses the interface (a private one, not
    /// the game port's public one).
    pub metrics_listen: Option<SocketAddr>,
    /// A client that sends no line for this long is disconnected.
    pub idle_timeout: Duration,
    /// Accounts one client address may register per minute (bursts up to this many), so one
    /// address cannot fill the account store or keep the auth workers hashing for it.
    pub registrations_per_minute: u32,
    /// Client connections served at once; beyond it new ones get `server_busy` and are
    /// closed, so the server never runs out of file descriptors.
    pub max_connections: usize,
    /// Client connections served at once from one address, so one address cannot take
    /// every slot of `max_connections`.
    pub max_connections_per_address: usize,
    /// How long a resume token (handed out with every `logged_in`) stays usable after the
    /// player's last login, resume or time online: it lets a client reconnect after a
    /// restart or drain without a password (and without argon2's cost).
    pub resume_ttl: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            store: StoreSelection::Memory,
            flush_interval: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(60),
            lease_refresh_interval: Duration::from_secs(20),
            tick_rate: 60.0,
            key_prefix: "hearth".into(),
            instance_id: String::new(),
            boot_token: fresh_boot_token(),
            shutdown_deadline: Duration::from_secs(10),
            store_timeout: Duration::from_secs(2),
            batch_chunk: 1000,
            durable_replicas: 0,
            verbose: false,
            metrics_interval: Duration::from_secs(120),
            latency_warn: Duration::from_millis(50),
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            metrics_listen: None,
            idle_timeout: Duration::from_secs(30),
            registrations_per_minute: 10,
            max_connections: 10_000,
            max_connections_per_address: 64,
            resume_ttl: Duration::from_secs(600),
        }
    }
}

/// A configuration value that was refused, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config `{key}`: {reason}")]
pub struct ConfigError {
    /// The offending key, as written in server.toml.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// Builds an error for `key`.
    pub fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
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

impl ServerConfig {
    /// The value of every lease this process holds: `<instance_id>/<boot_token>`. Two
    /// processes never share it, even when misconfigured with the same instance id.
    pub fn lease_owner(&self) -> String {
        format!("{}/{}", self.instance_id, self.boot_token)
    }

    /// Settings that are valid but risky, one sentence each naming the keys and values, for
    /// the server to log at start: a risk nobody is told about is found in an outage.
    /// - `lease_refresh_interval` over a third of `lease_ttl`: one lost refresh leaves the
    ///   lease one refresh from expiry (operations.md recommends at most a third);
    /// - `store_timeout` not shorter than `lease_refresh_interval`: a refresh that times out
    ///   can still be in flight when the next one starts.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let over_a_third = self
            .lease_refresh_interval
            .checked_mul(3)
            .is_none_or(|thrice| thrice > self.lease_ttl);
        if over_a_third {
            warnings.push(format!(
                "lease_refresh_interval ({:?}) is over a third of lease_ttl ({:?}): one lost \
                 refresh leaves a lease one refresh from expiry; keep it at most a third",
                self.lease_refresh_interval, self.lease_ttl
            ));
        }
        if self.store_timeout >= self.lease_refresh_interval {
            warnings.push(format!(
                "store_timeout ({:?}) is not shorter than lease_refresh_interval ({:?}): a \
                 refresh can still be in flight when the next one is due; keep it well below",
                self.store_timeout, self.lease_refresh_interval
            ));
        }
        warnings
    }

    /// Checks values that parse but make no sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key, d: Duration| {
            if d.is_zero() {
                Err(ConfigError::new(key, "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        positive("flush_interval", self.flush_interval)?;
        positive("lease_ttl", self.lease_ttl)?;
        positive("lease_refresh_interval", self.lease_refresh_interval)?;
        positive("shutdown_deadline", self.shutdown_deadline)?;
        positive("store_timeout", self.store_timeout)?;
        positive("metrics_interval", self.metrics_interval)?;
        positive("idle_timeout", self.idle_timeout)?;
        if self.resume_ttl < Duration::from_secs(1) {
            return Err(ConfigError::new("resume_ttl", "must be at least 1s"));
        }
        if self.lease_ttl < Duration::from_millis(100) {
            return Err(ConfigError::new("lease_ttl", "must be at least 100ms"));
        }
        if self.lease_refresh_interval >= self.lease_ttl {
            return Err(ConfigError::new(
                "lease_refresh_interval",
                format!(
                    "must be shorter than lease_ttl ({:?}), or leases expire between refreshes",
                    self.lease_ttl
                ),
            ));
        }
        if !(self.tick_rate.is_finite() && self.tick_rate > 0.0 && self.tick_rate <= 1000.0) {
            return Err(ConfigError::new(
                "tick_rate",
                "must be greater than 0 and at most 1000 ticks per second",
            ));
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self.key_prefix.len() <= 64
            && self
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
        if !prefix_ok {
            return Err(ConfigError::new(
                "key_prefix",
                "must be 1-64 characters of [A-Za-z0-9_-.:]",
            ));
        }
        if self.instance_id.is_empty()
            || self.instance_id.len() > 128
            || self.instance_id.chars().any(char::is_whitespace)
        {
            return Err(ConfigError::new(
                "instance_id",
                "must be 1-128 characters without whitespace",
            ));
        }
        if self.boot_token.is_empty() || self.boot_token.contains(char::is_whitespace) {
            return Err(ConfigError::new(
                "boot_token",
                "must be non-empty without whitespace",
            ));
        }
        if self.registrations_per_minute == 0 {
            return Err(ConfigError::new(
                "registrations_per_minute",
                "must be at least 1",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be at least 1"));
        }
        if self.max_connections_per_address == 0 {
            return Err(ConfigError::new(
                "max_connections_per_address",
                "must be at least 1",
            ));
        }
        if !(1..=100_000).contains(&self.batch_chunk) {
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

    #[test]
    fn every_process_start_has_its_own_lease_owner() {
        let a = ServerConfig {
            instance_id: "eu-1".into(),
            ..ServerConfig::default()
        };
        let b = ServerConfig {
            instance_id: "eu-1".into(),
            ..ServerConfig::default()
        };
        assert!(a.lease_owner().starts_with("eu-1/"), "{}", a.lease_owner());
        assert_ne!(
            a.lease_owner(),
            b.lease_owner(),
            "one instance id, two starts, two owners"
        );
        assert_eq!(
            a.clone().lease_owner(),
            a.lease_owner(),
            "stable within one"
        );
    }

    fn valid() -> ServerConfig {
        ServerConfig {
            instance_id: "test".into(),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn a_zero_tick_rate_is_refused_with_a_range_that_excludes_it() {
        for rate in [0.0, -1.0, 1000.5, f64::NAN] {
            let err = ServerConfig {
                tick_rate: rate,
                ..valid()
            }
            .validate()
            .unwrap_err();
            assert_eq!(err.key, "tick_rate");
            assert!(
                err.reason.contains("greater than 0 and at most 1000"),
                "{rate}: {err}"
            );
        }
        for rate in [0.5, 60.0, 1000.0] {
            let config = ServerConfig {
                tick_rate: rate,
                ..valid()
            };
            assert_eq!(config.validate(), Ok(()), "{rate}");
        }
    }

    #[test]
    fn rediss_is_refused_because_tls_is_not_built_in() {
        let err = StoreSelection::parse("rediss://:pw@db.example:6380/0").unwrap_err();
        assert_eq!(err, StoreUrlError::TlsUnsupported);
        let err = err.to_string();
        assert!(err.contains("TLS"), "{err}");
        assert!(!err.contains("pw@"), "no password in the reason: {err}");
        assert_eq!(
            StoreSelection::parse(" redis://127.0.0.1:6379/0 "),
            Ok(StoreSelection::Redis("redis://127.0.0.1:6379/0".into()))
        );
        assert_eq!(StoreSelection::parse("Memory"), Ok(StoreSelection::Memory));
        assert_eq!(
            StoreSelection::parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7000"),
            Ok(StoreSelection::RedisCluster(
                "redis+cluster://10.0.0.1:7000,10.0.0.2:7000".into()
            ))
        );
    }

    #[test]
    fn the_defaults_are_not_risky() {
        assert_eq!(valid().warnings(), Vec::<String>::new());
    }

    #[test]
    fn a_refresh_interval_over_a_third_of_the_ttl_is_warned_about() {
        let config = ServerConfig {
            lease_ttl: Duration::from_secs(60),
            lease_refresh_interval: Duration::from_secs(21),
            ..valid()
        };
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("lease_refresh_interval (21s)"),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("lease_ttl (60s)"), "{warnings:?}");
        // Exactly a third is what operations.md recommends: no warning.
        let config = ServerConfig {
            lease_refresh_interval: Duration::from_secs(20),
            ..config
        };
        assert_eq!(config.warnings(), Vec::<String>::new());
    }

    #[test]
    fn a_store_timeout_not_below_the_refresh_interval_is_warned_about() {
        let config = ServerConfig {
            lease_refresh_interval: Duration::from_secs(2),
            store_timeout: Duration::from_secs(2),
            ..valid()
        };
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("store_timeout (2s)"), "{warnings:?}");
        assert!(
            warnings[0].contains("lease_refresh_interval (2s)"),
            "{warnings:?}"
        );
        let config = ServerConfig {
            store_timeout: Duration::from_millis(1999),
            ..config
        };
        assert_eq!(config.warnings(), Vec::<String>::new());
    }
}
