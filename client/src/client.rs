//! The client's face: [`Client`] (its events) and [`ClientHandle`] (requests, sends and the
//! world, cloneable into other tasks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hearth_components::protocol::{ClientMessage, ResumeToken};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::codec::{EncodeError, encode};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::{Event, GameMessage, Refusal};
use crate::session::{Command, Session, Shared, lock};
use crate::transport::{Target, connect_raw};
use crate::world::World;

/// A connection to a Hearth server, kept alive and resumed on its own: requests through
/// [`ClientHandle`] (which `Client` derefs to), and [`Client::next_event`] for the rest.
///
/// Runs a task on the current tokio runtime; dropping the `Client` (and every handle) closes
/// the connection, which the server treats as a logout without the answer.
pub struct Client {
    handle: ClientHandle,
    events: mpsc::Receiver<Event>,
    task: JoinHandle<()>,
}

/// Sends requests and messages on a client's connection and reads its world; cheap to clone.
#[derive(Clone)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Mutex<Shared>>,
    ids: Arc<AtomicU64>,
    config: ClientConfig,
}

/// The client's world, borrowed (see [`ClientHandle::world`]).
pub struct WorldRef<'a>(MutexGuard<'a, Shared>);

impl std::ops::Deref for WorldRef<'_> {
    type Target = World;

    fn deref(&self) -> &World {
        &self.0.world
    }
}

/// A successful `login` or `resume`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedIn {
    pub player_id: u64,
    /// The player's stored record sections (`position`, `progress`, a game's own ...).
    pub state: BTreeMap<String, Value>,
}

impl Client {
    /// Connects over TCP to `addr` (`host:port`) with the default settings (JSON lines).
    pub async fn connect(addr: impl ToString) -> Result<Self, ClientError> {
        Self::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects over TCP to `addr` with `config` (the binary encoding, reconnect policy ...).
    pub async fn connect_with(
        addr: impl ToString,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        Self::connect_to(Target::Tcp(addr.to_string()), config).await
    }

    /// Connects over WebSocket to `url` (`ws://host:port/ws`) with the default settings
    /// (JSON text messages). For `wss://`, the binary encoding or other settings, use
    /// [`Client::connect_to`] with [`Target::WebSocket`].
    pub async fn connect_ws(url: &str) -> Result<Self, ClientError> {
        Self::connect_to(Target::WebSocket(url.into()), ClientConfig::default()).await
    }

    /// Connects to `target` (TCP, TLS, `ws://` or `wss://`) with `config` (for TLS and
    /// `wss://`, [`ClientConfig::tls`] says which certificates to trust).
    pub async fn connect_to(target: Target, config: ClientConfig) -> Result<Self, ClientError> {
        let conn = connect_raw(&target, &config).await?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let ids = Arc::new(AtomicU64::new(1));
        let (commands, commands_rx) = mpsc::channel(1024);
        let (events_tx, events) = mpsc::channel(config.event_capacity.max(1));
        let session = Session::new(
            target,
            config.clone(),
            Arc::clone(&shared),
            Arc::clone(&ids),
            events_tx,
        );
        let task = tokio::spawn(session.run(conn, commands_rx));
        Ok(Self {
            handle: ClientHandle {
                commands,
                shared,
                ids,
                config,
            },
            events,
            task,
        })
    }

    /// The next event; `None` once the client is done (closed, or a drop that could not be
    /// resumed). Replication updates are applied to [`ClientHandle::world`] before their
    /// event is queued. Read events (or drop the stream of them, which [`Client::split`]
    /// hands out): a client whose `event_capacity` events go unread stops reading the server.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// A handle to send with, while this `Client` keeps reading events.
    pub fn handle(&self) -> ClientHandle {
        self.handle.clone()
    }

    /// Closes the connection and waits for the client's task to end.
    pub async fn close(self) {
        let _ = self.handle.commands.send(Command::Close).await;
        let _ = self.task.await;
    }

    /// The handle and the event stream apart (a Bevy app reads one and sends with the other).
    pub fn split(self) -> (ClientHandle, mpsc::Receiver<Event>) {
        (self.handle, self.events)
    }
}

impl std::ops::Deref for Client {
    type Target = ClientHandle;

    fn deref(&self) -> &ClientHandle {
        &self.handle
    }
}

impl ClientHandle {
    /// Creates an account; its player id.
    pub async fn register(&self, username: &str, password: &str) -> Result<u64, ClientError> {
        let answer = self
            .core_request(ClientMessage::Register {
                username: username.into(),
                password: password.into(),
            })
            .await?;
        let player_id = expect(answer, "registered")?;
        field(&player_id, "player_id")
    }

    /// Logs in; the player's id and stored state. Keeps the resume token for automatic
    /// resume. In a world cut into zones, a server whose zone does not hold the player
    /// answers `handoff`: the client follows it to the zone's server and resumes there
    /// ([`crate::Event::HandedOff`], then [`crate::Event::Resumed`]), and this is that login.
    pub async fn login(&self, username: &str, password: &str) -> Result<LoggedIn, ClientError> {
        let answer = self
            .core_request(ClientMessage::Login {
                username: username.into(),
                password: password.into(),
            })
            .await;
        logged_in(self.follow(answer).await?)
    }

    /// Logs in with a resume token (from [`ClientHandle::resume_token`] of an earlier
    /// client), without the password; a `handoff` is followed as by [`ClientHandle::login`].
    pub async fn resume(&self, token: ResumeToken) -> Result<LoggedIn, ClientError> {
        let answer = self.core_request(ClientMessage::Resume { token }).await;
        logged_in(self.follow(answer).await?)
    }

    /// A login or resume answered `handoff`: has the session follow it, and waits for the
    /// `logged_in` at the destination. Any other answer is returned as it is.
    async fn follow(
        &self,
        answer: Result<Map<String, Value>, ClientError>,
    ) -> Result<Map<String, Value>, ClientError> {
        let Err(ClientError::HandedOff { addr, ws_addr, .. }) = answer else {
            return answer;
        };
        let (answer, answered) = oneshot::channel();
        self.command(Command::Follow {
            addr,
            ws_addr,
            answer,
        })
        .await?;
        answered.await.map_err(|_| ClientError::Closed)?
    }

    /// Logs out; returns once the final save is durable. No automatic resume after this.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let answer = self.core_request(ClientMessage::Logout {}).await?;
        expect(answer, "logged_out").map(drop)
    }

    /// Pings the server; the round trip.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        let nonce = self.ids.load(Ordering::Relaxed);
        let answer = self.core_request(ClientMessage::Ping { nonce }).await?;
        expect(answer, "pong")?;
        Ok(start.elapsed())
    }

    /// Sends the game's message `name` (`walk`) with `message`'s fields (the game's serde
    /// type, which must serialise as an object without `type` or `id` fields); returns once
    /// written. Answers and refusals come as events.
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        name: &str,
        message: &T,
    ) -> Result<(), ClientError> {
        let object = game_object(name, message)?;
        let message = encode(self.config.encoding, &object)?;
        let (done, written) = oneshot::channel();
        self.command(Command::Send { message, done }).await?;
        written.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends the game's message `name` with a request id and waits for its answer (a game
    /// answers with `ToClients::answer`): the answering message, or its refusal as
    /// [`ClientError::Refused`]. Decode it with [`GameMessage::decode`].
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        name: &str,
        message: &T,
    ) -> Result<GameMessage, ClientError> {
        let answer = self.request_object(game_object(name, message)?).await?;
        Ok(GameMessage::from_object(answer))
    }

    /// The world as replication has built it so far. Do not hold the guard across an
    /// `.await`: the client's task waits for it to apply updates.
    pub fn world(&self) -> WorldRef<'_> {
        WorldRef(lock(&self.shared))
    }

    /// The newest resume token, once logged in (keep it to resume in a later process).
    pub fn resume_token(&self) -> Option<ResumeToken> {
        lock(&self.shared).token.clone()
    }

    /// The logged-in player's id.
    pub fn player_id(&self) -> Option<u64> {
        let shared = lock(&self.shared);
        shared.player_id.filter(|_| shared.logged_in)
    }

    async fn core_request(
        &self,
        message: ClientMessage,
    ) -> Result<Map<String, Value>, ClientError> {
        // A core message always serialises as an object; if it ever did not, this says so.
        let name = "core";
        match serde_json::to_value(message) {
            Ok(Value::Object(object)) => self.request_object(object).await,
            Ok(other) => Err(EncodeError::NotAnObject {
                name: name.into(),
                json: other.to_string(),
            }
            .into()),
            Err(source) => Err(EncodeError::Serialise {
                name: name.into(),
                source,
            }
            .into()),
        }
    }

    /// Sends `object` with a fresh request id; its answer, an `error` answer as
    /// [`ClientError::Refused`].
    async fn request_object(
        &self,
        mut object: Map<String, Value>,
    ) -> Result<Map<String, Value>, ClientError> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        object.insert("id".into(), id.into());
        let message = encode(self.config.encoding, &object)?;
        let (answer, answered) = oneshot::channel();
        self.command(Command::Request {
            id,
            message,
            answer,
        })
        .await?;
        let answer = answered.await.map_err(|_| ClientError::Closed)??;
        match answer.get("type").and_then(Value::as_str) {
            Some("error") => Err(ClientError::Refused(Refusal::from_object(&answer))),
            Some("handoff") => Err(ClientError::HandedOff {
                addr: field(&answer, "addr")?,
                ws_addr: field(&answer, "ws_addr")?,
                resume_token: ResumeToken::new(field::<String>(&answer, "resume_token")?),
            }),
            _ => Ok(answer),
        }
    }

    async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| ClientError::Closed)
    }
}

/// `message` as the object of a game message `name`.
fn game_object<T: Serialize + ?Sized>(
    name: &str,
    message: &T,
) -> Result<Map<String, Value>, ClientError> {
    let mut object = match serde_json::to_value(message) {
        Ok(Value::Object(object)) => object,
        Ok(other) => {
            return Err(EncodeError::NotAnObject {
                name: name.into(),
                json: other.to_string(),
            }
            .into());
        }
        Err(source) => {
            return Err(EncodeError::Serialise {
                name: name.into(),
                source,
            }
            .into());
        }
    };
    for field in ["type", "id"] {
        if object.contains_key(field) {
            return Err(EncodeError::ReservedField {
                name: name.into(),
                field,
            }
            .into());
        }
    }
    object.insert("type".into(), name.into());
    Ok(object)
}

/// `answer` when it is of type `kind`.
fn expect(answer: Map<String, Value>, kind: &str) -> Result<Map<String, Value>, ClientError> {
    match answer.get("type").and_then(Value::as_str) {
        Some(got) if got == kind => Ok(answer),
        got => Err(ClientError::Unexpected {
            expected: kind.into(),
            got: got.unwrap_or("a message without a type").into(),
        }),
    }
}

/// Field `name` of an answer, decoded.
fn field<T: serde::de::DeserializeOwned>(
    answer: &Map<String, Value>,
    name: &str,
) -> Result<T, ClientError> {
    let value = answer.get(name).cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|source| ClientError::Decode {
        name: name.into(),
        source,
    })
}

fn logged_in(answer: Map<String, Value>) -> Result<LoggedIn, ClientError> {
    let answer = expect(answer, "logged_in")?;
    Ok(LoggedIn {
        player_id: field(&answer, "player_id")?,
        state: field(&answer, "state")?,
    })
}
