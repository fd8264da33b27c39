//! The `arena` server: Hearth with the arena game instead of the demo. Same configuration as
//! the `hearth` binary (assets/server.toml, `HEARTH_*` variables, flags such as
//! `--store redis://...` and `--listen`); the memory store by default.

use std::process::ExitCode;

use arena::ArenaPlugin;
use hearth::config::{self, Cli};
use hearth::prelude::*;

/// Exit code of a configuration the server refuses, as the `hearth` binary's (1 is for a
/// start that failed on something outside: Redis, the listen address).
const INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // Hearth's flags under this binary's name, so `--help` describes the arena.
    let cli = config::parse_cli_as(
        "arena",
        "The arena game on Hearth: pick items up, chat with who is near",
    );
    hearth::logging::init(cli.verbose());
    match serve(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("arena: {e}");
            ExitCode::from(INVALID_CONFIG)
        }
    }
}

/// Runs the arena until Ctrl-C or SIGTERM (which saves everyone); returns the exit code.
fn serve(cli: &Cli) -> Result<u8, config::LoadError> {
    let (config, source) = config::load_with_source(cli)?;
    match &source {
        Some(path) => tracing::info!(path = %path.display(), "config file read"),
        None => tracing::info!(
            "no config file: built-in defaults apply, under HEARTH_* variables and flags"
        ),
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let exit = App::new()
        .add_plugins(HearthPlugins::new(config))
        .add_plugins(ArenaPlugin)
        .run();
    Ok(match exit {
        AppExit::Success => 0,
        AppExit::Error(code) => code.get(),
    })
}
