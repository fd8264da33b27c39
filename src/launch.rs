//! The whole `main` of a game's server binary, in one call: [`main`] reads Hearth's flags,
//! `HEARTH_*` variables and config file, runs `hearth admin ...` or `hearth schema` when
//! asked, and otherwise
//! starts `App::new().add_plugins(HearthPlugins::new(config)).add_plugins(game)` until it
//! stops. The `hearth` binary and the arena are this call.

use std::process::ExitCode;

use bevy_app::{App, AppExit, Plugin};
use hearth_systems::PersistentRegistry;

use crate::HearthPlugins;
use crate::config::{self, Cli, Command};

/// Exit code of a configuration the server refuses (1 is for a start that failed on
/// something outside: Redis, the listen address).
pub const INVALID_CONFIG: u8 = 2;

/// Runs the server binary `name` (described by `about` in `--help`) with `game` on top of
/// Hearth; returns the process's exit code. `fn main() -> ExitCode { hearth::launch::main(
/// "my-game", "My game on Hearth", MyGame) }`.
pub fn main(name: &'static str, about: &'static str, game: impl Plugin) -> ExitCode {
    let cli = config::parse_cli_as(name, about);
    if let Some(Command::Admin(args)) = &cli.command {
        return admin(name, &cli, &args.command, game);
    }
    if let Some(Command::Schema(args)) = &cli.command {
        return schema(name, &cli, &args.out, game);
    }
    crate::logging::init(cli.verbose());
    let config = match load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    let exit = App::new()
        .insert_resource(crate::runner::ServerName(name))
        .add_plugins(HearthPlugins::new(config))
        .add_plugins(game)
        .run();
    match exit {
        AppExit::Success => ExitCode::SUCCESS,
        AppExit::Error(code) => ExitCode::from(code.get()),
    }
}

/// Loads the configuration, saying which file was read and what is risky in it.
fn load(cli: &Cli) -> Result<config::ServerConfig, config::LoadError> {
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
    Ok(config)
}

/// `<name> admin ...`: one command against the configured store; its result on stdout, an
/// error on stderr, the exit code of `hearth::admin`. The server's app is built (not
/// started: nothing is opened) so an import checks records against the game's own
/// persistent sections.
fn admin(
    name: &str,
    cli: &Cli,
    command: &crate::admin::AdminCommand,
    game: impl Plugin,
) -> ExitCode {
    let config = match config::load(cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name} admin: {e}");
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    let mut app = App::new();
    app.add_plugins(HearthPlugins::new(config.clone()))
        .add_plugins(game);
    let registry = app
        .world_mut()
        .remove_resource::<PersistentRegistry>()
        .unwrap_or_default();
    let mut input = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    match crate::admin::run(
        &config.store.settings,
        &registry,
        command,
        &mut input,
        &mut out,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} admin: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `<name> schema --out DIR`: the game's typed bindings written into `DIR` (its app built
/// with the configured settings, not started), the files named on stdout.
fn schema(name: &str, cli: &Cli, out: &std::path::Path, game: impl Plugin) -> ExitCode {
    let config = match config::load(cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name} schema: {e}");
            return ExitCode::from(INVALID_CONFIG);
        }
    };
    let mut app = App::new();
    app.add_plugins(HearthPlugins::new(config))
        .add_plugins(game);
    let written = crate::schema::bindings(name, &app)
        .map_err(|e| e.to_string())
        .and_then(|bindings| crate::schema::write(out, &bindings).map_err(|e| e.to_string()));
    match written {
        Ok(()) => {
            for file in [crate::schema::SCHEMA_FILE, crate::schema::TYPESCRIPT_FILE] {
                println!("{}", out.join(file).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name} schema: {e}");
            ExitCode::FAILURE
        }
    }
}
