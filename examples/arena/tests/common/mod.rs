//! The arena over real TCP: the arena app running in this process on real time with its
//! front door on a free port, and players on `hearth_client` with the arena's own message
//! types, reading what a player would.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use arena::{ArenaPlugin, PickedUp, Pickup, Walk, Walked};
use hearth::components::Position;
use hearth::prelude::*;
use hearth::testing::ServerThread;
use hearth_client::{Client, ClientConfig, Encoding, Event, GameMessage, Refusal};
use serde_json::Value;

/// How long a player waits for a message before failing the test (a guard against a hang,
/// not a timing assertion).
pub const CLIENT_WAIT: Duration = Duration::from_secs(15);

/// The arena server in this process, on the store `config` selects, until stopped or dropped:
/// `App::new().add_plugins(HearthPlugins::new(config)).add_plugins(ArenaPlugin)`, run by
/// Hearth's runner as the binary runs it, listening on a free port of 127.0.0.1.
pub struct ArenaServer {
    addr: SocketAddr,
    server: ServerThread,
}

impl ArenaServer {
    /// Starts the arena (its plugins open the store and accounts `config` selects).
    pub fn start(mut config: ServerConfig) -> Self {
        config.front_door.listen = "127.0.0.1:0".parse().unwrap();
        let server = ServerThread::start(move || {
            let mut app = App::new();
            app.add_plugins(HearthPlugins::new(config))
                .add_plugins(ArenaPlugin);
            app
        })
        .expect("the arena starts");
        Self {
            addr: server.game_addr(),
            server,
        }
    }

    /// A new player connection (JSON lines).
    pub async fn client(&self) -> Player {
        self.client_speaking(Encoding::Json).await
    }

    /// A new player connection speaking `encoding`.
    pub async fn client_speaking(&self, encoding: Encoding) -> Player {
        let config = ClientConfig {
            encoding,
            ..ClientConfig::default()
        };
        let client = Client::connect_with(self.addr, config)
            .await
            .expect("connect to the arena");
        Player { client }
    }

    /// Stops the server gracefully (everyone saved) and returns its exit code.
    pub fn stop(self) -> i32 {
        self.server.stop()
    }
}

/// `work`, or a failure naming `what` after [`CLIENT_WAIT`].
pub async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CLIENT_WAIT, work).await {
        Ok(out) => out,
        Err(_) => panic!("no {what} within {CLIENT_WAIT:?}"),
    }
}

/// One player's connection.
pub struct Player {
    pub client: Client,
}

impl Player {
    /// Registers an account; returns its player id.
    pub async fn register(&self, username: &str, password: &str) -> u64 {
        within("registered", self.client.register(username, password))
            .await
            .expect("registered")
    }

    /// Logs in; returns the player's stored state (the record's sections) as JSON.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        let logged_in = within("logged_in", self.client.login(username, password))
            .await
            .expect("logged in");
        serde_json::to_value(logged_in.state).unwrap()
    }

    /// Logs out; returns once the final save is durable (`logged_out`).
    pub async fn logout(&self) {
        within("logged_out", self.client.logout())
            .await
            .expect("logged out");
    }

    /// Sends game message `name` and waits for the answer to it (matched by its request id).
    pub async fn ask<T: serde::Serialize>(
        &self,
        name: &str,
        message: &T,
    ) -> Result<GameMessage, hearth_client::ClientError> {
        within(name, self.client.request(name, message)).await
    }

    /// Walks; where the walker stands now (the `walked` answer).
    pub async fn walk(&self, dx: f32, dy: f32) -> Walked {
        let answer = self.ask("walk", &Walk { dx, dy }).await.expect("walked");
        decode(&answer, "walked")
    }

    /// Picks one `item` up; returns the count now carried.
    pub async fn pickup(&self, item: &str) -> u32 {
        let pickup = Pickup { item: item.into() };
        let answer = self.ask("pickup", &pickup).await.expect("picked up");
        let picked: PickedUp = decode(&answer, "picked_up");
        assert_eq!(picked.item, item, "{answer:?}");
        picked.count
    }

    /// The next event that is not replication (the world applies those on its own), which
    /// must be a game message `name` (anything else fails the test: the arena sends nothing
    /// unasked, so every message a test does not expect is a bug).
    pub async fn expect_game(&mut self, name: &str) -> GameMessage {
        match self.next_unasked(name).await {
            Event::Game(message) if message.name == name => message,
            other => panic!("expected {name}, got {other:?}"),
        }
    }

    /// The next event that is not replication, which must be a refusal of something sent
    /// without waiting (an `error` that answers no request).
    pub async fn expect_refusal(&mut self) -> Refusal {
        match self.next_unasked("an error").await {
            Event::Refused(refusal) => refusal,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    async fn next_unasked(&mut self, waiting_for: &str) -> Event {
        within(waiting_for, async {
            loop {
                match self.client.next_event().await {
                    Some(Event::Replication { .. } | Event::Update(_)) => {}
                    Some(event) => return event,
                    None => panic!("the connection closed while waiting for {waiting_for}"),
                }
            }
        })
        .await
    }

    /// Fails if anything but replication arrived unasked so far (read after an answer, this
    /// covers everything the server sent before it).
    pub fn assert_nothing_unasked(&mut self) {
        while let Some(event) = self.client.try_next_event() {
            assert!(
                matches!(event, Event::Replication { .. } | Event::Update(_)),
                "unexpected {event:?}"
            );
        }
    }

    /// Reads events until the player `player` is seen at `position`; any event other than
    /// replication on the way fails the test.
    pub async fn until_seen(&mut self, player: u64, position: Position) {
        let seen = |client: &Client| {
            let world = client.world();
            world
                .player(player)
                .is_some_and(|e| e.get::<Position>("position").ok() == Some(position))
        };
        within("the player in view", async {
            while !seen(&self.client) {
                match self.client.next_event().await {
                    Some(Event::Replication { .. } | Event::Update(_)) => {}
                    other => panic!("unexpected {other:?} while waiting for player {player}"),
                }
            }
        })
        .await
    }
}

/// An answer decoded as the arena's type for `name`.
pub fn decode<T: serde::de::DeserializeOwned>(answer: &GameMessage, name: &str) -> T {
    answer
        .decode_if(name)
        .unwrap_or_else(|| panic!("expected {name}, got {answer:?}"))
        .unwrap_or_else(|e| panic!("{name} does not decode: {e}"))
}
