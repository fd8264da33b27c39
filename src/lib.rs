//! Hearth: a headless ECS game server whose players persist themselves.
//!
//! This crate assembles the server: store adapters ([`store`]), configuration ([`config`]),
//! the plugin group and runner ([`server`]) and the world fixtures users test games with
//! ([`testing`]).

pub mod config;
pub mod net;
pub mod server;
pub mod store;
pub mod testing;

pub use hearth_components as components;
pub use hearth_systems as systems;
pub use server::{HearthPlugins, build_app};
