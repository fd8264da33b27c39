//! The `hearth` server binary.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use hearth::config::{self, Cli};
use tracing_subscriber::EnvFilter;

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

    let config = match config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    };
    let port = match hearth::store::open(&config) {
        Ok(port) => port,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(1);
        }
    };
    let info = port.info();
    if info.durable {
        tracing::info!(store = info.backend, location = %info.location, instance = %config.instance_id, "store ready");
    } else {
        tracing::warn!(store = info.backend, instance = %config.instance_id, "store ready: the {} store is NOT durable; everything is lost when the process exits (use --store redis://...)", info.backend);
    }
    tracing::info!(tick_rate = config.tick_rate, flush_interval = ?config.flush_interval, lease_ttl = ?config.lease_ttl, "hearth running; Ctrl-C or SIGTERM to stop");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        eprintln!("hearth: cannot install the Ctrl-C/SIGTERM handler: {e}");
        return ExitCode::from(1);
    }
    let accounts = match hearth::net::account_stores(&config) {
        Ok(accounts) => accounts,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(1);
        }
    };
    let mut app = hearth::build_app(config.clone(), port);
    match hearth::net::start(&mut app, accounts) {
        Ok(addr) => {
            tracing::info!(%addr, "accepting game clients (newline-delimited JSON over TCP, see docs/protocol.md)")
        }
        Err(e) => {
            eprintln!("hearth: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    }
    ExitCode::from(u8::try_from(hearth::server::run(app, stop)).unwrap_or(1))
}
