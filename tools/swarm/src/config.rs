//! The swarm's flags, and the checks that keep a run bounded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::zones::ZoneMap;

/// Where bots stand while they play: decides how many players each bot sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Everyone near the origin: every bot sees the crowd (its nearest 128 at most).
    Clustered,
    /// Each bot walks out toward its own random point first: few players in sight.
    Spread,
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Placement::Clustered => "clustered",
            Placement::Spread => "spread",
        })
    }
}

/// How bots speak to the server (docs/protocol.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The preamble, then length-prefixed frames: compact updates, what games use.
    Binary,
    /// JSON lines, what `nc` speaks.
    Json,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Binary => "binary",
            Encoding::Json => "json",
        })
    }
}

/// Which of the server's doors bots use (docs/protocol.md, "Transport").
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP (`--listen`).
    Tcp,
    /// TCP in TLS (a server with `--tls-cert`): needs `--tls-ca`.
    Tls,
    /// WebSocket (`--listen-ws`): `ws://ADDR/ws`.
    Ws,
    /// WebSocket in TLS: `wss://ADDR/ws`, needs `--tls-ca`.
    Wss,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        })
    }
}

/// A load test: steps of N bots, each held for a while, and the promises that gate it.
#[derive(Clone, Debug, Parser)]
#[command(name = "hearth-swarm", version, about)]
pub struct Config {
    /// The server to load (the only address the swarm connects to): its TCP listener, or its
    /// WebSocket listener with `--transport ws|wss`.
    #[arg(long, default_value = "127.0.0.1:7777")]
    pub addr: SocketAddr,
    /// The door bots use: `tcp`, `tls`, `ws` (`ws://ADDR/ws`) or `wss`.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// With `--transport tls|wss`: the PEM certificate (or CA) to trust, read at start.
    #[arg(long, value_parser = read_tls_ca)]
    pub tls_ca: Option<TlsCa>,
    /// Bot counts to reach, in increasing order; bots are added to reach each step.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub steps: Vec<usize>,
    /// How long each step is held (and measured) once all its bots are in place.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "40s")]
    pub hold: Duration,
    /// The encoding every bot speaks. Binary by default: it is what a game's clients use
    /// and what the replication goals (bytes per player, capacity) are stated in; `json`
    /// measures the text encoding for comparison.
    #[arg(long, value_enum, default_value_t = Encoding::Binary)]
    pub encoding: Encoding,
    /// Where bots stand.
    #[arg(long, value_enum, default_value_t = Placement::Clustered)]
    pub placement: Placement,
    /// `move`s per second per bot while playing.
    #[arg(long, default_value_t = 5.0)]
    pub move_rate: f64,
    /// `ping`s per second per bot (their round trips are the RTT figures).
    #[arg(long, default_value_t = 1.0)]
    pub ping_rate: f64,
    /// `move`s per second while walking out to a bot's place (below the 60 Hz tick, so no
    /// step is lost, and the 120 messages/s limit).
    #[arg(long, default_value_t = 30.0)]
    pub walk_rate: f64,
    /// At most this many steps to walk out to a bot's place.
    #[arg(long, default_value_t = 1500)]
    pub max_walk_steps: u32,
    /// Worker threads of the swarm's runtime.
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(2, |n| n.get()))]
    pub threads: usize,
    /// Registrations and logins in flight at once (argon2 makes each expensive for the server).
    #[arg(long, default_value_t = 32)]
    pub login_concurrency: usize,
    /// Usernames are `<prefix><n>`; accounts are registered or, when they exist, reused.
    #[arg(long, default_value = "swarm")]
    pub prefix: String,
    /// The password of every bot account.
    #[arg(long, default_value = "swarm-password")]
    pub password: String,
    /// Bots sharing one source address (127.x.y.z) when the server is on loopback, so the
    /// server's per-address limits (64 connections, 10 registrations a minute, 4 queued
    /// logins; a retried registration counts again) do not refuse the swarm. 0: connect from
    /// the default address.
    #[arg(long, default_value_t = 4)]
    pub bots_per_address: usize,
    /// How long a step may take to get all its bots logged in and in place.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub ramp_timeout: Duration,
    /// Refuse steps above this many bots.
    #[arg(long, default_value_t = 20_000)]
    pub max_bots: usize,
    /// The whole run stops (and fails) after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub max_duration: Duration,
    /// The server's process id: adds its CPU per thread and RSS to the report (from /proc).
    /// Several, comma-separated (a world's zone processes): their CPU by thread name and
    /// their RSS are summed.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// The server's Prometheus endpoint (`http://127.0.0.1:9477/metrics` when it runs with
    /// `--metrics-listen 127.0.0.1:9477`): adds its frame time p99 and overruns over each hold
    /// to the report, and a tick p99 over the budget breaks a promise.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Write one JSON object per step to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Promise: replication updates per second to every bot, at least (the server sends 20).
    #[arg(long, default_value_t = 19.0)]
    pub min_update_rate: f64,
    /// Promise: ping round trip p99, at most.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "50ms")]
    pub max_rtt_p99: Duration,
    /// A zone map (the servers' `--zones` file): bots walk back and forth across its borders
    /// instead of standing at `--placement`, following every `handoff`; the report adds
    /// handoffs/s, the handoff gap and remote-entity staleness. Start at any zone's server:
    /// a login there is handed over to the zone holding the player.
    #[arg(long, value_parser = read_zone_map)]
    pub zones: Option<ZoneMap>,
    /// With `--zones`: how far past its border a bot walks before it turns back.
    #[arg(long, default_value_t = 10.0)]
    pub cross_depth: f64,
    /// Promise, with `--zones`: the handoff gap p99, at most.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    pub max_handoff_gap_p99: Duration,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// After the last step: drop every connection at once (as a restart or drain does) and
    /// measure how long until all bots are logged in again with their resume tokens, then
    /// the same with passwords (each wave bounded by --ramp-timeout).
    #[arg(long)]
    pub reconnect: bool,
}

fn read_zone_map(path: &str) -> Result<ZoneMap, String> {
    ZoneMap::load(std::path::Path::new(path))
}

/// The certificate the bots trust, read from its PEM file (its path kept for the report).
#[derive(Clone, Debug)]
pub struct TlsCa {
    pub path: PathBuf,
    pub config: hearth_client::TlsConfig,
}

/// Reads `--tls-ca`: bots expect the certificate to name `localhost` (what a test
/// certificate names) unless it names the address's host.
fn read_tls_ca(path: &str) -> Result<TlsCa, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let config = hearth_client::TlsConfig::from_pem(&pem)
        .map_err(|e| format!("{path}: {e}"))?
        .with_server_name("localhost");
    Ok(TlsCa {
        path: PathBuf::from(path),
        config,
    })
}

impl Config {
    /// The TLS settings bots connect with (`--tls-ca`).
    pub(crate) fn tls(&self) -> Option<hearth_client::TlsConfig> {
        self.tls_ca.as_ref().map(|ca| ca.config.clone())
    }

    /// Refuses a run that would be unbounded or that the server would refuse anyway.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("--steps needs at least one bot count".into());
        }
        if self.steps.contains(&0) || self.steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err("--steps must be positive and increasing (bots are added)".into());
        }
        let largest = *self.steps.last().expect("not empty");
        if largest > self.max_bots {
            return Err(format!(
                "a step of {largest} bots is above --max-bots {}",
                self.max_bots
            ));
        }
        for (name, rate) in [
            ("--move-rate", self.move_rate),
            ("--ping-rate", self.ping_rate),
            ("--walk-rate", self.walk_rate),
        ] {
            if !(rate > 0.0 && rate <= 60.0) {
                return Err(format!("{name} must be in (0, 60] per second"));
            }
        }
        if self.move_rate + self.ping_rate > 100.0 || self.walk_rate + self.ping_rate > 100.0 {
            return Err("more than 100 messages/s per bot would be rate limited".into());
        }
        if self.threads == 0 || self.login_concurrency == 0 {
            return Err("--threads and --login-concurrency must be at least 1".into());
        }
        if self.hold.is_zero() {
            return Err("--hold must be positive".into());
        }
        let longest = format!("{}{}", self.prefix, largest - 1);
        if longest.len() < 3
            || longest.len() > 32
            || !longest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "usernames like {longest:?} are invalid (3-32 of A-Z a-z 0-9 _ -)"
            ));
        }
        let secure = matches!(self.transport, Transport::Tls | Transport::Wss);
        if secure && self.tls_ca.is_none() {
            return Err(format!(
                "--transport {} needs --tls-ca (the server's certificate, PEM)",
                self.transport
            ));
        }
        if self.zones.is_some() {
            if !(self.cross_depth >= 1.0 && self.cross_depth <= 500.0) {
                return Err("--cross-depth must be in [1, 500]".into());
            }
            if self.reconnect {
                return Err(
                    "--reconnect measures one server's restart: it does not combine with --zones"
                        .into(),
                );
            }
        }
        if !(8..=128).contains(&self.password.len()) {
            return Err("--password must be 8-128 characters".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("hearth-swarm").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_valid_and_bounds_are_enforced() {
        assert_eq!(config(&[]).validate(), Ok(()));
        assert!(config(&["--steps", "2000,1000"]).validate().is_err());
        assert!(config(&["--steps", "20001"]).validate().is_err());
        assert!(config(&["--prefix", "bad name"]).validate().is_err());
        assert!(config(&["--move-rate", "0"]).validate().is_err());
        let c = config(&["--steps", "10,20", "--hold", "3s", "--placement", "spread"]);
        assert_eq!(c.steps, vec![10, 20]);
        assert_eq!(c.hold, Duration::from_secs(3));
        assert_eq!(c.placement, Placement::Spread);
        assert_eq!(c.encoding, Encoding::Binary);
        assert_eq!(config(&["--encoding", "json"]).encoding, Encoding::Json);
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!(config(&["--transport", "ws"]).validate(), Ok(()));
        assert!(
            config(&["--transport", "wss"]).validate().is_err(),
            "TLS needs a certificate to trust"
        );
    }
}
