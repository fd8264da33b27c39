//! The coins game as players see it: real TCP connections to the coins app running in this
//! process (`hearth::testing::TcpGameServer`), on the memory store.

use coins::{CoinsPlugin, STARTING_COINS};
use hearth::testing::{TcpGameServer, test_config};
use serde_json::json;

#[test]
fn two_players_collect_and_gift_over_tcp() {
    let server = TcpGameServer::start(test_config("coins-tcp"), CoinsPlugin).expect("starts");
    let mut alice = server.client();
    let (_, logged_in) = alice.register_and_login("alice", "password1");
    assert_eq!(
        logged_in["state"]["wallet"],
        json!({"coins": STARTING_COINS})
    );
    let mut bob = server.client();
    let (bob_id, _) = bob.register_and_login("bob", "password1");

    let wallet = alice.ask(json!({"type": "collect"}), "wallet");
    assert_eq!(wallet["coins"], STARTING_COINS + 1);
    let gifted = alice.ask(
        json!({"type": "gift", "to": bob_id, "amount": 11}),
        "gifted",
    );
    assert_eq!(gifted["coins"], STARTING_COINS - 10, "{gifted}");
    let received = bob.expect("gift_received");
    assert_eq!(received["coins"], STARTING_COINS + 11, "{received}");
    let refused = alice.ask(
        json!({"type": "gift", "id": 7, "to": bob_id, "amount": 1000}),
        "error",
    );
    assert_eq!(refused["code"], "not_enough_coins", "{refused}");
    assert_eq!(refused["id"], 7, "the refusal names its request: {refused}");
    let malformed = alice.ask(json!({"type": "gift", "to": bob_id}), "error");
    assert_eq!(malformed["code"], "bad_request", "{malformed}");

    bob.logout();
    let state = bob.login("bob", "password1");
    assert_eq!(
        state["state"]["wallet"],
        json!({"coins": STARTING_COINS + 11})
    );
    assert_eq!(server.stop(), 0, "everyone saved");
}
