//! The `coins` server: Hearth with the coins game. Same configuration as the `hearth`
//! binary (flags such as `--store redis://...` and `--listen`); the memory store by default.

use std::process::ExitCode;

use coins::CoinsPlugin;

fn main() -> ExitCode {
    hearth::launch::main(
        "coins",
        "The coins game on Hearth: collect coins, gift them to other players",
        CoinsPlugin,
    )
}
