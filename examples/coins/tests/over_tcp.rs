//! The coins game as players see it: real TCP connections (`hearth_client`, with the game's
//! own message types) to the coins app running in this process
//! (`hearth::testing::TcpGameServer`), on the memory store.

use std::time::Duration;

use coins::CoinsPlugin;
use coins::{Collect, Gift, GiftReceived, Gifted, STARTING_COINS, WalletMessage};
use hearth::testing::{TcpGameServer, test_config};
use hearth_client::{Client, ClientError, Event};
use serde_json::json;

/// A guard against a hang, not a timing assertion.
const WAIT: Duration = Duration::from_secs(15);

/// A `gift` without its `amount`.
#[derive(serde::Serialize)]
struct GiftWithoutAmount {
    to: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_players_collect_and_gift_over_tcp() {
    let server = TcpGameServer::start(test_config("coins-tcp"), CoinsPlugin).expect("starts");
    let alice = Client::connect(server.addr()).await.unwrap();
    alice.register("alice", "password1").await.unwrap();
    let logged_in = alice.login("alice", "password1").await.unwrap();
    assert_eq!(logged_in.state["wallet"], json!({"coins": STARTING_COINS}));
    let mut bob = Client::connect(server.addr()).await.unwrap();
    let bob_id = bob.register("bob", "password1").await.unwrap();
    bob.login("bob", "password1").await.unwrap();

    let wallet = alice.request("collect", &Collect {}).await.unwrap();
    let wallet: WalletMessage = wallet.decode_if("wallet").unwrap().unwrap();
    assert_eq!(wallet.coins, STARTING_COINS + 1);
    let gift = Gift {
        to: bob_id,
        amount: 11,
    };
    let gifted = alice.request("gift", &gift).await.unwrap();
    let gifted: Gifted = gifted.decode_if("gifted").unwrap().unwrap();
    assert_eq!(gifted.coins, STARTING_COINS - 10, "{gifted:?}");
    let received = tokio::time::timeout(WAIT, async {
        loop {
            match bob.next_event().await.expect("bob's connection") {
                Event::Game(message) => break message,
                Event::Replication { .. } | Event::Update(_) => {}
                other => panic!("expected gift_received, got {other:?}"),
            }
        }
    })
    .await
    .expect("gift_received");
    let received: GiftReceived = received.decode_if("gift_received").unwrap().unwrap();
    assert_eq!(received.coins, STARTING_COINS + 11, "{received:?}");
    // The refusal names its request (by its id): it is this request's answer.
    let too_much = Gift {
        to: bob_id,
        amount: 1000,
    };
    match alice.request("gift", &too_much).await {
        Err(ClientError::Refused(refusal)) => assert_eq!(refusal.code, "not_enough_coins"),
        other => panic!("expected not_enough_coins, got {other:?}"),
    }
    match alice
        .request("gift", &GiftWithoutAmount { to: bob_id })
        .await
    {
        Err(ClientError::Refused(refusal)) => assert_eq!(refusal.code, "bad_request"),
        other => panic!("expected bad_request, got {other:?}"),
    }

    bob.logout().await.unwrap();
    let state = bob.login("bob", "password1").await.unwrap().state;
    assert_eq!(state["wallet"], json!({"coins": STARTING_COINS + 11}));
    assert_eq!(server.stop(), 0, "everyone saved");
}
