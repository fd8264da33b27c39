//! The coins game in a world fixture (memory store, manual time): wallets persist, `collect`
//! and `balance` answer the wallet, a gift moves coins and is answered on both sides only once
//! both wallets are stored, and bad gifts are refused with nothing moved.

use coins::{Balance, CoinsPlugin, Collect, Gift, STARTING_COINS, Wallet};
use hearth::prelude::*;
use hearth::store::{MemoryBackend, StoreClock};
use hearth::testing::{TestServer, test_config};
use serde_json::json;

fn server() -> TestServer {
    TestServer::for_game(test_config("coins"), CoinsPlugin)
}

fn stored_coins(server: &TestServer, player: PlayerId) -> Option<u64> {
    server
        .stored(player)
        .and_then(|r| r.sections.get("wallet").and_then(|w| w["coins"].as_u64()))
}

#[test]
fn collect_and_balance_answer_the_wallet_which_persists() {
    let mut server = server();
    let p = PlayerId(1);
    let e = server.join(p);
    let client = server.connect(e);
    server.client_message(e, Collect {});
    server.frame();
    server.client_message(e, Balance {});
    server.frame();
    let coins = STARTING_COINS + 1;
    assert_eq!(
        client.take(),
        [
            json!({"type": "wallet", "coins": coins}),
            json!({"type": "wallet", "coins": coins})
        ]
    );
    server.leave(e);
    assert_eq!(stored_coins(&server, p), Some(coins));
    let again = server.join(p);
    assert_eq!(server.world().get::<Wallet>(again).unwrap().coins, coins);
}

#[test]
fn a_gift_is_answered_on_both_sides_once_both_wallets_are_stored() {
    let mut server = server();
    let (giver, recipient) = (PlayerId(1), PlayerId(2));
    let g = server.join(giver);
    let r = server.join(recipient);
    let (to_giver, to_recipient) = (server.connect(g), server.connect(r));
    server.store().pause();
    server.client_message(g, Gift { to: 2, amount: 30 });
    server.frame();
    server.frame();
    assert!(
        to_giver.take().is_empty(),
        "not answered before it is durable"
    );
    assert_eq!(stored_coins(&server, giver), None);
    server.store().resume();
    server.wait_for_store();
    server.frame();
    server.frame();
    assert_eq!(
        to_giver.take(),
        [json!({"type": "gifted", "to": 2, "amount": 30, "coins": STARTING_COINS - 30})]
    );
    assert_eq!(
        to_recipient.take(),
        [json!({"type": "gift_received", "from": 1, "amount": 30, "coins": STARTING_COINS + 30})]
    );
    assert_eq!(stored_coins(&server, giver), Some(STARTING_COINS - 30));
    assert_eq!(stored_coins(&server, recipient), Some(STARTING_COINS + 30));
}

#[test]
fn bad_gifts_are_refused_and_move_nothing() {
    let mut server = server();
    let g = server.join(PlayerId(1));
    let r = server.join(PlayerId(2));
    let client = server.connect(g);
    for (gift, reason) in [
        (Gift { to: 1, amount: 5 }, "to_self"),
        (Gift { to: 2, amount: 0 }, "zero_amount"),
        (
            Gift {
                to: 2,
                amount: STARTING_COINS + 1,
            },
            "not_enough_coins",
        ),
        (Gift { to: 99, amount: 5 }, "no_such_player"),
    ] {
        server.client_message(g, gift);
        server.frame();
        let sent = client.take();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0]["type"], "error", "the standard refusal: {sent:?}");
        assert_eq!(sent[0]["code"], reason, "{sent:?}");
    }
    for e in [g, r] {
        assert_eq!(
            server.world().get::<Wallet>(e).unwrap().coins,
            STARTING_COINS
        );
    }
}

/// `client_json` decodes through the game's registry, as the front door does: a gift without
/// its amount is refused in an ECS test too. `is_dirty` shows a collect not saved yet.
#[test]
fn a_line_decodes_through_the_registry_and_a_change_is_dirty_until_saved() {
    let mut server = server();
    let e = server.join(PlayerId(1));
    let refused = server.client_json(e, json!({"type": "gift", "to": 2}));
    let reason = refused.expect_err("an amount is required").to_string();
    assert!(reason.contains("amount"), "{reason}");
    assert!(!server.is_dirty(e));
    server
        .client_json(e, json!({"type": "collect"}))
        .expect("a valid collect");
    server.frame();
    assert!(server.is_dirty(e), "collected, not saved yet");
    server.flush_now();
    assert!(!server.is_dirty(e), "saved");
    assert_eq!(stored_coins(&server, PlayerId(1)), Some(STARTING_COINS + 1));
}

/// A gift whose recipient another server took over before the two wallets were saved
/// together is abandoned: the giver is refused `not_saved` and has its coins back, so no coin
/// is destroyed (the recipient, loaded elsewhere, never had them).
#[test]
fn a_gift_to_a_player_taken_over_elsewhere_is_undone() {
    let backend = MemoryBackend::new(StoreClock::manual());
    let mut a = TestServer::for_game_on_memory(backend.clone(), test_config("a"), CoinsPlugin);
    let mut b = TestServer::for_game_on_memory(backend, test_config("b"), CoinsPlugin);
    let (giver, recipient) = (PlayerId(1), PlayerId(2));
    let g = a.join(giver);
    a.join(recipient);
    let to_giver = a.connect(g);
    a.store().advance_clock(std::time::Duration::from_secs(120)); // a's leases expired
    let on_b = b.join(recipient);
    a.client_message(g, Gift { to: 2, amount: 3 });
    let mut refusals = Vec::new();
    for _ in 0..100 {
        a.frame();
        refusals.extend(to_giver.take());
        if !refusals.is_empty() {
            break;
        }
    }
    assert_eq!(
        refusals
            .first()
            .map(|r| (r["type"].clone(), r["code"].clone())),
        Some((json!("error"), json!("not_saved"))),
        "{refusals:?}"
    );
    assert_eq!(
        a.world().get::<Wallet>(g).unwrap().coins,
        STARTING_COINS,
        "the giver has its coins back"
    );
    assert_eq!(b.world().get::<Wallet>(on_b).unwrap().coins, STARTING_COINS);
}
