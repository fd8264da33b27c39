//! Configuration: `assets/server.toml`, overridden by `HEARTH_*` environment variables,
//! overridden by command-line flags. Invalid values are refused with the key named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use hearth_components::{ConfigError, ServerConfig, StoreSelection};
use serde::Deserialize;

/// Command line (and environment) of the server. Every flag also reads `HEARTH_<NAME>`.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "hearth",
    version,
    about = "A headless ECS game server whose players persist themselves"
)]
pub struct Cli {
    /// Config file; defaults to assets/server.toml when it exists.
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// `memory` or a Redis URL such as redis://127.0.0.1:6379/0.
    #[arg(long, env = "HEARTH_STORE")]
    pub store: Option<String>,
    /// How often dirty players are saved in one batch (e.g. 30s).
    #[arg(long, env = "HEARTH_FLUSH_INTERVAL")]
    pub flush_interval: Option<String>,
    /// Session lease lifetime without refresh (e.g. 60s).
    #[arg(long, env = "HEARTH_LEASE_TTL")]
    pub lease_ttl: Option<String>,
    /// How often all leases are refreshed (e.g. 20s).
    #[arg(long, env = "HEARTH_LEASE_REFRESH_INTERVAL")]
    pub lease_refresh_interval: Option<String>,
    /// Game ticks per second.
    #[arg(long, env = "HEARTH_TICK_RATE")]
    pub tick_rate: Option<String>,
    /// Prefix of every store key.
    #[arg(long, env = "HEARTH_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    /// This server's instance id (generated when unset).
    #[arg(long, env = "HEARTH_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// How long shutdown may spend saving everyone.
    #[arg(long, env = "HEARTH_SHUTDOWN_DEADLINE")]
    pub shutdown_deadline: Option<String>,
    /// Upper bound on any single store call.
    #[arg(long, env = "HEARTH_STORE_TIMEOUT")]
    pub store_timeout: Option<String>,
    /// Saves or refreshes per pipelined round trip.
    #[arg(long, env = "HEARTH_BATCH_CHUNK")]
    pub batch_chunk: Option<String>,
    /// How often verbose mode logs a metrics summary.
    #[arg(long, env = "HEARTH_METRICS_INTERVAL")]
    pub metrics_interval: Option<String>,
    /// Verbose mode warns when a store p99 latency exceeds this.
    #[arg(long, env = "HEARTH_LATENCY_WARN")]
    pub latency_warn: Option<String>,
    /// TCP address for game clients.
    #[arg(long, env = "HEARTH_LISTEN")]
    pub listen: Option<String>,
    /// HTTP address for /metrics, /healthz and /readyz (e.g. 127.0.0.1:9477); `off` (the
    /// default): no metrics listener.
    #[arg(long, env = "HEARTH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Clients silent this long are disconnected (e.g. 30s).
    #[arg(long, env = "HEARTH_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Accounts one client address may register per minute.
    #[arg(long, env = "HEARTH_REGISTRATIONS_PER_MINUTE")]
    pub registrations_per_minute: Option<String>,
    /// Client connections served at once.
    #[arg(long, env = "HEARTH_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// Client connections served at once from one address.
    #[arg(long, env = "HEARTH_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<String>,
    /// Verbose logs and periodic metric summaries (HEARTH_VERBOSE=1).
    #[arg(long, short, env = "HEARTH_VERBOSE", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub verbose: bool,
}

/// The command line and `HEARTH_*` environment of this process, as the `hearth` binary reads
/// them (exits with clap's usage message on a bad flag, and prints `--help`). A game's own
/// binary calls this so it takes the same flags without depending on `clap`.
pub fn parse_cli() -> Cli {
    Cli::parse()
}

/// [`parse_cli`] under another program's name and description (what `--help` shows), for a
/// game's own binary.
pub fn parse_cli_as(name: &'static str, about: &'static str) -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command().name(name).bin_name(name).about(about);
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

/// The config file: every key optional, unknown keys refused.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    store: Option<String>,
    flush_interval: Option<String>,
    lease_ttl: Option<String>,
    lease_refresh_interval: Option<String>,
    tick_rate: Option<f64>,
    key_prefix: Option<String>,
    instance_id: Option<String>,
    shutdown_deadline: Option<String>,
    store_timeout: Option<String>,
    batch_chunk: Option<u64>,
    metrics_interval: Option<String>,
    latency_warn: Option<String>,
    listen: Option<String>,
    metrics_listen: Option<String>,
    idle_timeout: Option<String>,
    registrations_per_minute: Option<u64>,
    max_connections: Option<u64>,
    max_connections_per_address: Option<u64>,
    verbose: Option<bool>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// The default config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "assets/server.toml";

/// Loads file, then applies the CLI/environment on top, then validates.
pub fn load(cli: &Cli) -> Result<ServerConfig, LoadError> {
    load_with_source(cli).map(|(config, _)| config)
}

/// Like [`load`], also returning the config file that was read (`None`: no file, built-in
/// defaults under the environment and flags), so the server can say at start which it used.
pub fn load_with_source(cli: &Cli) -> Result<(ServerConfig, Option<PathBuf>), LoadError> {
    let path = cli.config.clone().or_else(|| {
        Path::new(DEFAULT_CONFIG_PATH)
            .exists()
            .then(|| DEFAULT_CONFIG_PATH.into())
    });
    let file = match &path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            toml::from_str::<FileConfig>(&text).map_err(|e| LoadError::File {
                path: path.clone(),
                message: e.to_string(),
            })?
        }
        None => FileConfig::default(),
    };
    let mut config = ServerConfig::default();
    apply_file(&mut config, file)?;
    apply_cli(&mut config, cli)?;
    if config.instance_id.is_empty() {
        config.instance_id = generate_instance_id();
    }
    config.validate()?;
    Ok((config, path))
}

/// A fresh instance id: host name plus a random suffix, so restarts never reuse a lease.
pub fn generate_instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "hearth".to_string()
    } else {
        host
    };
    format!(
        "{host}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn apply_file(config: &mut ServerConfig, file: FileConfig) -> Result<(), ConfigError> {
    set_store(&mut config.store, file.store)?;
    set(
        &mut config.flush_interval,
        file.flush_interval,
        "flush_interval",
        parse_duration,
    )?;
    set(
        &mut config.lease_ttl,
        file.lease_ttl,
        "lease_ttl",
        parse_duration,
    )?;
    set(
        &mut config.lease_refresh_interval,
        file.lease_refresh_interval,
        "lease_refresh_interval",
        parse_duration,
    )?;
    set(
        &mut config.shutdown_deadline,
        file.shutdown_deadline,
        "shutdown_deadline",
        parse_duration,
    )?;
    set(
        &mut config.store_timeout,
        file.store_timeout,
        "store_timeout",
        parse_duration,
    )?;
    set(
        &mut config.metrics_interval,
        file.metrics_interval,
        "metrics_interval",
        parse_duration,
    )?;
    set(
        &mut config.latency_warn,
        file.latency_warn,
        "latency_warn",
        parse_duration,
    )?;
    set(&mut config.listen, file.listen, "listen", parse_addr)?;
    set(
        &mut config.metrics_listen,
        file.metrics_listen,
        "metrics_listen",
        parse_optional_addr,
    )?;
    set(
        &mut config.idle_timeout,
        file.idle_timeout,
        "idle_timeout",
        parse_duration,
    )?;
    set(
        &mut config.registrations_per_minute,
        file.registrations_per_minute.map(|n| n.to_string()),
        "registrations_per_minute",
        parse_count,
    )?;
    set(
        &mut config.max_connections,
        file.max_connections.map(|n| n.to_string()),
        "max_connections",
        parse_count,
    )?;
    set(
        &mut config.max_connections_per_address,
        file.max_connections_per_address.map(|n| n.to_string()),
        "max_connections_per_address",
        parse_count,
    )?;
    if let Some(rate) = file.tick_rate {
        config.tick_rate = rate;
    }
    if let Some(chunk) = file.batch_chunk {
        config.batch_chunk =
            usize::try_from(chunk).map_err(|_| ConfigError::new("batch_chunk", "too large"))?;
    }
    config.key_prefix = file
        .key_prefix
        .unwrap_or(std::mem::take(&mut config.key_prefix));
    config.instance_id = file
        .instance_id
        .unwrap_or(std::mem::take(&mut config.instance_id));
    config.verbose |= file.verbose.unwrap_or(false);
    Ok(())
}

fn apply_cli(config: &mut ServerConfig, cli: &Cli) -> Result<(), ConfigError> {
    let c = cli.clone();
    set_store(&mut config.store, c.store)?;
    set(
        &mut config.flush_interval,
        c.flush_interval,
        "flush_interval",
        parse_duration,
    )?;
    set(
        &mut config.lease_ttl,
        c.lease_ttl,
        "lease_ttl",
        parse_duration,
    )?;
    set(
        &mut config.lease_refresh_interval,
        c.lease_refresh_interval,
        "lease_refresh_interval",
        parse_duration,
    )?;
    set(
        &mut config.shutdown_deadline,
        c.shutdown_deadline,
        "shutdown_deadline",
        parse_duration,
    )?;
    set(
        &mut config.store_timeout,
        c.store_timeout,
        "store_timeout",
        parse_duration,
    )?;
    set(
        &mut config.metrics_interval,
        c.metrics_interval,
        "metrics_interval",
        parse_duration,
    )?;
    set(
        &mut config.latency_warn,
        c.latency_warn,
        "latency_warn",
        parse_duration,
    )?;
    set(&mut config.listen, c.listen, "listen", parse_addr)?;
    set(
        &mut config.metrics_listen,
        c.metrics_listen,
        "metrics_listen",
        parse_optional_addr,
    )?;
    set(
        &mut config.idle_timeout,
        c.idle_timeout,
        "idle_timeout",
        parse_duration,
    )?;
    set(
        &mut config.registrations_per_minute,
        c.registrations_per_minute,
        "registrations_per_minute",
        parse_count,
    )?;
    set(
        &mut config.max_connections,
        c.max_connections,
        "max_connections",
        parse_count,
    )?;
    set(
        &mut config.max_connections_per_address,
        c.max_connections_per_address,
        "max_connections_per_address",
        parse_count,
    )?;
    set(&mut config.tick_rate, c.tick_rate, "tick_rate", |s| {
        s.trim().parse::<f64>().map_err(|e| e.to_string())
    })?;
    set(&mut config.batch_chunk, c.batch_chunk, "batch_chunk", |s| {
        s.trim().parse::<usize>().map_err(|e| e.to_string())
    })?;
    set(&mut config.key_prefix, c.key_prefix, "key_prefix", |s| {
        Ok(s.to_string())
    })?;
    set(&mut config.instance_id, c.instance_id, "instance_id", |s| {
        Ok(s.to_string())
    })?;
    config.verbose |= c.verbose;
    Ok(())
}

fn set<T>(
    slot: &mut T,
    value: Option<String>,
    key: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), ConfigError> {
    if let Some(text) = value {
        *slot = parse(&text)
            .map_err(|reason| ConfigError::new(key, format!("{reason} (got {text:?})")))?;
    }
    Ok(())
}

/// Parses a duration with a unit: `500ms`, `30s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration with a unit such as 500ms, 30s or 2m: {e}"))
}

/// Parses a whole number (a count or a limit) that fits the field.
fn parse_count<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    text: &str,
) -> Result<T, String> {
    text.trim()
        .parse::<T>()
        .map_err(|e| format!("expected a whole number: {e}"))
}

/// Sets the store from `value`; a refusal quotes the value once, password redacted.
fn set_store(slot: &mut StoreSelection, value: Option<String>) -> Result<(), ConfigError> {
    if let Some(text) = value {
        *slot = StoreSelection::parse(&text).map_err(|reason| {
            let shown = crate::store::redis::redact_url(text.trim());
            ConfigError::new("store", format!("{reason} (got {shown:?})"))
        })?;
    }
    Ok(())
}

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("expected host:port: {e}"))
}

/// `off` (or nothing) for no listener, else `host:port`.
fn parse_optional_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    match text.trim() {
        "" | "off" => Ok(None),
        addr => parse_addr(addr).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_listener_is_off_unless_an_address_is_given() {
        let mut config = ServerConfig::default();
        assert_eq!(config.metrics_listen, None, "off by default");
        apply_cli(&mut config, &cli(&["--metrics-listen", "127.0.0.1:9477"])).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9477".parse().unwrap())
        );
        apply_cli(&mut config, &cli(&["--metrics-listen", "off"])).unwrap();
        assert_eq!(config.metrics_listen, None);
        let refused = apply_cli(&mut config, &cli(&["--metrics-listen", "9477"])).unwrap_err();
        assert_eq!(refused.key, "metrics_listen");
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("hearth").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("30").is_err());
    }

    #[test]
    fn defaults_load_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        let err = load(&Cli {
            config: Some(missing),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("cannot read config file"), "{err}");
        let path = dir.path().join("empty.toml");
        std::fs::write(&path, "").unwrap();
        let config = load(&Cli {
            config: Some(path),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(config.flush_interval, Duration::from_secs(30));
        assert_eq!(config.lease_ttl, Duration::from_secs(60));
        assert_eq!(config.lease_refresh_interval, Duration::from_secs(20));
        assert_eq!(config.key_prefix, "hearth");
        assert_eq!(config.store, StoreSelection::Memory);
        assert!(
            !config.instance_id.is_empty(),
            "an instance id is generated"
        );
    }

    #[test]
    fn cli_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "flush_interval = \"10s\"\nkey_prefix = \"game\"\ntick_rate = 30\n",
        )
        .unwrap();
        let mut args = cli(&[
            "--flush-interval",
            "500ms",
            "--store",
            "redis://127.0.0.1:6379/0",
        ]);
        args.config = Some(path);
        let config = load(&args).unwrap();
        assert_eq!(config.flush_interval, Duration::from_millis(500));
        assert_eq!(config.key_prefix, "game");
        assert_eq!(config.tick_rate, 30.0);
        assert_eq!(
            config.store,
            StoreSelection::Redis("redis://127.0.0.1:6379/0".into())
        );
    }

    #[test]
    fn bad_config_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        let cases: &[(&str, &str)] = &[
            ("flush_interval = \"soon\"", "flush_interval"),
            (
                "lease_ttl = \"10s\"\nlease_refresh_interval = \"20s\"",
                "lease_refresh_interval",
            ),
            ("tick_rate = -5", "tick_rate"),
            ("key_prefix = \"a b\"", "key_prefix"),
            ("store = \"postgres://x\"", "store"),
            ("flush_intervall = \"1s\"", "flush_intervall"),
            ("listen = \"nowhere\"", "listen"),
        ];
        for (text, key) in cases {
            std::fs::write(&path, text).unwrap();
            let err = load(&Cli {
                config: Some(path.clone()),
                ..Cli::default()
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.contains(key),
                "{text:?} should be refused naming {key}: {err}"
            );
        }
        let err = load(&Cli {
            tick_rate: Some("fast".into()),
            ..Cli::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("tick_rate"), "{err}");
    }

    #[test]
    fn a_store_value_not_understood_is_quoted_once() {
        let err = load(&Cli {
            config: Some(empty_config()),
            store: Some("postgres://db.example/game".into()),
            ..Cli::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("`store`"), "{err}");
        assert_eq!(
            err.matches("postgres://db.example/game").count(),
            1,
            "{err}"
        );
    }

    #[test]
    fn a_rediss_url_is_refused_naming_the_key_without_its_password() {
        let err = load(&Cli {
            config: Some(empty_config()),
            store: Some("rediss://app:s3cret@db.example:6380/0".into()),
            ..Cli::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("`store`") && err.contains("TLS"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    /// An empty config file (so a test does not depend on assets/server.toml).
    fn empty_config() -> PathBuf {
        let path = std::env::temp_dir().join(format!("hearth-empty-{}.toml", std::process::id()));
        std::fs::write(&path, "").unwrap();
        path
    }
}
