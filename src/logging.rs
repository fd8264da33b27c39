//! Log output for a server binary, so every game's `main` starts logging the same way without
//! depending on `tracing-subscriber` itself.

use tracing_subscriber::EnvFilter;

/// Sends logs to stderr at `info` (`debug` when `verbose`), unless `RUST_LOG` says otherwise;
/// colours only on a terminal. Call once, first thing in `main`.
pub fn init(verbose: bool) {
    let default_level = if verbose { "debug" } else { "info" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
