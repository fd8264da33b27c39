//! The arena as players see it: real TCP connections to the arena app running in this
//! process, on the memory store and on a real `redis-server`.

mod common;
// The Hearth suite's harness: a real redis-server on a free port, killed on drop; a missing
// redis-server fails with an install hint. This test uses only part of it.
#[allow(dead_code)]
#[path = "../../../tests/common/redis_server.rs"]
mod redis_server;

use arena::{HEARING, MAX_CHAT_CHARS, STRIDE};
use common::ArenaServer;
use hearth::components::StoreSelection;
use hearth::testing::test_config;
use serde_json::json;

#[test]
fn players_see_each_other_walk() {
    let server = ArenaServer::start(test_config("arena-see"));
    let mut alice = server.client();
    alice.register("alice", "password1");
    alice.login("alice", "password1");
    let mut bob = server.client();
    let bob_id = bob.register("bob", "password1");
    bob.login("bob", "password1");
    alice.until_seen(bob_id, json!({"x": 0.0, "y": 0.0}));
    bob.ask(json!({"type": "walk", "dx": 3, "dy": -1}), "walked");
    alice.until_seen(bob_id, json!({"x": 3.0, "y": -1.0}));
    assert_eq!(server.stop(), 0);
}

#[test]
fn on_the_memory_store_players_pick_up_walk_and_chat_within_earshot() {
    let server = ArenaServer::start(test_config("arena-tcp"));
    let mut alice = server.client();
    let alice_id = alice.register("alice", "password1");
    alice.login("alice", "password1");
    let mut bob = server.client();
    bob.register("bob", "password1");
    bob.login("bob", "password1");

    assert_eq!(alice.pickup("gem"), 1);
    assert_eq!(alice.pickup("gem"), 2);
    // Two pickups in flight, told apart by their ids; a refusal is the standard error.
    alice.send(json!({"type": "pickup", "id": "p1", "item": "sword"}));
    alice.send(json!({"type": "pickup", "id": 2, "item": "herb"}));
    let refused = alice.expect("error");
    assert_eq!(refused["code"], "unknown_item", "{refused}");
    assert_eq!(refused["id"], "p1", "{refused}");
    let picked = alice.expect("picked_up");
    assert_eq!(
        picked,
        json!({"type": "picked_up", "id": 2, "item": "herb", "count": 1})
    );
    let malformed = alice.ask(json!({"type": "pickup", "what": "gem"}), "error");
    assert_eq!(
        malformed["code"], "bad_request",
        "malformed input is Hearth's protocol error: {malformed}"
    );

    // Both stand at the origin: within earshot of each other.
    alice.send(json!({"type": "chat", "text": "hi bob"}));
    let line = json!({"type": "chat_line", "from": alice_id, "text": "hi bob"});
    assert_eq!(alice.expect("chat_line"), line);
    assert_eq!(bob.expect("chat_line"), line);

    let too_long = "a".repeat(MAX_CHAT_CHARS + 1);
    let refused = alice.ask(json!({"type": "chat", "text": too_long}), "error");
    assert_eq!(refused["code"], "too_long", "{refused}");
    assert!(
        refused.get("id").is_none(),
        "no id asked, none given: {refused}"
    );

    // Bob walks out of earshot, one stride per request.
    let strides = (HEARING / STRIDE) as usize + 1;
    for i in 1..=strides {
        let walked = bob.ask(json!({"type": "walk", "dx": STRIDE, "dy": 0}), "walked");
        assert_eq!(walked["x"], json!(STRIDE * i as f32), "{walked}");
    }
    alice.send(json!({"type": "chat", "text": "bob?"}));
    assert_eq!(alice.expect("chat_line")["text"], "bob?");
    // Alice heard herself, so the chat was relayed; anything queued for Bob then comes
    // before the answer to his next request, which must therefore be next.
    let here = bob.ask(json!({"type": "walk", "id": 9, "dx": 0, "dy": 0}), "walked");
    assert_eq!(here["x"], json!(STRIDE * strides as f32), "{here}");
    assert_eq!(
        here["id"], 9,
        "an answer at a later tick carries the id too: {here}"
    );
    // `expect` fails on any unexpected line: Bob never received Alice's refusals either.
    assert_eq!(server.stop(), 0, "the server saved everyone");
}

#[test]
fn on_redis_the_inventory_survives_logout_login_and_a_new_server() {
    let redis = redis_server::RedisServer::start();
    let config = |instance: &str| {
        let mut config = test_config(instance);
        config.store.settings.selection = StoreSelection::Redis(redis.url());
        config
    };

    let first = ArenaServer::start(config("arena-a"));
    let mut carol = first.client();
    carol.register("carol", "password1");
    let fresh = carol.login("carol", "password1");
    assert_eq!(
        fresh["inventory"],
        json!({}),
        "a new player carries nothing"
    );
    assert_eq!(carol.pickup("gem"), 1);
    assert_eq!(carol.pickup("gem"), 2);
    assert_eq!(carol.pickup("coin"), 1);
    carol.ask(json!({"type": "walk", "dx": 3, "dy": -4}), "walked");
    carol.logout();

    let state = carol.login("carol", "password1");
    assert_eq!(state["inventory"], json!({"gem": 2, "coin": 1}), "{state}");
    assert_eq!(state["position"], json!({"x": 3.0, "y": -4.0}), "{state}");
    carol.logout();
    assert_eq!(first.stop(), 0, "the first server saved everyone");

    let second = ArenaServer::start(config("arena-b"));
    let mut carol = second.client();
    let state = carol.login("carol", "password1");
    assert_eq!(
        state["inventory"],
        json!({"gem": 2, "coin": 1}),
        "another server on the same Redis restores it: {state}"
    );
    assert_eq!(carol.pickup("gem"), 3);
    assert_eq!(second.stop(), 0);
}
