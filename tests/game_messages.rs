//! A game's own messages: registered with one line each, decoded and refused by the front
//! door, delivered to the world with their sender, and sent to one player, many, or everyone
//! near a point. ECS fixtures and real TCP.

mod common;

use bevy_ecs::prelude::*;
use common::client::NetServer;
use hearth::prelude::{
    App, FromClient, GameMessagesAppExt, NearbyPlayers, NetSystems, Plugin, Position, PostUpdate,
    ToClients,
};
use hearth::testing::{TestServer, test_config};
use hearth_components::PlayerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `chat`: say something to the players within [`HEARING`].
#[derive(Deserialize, Debug, Clone, JsonSchema)]
struct Chat {
    text: String,
}

/// `chat_line`: what someone near said.
#[derive(Serialize, Debug, JsonSchema)]
struct ChatLine {
    from: u64,
    text: String,
}

const HEARING: f32 = 30.0;

fn relay_chat(
    mut said: MessageReader<FromClient<Chat>>,
    speakers: Query<&Position>,
    nearby: NearbyPlayers,
    mut to_clients: ToClients<ChatLine>,
) {
    for chat in said.read() {
        let Ok(at) = speakers.get(chat.entity) else {
            continue;
        };
        let line = ChatLine {
            from: chat.player.0,
            text: chat.message.text.clone(),
        };
        to_clients.send_near(&nearby, at.x, at.y, HEARING, line);
    }
}

struct ChatGame;

impl Plugin for ChatGame {
    fn build(&self, app: &mut App) {
        app.add_client_message::<Chat>("chat")
            .add_server_message::<ChatLine>("chat_line")
            .add_systems(PostUpdate, relay_chat.after(NetSystems::Send));
    }
}

#[test]
fn a_chat_reaches_the_players_within_hearing_and_no_one_else() {
    let mut server = TestServer::for_game(test_config("chat"), ChatGame);
    let speaker = server.spawn_player(PlayerId(1), Position { x: 0.0, y: 0.0 });
    let near = server.spawn_player(PlayerId(2), Position { x: 20.0, y: 10.0 });
    let far = server.spawn_player(PlayerId(3), Position { x: 500.0, y: 0.0 });
    let clients = [speaker, near, far].map(|e| server.connect(e));
    server.client_message(
        speaker,
        Chat {
            text: "hello".into(),
        },
    );
    server.frame();
    let heard: Vec<_> = clients.iter().map(|c| c.take_kind("chat_line")).collect();
    let line = json!({"type": "chat_line", "from": 1, "text": "hello"});
    assert_eq!(
        heard[0],
        std::slice::from_ref(&line),
        "the speaker hears itself"
    );
    assert_eq!(heard[1], [line], "a player within hearing");
    assert!(heard[2].is_empty(), "a player far away hears nothing");
}

fn chat_server() -> NetServer {
    NetServer::memory_with(test_config("chat-tcp"), |app| {
        app.add_plugins(ChatGame);
    })
}

#[test]
fn over_tcp_a_game_message_is_decoded_delivered_and_answered() {
    let server = chat_server();
    let mut alice = server.client();
    let alice_id = alice.register("alice", "password1");
    alice.login("alice", "password1");
    let mut bob = server.client();
    bob.register("bob", "password1");
    bob.login("bob", "password1");
    alice.send(json!({"type": "chat", "text": "hi bob"}));
    for client in [&mut alice, &mut bob] {
        let line = client.expect("chat_line");
        assert_eq!(
            line,
            json!({"type": "chat_line", "from": alice_id, "text": "hi bob"})
        );
    }
    // The demo game's own messages still work next to the chat game's.
    alice.step(1.0, 0.0);
}

#[test]
fn over_tcp_a_game_message_that_does_not_fit_is_refused_naming_the_field() {
    let server = chat_server();
    let mut c = server.client();
    c.send(json!({"type": "chat", "text": "before login"}));
    c.expect_error("not_logged_in");
    c.register("carol", "password1");
    c.login("carol", "password1");
    c.send(json!({"type": "chat", "text": "hi", "colour": "red"}));
    let error = c.expect_error("bad_request");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{error}"
    );
    c.send(json!({"type": "chat", "text": 5}));
    let error = c.expect_error("bad_request");
    assert!(
        error["message"].as_str().unwrap().contains("field `text`"),
        "{error}"
    );
    c.send(json!({"type": "shout"}));
    let error = c.expect_error("bad_request");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("\"shout\"") && message.contains("chat") && message.contains("move"),
        "names the known types: {error}"
    );
    c.send(json!({"type": "ping", "nonce": 3}));
    assert_eq!(c.expect("pong")["nonce"], 3, "the connection still serves");
}

/// `poke`: nudge another player, by id.
#[derive(Deserialize, Debug, Clone, JsonSchema)]
struct Poke {
    to: u64,
}

/// `poked`: player `from` nudged you.
#[derive(Serialize, Debug, JsonSchema)]
struct Poked {
    from: u64,
}

/// Pokes reach their target by player id; a poke of a player not here is refused with the
/// standard error, carrying the request's id.
fn poke(
    mut pokes: bevy_ecs::message::MessageReader<FromClient<Poke>>,
    to_clients: ToClients<Poked>,
    refusals: hearth::prelude::Refusals,
) {
    for request in pokes.read() {
        let poked = Poked {
            from: request.player.0,
        };
        if !to_clients.send_to_player(PlayerId(request.message.to), poked) {
            refusals.refuse(request, "not_here", "no such player on this server");
        }
    }
}

struct PokeGame;

impl Plugin for PokeGame {
    fn build(&self, app: &mut App) {
        app.add_client_message::<Poke>("poke")
            .add_server_message::<Poked>("poked")
            .add_systems(PostUpdate, poke.after(NetSystems::Send));
    }
}

#[test]
fn a_message_reaches_a_player_by_id_and_a_refusal_is_the_standard_error_with_the_id() {
    let mut server = TestServer::for_game(test_config("poke"), PokeGame);
    let first = server.spawn_player(PlayerId(1), ());
    let second = server.spawn_player(PlayerId(2), ());
    let (first_client, second_client) = (server.connect(first), server.connect(second));
    server.client_message(first, Poke { to: 2 });
    server.frame();
    assert_eq!(second_client.take(), [json!({"type": "poked", "from": 1})]);
    assert!(first_client.take().is_empty());

    let request = FromClient::new(PlayerId(1), first, Poke { to: 9 })
        .with_id(hearth::prelude::RequestId::Text("p-9".into()));
    server.world_mut().write_message(request);
    server.frame();
    assert_eq!(
        first_client.take(),
        [
            json!({"type": "error", "id": "p-9", "code": "not_here", "message": "no such player on this server"})
        ]
    );
    assert!(second_client.take().is_empty());
}
