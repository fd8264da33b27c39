//! The client protocol: newline-delimited JSON, one object per line, each with a `"type"`.
//! See docs/protocol.md. Only data here; the front door (tokio) lives in the `hearth` crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest accepted line, in bytes (without the newline).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A message from a client.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Create an account.
    Register { username: String, password: String },
    /// Log in and join the world.
    Login { username: String, password: String },
    /// Take one step in a direction; the server owns speed and position.
    Move { dx: f32, dy: f32 },
    /// Save, release the session and leave the world (the connection stays open).
    Logout {},
    /// Liveness check, answered with `pong`.
    Ping { nonce: u64 },
}

/// One player in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    pub id: u64,
    pub x: f32,
    pub y: f32,
}

/// A message to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Registered {
        player_id: u64,
    },
    LoggedIn {
        player_id: u64,
        state: BTreeMap<String, serde_json::Value>,
    },
    Snapshot {
        tick: u64,
        players: Vec<SnapshotEntry>,
    },
    LevelUp {
        level: u32,
    },
    LoggedOut {},
    Pong {
        nonce: u64,
    },
    Kicked {
        reason: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl ServerMessage {
    /// An `error` message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }

    /// The message as one protocol line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("server messages always serialise");
        line.push('\n');
        line
    }
}

/// Machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a valid message: bad JSON, invalid UTF-8, unknown type, missing or bad field.
    BadRequest,
    /// A line longer than [`MAX_LINE_BYTES`]; the connection is closed.
    TooLarge,
    /// Unknown username or wrong password.
    InvalidCredentials,
    /// The username is registered already.
    UsernameTaken,
    /// The player is online on this or another server.
    AlreadyOnline,
    /// Too many failed logins from this address, or too many messages on this connection
    /// (the message was dropped); try again later.
    RateLimited,
    /// The server cannot take the request now (auth queue full); retry shortly.
    ServerBusy,
    /// The request needs a logged-in player.
    NotLoggedIn,
    /// Storage is unavailable; nothing was changed.
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_by_type() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"move","dx":1,"dy":-0.5}"#).unwrap();
        assert_eq!(m, ClientMessage::Move { dx: 1.0, dy: -0.5 });
        let m: ClientMessage = serde_json::from_str(r#"{"type":"logout"}"#).unwrap();
        assert_eq!(m, ClientMessage::Logout {});
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"fly"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"login","username":"a"}"#).is_err()
        );
    }

    #[test]
    fn server_messages_serialise_with_snake_case_types() {
        assert_eq!(
            ServerMessage::LoggedOut {}.to_line(),
            "{\"type\":\"logged_out\"}\n"
        );
        assert_eq!(
            ServerMessage::error(ErrorCode::AlreadyOnline, "x").to_line(),
            "{\"type\":\"error\",\"code\":\"already_online\",\"message\":\"x\"}\n"
        );
    }
}
