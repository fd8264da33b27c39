//! What a client hears that is not the answer to one of its own requests: pushes (updates,
//! a game's broadcasts, `kicked`), refusals of messages sent without waiting, and the
//! connection's own story (dropped, resumed).

use hearth_components::protocol::{ErrorCode, KickCode, ServerMessage};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::world::Update;

/// A message of a game's own (any `type` Hearth's core does not define), decoded by name
/// into the game's types with [`GameMessage::decode`].
#[derive(Clone, Debug, PartialEq)]
pub struct GameMessage {
    /// Its `type` (`chat_line`).
    pub name: String,
    /// Its fields, without `type` and `id`.
    pub fields: Map<String, Value>,
}

impl GameMessage {
    /// Splits a message object into its `type` and its fields.
    pub(crate) fn from_object(mut object: Map<String, Value>) -> Self {
        let name = match object.remove("type") {
            Some(Value::String(name)) => name,
            _ => String::new(),
        };
        object.remove("id");
        Self {
            name,
            fields: object,
        }
    }

    /// The message as a `T` (the game's serde type for it).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(Value::Object(self.fields.clone()))
    }

    /// The message as a `T` when its `type` is `name`; `None` for another type.
    pub fn decode_if<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        (self.name == name).then(|| self.decode())
    }
}

/// An `error` from the server: Hearth's codes or a game's own (`stack_full`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// Machine-readable (`invalid_credentials`, `stack_full`).
    pub code: String,
    /// For people.
    pub message: String,
}

impl Refusal {
    /// The code as one of Hearth's own, or `None` for a game's code.
    pub fn core_code(&self) -> Option<ErrorCode> {
        serde_json::from_value(Value::String(self.code.clone())).ok()
    }

    pub(crate) fn from_object(object: &Map<String, Value>) -> Self {
        let text = |key| {
            object
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            code: text("code"),
            message: text("message"),
        }
    }
}

/// Something that happened on the client's connection, in the order the server sent it.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A new login (or resume) began: the world was cleared; `you` is your entity's id.
    Replication { you: u64 },
    /// A replication round, already applied to [`crate::World`] when this is read.
    Update(Update),
    /// A message of the game's (a broadcast such as `chat_line`, or `level_up`).
    Game(GameMessage),
    /// A core message that answers none of this client's waiting requests: `kicked`,
    /// `queued` notices, a `pong` to a ping sent without waiting.
    Server(ServerMessage),
    /// An `error` that answers none of this client's waiting requests (a `rate_limited` for a
    /// message dropped unread; a game's refusal of a message sent with `send`).
    Refused(Refusal),
    /// The connection ended (with why). If the client was logged in and the cause allows it,
    /// [`Event::Reconnecting`] follows; otherwise the client is done.
    Disconnected { reason: String },
    /// Trying to reconnect and resume (attempt 1, 2, ...), after the backoff's pause.
    Reconnecting { attempt: u32 },
    /// Back in the world after a drop, with the resume token held: a new session, so
    /// [`Event::Replication`] and the world's full state follow.
    Resumed { player_id: u64 },
    /// The server handed the player to another (a world cut into zones: it walked into
    /// another zone); the client follows: [`Event::Resumed`] there, or
    /// [`Event::ResumeFailed`].
    HandedOff { addr: String },
    /// The automatic resume gave up; the client is logged out (log in again).
    ResumeFailed { reason: String },
    /// A line or frame that did not decode as the protocol says (the stream went on).
    Invalid { reason: String },
}

/// Whether a `kicked` with this code should be followed by an automatic resume: yes for the
/// ones that tell a client to come back (docs/protocol.md, "Kick codes").
pub(crate) fn kick_allows_resume(code: KickCode) -> bool {
    match code {
        KickCode::Idle | KickCode::Shutdown | KickCode::Drain => true,
        KickCode::Rate | KickCode::Takeover => false,
    }
}
