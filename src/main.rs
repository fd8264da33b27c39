//! The `hearth` server binary.

use std::process::ExitCode;

use bevy_app::{App, AppExit};
use hearth::HearthPlugins;
use hearth::config::{self, Cli, Command};
use hearth::demo_game::DemoGamePlugin;

/// Exit code of a configuration the server refuses (1 is for a start that failed on
/// something outside: Redis, the listen address).
const INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = config::parse_cli();
    if let Some(Command::Admin(args)) = &cli.command {
        return admin(&cli, &args.command);
    }
    hearth::logging::init(cli.verbose());
    match serve(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hearth: {e}");
            ExitCode::from(INVALID_CONFIG)
        }
    }
}

/// `hearth admin ...`: one command against the configured store; its result on stdout, an
/// error on stderr, the exit code of `hearth::admin`.
fn admin(cli: &Cli, command: &hearth::admin::AdminCommand) -> ExitCode {
    let config = match config::load(cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hearth admin: {e}");
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    match hearth::admin::run(&config, command, &mut input, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth admin: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Starts the server and runs it until Ctrl-C or SIGTERM; returns the exit code.
fn serve(cli: &Cli) -> Result<u8, config::LoadError> {
    let (config, source) = config::load_with_source(cli)?;
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
    let exit = App::new()
        .add_plugins(HearthPlugins::new(config))
        .add_plugins(DemoGamePlugin)
        .run();
    Ok(match exit {
        AppExit::Success => 0,
        AppExit::Error(code) => code.get(),
    })
}
