//! The `arena` server: Hearth with the arena game instead of the demo. Same configuration as
//! the `hearth` binary (assets/server.toml, `HEARTH_*` variables, flags such as
//! `--store redis://...` and `--listen`); the memory store by default.

use std::process::ExitCode;

use arena::ArenaPlugin;

fn main() -> ExitCode {
    hearth::launch::main(
        "arena",
        "The arena game on Hearth: pick items up, chat with who is near",
        ArenaPlugin,
    )
}
