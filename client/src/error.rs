//! Why a client call failed.

use crate::codec::EncodeError;
use crate::event::Refusal;

/// Why a request (or a send) did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be opened.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// TLS could not be set up or its handshake failed (no root configured, an untrusted or
    /// misnamed certificate).
    #[error("tls: {0}")]
    Tls(String),
    /// The server answered with an `error` (Hearth's code or the game's).
    #[error("refused: {0}")]
    Refused(Refusal),
    /// A request was answered `handoff`: the player's place is on another server (a world
    /// cut into zones) at `addr` (its TCP listener; `ws_addr`: its WebSocket listener, if
    /// any), where `resume_token` resumes it. Login and resume follow it themselves; another
    /// request answered so returns it.
    #[error("handed off to {addr}")]
    HandedOff {
        addr: String,
        ws_addr: Option<String>,
        resume_token: hearth_components::protocol::ResumeToken,
    },
    /// The connection ended before the answer came.
    #[error("the connection ended before the answer")]
    Disconnected,
    /// The connection is down and the client is resuming; try again after
    /// [`crate::Event::Resumed`].
    #[error("reconnecting; try again once resumed")]
    Reconnecting,
    /// The client was closed (or its connection ended for good).
    #[error("the client is closed")]
    Closed,
    /// The message is not something the protocol can carry (not a JSON object, a field named
    /// `type` or `id`, not serialisable, or over the protocol's limit).
    #[error("cannot send: {0}")]
    Encode(#[from] EncodeError),
    /// The answer came, but not as the type asked for.
    #[error("unexpected answer: expected {expected}, got {got}")]
    Unexpected { expected: String, got: String },
    /// The answer's fields did not decode as the type asked for.
    #[error("the {name} answer does not decode: {source}")]
    Decode {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// The server broke the protocol (a bad frame); the connection was closed.
    #[error("protocol: {0}")]
    Protocol(String),
}
