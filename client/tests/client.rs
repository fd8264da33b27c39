//! `hearth_client` against a real server in this process: accounts, two players seeing each
//! other move (in both encodings), request ids, and the automatic resume after a drop.

mod common;

use common::{Relay, demo_server, until, within};
use hearth::components::Position;
use hearth_client::{Client, ClientConfig, ClientError, EncodeError, Encoding, ErrorCode, Event};
use serde::Serialize;

/// The demo game's `move`, as a client of it would declare it.
#[derive(Serialize)]
struct Move {
    dx: f32,
    dy: f32,
}

/// Where player `player_id` stands in `client`'s world, if it sees it.
fn seen_at(client: &Client, player_id: u64) -> Option<Position> {
    let world = client.world();
    let entity = world.player(player_id)?;
    Some(
        world
            .get::<Position>(entity.id, "position")
            .expect("a position"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_and_the_answers_and_refusals_that_match_each_request() {
    let server = demo_server("client-accounts");
    let client = Client::connect(server.game_addr()).await.unwrap();
    let id = within("registered", client.register("alice", "password1"))
        .await
        .unwrap();
    let taken = client.register("Alice", "password1").await.unwrap_err();
    assert!(
        matches!(&taken, ClientError::Refused(r) if r.core_code() == Some(ErrorCode::UsernameTaken)),
        "{taken}"
    );
    let wrong = client.login("alice", "wrong password").await.unwrap_err();
    assert!(
        matches!(&wrong, ClientError::Refused(r) if r.code == "invalid_credentials"),
        "{wrong}"
    );
    assert_eq!(client.player_id(), None);
    // Several requests in flight at once, each answered to its own caller.
    let (login, ping) = tokio::join!(client.login("alice", "password1"), client.ping());
    let login = login.unwrap();
    ping.unwrap();
    assert_eq!(login.player_id, id);
    assert_eq!(login.state["progress"]["xp"], 0, "{:?}", login.state);
    assert_eq!(client.player_id(), Some(id));
    assert!(client.resume_token().is_some(), "a login brings a token");
    within("logged_out", client.logout()).await.unwrap();
    assert_eq!(client.player_id(), None);
    let refused = client.send("move", &Move { dx: 1.0, dy: 0.0 }).await;
    assert!(refused.is_ok(), "written: the refusal comes as an event");
    client.close().await;
    assert_eq!(server.stop(), 0);
}

async fn two_players_see_each_other_move(
    alice_encoding: Encoding,
    bob_encoding: Encoding,
    instance: &str,
) {
    let server = demo_server(instance);
    let connect = |encoding| {
        Client::connect_with(
            server.game_addr(),
            ClientConfig {
                encoding,
                ..ClientConfig::default()
            },
        )
    };
    let mut alice = connect(alice_encoding).await.unwrap();
    let mut bob = connect(bob_encoding).await.unwrap();
    alice.register("alice", "password1").await.unwrap();
    let bob_id = bob.register("bob", "password1").await.unwrap();
    alice.login("alice", "password1").await.unwrap();
    bob.login("bob", "password1").await.unwrap();
    until(&mut alice, "bob at the origin", |alice, _| {
        (seen_at(alice, bob_id) == Some(Position { x: 0.0, y: 0.0 })).then_some(())
    })
    .await;
    bob.send("move", &Move { dx: 1.0, dy: 0.0 }).await.unwrap();
    until(&mut alice, "bob one step east", |alice, event| {
        let moved = seen_at(alice, bob_id) == Some(Position { x: 1.0, y: 0.0 });
        (moved && matches!(event, Event::Update(_))).then_some(())
    })
    .await;
    until(&mut bob, "bob's own step", |bob, _| {
        let you = bob.world().you()?;
        let here = bob.world().get::<Position>(you, "position").ok()?;
        (here == Position { x: 1.0, y: 0.0 }).then_some(())
    })
    .await;
    alice.close().await;
    bob.close().await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_json_clients_see_each_other_move() {
    two_players_see_each_other_move(Encoding::Json, Encoding::Json, "client-json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_client_sees_a_json_client_move() {
    two_players_see_each_other_move(Encoding::Binary, Encoding::Json, "client-binary").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_refusal_of_a_message_sent_without_waiting_is_an_event() {
    let server = demo_server("client-refusal");
    let mut client = Client::connect(server.game_addr()).await.unwrap();
    client
        .send("move", &Move { dx: 1.0, dy: 0.0 })
        .await
        .unwrap();
    let code = until(&mut client, "the refusal", |_, event| match event {
        Event::Refused(refusal) => Some(refusal.core_code()),
        _ => None,
    })
    .await;
    assert_eq!(code, Some(ErrorCode::NotLoggedIn));
    // A message the protocol cannot carry is refused before it is sent.
    let bad = client.send("move", &7).await.unwrap_err();
    assert!(
        matches!(&bad, ClientError::Encode(EncodeError::NotAnObject { name, .. }) if name == "move"),
        "{bad}"
    );
    // So is one with a field the protocol reserves.
    let bad = client
        .send("move", &serde_json::json!({"dx": 1.0, "dy": 0.0, "id": 3}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &bad,
            ClientError::Encode(EncodeError::ReservedField { field: "id", .. })
        ),
        "{bad}"
    );
    client.close().await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_resumed_with_the_token_and_the_world_comes_back() {
    let server = demo_server("client-resume");
    let relay = Relay::start(server.game_addr()).await;
    let mut client = Client::connect(relay.addr).await.unwrap();
    let id = client.register("carol", "password1").await.unwrap();
    client.login("carol", "password1").await.unwrap();
    client
        .send("move", &Move { dx: 0.0, dy: 1.0 })
        .await
        .unwrap();
    until(&mut client, "carol's step", |c, _| {
        (seen_at(c, id) == Some(Position { x: 0.0, y: 1.0 })).then_some(())
    })
    .await;
    let first_token = client.resume_token().unwrap();

    relay.cut();
    until(&mut client, "the drop", |_, e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    assert!(
        client.world().entities().next().is_none(),
        "the world is cleared"
    );
    let resumed = until(&mut client, "the resume", |_, e| match e {
        Event::Resumed { player_id } => Some(*player_id),
        Event::ResumeFailed { reason } => panic!("resume failed: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(resumed, id);
    assert_ne!(
        client.resume_token().unwrap(),
        first_token,
        "a resume spends the token and brings a new one"
    );
    until(&mut client, "the world again", |c, _| {
        (seen_at(c, id) == Some(Position { x: 0.0, y: 1.0 })).then_some(())
    })
    .await;
    // Playing on, on the new connection.
    client
        .send("move", &Move { dx: 0.0, dy: 1.0 })
        .await
        .unwrap();
    until(&mut client, "the next step", |c, _| {
        (seen_at(c, id) == Some(Position { x: 0.0, y: 2.0 })).then_some(())
    })
    .await;
    client.close().await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_logout_a_drop_is_not_resumed_and_the_client_ends() {
    let server = demo_server("client-no-resume");
    let relay = Relay::start(server.game_addr()).await;
    let mut client = Client::connect(relay.addr).await.unwrap();
    client.register("dave", "password1").await.unwrap();
    client.login("dave", "password1").await.unwrap();
    client.logout().await.unwrap();
    relay.cut();
    until(&mut client, "the drop", |_, e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    assert_eq!(
        within("the end of the client", client.next_event()).await,
        None,
        "logged out: nothing to resume, the client ends"
    );
    assert!(matches!(client.ping().await, Err(ClientError::Closed)));
    assert_eq!(server.stop(), 0);
}
