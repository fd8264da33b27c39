//! A Rust client for Hearth servers (docs/protocol.md), on tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hearth_client::ClientError> {
//! use hearth_client::{Client, Event};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize)]
//! struct Move { dx: f32, dy: f32 }
//! #[derive(Deserialize)]
//! struct Position { x: f32, y: f32 }
//!
//! let mut client = Client::connect("127.0.0.1:7777").await?;
//! client.register("alice", "correct horse").await?;
//! let me = client.login("alice", "correct horse").await?;
//! client.send("move", &Move { dx: 1.0, dy: 0.0 }).await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Update(_) = event {
//!         let world = client.world();
//!         if let Some(entity) = world.player(me.player_id) {
//!             let position: Position = entity.get("position").expect("a position");
//!             println!("at {}, {}", position.x, position.y);
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - Requests (`register`, `login`, `resume`, `logout`, `ping`, and a game's with
//!   [`ClientHandle::request`]) carry a request `id`; each waits for the answer with its id.
//! - Game messages travel as the game's own serde types under their type name
//!   ([`ClientHandle::send`]); what the server pushes comes as [`Event`]s, a game's messages
//!   decoded by name with [`GameMessage::decode`].
//! - The replicated world ([`World`]) is kept as entities whose components are JSON values,
//!   read typed with [`World::get`].
//! - After a dropped connection a logged-in client reconnects with backoff and resumes with
//!   its resume token ([`Reconnect`]), telling it as [`Event::Disconnected`],
//!   [`Event::Reconnecting`] and [`Event::Resumed`].
//! - Feature `bevy`: [`bevy::HearthClientPlugin`] mirrors the world into a client `App`.

#[cfg(feature = "bevy")]
pub mod bevy;
mod client;
mod codec;
mod config;
mod error;
mod event;
mod session;
mod tls;
mod transport;
mod world;

pub use client::{Client, ClientHandle, LoggedIn, WorldRef};
pub use tls::TlsConfig;
pub use transport::Target;

/// The connection layer alone, for clients that decode with care of their own
/// (hearth-swarm): any door, either encoding, messages not yet decoded.
pub mod raw {
    pub use crate::codec::{CodecError, EncodeError, Outgoing, RawMessage};
    pub use crate::transport::{Incoming, Outbound, RawConn, connect_raw};
}
pub use codec::{EncodeError, Encoding};
pub use config::{ClientConfig, Reconnect};
pub use error::ClientError;
pub use event::{Event, GameMessage, Refusal};
pub use hearth_components::protocol::{ErrorCode, KickCode, ResumeToken, ServerMessage};
pub use world::{ComponentInfo, Entity, EntityState, Update, World, WorldError};
