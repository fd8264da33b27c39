//! The `hearth` server binary.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use hearth::config::{self, Cli};
use tracing_subscriber::EnvFilter;

/// Why the server could not start: the exit code and what to print.
struct StartError {
    code: u8,
    message: String,
}

impl StartError {
    /// Exit code 2: the configuration is invalid.
    fn config(e: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            message: e.to_string(),
        }
    }

    /// Exit code 1: something the server needs is not available.
    fn startup(e: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if cli.verbose { "debug" } else { "info" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match serve(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hearth: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Starts the server and runs it until Ctrl-C or SIGTERM; returns the exit code.
fn serve(cli: &Cli) -> Result<u8, StartError> {
    let (config, source) = config::load_with_source(cli).map_err(StartError::config)?;
    match &source {
        Some(path) => tracing::info!(path = %path.display(), "config file read"),
        None => tracing::info!(
            "no config file ({} not found, no --config): built-in defaults apply, under HEARTH_* variables and flags",
            config::DEFAULT_CONFIG_PATH
        ),
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let port = hearth::store::open(&config).map_err(StartError::startup)?;
    let info = port.info();
    if info.durable {
        tracing::info!(store = info.backend, location = %info.location, instance = %config.instance_id, "store ready");
    } else {
        tracing::warn!(store = info.backend, instance = %config.instance_id, "store ready: the {} store is NOT durable; everything is lost when the process exits (use --store redis://...)", info.backend);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(|e| {
        StartError::startup(format!("cannot install the Ctrl-C/SIGTERM handler: {e}"))
    })?;
    let accounts = hearth::net::account_stores(&config).map_err(StartError::startup)?;
    let mut app = hearth::build_app(config.clone(), port);
    let addr = hearth::net::start(&mut app, accounts)
        .map_err(|e| StartError::startup(format!("cannot listen on {}: {e}", config.listen)))?;
    // Announced only now: a server that cannot listen never says it is running.
    tracing::info!(tick_rate = config.tick_rate, flush_interval = ?config.flush_interval, lease_ttl = ?config.lease_ttl, "hearth running; Ctrl-C or SIGTERM to stop");
    tracing::info!(%addr, "accepting game clients (newline-delimited JSON over TCP, see docs/protocol.md)");
    Ok(u8::try_from(hearth::server::run(app, stop)).unwrap_or(1))
}
