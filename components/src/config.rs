//! Configuration values shared across crates: which store backs a server, and the error a
//! refused value gets. Each plugin owns its own settings; the `hearth` crate reads them from
//! file, environment and flags.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
