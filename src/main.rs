//! The `hearth` server binary: Hearth with its built-in demo game.

use std::process::ExitCode;

use hearth::demo_game::DemoGamePlugin;

fn main() -> ExitCode {
    hearth::launch::main(
        "hearth",
        "A headless ECS game server whose players persist themselves",
        DemoGamePlugin,
    )
}
