//! World fixtures for testing games built on Hearth (and Hearth itself).
//!
//! A [`TestServer`] is a complete server app with manual time: every frame advances real
//! and game time by [`TestServer::FRAME`], and the store's clock moves with it, so a test can
//! say "30 seconds pass" and check what the store holds. The store is a parameter
//! ([`TestStore`]): the in-memory store by default, Redis where the test provides one.
//!
//! Enable it in a game's dev-dependencies: `hearth = { ..., features = ["testing"] }`.
//!
//! ```
//! use hearth::testing::TestServer;
//! use hearth::components::PlayerId;
//! use hearth::demo_game::Progress;
//!
//! let mut server = TestServer::new();
//! let player = server.join(PlayerId(1));
//! server.world_mut().get_mut::<Progress>(player).unwrap().xp = 42;
//! server.advance_secs(31.0); // past the 30 s flush interval
//! assert_eq!(server.stored(PlayerId(1)).unwrap().sections["progress"]["xp"], 42);
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use bevy_app::{App, Plugin, PluginGroup};
use bevy_ecs::prelude::*;
use bevy_time::TimeUpdateStrategy;
use hearth_components::protocol::ServerMessage;
use hearth_components::{
    Dirty, JoinRefusal, JoinRefused, JoinRequest, JustLoaded, LeaveRequest, PlayerId, PlayerJoined,
    PlayerRecord,
};
use hearth_systems::FlushSchedule;
use hearth_systems::game_messages::{ClientMessageTypes, DecodeError, FromClient};
use hearth_systems::net::{ClientOutbox, Connections, OutboxClosed};
use hearth_systems::storage::StorePort;

use crate::HearthPlugins;
use crate::config::ServerConfig;
use crate::demo_game::DemoGamePlugin;
use crate::net::FrontDoorPlugin;
use crate::runner::{self, RunnerPlugin, ShutdownReport};
use crate::store::{MemoryBackend, MemoryStore, StoreClock};

pub mod redis;
mod server_thread;
mod tcp;
pub use self::redis::RedisTestStore;
pub use self::tcp::TcpGameServer;
pub use server_thread::{NotStarted, ServerThread};

/// Why [`TestServer::client_json`] refused a line.
#[derive(Debug, thiserror::Error)]
pub enum ClientJsonError {
    /// The line has no string `type`.
    #[error("the message has no \"type\"")]
    NoType,
    /// No game registered this `type` (the front door answers with the known ones).
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// The fields do not fit the registered type (the client would get `bad_request`).
    #[error("not a valid message: {0}")]
    Decode(#[from] DecodeError),
}

/// A store as a test sees it: what it holds, and the faults a test can cause.
pub trait TestStore: Send + Sync {
    /// The stored record of a player.
    fn record(&self, player: PlayerId) -> Option<PlayerRecord>;
    /// Raw record bytes.
    fn raw_record(&self, player: PlayerId) -> Option<Vec<u8>>;
    /// Stores raw record bytes.
    fn put_raw_record(&self, player: PlayerId, bytes: Vec<u8>);
    /// Who holds a player's lease now.
    fn lease_owner(&self, player: PlayerId) -> Option<String>;
    /// Gives a player's lease to another owner (another server taking over).
    fn force_lease(&self, player: PlayerId, owner: &str, ttl: Duration);
    /// Lets time pass for the store's leases.
    fn advance_clock(&self, by: Duration);
    /// Holds writes in flight until [`TestStore::resume`].
    fn pause(&self);
    /// Lets held writes complete.
    fn resume(&self);
    /// Makes every operation fail until repaired.
    fn set_unavailable(&self, unavailable: bool);
    /// Jobs that will complete without help (not held by `pause`).
    fn running_jobs(&self) -> usize;
}

/// The memory store as a [`TestStore`].
pub struct MemoryTestStore {
    store: Arc<MemoryStore>,
}

impl TestStore for MemoryTestStore {
    fn record(&self, player: PlayerId) -> Option<PlayerRecord> {
        self.store.backend().record(player)
    }
    fn raw_record(&self, player: PlayerId) -> Option<Vec<u8>> {
        self.store.backend().raw_record(player)
    }
    fn put_raw_record(&self, player: PlayerId, bytes: Vec<u8>) {
        self.store.backend().put_raw_record(player, bytes);
    }
    fn lease_owner(&self, player: PlayerId) -> Option<String> {
        self.store.backend().lease_owner(player)
    }
    fn force_lease(&self, player: PlayerId, owner: &str, ttl: Duration) {
        self.store.backend().force_lease(player, owner, ttl);
    }
    fn advance_clock(&self, by: Duration) {
        self.store.backend().clock().advance(by);
    }
    fn pause(&self) {
        self.store.pause();
    }
    fn resume(&self) {
        self.store.resume();
    }
    fn set_unavailable(&self, unavailable: bool) {
        self.store.set_unavailable(unavailable);
    }
    fn running_jobs(&self) -> usize {
        use hearth_systems::storage::PlayerStore;
        self.store.pending_jobs() - self.store.held_jobs()
    }
}

impl MemoryTestStore {
    /// The memory store itself (for memory-only faults such as failing N saves).
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }
}

/// The config fixtures use: defaults, a fixed instance id, 60 Hz.
pub fn test_config(instance_id: &str) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.store.settings.instance_id = instance_id.to_string();
    config
}

/// A server app on `config` and the store behind `port`, without a game, a front door or a
/// runner (the fixture drives frames and time itself).
fn core_app(config: ServerConfig, port: StorePort) -> App {
    let mut app = App::new();
    app.insert_resource(port).add_plugins(
        HearthPlugins::new(config)
            .build()
            .disable::<FrontDoorPlugin>()
            .disable::<RunnerPlugin>(),
    );
    app
}

/// [`core_app`] with the built-in demo game.
fn demo_app(config: ServerConfig, port: StorePort) -> App {
    let mut app = core_app(config, port);
    app.add_plugins(DemoGamePlugin);
    app
}

/// A client connected to a test world's player ([`TestServer::connect`]): it records every
/// message the world sends, as the JSON a real client would read.
#[derive(Clone, Default)]
pub struct TestClient {
    received: Arc<std::sync::Mutex<Vec<ServerMessage>>>,
}

impl TestClient {
    /// The messages received since the last call, oldest first, as JSON values.
    pub fn take(&self) -> Vec<serde_json::Value> {
        let received =
            std::mem::take(&mut *self.received.lock().unwrap_or_else(|p| p.into_inner()));
        received
            .iter()
            .map(|m| serde_json::from_str(&m.to_line()).expect("server messages are JSON"))
            .collect()
    }

    /// The messages of `type` `kind` received since the last [`TestClient::take`] (the others
    /// are dropped).
    pub fn take_kind(&self, kind: &str) -> Vec<serde_json::Value> {
        self.take()
            .into_iter()
            .filter(|m| m["type"] == kind)
            .collect()
    }
}

impl ClientOutbox for TestClient {
    fn send(&self, message: ServerMessage) -> Result<(), OutboxClosed> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
        Ok(())
    }

    fn close(&self) {}

    /// The messages not taken yet: a test client reads only when the test takes.
    fn backlog(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// A server app with manual time on a test store.
pub struct TestServer {
    app: App,
    store: Arc<dyn TestStore>,
}

impl Default for TestServer {
    fn default() -> Self {
        Self::new()
    }
}

impl TestServer {
    /// Time each frame advances.
    pub const FRAME: Duration = Duration::from_millis(100);
    /// How long the fixture waits for a store job before declaring the test stuck.
    pub const STORE_WAIT: Duration = Duration::from_secs(20);

    /// A server on a fresh memory store with default config.
    pub fn new() -> Self {
        Self::with_config(test_config("test-server"))
    }

    /// A server on a fresh memory store with the given config.
    pub fn with_config(config: ServerConfig) -> Self {
        Self::on_memory(MemoryBackend::new(StoreClock::manual()), config)
    }

    /// A server on an existing memory backend (several servers can share one).
    pub fn on_memory(backend: Arc<MemoryBackend>, config: ServerConfig) -> Self {
        let (store, port) = MemoryStore::open(backend, &config.store.settings);
        Self::on_store(config, port, Arc::new(MemoryTestStore { store }))
    }

    /// A server on a fresh memory store whose app `setup` extends before it starts (register
    /// your persistent components and add your systems here). It runs the built-in demo game
    /// too; a game of its own uses [`TestServer::for_game`].
    pub fn with_setup(config: ServerConfig, setup: impl FnOnce(&mut App)) -> Self {
        let (store, port) = MemoryStore::open(
            MemoryBackend::new(StoreClock::manual()),
            &config.store.settings,
        );
        let app = demo_app(config, port);
        Self::build(app, Arc::new(MemoryTestStore { store }), setup)
    }

    /// A server running `game` (and not the built-in demo game) on a fresh memory store:
    /// how a game tests its systems, messages and persistence.
    pub fn for_game(config: ServerConfig, game: impl Plugin) -> Self {
        let (store, port) = MemoryStore::open(
            MemoryBackend::new(StoreClock::manual()),
            &config.store.settings,
        );
        let app = core_app(config, port);
        Self::build(app, Arc::new(MemoryTestStore { store }), |app| {
            app.add_plugins(game);
        })
    }

    /// A server running `game` (not the demo game) on an existing memory backend (several
    /// servers can share one).
    pub fn for_game_on_memory(
        backend: Arc<MemoryBackend>,
        config: ServerConfig,
        game: impl Plugin,
    ) -> Self {
        let (store, port) = MemoryStore::open(backend, &config.store.settings);
        Self::for_game_on_store(config, port, Arc::new(MemoryTestStore { store }), game)
    }

    /// A server running `game` (not the demo game) on any store (see [`TestServer::on_store`]).
    pub fn for_game_on_store(
        config: ServerConfig,
        port: StorePort,
        store: Arc<dyn TestStore>,
        game: impl Plugin,
    ) -> Self {
        let app = core_app(config, port);
        Self::build(app, store, |app| {
            app.add_plugins(game);
        })
    }

    /// A server on any store: `port` is what the app uses, `store` what the test inspects.
    pub fn on_store(config: ServerConfig, port: StorePort, store: Arc<dyn TestStore>) -> Self {
        Self::build(demo_app(config, port), store, |_| {})
    }

    fn build(mut app: App, store: Arc<dyn TestStore>, setup: impl FnOnce(&mut App)) -> Self {
        setup(&mut app);
        app.insert_resource(TimeUpdateStrategy::ManualDuration(Self::FRAME));
        app.finish();
        app.cleanup();
        app.update(); // the first frame has zero delta
        Self { app, store }
    }

    /// The app.
    pub fn app(&mut self) -> &mut App {
        &mut self.app
    }

    /// The world.
    pub fn world(&self) -> &World {
        self.app.world()
    }

    /// The world, mutably.
    pub fn world_mut(&mut self) -> &mut World {
        self.app.world_mut()
    }

    /// The store, for inspection and faults.
    pub fn store(&self) -> &Arc<dyn TestStore> {
        &self.store
    }

    /// The value this server's leases hold (`<instance_id>/<boot token>`).
    pub fn lease_owner(&self) -> String {
        self.world().resource::<StorePort>().info().lease_owner
    }

    /// The stored record of a player.
    pub fn stored(&self, player: PlayerId) -> Option<PlayerRecord> {
        self.store.record(player)
    }

    /// Runs one frame, then waits for the store to finish what the frame asked of it (so
    /// the next frame sees the results).
    pub fn frame(&mut self) {
        self.store.advance_clock(Self::FRAME);
        self.app.update();
        self.wait_for_store();
    }

    /// Runs frames until `secs` seconds have passed.
    pub fn advance_secs(&mut self, secs: f64) {
        self.advance(Duration::from_secs_f64(secs));
    }

    /// Runs frames until `by` has passed.
    pub fn advance(&mut self, by: Duration) {
        let frames = by.as_nanos().div_ceil(Self::FRAME.as_nanos());
        for _ in 0..frames {
            self.frame();
        }
    }

    /// Waits until no store job is running (held jobs excluded).
    pub fn wait_for_store(&self) {
        let started = Instant::now();
        while self.store.running_jobs() > 0 {
            assert!(
                started.elapsed() < Self::STORE_WAIT,
                "store job did not complete within {:?}",
                Self::STORE_WAIT
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Flushes dirty players at the next frame and runs frames until the results are applied.
    pub fn flush_now(&mut self) {
        self.world_mut().resource_mut::<FlushSchedule>().flush_now();
        self.frame();
        self.frame();
    }

    /// Asks for `player` to join and runs frames until it joined or was refused.
    pub fn try_join(&mut self, player: PlayerId) -> Result<Entity, JoinRefusal> {
        let origin = player.0 ^ 0x5eed;
        self.world_mut()
            .write_message(JoinRequest { player, origin });
        for _ in 0..100 {
            self.frame();
            let joined = self
                .read_messages::<PlayerJoined>()
                .into_iter()
                .find(|j| j.origin == origin);
            if let Some(joined) = joined {
                return Ok(joined.entity);
            }
            let refused = self
                .read_messages::<JoinRefused>()
                .into_iter()
                .find(|r| r.origin == origin);
            if let Some(refused) = refused {
                return Err(refused.reason);
            }
        }
        panic!("join of {player} neither succeeded nor was refused within 100 frames");
    }

    /// Joins many players at once (one store job each, all in flight together), panicking
    /// if any is refused. Returns the entities in the order of `players`.
    pub fn join_many(&mut self, players: &[PlayerId]) -> Vec<Entity> {
        let mut joined = std::collections::HashMap::new();
        for &player in players {
            self.world_mut().write_message(JoinRequest {
                player,
                origin: player.0,
            });
        }
        for _ in 0..1000 {
            self.frame();
            for j in self.read_messages::<PlayerJoined>() {
                joined.insert(j.player, j.entity);
            }
            if let Some(refused) = self.read_messages::<JoinRefused>().first() {
                panic!("join of {} refused: {}", refused.player, refused.reason);
            }
            if joined.len() == players.len() {
                return players.iter().map(|p| joined[p]).collect();
            }
        }
        panic!(
            "only {} of {} players joined within 1000 frames",
            joined.len(),
            players.len()
        );
    }

    /// Joins `player`, panicking if refused.
    pub fn join(&mut self, player: PlayerId) -> Entity {
        self.try_join(player)
            .unwrap_or_else(|e| panic!("join of {player} refused: {e}"))
    }

    /// Joins `player` and gives it `components` as if they had been loaded (not dirty).
    pub fn spawn_player(&mut self, player: PlayerId, components: impl Bundle) -> Entity {
        let entity = self.join(player);
        self.world_mut()
            .entity_mut(entity)
            .insert((components, JustLoaded));
        self.frame();
        entity
    }

    /// Asks for a player to leave and runs frames until it left (final save durable).
    pub fn leave(&mut self, entity: Entity) {
        self.world_mut()
            .write_message(LeaveRequest { entity, origin: 0 });
        for _ in 0..100 {
            self.frame();
            if self.world().get_entity(entity).is_err() {
                return;
            }
        }
        panic!("player {entity} did not leave within 100 frames");
    }

    /// Saves everyone and releases every lease, as on Ctrl-C.
    pub fn shutdown(&mut self, deadline: Duration) -> ShutdownReport {
        let store = Arc::clone(&self.store);
        runner::shutdown(&mut self.app, deadline, move || {
            store.advance_clock(Self::FRAME);
            std::thread::sleep(Duration::from_millis(1));
        })
    }

    /// Hands the world a game-defined client message from the player on `entity`, as the
    /// front door would (systems read it as `FromClient<T>` this frame).
    pub fn client_message<T: Send + Sync + 'static>(&mut self, entity: Entity, message: T) {
        let player = *self
            .world()
            .get::<PlayerId>(entity)
            .expect("client_message: the entity is not a player");
        self.world_mut()
            .write_message(FromClient::new(player, entity, message));
    }

    /// Hands the world a client line from the player on `entity`, decoded through the game's
    /// registry as the front door decodes it: a message of the wrong shape is the same
    /// `Err` the client would get as `bad_request`, so an ECS test catches it too.
    pub fn client_json(
        &mut self,
        entity: Entity,
        line: serde_json::Value,
    ) -> Result<(), ClientJsonError> {
        let player = *self
            .world()
            .get::<PlayerId>(entity)
            .expect("client_json: the entity is not a player");
        let kind = line["type"]
            .as_str()
            .ok_or(ClientJsonError::NoType)?
            .to_string();
        let types = self
            .world()
            .get_resource::<ClientMessageTypes>()
            .cloned()
            .unwrap_or_default();
        let request = types
            .decode(&kind, &line.to_string())
            .ok_or(ClientJsonError::UnknownType(kind))??;
        request.deliver(self.world_mut(), player, entity);
        Ok(())
    }

    /// Whether the player on `entity` has changes not saved yet (not in any save taken so
    /// far), without reaching for the persistence internals.
    pub fn is_dirty(&self, entity: Entity) -> bool {
        self.world().get::<Dirty>(entity).is_some()
    }

    /// Connects a recording client to the player on `entity`: what the world sends it
    /// (game messages through `ToClients`, kicks) can be read with [`TestClient::take`].
    pub fn connect(&mut self, entity: Entity) -> TestClient {
        let client = TestClient::default();
        let conn = u64::MAX - entity.to_bits();
        self.world_mut().resource_mut::<Connections>().attach(
            conn,
            entity,
            Arc::new(client.clone()),
        );
        client
    }

    /// Messages of type `M` still readable this frame.
    pub fn read_messages<M: Message + Clone>(&mut self) -> Vec<M> {
        let messages = self.world().resource::<Messages<M>>();
        messages.iter_current_update_messages().cloned().collect()
    }
}
