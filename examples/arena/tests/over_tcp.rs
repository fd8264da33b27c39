//! The arena as players see it: real TCP connections (`hearth_client`, with the arena's own
//! message types) to the arena app running in this process, on the memory store and on a
//! real `redis-server`.

mod common;
// The Hearth suite's harness: a real redis-server on a free port, killed on drop; a missing
// redis-server fails with an install hint. This test uses only part of it.
#[allow(dead_code)]
#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;

use arena::{Chat, ChatLine, HEARING, MAX_CHAT_CHARS, PickedUp, Pickup, STRIDE};
use common::{ArenaServer, decode};
use hearth::components::{Position, StoreSelection};
use hearth::testing::test_config;
use hearth_client::{ClientError, Encoding};
use serde_json::json;

/// Replication in the arena, in both encodings at once: alice speaks binary, bob JSON lines,
/// and each sees the other walk (positions within the binary encoding's 1/128; these
/// coordinates are exact in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_see_each_other_walk_in_either_encoding() {
    let server = ArenaServer::start(test_config("arena-see"));
    let mut alice = server.client_speaking(Encoding::Binary).await;
    let alice_id = alice.register("alice", "password1").await;
    alice.login("alice", "password1").await;
    let mut bob = server.client_speaking(Encoding::Json).await;
    let bob_id = bob.register("bob", "password1").await;
    bob.login("bob", "password1").await;
    alice.until_seen(bob_id, Position { x: 0.0, y: 0.0 }).await;
    bob.walk(3.0, -1.0).await;
    alice.until_seen(bob_id, Position { x: 3.0, y: -1.0 }).await;
    alice.walk(-2.0, 1.5).await;
    bob.until_seen(alice_id, Position { x: -2.0, y: 1.5 }).await;
    assert_eq!(server.stop(), 0);
}

/// A `pickup` with a field the type does not have.
#[derive(serde::Serialize)]
struct MalformedPickup {
    what: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_memory_store_players_pick_up_walk_and_chat_within_earshot() {
    let server = ArenaServer::start(test_config("arena-tcp"));
    let mut alice = server.client().await;
    let alice_id = alice.register("alice", "password1").await;
    alice.login("alice", "password1").await;
    let mut bob = server.client().await;
    bob.register("bob", "password1").await;
    bob.login("bob", "password1").await;

    assert_eq!(alice.pickup("gem").await, 1);
    assert_eq!(alice.pickup("gem").await, 2);
    // Two pickups in flight, told apart by their request ids; a refusal is the standard error.
    let sword = Pickup {
        item: "sword".into(),
    };
    let herb = Pickup {
        item: "herb".into(),
    };
    let (refused, picked) = tokio::join!(alice.ask("pickup", &sword), alice.ask("pickup", &herb));
    match refused {
        Err(ClientError::Refused(refusal)) => assert_eq!(refusal.code, "unknown_item"),
        other => panic!("expected unknown_item, got {other:?}"),
    }
    let picked: PickedUp = decode(&picked.expect("picked up"), "picked_up");
    assert_eq!(
        picked,
        PickedUp {
            item: "herb".into(),
            count: 1
        }
    );
    let malformed = MalformedPickup { what: "gem".into() };
    match alice.ask("pickup", &malformed).await {
        Err(ClientError::Refused(refusal)) => assert_eq!(
            refusal.code, "bad_request",
            "malformed input is Hearth's protocol error: {refusal}"
        ),
        other => panic!("expected bad_request, got {other:?}"),
    }

    // Both stand at the origin: within earshot of each other.
    let hi = Chat {
        text: "hi bob".into(),
    };
    alice.client.send("chat", &hi).await.unwrap();
    let line = ChatLine {
        from: alice_id,
        text: "hi bob".into(),
    };
    assert_eq!(
        decode::<ChatLine>(&alice.expect_game("chat_line").await, "chat_line"),
        line
    );
    assert_eq!(
        decode::<ChatLine>(&bob.expect_game("chat_line").await, "chat_line"),
        line
    );

    // Sent without a request id: the refusal answers no request (it carries no id).
    let too_long = Chat {
        text: "a".repeat(MAX_CHAT_CHARS + 1),
    };
    alice.client.send("chat", &too_long).await.unwrap();
    let refused = alice.expect_refusal().await;
    assert_eq!(refused.code, "too_long", "{refused}");

    // Bob walks out of earshot, one stride per request.
    let strides = (HEARING / STRIDE) as usize + 1;
    for i in 1..=strides {
        let walked = bob.walk(STRIDE, 0.0).await;
        assert_eq!(walked.x, STRIDE * i as f32, "{walked:?}");
    }
    let bob_where = Chat {
        text: "bob?".into(),
    };
    alice.client.send("chat", &bob_where).await.unwrap();
    let heard: ChatLine = decode(&alice.expect_game("chat_line").await, "chat_line");
    assert_eq!(heard.text, "bob?");
    // Alice heard herself, so the chat was relayed; anything queued for Bob then comes
    // before the answer to his next request. That answer comes at a later tick and still
    // carries its request id (or `walk` would not return).
    let here = bob.walk(0.0, 0.0).await;
    assert_eq!(here.x, STRIDE * strides as f32, "{here:?}");
    // Bob never received Alice's refusals, nor the chat out of earshot.
    bob.assert_nothing_unasked();
    alice.assert_nothing_unasked();
    assert_eq!(server.stop(), 0, "the server saved everyone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_the_inventory_survives_logout_login_and_a_new_server() {
    let redis = redis_server::RedisServer::start();
    let config = |instance: &str| {
        let mut config = test_config(instance);
        config.store.settings.selection = StoreSelection::Redis(redis.url());
        config
    };

    let first = ArenaServer::start(config("arena-a"));
    let carol = first.client().await;
    carol.register("carol", "password1").await;
    let fresh = carol.login("carol", "password1").await;
    assert_eq!(
        fresh["inventory"],
        json!({}),
        "a new player carries nothing"
    );
    assert_eq!(carol.pickup("gem").await, 1);
    assert_eq!(carol.pickup("gem").await, 2);
    assert_eq!(carol.pickup("coin").await, 1);
    carol.walk(3.0, -4.0).await;
    carol.logout().await;

    let state = carol.login("carol", "password1").await;
    assert_eq!(state["inventory"], json!({"gem": 2, "coin": 1}), "{state}");
    assert_eq!(state["position"], json!({"x": 3.0, "y": -4.0}), "{state}");
    carol.logout().await;
    assert_eq!(first.stop(), 0, "the first server saved everyone");

    let second = ArenaServer::start(config("arena-b"));
    let carol = second.client().await;
    let state = carol.login("carol", "password1").await;
    assert_eq!(
        state["inventory"],
        json!({"gem": 2, "coin": 1}),
        "another server on the same Redis restores it: {state}"
    );
    assert_eq!(carol.pickup("gem").await, 3);
    assert_eq!(second.stop(), 0);
}
