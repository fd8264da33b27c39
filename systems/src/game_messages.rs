//! Game-defined messages on the wire. A game registers its own client requests and server
//! pushes by name, with one line each, and never edits Hearth:
//!
//! - `app.add_client_message::<Chat>("chat")` makes `{"type":"chat",...}` valid for logged-in
//!   players; systems read [`FromClient<Chat>`] messages carrying the sender's [`PlayerId`]
//!   and entity.
//! - `app.add_server_message::<ChatLine>("chat_line")` lets systems send it with the
//!   [`ToClients<ChatLine>`] system parameter: to a player, to many, or to everyone near a
//!   point. A message is encoded once, whatever the number of recipients, and not on the
//!   tick (by the first connection task that writes it); sends only queue (a client whose
//!   queue is full is disconnected, as any slow client).
//!
//! The front door decodes a game's client messages on its own threads with the
//! [`ClientMessageTypes`] registry; the bridge hands them to the world without knowing them.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;

use bevy_app::App;
use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use hearth_components::PlayerId;
use hearth_components::protocol::{
    CORE_CLIENT_MESSAGES, CORE_SERVER_MESSAGES, GameLine, REPLICATION_SERVER_MESSAGES, RequestId,
    ServerMessage,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::net::{Connections, DeliverFn, GameRequest};
use crate::schema::MessageSchemas;
use crate::sessions::OnlinePlayers;
use crate::spatial::{Nearby, NearbyPlayers};

/// A client message a game registered, as the world receives it: who sent it and what.
#[derive(Message, Debug, Clone)]
pub struct FromClient<T: Send + Sync + 'static> {
    /// The sender.
    pub player: PlayerId,
    /// The sender's entity when the message was handed to the world (it was playing then).
    pub entity: Entity,
    /// The message.
    pub message: T,
    /// The client's request id, if it sent one: answers sent with [`ToClients::answer`] or
    /// [`Refusals::refuse`] carry it, so the client can match them to the request.
    pub id: Option<RequestId>,
}

impl<T: Send + Sync + 'static> FromClient<T> {
    /// `message` from `player` on `entity`, without a request id.
    pub fn new(player: PlayerId, entity: Entity, message: T) -> Self {
        Self {
            player,
            entity,
            message,
            id: None,
        }
    }

    /// The same message with the request id `id`.
    pub fn with_id(mut self, id: impl Into<Option<RequestId>>) -> Self {
        self.id = id.into();
        self
    }
}

type DecodeFn = fn(&str) -> Result<Box<dyn Any + Send>, DecodeError>;

/// Why a line did not decode as the game message its `type` names. Its text is what the
/// client is told (after `not a valid <type>: `), so each variant names the field at fault
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message as a whole does not fit (a missing or repeated field, not an object).
    #[error("{0}")]
    Message(#[source] serde_json::Error),
    /// A field's value is not of the type the game declared.
    #[error("field `{path}`: {source}")]
    Field {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// Something follows the JSON object on the line.
    #[error("{0}")]
    TrailingCharacters(#[source] serde_json::Error),
    /// A field the game's type does not have.
    #[error("unknown field `{field}`")]
    UnknownField { field: String },
}

/// One registered client message type.
#[derive(Clone, Copy)]
struct ClientMessageType {
    decode: DecodeFn,
    deliver: DeliverFn,
}

/// The client messages games registered, by `type`. The front door decodes with it.
#[derive(Resource, Clone, Default)]
pub struct ClientMessageTypes {
    by_name: HashMap<&'static str, (&'static str, ClientMessageType)>,
}

impl ClientMessageTypes {
    /// Whether a game registered `kind`.
    pub fn contains(&self, kind: &str) -> bool {
        self.by_name.contains_key(kind)
    }

    /// Decodes `line`, a message of type `kind`: its fields other than `type` make a `T`.
    /// `None` when no game registered `kind`; `Some(Err(reason))` when the fields do not fit:
    /// an unknown field, a missing or repeated one, or a value of the wrong type, each named.
    pub fn decode(&self, kind: &str, line: &str) -> Option<Result<GameRequest, DecodeError>> {
        let (name, t) = self.by_name.get(kind)?;
        Some((t.decode)(line).map(|message| GameRequest::new(name, t.deliver, message)))
    }

    /// Every registered `type`, sorted (for error messages).
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

/// Decodes a message type without fields (`struct Hello;`, `()`): serde reads such a type
/// from `null`, never from an object, so the line is checked to be an object with no field
/// but `type`, and `T` is read from `null`.
fn decode_unit<T: DeserializeOwned + Send + 'static>(
    line: &str,
) -> Result<Box<dyn Any + Send>, DecodeError> {
    let fields: HashMap<String, serde::de::IgnoredAny> =
        serde_json::from_str(line).map_err(DecodeError::Message)?;
    if let Some(field) = fields.keys().find(|k| !matches!(k.as_str(), "type" | "id")) {
        return Err(DecodeError::UnknownField {
            field: field.clone(),
        });
    }
    let message = T::deserialize(serde_json::Value::Null).map_err(DecodeError::Message)?;
    Ok(Box::new(message))
}

/// Whether `T` is a message without fields: it reads from `null` (a unit struct does; a
/// struct with fields, even all defaulted, does not).
fn is_unit<T: DeserializeOwned>() -> bool {
    T::deserialize(serde_json::Value::Null).is_ok()
}

/// Decodes a `T` straight from the line (no intermediate JSON tree), refusing every field
/// `T` does not know except `type`, and naming the field a bad value is in.
fn decode<T: DeserializeOwned + Send + 'static>(
    line: &str,
) -> Result<Box<dyn Any + Send>, DecodeError> {
    let mut unknown = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path| {
        let path = path.to_string();
        // `type` names the message and `id` is the request id, both read by the front door.
        if path != "type" && path != "id" {
            unknown.push(path);
        }
    };
    let mut json = serde_json::Deserializer::from_str(line);
    let fields = serde_ignored::Deserializer::new(&mut json, &mut note_unknown);
    let message: T = serde_path_to_error::deserialize(fields).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            DecodeError::Message(e.into_inner())
        } else {
            DecodeError::Field {
                path,
                source: e.into_inner(),
            }
        }
    })?;
    json.end().map_err(DecodeError::TrailingCharacters)?;
    if let Some(field) = unknown.first() {
        return Err(DecodeError::UnknownField {
            field: field.clone(),
        });
    }
    Ok(Box::new(message))
}

fn deliver<T: Send + Sync + 'static>(
    world: &mut World,
    player: PlayerId,
    entity: Entity,
    id: Option<RequestId>,
    message: Box<dyn Any + Send>,
) {
    if let Ok(message) = message.downcast::<T>() {
        world.write_message(FromClient::new(player, entity, *message).with_id(id));
    }
}

/// The name a server message type was registered under.
#[derive(Resource)]
pub struct ServerMessageName<T> {
    name: &'static str,
    _type: PhantomData<fn(T)>,
}

/// Server message names taken, so a name is registered once.
#[derive(Resource, Default)]
struct ServerMessageNames(HashSet<&'static str>);

/// Registering a game's messages on the app.
pub trait GameMessagesAppExt {
    /// Makes `{"type":"<name>",...}` a valid request for logged-in players: its fields decode
    /// into `T`, and systems read it as [`FromClient<T>`]. A `T` without fields may be a unit
    /// struct (`struct Hello;`): `{"type":"hello"}` is one. Panics (a programming error at
    /// start-up, not input) if `name` is registered twice or is a core message's type.
    fn add_client_message<T>(&mut self, name: &'static str) -> &mut Self
    where
        T: DeserializeOwned + JsonSchema + Send + Sync + 'static;

    /// Lets systems send `T` as `{"type":"<name>",...}` with [`ToClients<T>`]. `T` must
    /// serialise as a JSON object. Panics if `name` is registered twice or is a core
    /// message's type.
    fn add_server_message<T>(&mut self, name: &'static str) -> &mut Self
    where
        T: Serialize + JsonSchema + Send + Sync + 'static;
}

impl GameMessagesAppExt for App {
    fn add_client_message<T>(&mut self, name: &'static str) -> &mut Self
    where
        T: DeserializeOwned + JsonSchema + Send + Sync + 'static,
    {
        assert!(
            !CORE_CLIENT_MESSAGES.contains(&name),
            "client message type {name:?} is one of Hearth's own ({CORE_CLIENT_MESSAGES:?}); pick another name"
        );
        let mut types = self
            .world_mut()
            .get_resource_or_init::<ClientMessageTypes>();
        assert!(
            !types.contains(name),
            "client message type {name:?} registered twice"
        );
        types.by_name.insert(
            name,
            (
                name,
                ClientMessageType {
                    decode: if is_unit::<T>() {
                        decode_unit::<T>
                    } else {
                        decode::<T>
                    },
                    deliver: deliver::<T>,
                },
            ),
        );
        self.world_mut()
            .get_resource_or_init::<MessageSchemas>()
            .add_client::<T>(name);
        self.add_message::<FromClient<T>>()
    }

    fn add_server_message<T>(&mut self, name: &'static str) -> &mut Self
    where
        T: Serialize + JsonSchema + Send + Sync + 'static,
    {
        assert!(
            !CORE_SERVER_MESSAGES.contains(&name) && !REPLICATION_SERVER_MESSAGES.contains(&name),
            "server message type {name:?} is one of Hearth's own ({CORE_SERVER_MESSAGES:?}, {REPLICATION_SERVER_MESSAGES:?}); pick another name"
        );
        let mut names = self
            .world_mut()
            .get_resource_or_init::<ServerMessageNames>();
        assert!(
            names.0.insert(name),
            "server message type {name:?} registered twice"
        );
        self.world_mut()
            .get_resource_or_init::<MessageSchemas>()
            .add_server::<T>(name);
        self.insert_resource(ServerMessageName::<T> {
            name,
            _type: PhantomData,
        })
    }
}

/// Sends a game's server message `T` to players. Sending only queues (never blocks the
/// tick); a player with no connection (a test world, a client gone meanwhile) is skipped.
///
/// It reads no component, so a system may hold it next to any query (moving players and
/// answering them in one system); [`ToClients::send_near`] takes the positions from a
/// [`NearbyPlayers`] the system asks for alongside.
#[derive(SystemParam)]
pub struct ToClients<'w, 's, T: Serialize + Send + Sync + 'static> {
    name: Res<'w, ServerMessageName<T>>,
    connections: Res<'w, Connections>,
    online: Option<Res<'w, OnlinePlayers>>,
    found: Local<'s, Vec<Nearby>>,
}

impl<T: Serialize + Send + Sync + 'static> ToClients<'_, '_, T> {
    /// The message as it travels: encoded later, by the first connection task that writes it
    /// (off the tick), once for all its recipients.
    fn line(&self, message: T) -> ServerMessage {
        ServerMessage::Game(GameLine::new(self.name.name, message))
    }

    /// Whether the player on `entity` has a connection to send to (skip building a message
    /// nobody would receive).
    pub fn is_connected(&self, player: Entity) -> bool {
        self.connections.is_connected(player)
    }

    /// Messages queued for the player and not yet written to its client (`None` without a
    /// connection). A message that a newer one supersedes (a snapshot) is better skipped
    /// for a client with some waiting: when the server falls behind, clients then get fewer,
    /// fresh messages instead of a growing queue of stale ones that ends in a disconnect.
    pub fn backlog(&self, player: Entity) -> Option<usize> {
        self.connections.backlog(player)
    }

    /// The entities of every player with a connection (what a per-player push such as a
    /// snapshot iterates, rather than every player in the world).
    pub fn connected(&self) -> impl Iterator<Item = Entity> + '_ {
        self.connections.players()
    }

    /// Sends to one player's connection. Returns whether it was queued.
    pub fn send(&self, player: Entity, message: T) -> bool {
        self.connections.queue(player, self.line(message))
    }

    /// Answers a request: sends `message` to `to` (`&request`: its sender), carrying the
    /// request's `id` (if the client sent one) right after its `type`. Returns whether it
    /// was queued.
    pub fn answer(&self, to: impl Into<AnswerTo>, message: T) -> bool {
        let to = to.into();
        self.connections
            .queue(to.entity, self.line(message).answering(to.id))
    }

    /// Sends to the player `player` if it is online here with a connection (leaving or
    /// not). Returns whether it was queued.
    pub fn send_to_player(&self, player: PlayerId, message: T) -> bool {
        self.online
            .as_ref()
            .and_then(|online| online.entity(player))
            .is_some_and(|entity| self.send(entity, message))
    }

    /// Sends to each of `players` (encoded once). Returns how many were queued.
    pub fn send_to_many(&self, players: impl IntoIterator<Item = Entity>, message: T) -> usize {
        let line = self.line(message);
        players
            .into_iter()
            .filter(|&p| self.connections.queue(p, line.clone()))
            .count()
    }

    /// Sends to every player within `radius` of `(x, y)`, as `nearby` finds them (encoded
    /// once). Returns how many were queued.
    pub fn send_near(
        &mut self,
        nearby: &NearbyPlayers,
        x: f32,
        y: f32,
        radius: f32,
        message: T,
    ) -> usize {
        let mut found = std::mem::take(&mut *self.found);
        nearby.near(x, y, radius, usize::MAX, &mut found);
        let sent = self.send_to_many(found.iter().map(|n| n.entity), message);
        *self.found = found;
        sent
    }

    /// Sends to every connected player (encoded once).
    pub fn send_to_all(&self, message: T) -> usize {
        self.send_to_many(self.connections.players(), message)
    }
}

/// Who an answer or refusal goes to: the sender of a request (whose `id` it then carries),
/// a player's entity, or an entity with the id of a request it answers later (a game that
/// answers at the next tick keeps the id with the pending work).
#[derive(Clone, Debug)]
pub struct AnswerTo {
    entity: Entity,
    id: Option<RequestId>,
}

impl<T: Send + Sync + 'static> From<&FromClient<T>> for AnswerTo {
    fn from(request: &FromClient<T>) -> Self {
        Self {
            entity: request.entity,
            id: request.id.clone(),
        }
    }
}

impl From<Entity> for AnswerTo {
    fn from(entity: Entity) -> Self {
        Self { entity, id: None }
    }
}

impl From<(Entity, Option<RequestId>)> for AnswerTo {
    fn from((entity, id): (Entity, Option<RequestId>)) -> Self {
        Self { entity, id }
    }
}

/// Refuses a player's request with Hearth's standard `error` (`{"type":"error","code":..,
/// "message":..}`) and a game-defined `code`, so clients handle one error shape for the
/// core's refusals and the game's. It reads no component, like [`ToClients`].
#[derive(SystemParam)]
pub struct Refusals<'w> {
    connections: Res<'w, Connections>,
}

impl Refusals<'_> {
    /// Sends `{"type":"error","code":<code>,"message":<message>}` to `to`: the sender of a
    /// request (`&request`, whose `id` the error then carries) or a player's entity. `code`
    /// is the game's (snake_case by convention, such as `stack_full`); `message` is for
    /// people, cut to 256 characters. Returns whether it was queued.
    pub fn refuse(&self, to: impl Into<AnswerTo>, code: &str, message: impl Into<String>) -> bool {
        let to = to.into();
        let error = ServerMessage::game_error(code, message).answering(to.id);
        self.connections.queue(to.entity, error)
    }
}

/// Game messages: their registries, and the connections table [`ToClients`] reads (empty in
/// a world without a front door, such as a test fixture's: sends then go nowhere).
pub struct GameMessagesPlugin;

impl bevy_app::Plugin for GameMessagesPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ClientMessageTypes>()
            .init_resource::<ServerMessageNames>()
            .init_resource::<Connections>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, JsonSchema)]
    struct Chat {
        text: String,
        #[serde(default)]
        loud: bool,
    }

    fn types() -> ClientMessageTypes {
        let mut app = App::new();
        app.add_client_message::<Chat>("chat");
        app.world().resource::<ClientMessageTypes>().clone()
    }

    #[test]
    fn a_decoded_message_reaches_the_world_from_its_sender() {
        let request = types()
            .decode("chat", r#"{"type":"chat","text":"hi","loud":true}"#)
            .expect("registered")
            .expect("valid");
        assert_eq!(request.kind(), "chat");
        let mut world = World::new();
        world.init_resource::<Messages<FromClient<Chat>>>();
        let entity = world.spawn_empty().id();
        request.deliver(&mut world, PlayerId(7), entity);
        let messages = world.resource::<Messages<FromClient<Chat>>>();
        let got: Vec<_> = messages
            .iter_current_update_messages()
            .map(|m| (m.player, m.entity, m.message.text.as_str(), m.message.loud))
            .collect();
        assert_eq!(got, [(PlayerId(7), entity, "hi", true)]);
    }

    #[test]
    fn unknown_missing_or_mistyped_fields_are_refused_by_name() {
        let types = types();
        let err = |line| match types.decode("chat", line) {
            Some(Err(reason)) => reason.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            err(r#"{"type":"chat","text":"hi","colour":"red"}"#),
            "unknown field `colour`"
        );
        let mistyped = err(r#"{"type":"chat","text":5}"#);
        assert!(
            mistyped.starts_with("field `text`: invalid type"),
            "{mistyped}"
        );
        assert!(err(r#"{"type":"chat"}"#).contains("missing field `text`"));
        assert!(err(r#"{"type":"chat","text":"a","text":"b"}"#).contains("duplicate field `text`"));
        assert!(types.decode("shout", r#"{"type":"shout"}"#).is_none());
    }

    #[test]
    fn a_unit_struct_is_a_message_without_fields() {
        #[derive(Deserialize, Debug, PartialEq, JsonSchema)]
        struct Hello;
        let mut app = App::new();
        app.add_client_message::<Hello>("hello");
        let registered = app.world().resource::<ClientMessageTypes>().clone();
        let request = registered
            .decode("hello", r#"{"type":"hello"}"#)
            .expect("registered")
            .expect("valid");
        let mut world = World::new();
        world.init_resource::<Messages<FromClient<Hello>>>();
        let entity = world.spawn_empty().id();
        request.deliver(&mut world, PlayerId(3), entity);
        let messages = world.resource::<Messages<FromClient<Hello>>>();
        assert_eq!(messages.iter_current_update_messages().count(), 1);
        let Some(Err(refused)) = registered.decode("hello", r#"{"type":"hello","loud":true}"#)
        else {
            panic!("a field is refused")
        };
        assert_eq!(refused.to_string(), "unknown field `loud`");
        // A struct whose fields all have defaults still takes an object.
        let chat = types().decode("chat", r#"{"type":"chat","text":"hi"}"#);
        assert!(matches!(chat, Some(Ok(_))));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_client_message_name_is_registered_once() {
        App::new()
            .add_client_message::<Chat>("chat")
            .add_client_message::<Chat>("chat");
    }

    #[test]
    #[should_panic(expected = "one of Hearth's own")]
    fn a_core_client_message_name_cannot_be_taken() {
        App::new().add_client_message::<Chat>("login");
    }

    #[test]
    #[should_panic(expected = "one of Hearth's own")]
    fn a_core_server_message_name_cannot_be_taken() {
        #[derive(Serialize, JsonSchema)]
        struct Fake {}
        App::new().add_server_message::<Fake>("kicked");
    }
}
