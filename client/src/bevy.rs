//! [`HearthClientPlugin`]: a Hearth client inside a Bevy `App` (feature `bevy`).
//!
//! The client runs on a tokio runtime of its own (one worker thread), so the App's update
//! never waits on the network: requests are handed to it by [`HearthClient`]'s methods,
//! and everything it hears comes back as [`HearthEvent`] messages, read in `PreUpdate`. The
//! replicated world is mirrored as entities: each carries [`Replicated`] (its server id),
//! [`You`] on your own, and the components the game maps with
//! [`ReplicateFromServer::replicate_from_server`].

use std::collections::HashMap;
use std::sync::Arc;

use bevy_app::{App, Plugin, PreUpdate};
use bevy_ecs::prelude::*;
use bevy_ecs::system::EntityCommands;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::client::{Client, ClientHandle, LoggedIn};
use crate::codec::EncodeError;
use crate::config::ClientConfig;
use crate::event::{Event, GameMessage};
use crate::{ClientError, ResumeToken, Target};

/// The server's id of a mirrored entity.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Replicated {
    pub id: u64,
}

/// Marks the mirrored entity that is your own player.
#[derive(Component, Clone, Copy, Debug, Default)]
pub struct You;

/// What the client heard, in order: the connection's story, pushes, and the answers to the
/// requests made through [`HearthClient`]. A failed request carries its [`ClientError`] in an
/// `Arc` (a message is cloned to each reader): match on it as on the async client's.
#[derive(Message, Clone, Debug)]
pub enum HearthEvent {
    /// The connection is open: requests can be made.
    Connected,
    /// The connection could not be opened (the client is done).
    ConnectFailed(String),
    /// Something the client heard (updates are already mirrored when this is read).
    Client(Event),
    /// The answer to [`HearthClient::register`]: the new player id.
    Registered(Result<u64, Arc<ClientError>>),
    /// The answer to [`HearthClient::login`] or [`HearthClient::resume`].
    LoggedIn(Result<LoggedIn, Arc<ClientError>>),
    /// The answer to [`HearthClient::logout`].
    LoggedOut(Result<(), Arc<ClientError>>),
    /// The answer to [`HearthClient::request`] of game message `name`.
    Answered {
        name: String,
        answer: Result<GameMessage, Arc<ClientError>>,
    },
    /// A [`HearthClient::send`] of game message `name` was not written.
    SendFailed { name: String, reason: String },
}

/// What the App asks of the client.
enum Ask {
    Register(String, String),
    Login(String, String),
    Resume(ResumeToken),
    Logout,
    Send(String, Map<String, Value>),
    GameRequest(String, Map<String, Value>),
}

/// The client as a resource: requests from systems, answered later as [`HearthEvent`]s.
#[derive(Resource)]
pub struct HearthClient {
    requests: mpsc::UnboundedSender<Ask>,
    /// Keeps the client's runtime (and so the client) alive as long as the App.
    _runtime: tokio::runtime::Runtime,
}

impl HearthClient {
    /// Creates an account (answered by [`HearthEvent::Registered`]).
    pub fn register(&self, username: &str, password: &str) {
        self.ask(Ask::Register(username.into(), password.into()));
    }

    /// Logs in (answered by [`HearthEvent::LoggedIn`]); the client then resumes on its own
    /// after a drop.
    pub fn login(&self, username: &str, password: &str) {
        self.ask(Ask::Login(username.into(), password.into()));
    }

    /// Logs in with a resume token (answered by [`HearthEvent::LoggedIn`]).
    pub fn resume(&self, token: ResumeToken) {
        self.ask(Ask::Resume(token));
    }

    /// Logs out (answered by [`HearthEvent::LoggedOut`]).
    pub fn logout(&self) {
        self.ask(Ask::Logout);
    }

    /// Sends the game's message `name` with `message`'s fields; a failure comes as
    /// [`HearthEvent::SendFailed`].
    pub fn send<T: Serialize + ?Sized>(&self, name: &str, message: &T) {
        match fields(name, message) {
            Ok(fields) => self.ask(Ask::Send(name.into(), fields)),
            Err(e) => tracing::warn!(name, error = %e, "a game message not sent"),
        }
    }

    /// Sends the game's message `name` and has its answer come as [`HearthEvent::Answered`].
    pub fn request<T: Serialize + ?Sized>(&self, name: &str, message: &T) {
        match fields(name, message) {
            Ok(fields) => self.ask(Ask::GameRequest(name.into(), fields)),
            Err(e) => tracing::warn!(name, error = %e, "a game request not sent"),
        }
    }

    fn ask(&self, request: Ask) {
        // Refused only once the client's task ended, which its events already told.
        let _ = self.requests.send(request);
    }
}

/// `message` as a JSON object (checked again, with the protocol's rules, by the client).
fn fields<T: Serialize + ?Sized>(
    name: &str,
    message: &T,
) -> Result<Map<String, Value>, EncodeError> {
    match serde_json::to_value(message) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(EncodeError::NotAnObject {
            name: name.into(),
            json: other.to_string(),
        }),
        Err(source) => Err(EncodeError::Serialise {
            name: name.into(),
            source,
        }),
    }
}

/// Where the client's events wait for the App's next update.
#[derive(Resource)]
struct Inbox(crossbeam_channel::Receiver<HearthEvent>);

/// Mirrored entities by server id, and your own id.
#[derive(Resource, Default)]
struct Mirror {
    entities: HashMap<u64, Entity>,
    you: Option<u64>,
}

/// Inserts one mapped component from its JSON value.
type Mapper = Box<dyn Fn(&mut EntityCommands, &Value) + Send + Sync>;

/// The game's mapping: replicated component name → how to insert it.
#[derive(Resource, Default)]
struct Mappings(HashMap<String, Vec<Mapper>>);

/// Connects to a Hearth server and mirrors what it replicates. What the client hears waits
/// for the App's next update (in a queue without bound: an App that stops updating should
/// drop the plugin's resources, which closes the connection).
pub struct HearthClientPlugin {
    target: Target,
    config: ClientConfig,
}

impl HearthClientPlugin {
    /// A client of the server at `addr` (`host:port`, TCP) with the default settings.
    pub fn new(addr: impl ToString) -> Self {
        Self::to(Target::Tcp(addr.to_string()), ClientConfig::default())
    }

    /// A client of `target` (TCP, TLS, `ws://`, `wss://`) with `config`.
    pub fn to(target: Target, config: ClientConfig) -> Self {
        Self { target, config }
    }
}

impl Plugin for HearthClientPlugin {
    fn build(&self, app: &mut App) {
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (events, inbox) = crossbeam_channel::unbounded();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hearth-client")
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = events.send(HearthEvent::ConnectFailed(format!("no tokio runtime: {e}")));
                tracing::error!(error = %e, "the Hearth client cannot start a runtime");
                return;
            }
        };
        runtime.spawn(bridge(
            self.target.clone(),
            self.config.clone(),
            requests_rx,
            events,
        ));
        app.add_message::<HearthEvent>()
            .insert_resource(HearthClient {
                requests,
                _runtime: runtime,
            })
            .insert_resource(Inbox(inbox))
            .init_resource::<Mirror>()
            .init_resource::<Mappings>()
            .add_systems(PreUpdate, receive);
    }
}

/// Mapping replicated components into the client App.
pub trait ReplicateFromServer {
    /// Mirrors the replicated component `name` as the component `C` (its serde form is the
    /// component's JSON value, as the game's server type writes it).
    fn replicate_from_server<C: Component + DeserializeOwned>(&mut self, name: &str) -> &mut Self;
}

impl ReplicateFromServer for App {
    fn replicate_from_server<C: Component + DeserializeOwned>(&mut self, name: &str) -> &mut Self {
        let owned = name.to_string();
        let mapper: Mapper = Box::new(move |entity, value| match C::deserialize(value) {
            Ok(component) => {
                entity.try_insert(component);
            }
            Err(e) => {
                tracing::warn!(component = %owned, error = %e, "a replicated value does not decode")
            }
        });
        self.world_mut()
            .get_resource_or_init::<Mappings>()
            .0
            .entry(name.to_string())
            .or_default()
            .push(mapper);
        self
    }
}

/// Connects, then serves the App's requests and forwards the client's events.
async fn bridge(
    target: Target,
    config: ClientConfig,
    mut requests: mpsc::UnboundedReceiver<Ask>,
    events: crossbeam_channel::Sender<HearthEvent>,
) {
    let client = match Client::connect_to(target, config).await {
        Ok(client) => client,
        Err(e) => {
            let _ = events.send(HearthEvent::ConnectFailed(e.to_string()));
            return;
        }
    };
    let _ = events.send(HearthEvent::Connected);
    let (handle, mut client_events) = client.split();
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                // The App (and its HearthClient) is gone: dropping the handle closes.
                None => return,
                Some(request) => {
                    tokio::spawn(serve(handle.clone(), request, events.clone()));
                }
            },
            event = client_events.recv() => match event {
                Some(event) => {
                    let _ = events.send(HearthEvent::Client(event));
                }
                // The client is done; the App's requests now fail as `Closed`.
                None => break,
            },
        }
    }
    while let Some(request) = requests.recv().await {
        tokio::spawn(serve(handle.clone(), request, events.clone()));
    }
}

/// Makes one request and sends its answer to the App.
async fn serve(handle: ClientHandle, request: Ask, events: crossbeam_channel::Sender<HearthEvent>) {
    let event = match request {
        Ask::Register(username, password) => HearthEvent::Registered(
            handle
                .register(&username, &password)
                .await
                .map_err(Arc::new),
        ),
        Ask::Login(username, password) => {
            HearthEvent::LoggedIn(handle.login(&username, &password).await.map_err(Arc::new))
        }
        Ask::Resume(token) => HearthEvent::LoggedIn(handle.resume(token).await.map_err(Arc::new)),
        Ask::Logout => HearthEvent::LoggedOut(handle.logout().await.map_err(Arc::new)),
        Ask::Send(name, fields) => match handle.send(&name, &fields).await {
            Ok(()) => return,
            Err(e) => HearthEvent::SendFailed {
                name,
                reason: e.to_string(),
            },
        },
        Ask::GameRequest(name, fields) => {
            let answer = handle.request(&name, &fields).await.map_err(Arc::new);
            HearthEvent::Answered { name, answer }
        }
    };
    let _ = events.send(event);
}

/// Mirrors what the client heard into the App and passes every event on as a message.
fn receive(
    mut commands: Commands,
    inbox: Res<Inbox>,
    mappings: Res<Mappings>,
    mut mirror: ResMut<Mirror>,
    mut out: MessageWriter<HearthEvent>,
) {
    for event in inbox.0.try_iter() {
        match &event {
            HearthEvent::Client(Event::Replication { you }) => {
                clear(&mut commands, &mut mirror);
                mirror.you = Some(*you);
            }
            HearthEvent::Client(Event::Disconnected { .. }) => clear(&mut commands, &mut mirror),
            HearthEvent::Client(Event::Update(update)) => {
                for state in &update.entered {
                    let entity = match mirror.entities.get(&state.id) {
                        Some(&entity) => entity,
                        None => {
                            let mut spawned = commands.spawn(Replicated { id: state.id });
                            if mirror.you == Some(state.id) {
                                spawned.insert(You);
                            }
                            let entity = spawned.id();
                            mirror.entities.insert(state.id, entity);
                            entity
                        }
                    };
                    insert(&mut commands, entity, &state.components, &mappings);
                }
                for state in &update.changed {
                    if let Some(&entity) = mirror.entities.get(&state.id) {
                        insert(&mut commands, entity, &state.components, &mappings);
                    }
                }
                for id in &update.left {
                    if let Some(entity) = mirror.entities.remove(id) {
                        commands.entity(entity).try_despawn();
                    }
                }
            }
            _ => {}
        }
        out.write(event);
    }
}

/// Inserts the mapped components among `components` into `entity`.
fn insert(
    commands: &mut Commands,
    entity: Entity,
    components: &Map<String, Value>,
    mappings: &Mappings,
) {
    let mut entity = commands.entity(entity);
    for (name, value) in components {
        for mapper in mappings.0.get(name).into_iter().flatten() {
            mapper(&mut entity, value);
        }
    }
}

/// Despawns every mirrored entity (a new login, or the connection ended).
fn clear(commands: &mut Commands, mirror: &mut Mirror) {
    for (_, entity) in mirror.entities.drain() {
        commands.entity(entity).try_despawn();
    }
    mirror.you = None;
}
