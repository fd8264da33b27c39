//! Configuration: `assets/server.toml`, overridden by `HEARTH_*` environment variables,
//! overridden by command-line flags. Invalid values are refused with the key named.
//!
//! Every key is declared once, in [`KEYS`]: its name (the file key; the flag is the name
//! with dashes, the variable `HEARTH_` and the name in capitals), its `--help` line and which
//! plugin's setting its text sets in [`ServerConfig`]. Its default is that plugin's
//! `Default`, its checks are `ServerConfig::validate`'s: the file, the environment and the
//! flags all go through the same table.

mod server_config;

pub use server_config::ServerConfig;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches, Parser};
use hearth_components::{ConfigError, StoreSelection};

/// One configuration key.
pub struct Key {
    /// The key in the config file; `--name-with-dashes` on the command line,
    /// `HEARTH_NAME` in the environment.
    pub name: &'static str,
    /// What it sets (the `--help` line).
    pub help: &'static str,
    set: fn(&mut ServerConfig, &str) -> Result<(), ValueError>,
}

impl Key {
    /// The command-line flag, without its dashes.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The environment variable.
    pub fn env(&self) -> String {
        format!("HEARTH_{}", self.name.to_ascii_uppercase())
    }

    /// Sets `config` from `text`; a refusal names the key and quotes the value.
    fn apply(&self, config: &mut ServerConfig, text: &str) -> Result<(), ConfigError> {
        (self.set)(config, text).map_err(|error| {
            let reason = error.to_string();
            // A store URL may carry a password: quoted redacted, and only once.
            let shown = if self.name == "store" {
                crate::store::redis::redact_url(text.trim())
            } else {
                text.to_string()
            };
            if reason.contains(&shown) {
                ConfigError::new(self.name, reason)
            } else {
                ConfigError::new(self.name, format!("{reason} (got {shown:?})"))
            }
        })
    }
}

/// A [`Key`] called `$name` that sets `$setting` (a plugin's field, as reached from
/// [`ServerConfig`]), parsed by `$parse`.
macro_rules! key {
    ($name:ident => $($setting:ident).+, $help:literal, $parse:expr) => {
        Key {
            name: stringify!($name),
            help: $help,
            set: |config, text| {
                config.$($setting).+ = ($parse)(text)?;
                Ok(())
            },
        }
    };
}

/// Why a key's text is not a value of its kind. [`Key::apply`] names the key and quotes the
/// text (a store URL redacted).
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("expected a duration with a unit such as 500ms, 30s or 2m: {0}")]
    Duration(#[from] humantime::DurationError),
    #[error("expected a whole number: {0}")]
    Count(#[from] std::num::ParseIntError),
    #[error("expected a number: {0}")]
    Number(#[from] std::num::ParseFloatError),
    #[error("expected true or false")]
    Switch,
    #[error("expected host:port: {0}")]
    Address(#[from] std::net::AddrParseError),
    #[error(transparent)]
    Store(#[from] hearth_components::StoreUrlError),
    #[error(transparent)]
    Cluster(#[from] crate::store::redis::cluster::ClusterUrlError),
    #[error(transparent)]
    ZoneMap(#[from] crate::zones::ZoneMapError),
    #[error("expected host:port (a host name or address, and a port number)")]
    HostPort,
}

/// Every configuration key, in `--help` order.
pub const KEYS: &[Key] = &[
    key!(
        store => store.settings.selection,
        "`memory`, a Redis URL such as redis://127.0.0.1:6379/0, or a Redis Cluster's nodes such as redis+cluster://10.0.0.1:7000,10.0.0.2:7000.",
        parse_store
    ),
    key!(
        flush_interval => persistence.flush_interval,
        "A dirty player is saved within this long of its change, the saves spread over it (e.g. 30s).",
        parse_duration
    ),
    key!(
        lease_ttl => store.settings.lease_ttl,
        "Session lease lifetime without refresh (e.g. 60s).",
        parse_duration
    ),
    key!(
        liveness_ttl => store.settings.liveness_ttl,
        "Lifetime of this process's liveness key, renewed every third of it: a crashed server's players get back in on another after about this long (e.g. 3s).",
        parse_duration
    ),
    key!(
        lease_refresh_interval => sessions.lease_refresh_interval,
        "How often all leases are refreshed (e.g. 20s).",
        parse_duration
    ),
    key!(
        tick_rate => tick.tick_rate, "Game ticks per second.", parse_rate),
    key!(
        key_prefix => store.settings.key_prefix, "Prefix of every store key.", parse_text),
    key!(
        instance_id => store.settings.instance_id,
        "This server's instance id (generated when unset).",
        parse_text
    ),
    key!(
        shutdown_deadline => runner.shutdown_deadline,
        "How long shutdown may spend saving everyone.",
        parse_duration
    ),
    key!(
        store_timeout => store.settings.store_timeout,
        "Upper bound on any single store call.",
        parse_duration
    ),
    key!(
        batch_chunk => store.settings.batch_chunk,
        "Saves or refreshes per pipelined round trip.",
        parse_count::<usize>
    ),
    key!(
        durable_replicas => store.settings.durable_replicas,
        "Replicas that must confirm each save (WAIT) before it counts as durable; 0: the master's reply.",
        parse_count::<u32>
    ),
    key!(
        metrics_interval => metrics.metrics_interval,
        "How often verbose mode logs a metrics summary.",
        parse_duration
    ),
    key!(
        latency_warn => metrics.latency_warn,
        "Verbose mode warns when a store p99 latency exceeds this.",
        parse_duration
    ),
    key!(
        listen => front_door.listen, "TCP address for game clients.", parse_addr),
    key!(
        metrics_listen => metrics_endpoint.metrics_listen,
        "HTTP address for /metrics, /healthz and /readyz (off when unset or `off`).",
        parse_optional_addr
    ),
    key!(
        listen_ws => front_door.listen_ws,
        "Address of the WebSocket listener for browser and WASM clients, which also serves the browser client at / (off when unset or `off`).",
        parse_optional_addr
    ),
    key!(
        ws_allowed_origins => front_door.ws_allowed_origins,
        "Comma-separated Origins allowed to open a WebSocket, e.g. https://game.example (any when unset).",
        parse_list
    ),
    key!(
        tls_cert => front_door.tls_cert,
        "PEM certificate chain; with tls_key, both listeners speak TLS (wss:// for WebSocket).",
        parse_optional_path
    ),
    key!(
        tls_key => front_door.tls_key,
        "PEM private key of tls_cert.",
        parse_optional_path
    ),
    key!(
        idle_timeout => front_door.idle_timeout,
        "Clients silent this long are disconnected (e.g. 30s).",
        parse_duration
    ),
    key!(
        registrations_per_minute => front_door.registrations_per_minute,
        "Accounts one client address may register per minute.",
        parse_count::<u32>
    ),
    key!(
        max_connections => front_door.max_connections,
        "Client connections served at once.",
        parse_count::<usize>
    ),
    key!(
        max_connections_per_address => front_door.max_connections_per_address,
        "Client connections served at once from one address.",
        parse_count::<usize>
    ),
    key!(
        resume_ttl => front_door.resume_ttl,
        "How long a resume token stays usable after the player was last online (e.g. 10m).",
        parse_duration
    ),
    key!(
        zones => zones.map,
        "A zone map (TOML file of [[zone]] name/min/max rectangles) shared by every process of one world; with --zone, this process serves one of its zones.",
        parse_zone_map
    ),
    key!(
        zone => zones.zone,
        "The zone of the --zones map this process serves (needs a Redis store).",
        parse_optional_text
    ),
    key!(
        public_addr => zones.public_addr,
        "host:port where this zone's clients connect, for handoffs (defaults to --listen).",
        parse_host_port
    ),
    key!(
        public_ws_addr => zones.public_ws_addr,
        "host:port where this zone's WebSocket clients connect, for handoffs (defaults to --listen-ws).",
        parse_host_port
    ),
    key!(
        verbose => metrics.verbose,
        "Verbose logs and periodic metric summaries (also -v).",
        parse_switch
    ),
];

/// Command line (and environment) of the server: the file to read, a subcommand, and the
/// value of every [`KEYS`] entry given as a flag or `HEARTH_*` variable.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "hearth",
    version,
    about = "A headless ECS game server whose players persist themselves"
)]
pub struct Cli {
    /// Without a command: run the server.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file; defaults to assets/server.toml when it exists.
    #[arg(long, env = "HEARTH_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Key values from flags and `HEARTH_*` variables, by key name (filled by
    /// [`parse_cli`] from [`KEYS`]; a program may set them too).
    #[arg(skip)]
    pub settings: BTreeMap<&'static str, String>,
}

impl Cli {
    /// A command line that sets `settings` (key name, value), for programs and tests.
    pub fn with(settings: &[(&'static str, &str)]) -> Self {
        Self {
            settings: settings
                .iter()
                .map(|(key, value)| (*key, value.to_string()))
                .collect(),
            ..Self::default()
        }
    }

    /// Whether verbose logging was asked for on the command line or in the environment.
    pub fn verbose(&self) -> bool {
        self.settings
            .get("verbose")
            .is_some_and(|v| parse_switch(v).unwrap_or(false))
    }
}

/// What the binary does besides serving.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Look at and repair what the store holds (players, leases, accounts, records), with the
    /// server's configuration. See docs/operations.md.
    Admin(crate::admin::AdminArgs),
    /// Write the game's message registry as typed bindings for clients: a JSON Schema
    /// document and TypeScript declarations. See docs/protocol.md.
    Schema(SchemaArgs),
}

/// `hearth schema`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SchemaArgs {
    /// Directory to write hearth-messages.schema.json and hearth-messages.d.ts into.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

/// The command line and `HEARTH_*` environment of this process, as the `hearth` binary reads
/// them (exits with clap's usage message on a bad flag, and prints `--help`). A game's own
/// binary calls this so it takes the same flags without depending on `clap`.
pub fn parse_cli() -> Cli {
    parse_cli_as(
        "hearth",
        "A headless ECS game server whose players persist themselves",
    )
}

/// [`parse_cli`] under another program's name and description (what `--help` shows), for a
/// game's own binary.
pub fn parse_cli_as(name: &'static str, about: &'static str) -> Cli {
    let command = Cli::command().name(name).bin_name(name).about(about);
    let matches = with_keys(command).get_matches();
    from_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the program name first) as [`parse_cli`] parses the process's own.
pub fn try_parse_cli_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = with_keys(Cli::command()).try_get_matches_from(args)?;
    from_matches(&matches)
}

/// The command with a flag (and variable) for every key, global so they may follow a
/// subcommand (`hearth admin online --store ...`).
fn with_keys(command: clap::Command) -> clap::Command {
    command.args(KEYS.iter().map(|key| {
        let arg = Arg::new(key.name)
            .long(key.flag())
            .env(key.env())
            .help(key.help)
            .global(true);
        if key.name == "verbose" {
            arg.short('v')
                .num_args(0..=1)
                .default_missing_value("true")
                .value_name("BOOL")
        } else {
            arg.value_name("VALUE")
        }
    }))
}

fn from_matches(matches: &ArgMatches) -> Result<Cli, clap::Error> {
    let mut cli = Cli::from_arg_matches(matches)?;
    for key in KEYS {
        if let Some(value) = matches.get_one::<String>(key.name) {
            cli.settings.insert(key.name, value.clone());
        }
    }
    Ok(cli)
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
    let mut config = ServerConfig::default();
    if let Some(path) = &path {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.clone(),
            source,
        })?;
        let file = text.parse::<toml::Table>().map_err(|e| LoadError::File {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for (name, value) in file {
            let key = KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
                let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
                LoadError::File {
                    path: path.clone(),
                    message: format!("unknown key `{name}`; known keys: {}", known.join(", ")),
                }
            })?;
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    value.to_string()
                }
                other => {
                    return Err(ConfigError::new(
                        key.name,
                        format!("expected a string, number or boolean, got {other}"),
                    )
                    .into());
                }
            };
            key.apply(&mut config, &text)?;
        }
    }
    for key in KEYS {
        if let Some(text) = cli.settings.get(key.name) {
            // A switch given on the command line adds to the file's, never turns it off.
            if key.name == "verbose" && config.metrics.verbose {
                continue;
            }
            key.apply(&mut config, text)?;
        }
    }
    if config.store.settings.instance_id.is_empty() {
        config.store.settings.instance_id = generate_instance_id();
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

/// Parses a duration with a unit: `500ms`, `30s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    Ok(humantime::parse_duration(text.trim())?)
}

/// Parses a whole number (a count or a limit) that fits the field.
fn parse_count<T: std::str::FromStr<Err = std::num::ParseIntError>>(
    text: &str,
) -> Result<T, ValueError> {
    Ok(text.trim().parse::<T>()?)
}

/// Parses a number of ticks per second.
fn parse_rate(text: &str) -> Result<f64, ValueError> {
    Ok(text.trim().parse::<f64>()?)
}

/// Any text, as given.
fn parse_text(text: &str) -> Result<String, ValueError> {
    Ok(text.to_string())
}

/// `true`/`false` and their usual spellings (`1`/`0`, `yes`/`no`, `on`/`off`).
fn parse_switch(text: &str) -> Result<bool, ValueError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        _ => Err(ValueError::Switch),
    }
}

/// A store selection; the refusal is quoted (password redacted) by [`Key::apply`].
fn parse_store(text: &str) -> Result<StoreSelection, ValueError> {
    let selection = StoreSelection::parse(text)?;
    if let StoreSelection::RedisCluster(url) = &selection {
        crate::store::redis::ClusterUrl::parse(url)?;
    }
    Ok(selection)
}

/// Text, or nothing (`""`) for unset.
fn parse_optional_text(text: &str) -> Result<Option<String>, ValueError> {
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// A zone map file, read and checked now, so a bad map stops the start naming the problem;
/// nothing (`""`) for none.
fn parse_zone_map(text: &str) -> Result<Option<std::sync::Arc<crate::zones::ZoneMap>>, ValueError> {
    match text.trim() {
        "" => Ok(None),
        path => Ok(Some(std::sync::Arc::new(crate::zones::ZoneMap::load(
            Path::new(path),
        )?))),
    }
}

/// `host:port` with a host name or address (what a client connects to); nothing for unset.
fn parse_host_port(text: &str) -> Result<Option<String>, ValueError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(Some(text.to_string()))
        }
        _ => Err(ValueError::HostPort),
    }
}

/// A file's path; nothing for none.
fn parse_optional_path(text: &str) -> Result<Option<PathBuf>, ValueError> {
    let text = text.trim();
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

/// Comma-separated values, each trimmed; empty ones left out.
fn parse_list(text: &str) -> Result<Vec<String>, ValueError> {
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect())
}

fn parse_addr(text: &str) -> Result<SocketAddr, ValueError> {
    Ok(text.trim().parse()?)
}

/// `off` (or nothing) for no listener, else `host:port`.
fn parse_optional_addr(text: &str) -> Result<Option<SocketAddr>, ValueError> {
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
        let with = |args: &[&str]| {
            let mut cli = cli(args);
            cli.config = Some(empty_config());
            load(&cli)
        };
        assert_eq!(
            with(&[]).unwrap().metrics_endpoint.metrics_listen,
            None,
            "off by default"
        );
        assert_eq!(
            with(&["--metrics-listen", "127.0.0.1:9477"])
                .unwrap()
                .metrics_endpoint
                .metrics_listen,
            Some("127.0.0.1:9477".parse().unwrap())
        );
        assert_eq!(
            with(&["--metrics-listen", "off"])
                .unwrap()
                .metrics_endpoint
                .metrics_listen,
            None
        );
        let refused = with(&["--metrics-listen", "9477"]).unwrap_err().to_string();
        assert!(refused.contains("metrics_listen"), "{refused}");
    }

    #[test]
    fn websocket_and_tls_keys_from_flags() {
        let with = |args: &[&str]| {
            let mut cli = cli(args);
            cli.config = Some(empty_config());
            load(&cli)
        };
        let defaults = with(&[]).unwrap().front_door;
        assert_eq!(defaults.listen_ws, None, "off by default");
        assert!(
            defaults.ws_allowed_origins.is_empty(),
            "any origin by default"
        );
        assert_eq!((defaults.tls_cert, defaults.tls_key), (None, None));
        let config = with(&[
            "--listen-ws",
            "127.0.0.1:7780",
            "--ws-allowed-origins",
            "https://a.example, https://b.example,",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
        ])
        .unwrap()
        .front_door;
        assert_eq!(config.listen_ws, Some("127.0.0.1:7780".parse().unwrap()));
        assert_eq!(
            config.ws_allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(config.tls_cert, Some(PathBuf::from("cert.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("key.pem")));
        let alone = with(&["--tls-cert", "cert.pem"]).unwrap_err().to_string();
        assert!(
            alone.contains("tls_key") && alone.contains("together"),
            "{alone}"
        );
        let same = with(&[
            "--listen",
            "127.0.0.1:7777",
            "--listen-ws",
            "127.0.0.1:7777",
        ])
        .unwrap_err()
        .to_string();
        assert!(same.contains("listen_ws"), "{same}");
    }

    fn cli(args: &[&str]) -> Cli {
        try_parse_cli_from(std::iter::once("hearth").chain(args.iter().copied())).unwrap()
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
        assert_eq!(config.persistence.flush_interval, Duration::from_secs(30));
        assert_eq!(config.store.settings.lease_ttl, Duration::from_secs(60));
        assert_eq!(
            config.sessions.lease_refresh_interval,
            Duration::from_secs(20)
        );
        assert_eq!(config.store.settings.key_prefix, "hearth");
        assert_eq!(config.store.settings.selection, StoreSelection::Memory);
        assert!(
            !config.store.settings.instance_id.is_empty(),
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
        assert_eq!(
            config.persistence.flush_interval,
            Duration::from_millis(500)
        );
        assert_eq!(config.store.settings.key_prefix, "game");
        assert_eq!(config.tick.tick_rate, 30.0);
        assert_eq!(
            config.store.settings.selection,
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
        let err = load(&Cli::with(&[("tick_rate", "fast")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tick_rate"), "{err}");
    }

    #[test]
    fn a_store_value_not_understood_is_quoted_once() {
        let err = load(&Cli {
            config: Some(empty_config()),
            ..Cli::with(&[("store", "postgres://db.example/game")])
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
            ..Cli::with(&[("store", "rediss://app:s3cret@db.example:6380/0")])
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

    #[test]
    fn every_key_sets_its_field_from_the_file_the_environment_and_a_flag() {
        // One key per kind, through each source; the table is the only place they are named.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "batch_chunk = 250\nverbose = true\n").unwrap();
        let mut args = cli(&["--max-connections-per-address", "7", "--tick-rate", "30"]);
        args.config = Some(path);
        let config = load(&args).unwrap();
        assert_eq!(config.store.settings.batch_chunk, 250);
        assert!(config.metrics.verbose);
        assert_eq!(config.front_door.max_connections_per_address, 7);
        assert_eq!(config.tick.tick_rate, 30.0);
        let flags = cli(&["-v"]);
        assert!(flags.verbose(), "-v is the verbose switch");
    }

    #[test]
    fn every_field_of_the_config_file_is_a_key() {
        // assets/server.toml lists the keys an operator sets; each must be in the table.
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/server.toml"))
                .unwrap();
        let table: toml::Table = text.parse().unwrap();
        for name in table.keys() {
            assert!(KEYS.iter().any(|k| k.name == name), "{name} has no key");
        }
    }
}
