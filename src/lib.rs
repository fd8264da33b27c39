//! Hearth: a headless ECS game server whose players persist themselves.
//!
//! A game is a Bevy plugin on top of [`HearthPlugins`]:
//!
//! ```no_run
//! use hearth::prelude::*;
//!
//! struct MyGame;
//! impl Plugin for MyGame {
//!     fn build(&self, app: &mut App) {
//!         // register_persistent, add_client_message, add_server_message, add_systems...
//!     }
//! }
//!
//! let config = hearth::config::load(&hearth::config::Cli::default()).unwrap();
//! App::new()
//!     .add_plugins(HearthPlugins::new(config))
//!     .add_plugins(MyGame)
//!     .run();
//! ```
//!
//! or, for a game's binary, the whole `main` in one call:
//! `hearth::launch::main("my-game", "My game on Hearth", MyGame)`.
//!
//! This crate assembles the server: store adapters ([`store`]), the front door ([`net`]),
//! configuration ([`config`]), the plugin group ([`server`]), the tick rate and the runner ([`runner`]), typed bindings ([`schema`]), what plugins opened
//! or failed to open ([`startup`]), a binary's `main` ([`launch`]), the built-in
//! [`demo_game`], log output for a binary ([`logging`]), and, with the `testing` feature,
//! the world fixtures games are tested with (`testing`). [`prelude`] is what a game imports.

pub mod admin;
pub mod config;
pub mod demo_game;
pub mod launch;
pub mod logging;
pub mod net;
pub mod observability;
pub mod prelude;
pub mod priority;
pub mod runner;
pub mod schema;
pub mod server;
pub mod startup;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod zones;

/// docs/extending.md, included so `cargo test --doc` compiles and runs its snippets.
#[doc = include_str!("../docs/extending.md")]
#[doc(hidden)]
mod extending_guide {}

/// docs/testing.md, included so `cargo test --doc` compiles and runs its snippets.
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../docs/testing.md")]
mod testing_guide {}

pub use hearth_components as components;
pub use hearth_systems as systems;
pub use server::HearthPlugins;
