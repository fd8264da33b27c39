//! The client protocol: newline-delimited JSON, one object per line, each with a `"type"`.
//! See docs/protocol.md. Only data here; the front door (tokio) lives in the `hearth` crate.
//!
//! These are the core's messages (accounts, sessions, liveness, errors). A game adds its own
//! by name (`add_client_message`, `add_server_message` in `hearth_systems::game_messages`);
//! they travel as [`ServerMessage::Game`] lines, encoded once for every recipient.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest accepted line, in bytes (without the newline).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Longest line the server sends, in bytes (without the newline): what a client must accept.
/// A message that would be longer (a game's oversized message) is not sent, and logged.
pub const MAX_SERVER_LINE_BYTES: usize = 64 * 1024;

/// Longest `message` of an `error`, in characters: a message quoting the client's input
/// (a serde error naming a bad value) is cut here, so an error line stays under
/// [`MAX_ERROR_LINE_BYTES`] whatever the client sent.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 256;

/// Longest `error` line the server sends, in bytes (a 256-character message of 4-byte
/// characters, escaped, and the rest of the line).
pub const MAX_ERROR_LINE_BYTES: usize = 2048;

/// The `type`s of [`ClientMessage`], in declaration order: a game cannot register these
/// names. Kept beside the enum by hand; a test fails when a variant is missing here.
pub const CORE_CLIENT_MESSAGES: &[&str] = &["register", "login", "resume", "logout", "ping"];

/// The `type`s of [`ServerMessage`]'s own variants, in declaration order: a game cannot
/// register these names. Kept beside the enum by hand; a test fails when one is missing.
pub const CORE_SERVER_MESSAGES: &[&str] = &[
    "registered",
    "logged_in",
    "logged_out",
    "pong",
    "queued",
    "kicked",
    "error",
    "handoff",
];

/// The `type`s the replication plugin writes itself (not [`ServerMessage`] variants: an
/// update is encoded per connection, off the tick): a game cannot register these names
/// either.
pub const REPLICATION_SERVER_MESSAGES: &[&str] = &["replication", "update"];

/// A message from a client that the core handles.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Create an account.
    Register { username: String, password: String },
    /// Log in and join the world.
    Login { username: String, password: String },
    /// Log in with the resume token of an earlier `logged_in` instead of a password.
    Resume { token: ResumeToken },
    /// Save, release the session and leave the world (the connection stays open).
    Logout {},
    /// Liveness check, answered with `pong`.
    Ping { nonce: u64 },
}

/// Longest request `id` string, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// A client's optional request `id` (an unsigned integer, or a string of at most
/// [`MAX_REQUEST_ID_BYTES`] bytes): every answer to that request carries it, right after its
/// `type`, so a client with several requests in flight (two gifts) can tell the answers apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum RequestId {
    /// `"id": 7`
    Number(u64),
    /// `"id": "gift-1"`
    Text(String),
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RequestId;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "an unsigned integer or a string of at most {MAX_REQUEST_ID_BYTES} bytes"
                )
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RequestId, E> {
                Ok(RequestId::Number(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RequestId, E> {
                if v.len() > MAX_REQUEST_ID_BYTES {
                    return Err(E::invalid_length(v.len(), &self));
                }
                Ok(RequestId::Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The schema of what [`RequestId`]'s own `Deserialize` accepts.
impl JsonSchema for RequestId {
    fn schema_name() -> Cow<'static, str> {
        "RequestId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A request id: every answer to the request carries it.",
            "anyOf": [
                { "type": "integer", "format": "uint64", "minimum": 0 },
                { "type": "string", "maxLength": MAX_REQUEST_ID_BYTES }
            ]
        })
    }
}

/// A resume token: a bearer credential worth one login, so it is never shown by `Debug`
/// (which logs use) — only its wire form carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ResumeToken(String);

impl ResumeToken {
    /// A token from its wire form (the server checks it; any string is accepted here).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The token as sent on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeToken(<redacted>)")
    }
}

/// A game-defined server message on its way to one or many clients. It is encoded as one
/// protocol line (`{"type":"<name>",...}\n`) on first use — by the connection task that
/// writes it, off the tick — and that line is then shared by every recipient: a broadcast
/// costs one encoding, and the tick never pays for JSON.
#[derive(Clone)]
pub struct GameLine(Arc<DeferredLine>);

struct DeferredLine {
    encode: Box<dyn Fn() -> Result<String, GameLineError> + Send + Sync>,
    line: OnceLock<Result<String, GameLineError>>,
}

/// Why a game's server message could not be encoded as a line (a game's programming error).
#[derive(Debug, thiserror::Error)]
pub enum GameLineError {
    /// The message (or its type name) did not serialise.
    #[error("a {name} message does not serialise: {source}")]
    Serialise {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// The message serialised, but not as a JSON object, so it cannot carry a `type`.
    #[error("a {name} message must serialise as a JSON object, got {json}")]
    NotAnObject { name: String, json: String },
}

impl GameLine {
    /// `message` as a message of type `name`, to be encoded when first written.
    pub fn new<T: Serialize + Send + Sync + 'static>(name: &'static str, message: T) -> Self {
        Self(Arc::new(DeferredLine {
            encode: Box::new(move || Self::encode(name, &message)),
            line: OnceLock::new(),
        }))
    }

    /// Encodes `message` (which must serialise as a JSON object) as a line of type `name`:
    /// `{"type":"<name>"` followed by the object's own fields, in their order. The message's
    /// opening brace is replaced by the type in place (a short move, no second encoding).
    pub fn encode<T: Serialize + ?Sized>(name: &str, message: &T) -> Result<String, GameLineError> {
        let serialise = |source| GameLineError::Serialise {
            name: name.to_string(),
            source,
        };
        let mut line = serde_json::to_string(message).map_err(serialise)?;
        if !line.starts_with('{') {
            return Err(GameLineError::NotAnObject {
                name: name.to_string(),
                json: line,
            });
        }
        let kind = serde_json::to_string(name).map_err(serialise)?;
        let separator = if line == "{}" { "" } else { "," };
        line.replace_range(0..1, &format!("{{\"type\":{kind}{separator}"));
        line.push('\n');
        Ok(line)
    }

    /// The line, newline included, encoded now if no recipient needed it yet; or why the
    /// message does not encode.
    pub fn line(&self) -> Result<&str, &GameLineError> {
        match self.0.line.get_or_init(|| (self.0.encode)()) {
            Ok(line) => Ok(line),
            Err(reason) => Err(reason),
        }
    }
}

/// Equal when they encode to the same line, or fail to encode for the same stated reason.
impl PartialEq for GameLine {
    fn eq(&self, other: &Self) -> bool {
        match (self.line(), other.line()) {
            (Ok(a), Ok(b)) => a == b,
            (Err(a), Err(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

impl std::fmt::Debug for GameLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line() {
            Ok(line) => write!(f, "GameLine({})", line.trim_end()),
            Err(reason) => write!(f, "GameLine(not encodable: {reason})"),
        }
    }
}

/// A message to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The account was created (answers `register`).
    Registered { player_id: u64 },
    /// Logged in (answers `login` or `resume`): the player's stored state, by section.
    LoggedIn {
        player_id: u64,
        state: BTreeMap<String, serde_json::Value>,
        /// Exchanges for one later login without a password (`resume`); absent only when the
        /// login did not come through the front door's auth workers (tests driving the world).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<ResumeToken>,
    },
    /// Saved and left the world (answers `logout`).
    LoggedOut {},
    /// Answers `ping` with its nonce.
    Pong { nonce: u64 },
    /// A `register` or `login` waits for a password worker behind others: its place in the
    /// line (1 = next) and an estimate of the wait in whole seconds. Sent when it joins the
    /// line behind others and again every few seconds while it waits; its answer follows.
    Queued { position: u64, eta_s: u64 },
    /// The server closes the connection right after this message.
    Kicked {
        /// Why, for programs: what the client should do next depends on it.
        code: KickCode,
        /// Why, for people.
        reason: String,
    },
    /// A request was refused, or the connection is about to close (docs/protocol.md says
    /// which codes close it).
    Error { code: ErrorCode, message: String },
    /// The player's place is on another server (the zone it walked into, or the zone its
    /// stored position is in): it has left this one, its progress saved. Connect to `addr`
    /// and send `resume` with `resume_token` (no password). The answer to a `login` or
    /// `resume` too, instead of `logged_in`.
    Handoff {
        /// `host:port` of the server to continue on (its TCP listener).
        addr: String,
        /// `host:port` of its WebSocket listener, if it has one: a WebSocket client connects
        /// to `ws://<ws_addr>/ws` (`wss://` when the server speaks TLS).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ws_addr: Option<String>,
        resume_token: ResumeToken,
    },
    /// A game-defined message, already encoded (see [`GameLine`]).
    #[serde(skip)]
    Game(GameLine),
    /// `message` as the answer to the request with this `id`: written with `"id"` right
    /// after its `"type"`.
    #[serde(skip)]
    Answer {
        id: RequestId,
        message: Box<ServerMessage>,
    },
}

impl ServerMessage {
    /// An `error` message; a `message` over [`MAX_ERROR_MESSAGE_CHARS`] characters is cut
    /// there and ends with `...`.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: cut(message.into(), MAX_ERROR_MESSAGE_CHARS),
        }
    }

    /// A game's refusal: an `error` with the game's own `code` (snake_case by convention,
    /// such as `stack_full`), its `message` cut as any error's.
    pub fn game_error(code: &str, message: impl Into<String>) -> Self {
        #[derive(Serialize)]
        struct GameError {
            code: String,
            message: String,
        }
        let error = GameError {
            code: code.to_string(),
            message: cut(message.into(), MAX_ERROR_MESSAGE_CHARS),
        };
        Self::Game(GameLine::new("error", error))
    }

    /// `self` as the answer to the request `id` (unchanged without one).
    pub fn answering(self, id: Option<RequestId>) -> Self {
        match id {
            Some(id) => Self::Answer {
                id,
                message: Box::new(self),
            },
            None => self,
        }
    }

    /// The message itself, without the request id it answers.
    pub fn inner(&self) -> &Self {
        match self {
            Self::Answer { message, .. } => message.inner(),
            message => message,
        }
    }

    /// A `kicked` message.
    pub fn kicked(code: KickCode, reason: impl Into<String>) -> Self {
        Self::Kicked {
            code,
            reason: reason.into(),
        }
    }

    /// The message as one protocol line, newline included (borrowed for a game line, encoded
    /// once for all its recipients). A game line whose message does not serialise as a JSON
    /// object (a game's programming error) is an empty string, logged, and not sent.
    pub fn to_line(&self) -> Cow<'_, str> {
        if let Self::Answer { id, message } = self {
            let line = message.to_line();
            return match with_id(&line, id) {
                Some(answered) => Cow::Owned(answered),
                None => line,
            };
        }
        if let Self::Game(line) = self {
            return match line.line() {
                Ok(line) => Cow::Borrowed(line),
                Err(reason) => {
                    tracing::error!(%reason, "a game message could not be encoded; not sent");
                    Cow::Borrowed("")
                }
            };
        }
        let mut line = serde_json::to_string(self).expect("server messages always serialise");
        line.push('\n');
        Cow::Owned(line)
    }
}

/// `line` (`{"type":"<name>"...}\n`) with `"id":<id>` right after its type; `None` for an
/// empty line (a message that did not encode) or one that does not start with its type.
fn with_id(line: &str, id: &RequestId) -> Option<String> {
    let rest = line.strip_prefix("{\"type\":\"")?;
    // A type is a plain name, never an escaped quote: its string ends at the next quote.
    let end = "{\"type\":\"".len() + rest.find('"')? + 1;
    let id = serde_json::to_string(id).ok()?;
    let mut answered = String::with_capacity(line.len() + id.len() + 6);
    answered.push_str(&line[..end]);
    answered.push_str(",\"id\":");
    answered.push_str(&id);
    answered.push_str(&line[end..]);
    Some(answered)
}

/// `text` cut to at most `max` characters, the last three of them `...` when it was cut.
fn cut(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max) {
        let keep = text
            .char_indices()
            .nth(max.saturating_sub(3))
            .map_or(at, |(i, _)| i);
        text.truncate(keep);
        text.push_str("...");
    }
    text
}

/// Why the server closed a connection (`kicked`'s `code`): what a client does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KickCode {
    /// No message from the client for the idle timeout: reconnect if still wanted.
    Idle,
    /// Too many messages over the rate, in a row: slow down before reconnecting.
    Rate,
    /// The server is shutting down (a player's progress is saved): reconnect later.
    Shutdown,
    /// The server is draining for a deploy: reconnect at once (to another server) and log in.
    Drain,
    /// The player's session was taken over by another server: do not reconnect blindly.
    Takeover,
}

/// Machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
    /// The server cannot take the request now (its waiting line is full); retry shortly.
    ServerBusy,
    /// The request needs a logged-in player.
    NotLoggedIn,
    /// Storage is unavailable; nothing was changed.
    Unavailable,
    /// This server is draining for a deploy and takes no logins: connect to another server
    /// (or this one once it is back). Distinct from `unavailable` so a client moves on
    /// instead of retrying here.
    Draining,
    /// The player walked towards a zone no server serves now: it stays at the border of its
    /// own zone. Try again later.
    ZoneUnavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `type` of a message, as serde writes it.
    fn type_of(message: &impl Serialize) -> String {
        let value = serde_json::to_value(message).unwrap();
        value["type"].as_str().unwrap().to_string()
    }

    /// One of each [`ClientMessage`] variant. Adding a variant breaks the `match` until it
    /// is added here too, and then [`the_core_client_message_list_is_every_variant`] fails
    /// until it is in [`CORE_CLIENT_MESSAGES`].
    fn every_client_message() -> Vec<ClientMessage> {
        let every = vec![
            ClientMessage::Register {
                username: "a".into(),
                password: "p".into(),
            },
            ClientMessage::Login {
                username: "a".into(),
                password: "p".into(),
            },
            ClientMessage::Resume {
                token: ResumeToken::new("t"),
            },
            ClientMessage::Logout {},
            ClientMessage::Ping { nonce: 1 },
        ];
        for message in &every {
            match message {
                ClientMessage::Register { .. }
                | ClientMessage::Login { .. }
                | ClientMessage::Resume { .. }
                | ClientMessage::Logout {}
                | ClientMessage::Ping { .. } => {}
            }
        }
        every
    }

    /// One of each [`ServerMessage`] variant of the core's own (not `Game`), tied to the
    /// enum the same way as [`every_client_message`].
    fn every_core_server_message() -> Vec<ServerMessage> {
        let every = vec![
            ServerMessage::Registered { player_id: 1 },
            ServerMessage::LoggedIn {
                player_id: 1,
                state: BTreeMap::new(),
                resume_token: None,
            },
            ServerMessage::LoggedOut {},
            ServerMessage::Pong { nonce: 1 },
            ServerMessage::Queued {
                position: 1,
                eta_s: 1,
            },
            ServerMessage::kicked(KickCode::Idle, "r"),
            ServerMessage::error(ErrorCode::BadRequest, "m"),
            ServerMessage::Handoff {
                addr: "a:1".into(),
                ws_addr: None,
                resume_token: ResumeToken::new("t"),
            },
        ];
        for message in &every {
            match message {
                ServerMessage::Registered { .. }
                | ServerMessage::LoggedIn { .. }
                | ServerMessage::LoggedOut {}
                | ServerMessage::Pong { .. }
                | ServerMessage::Queued { .. }
                | ServerMessage::Kicked { .. }
                | ServerMessage::Error { .. }
                | ServerMessage::Handoff { .. } => {}
                ServerMessage::Game(_) | ServerMessage::Answer { .. } => {
                    unreachable!("not a core message")
                }
            }
        }
        every
    }

    #[test]
    fn the_core_client_message_list_is_every_variant() {
        let types: Vec<String> = every_client_message().iter().map(type_of).collect();
        assert_eq!(types, CORE_CLIENT_MESSAGES, "in declaration order");
    }

    #[test]
    fn the_core_server_message_list_is_every_core_variant() {
        let types: Vec<String> = every_core_server_message().iter().map(type_of).collect();
        assert_eq!(types, CORE_SERVER_MESSAGES, "in declaration order");
    }

    #[test]
    fn client_messages_parse_by_type() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"ping","nonce":7}"#).unwrap();
        assert_eq!(m, ClientMessage::Ping { nonce: 7 });
        let m: ClientMessage = serde_json::from_str(r#"{"type":"logout"}"#).unwrap();
        assert_eq!(m, ClientMessage::Logout {});
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"fly"}"#).is_err());
        assert!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"login","username":"a"}"#).is_err()
        );
    }

    #[test]
    fn resume_round_trips_and_its_token_never_shows_in_debug() {
        let secret = "7.c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA";
        let line = format!(r#"{{"type":"resume","token":"{secret}"}}"#);
        let m: ClientMessage = serde_json::from_str(&line).unwrap();
        assert_eq!(
            m,
            ClientMessage::Resume {
                token: ResumeToken::new(secret)
            }
        );
        assert_eq!(serde_json::to_string(&m).unwrap(), line);
        assert!(!format!("{m:?}").contains(secret), "{m:?}");
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"resume"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"resume","token":5}"#).is_err());

        let logged_in = ServerMessage::LoggedIn {
            player_id: 7,
            state: BTreeMap::new(),
            resume_token: Some(ResumeToken::new(secret)),
        };
        let line = logged_in.to_line();
        assert_eq!(
            line,
            format!(
                "{{\"type\":\"logged_in\",\"player_id\":7,\"state\":{{}},\"resume_token\":\"{secret}\"}}\n"
            )
        );
        assert_eq!(
            serde_json::from_str::<ServerMessage>(&line).unwrap(),
            logged_in
        );
        assert!(!format!("{logged_in:?}").contains(secret));
    }

    #[test]
    fn an_error_message_is_cut_to_its_bound_and_its_line_stays_under_the_error_line_bound() {
        assert_eq!(
            ServerMessage::error(ErrorCode::BadRequest, "short").to_line(),
            "{\"type\":\"error\",\"code\":\"bad_request\",\"message\":\"short\"}\n"
        );
        let exact = "é".repeat(MAX_ERROR_MESSAGE_CHARS);
        let ServerMessage::Error { message, .. } =
            ServerMessage::error(ErrorCode::BadRequest, exact.clone())
        else {
            unreachable!()
        };
        assert_eq!(message, exact, "at the bound: kept whole");
        for long in ["a".repeat(100_000), "\u{1F600}\"".repeat(10_000)] {
            let error = ServerMessage::error(ErrorCode::BadRequest, long.clone());
            let ServerMessage::Error { message, .. } = &error else {
                unreachable!()
            };
            assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS);
            assert!(message.ends_with("..."), "{message}");
            assert!(long.starts_with(message.trim_end_matches("...")));
            assert!(
                error.to_line().len() <= MAX_ERROR_LINE_BYTES,
                "{}",
                error.to_line().len()
            );
        }
    }

    #[test]
    fn an_answer_carries_the_request_id_right_after_its_type() {
        let pong = ServerMessage::Pong { nonce: 7 };
        assert_eq!(
            pong.clone().answering(Some(RequestId::Number(5))).to_line(),
            "{\"type\":\"pong\",\"id\":5,\"nonce\":7}\n"
        );
        assert_eq!(
            ServerMessage::LoggedOut {}
                .answering(Some(RequestId::Text("out \"1\"".into())))
                .to_line(),
            "{\"type\":\"logged_out\",\"id\":\"out \\\"1\\\"\"}\n"
        );
        assert_eq!(pong.clone().answering(None), pong);
        let game = ServerMessage::Game(GameLine::new("nudge", serde_json::json!({})));
        assert_eq!(
            game.answering(Some(RequestId::Number(1))).to_line(),
            "{\"type\":\"nudge\",\"id\":1}\n"
        );
    }

    #[test]
    fn a_request_id_is_an_unsigned_integer_or_a_short_string() {
        let id = |json: &str| serde_json::from_str::<RequestId>(json);
        assert_eq!(
            id("18446744073709551615").unwrap(),
            RequestId::Number(u64::MAX)
        );
        let longest = "a".repeat(MAX_REQUEST_ID_BYTES);
        assert_eq!(
            id(&format!("\"{longest}\"")).unwrap(),
            RequestId::Text(longest.clone())
        );
        for bad in [
            "-1",
            "1.5",
            "null",
            "[1]",
            "{}",
            "true",
            &format!("\"{longest}a\""),
        ] {
            let error = id(bad).expect_err(bad).to_string();
            assert!(
                error.contains("unsigned integer or a string of at most 64 bytes"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn kicked_carries_a_machine_readable_code() {
        let codes = [
            (KickCode::Idle, "idle"),
            (KickCode::Rate, "rate"),
            (KickCode::Shutdown, "shutdown"),
            (KickCode::Drain, "drain"),
            (KickCode::Takeover, "takeover"),
        ];
        for (code, name) in codes {
            assert_eq!(
                ServerMessage::kicked(code, "why").to_line(),
                format!("{{\"type\":\"kicked\",\"code\":\"{name}\",\"reason\":\"why\"}}\n")
            );
        }
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

    #[test]
    fn a_game_line_is_its_type_then_the_fields_of_the_message() {
        #[derive(Serialize)]
        struct ChatLine<'a> {
            from: u64,
            text: &'a str,
        }
        #[derive(Serialize)]
        struct Ping {}
        let line = GameLine::encode(
            "chat_line",
            &ChatLine {
                from: 3,
                text: "hi",
            },
        )
        .unwrap();
        assert_eq!(
            line,
            "{\"type\":\"chat_line\",\"from\":3,\"text\":\"hi\"}\n"
        );
        assert_eq!(
            GameLine::encode("nudge", &Ping {}).unwrap(),
            "{\"type\":\"nudge\"}\n"
        );
        assert!(
            matches!(
                GameLine::encode("number", &5),
                Err(GameLineError::NotAnObject { .. })
            ),
            "not an object"
        );
        let deferred = GameLine::new("nudge", serde_json::json!({"n": 1}));
        assert_eq!(
            ServerMessage::Game(deferred).to_line(),
            "{\"type\":\"nudge\",\"n\":1}\n"
        );
        assert_eq!(ServerMessage::Game(GameLine::new("n", 5)).to_line(), "");
    }
}
