//! Linked saves: a change across several players (a gift) is durable on every side or on
//! none. No save of one side goes out alone while the linked save is pending; a failed one is
//! retried with nothing written in between; a player that is no longer ours abandons it with
//! nothing written. On every store, through ECS world fixtures (on the cluster, with players
//! whose keys share a slot: one script writes them).

mod common;

use std::time::Duration;

use common::{StoreFactory, config};
use hearth::prelude::*;
use hearth::store::redis::cluster::player_slot;
use hearth::testing::TestServer;
use hearth_components::Dirty;

#[derive(Component, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Wallet {
    coins: u64,
}

/// A gift the test asks for: `amount` from `from` to `to`, saved together under `tag`.
#[derive(Message, Clone, Debug)]
struct Gift {
    from: Entity,
    to: Entity,
    amount: u64,
    tag: u64,
}

fn give(
    mut gifts: MessageReader<Gift>,
    mut wallets: Query<&mut Wallet>,
    mut together: MessageWriter<SaveTogether>,
) {
    for gift in gifts.read() {
        let Ok([mut from, mut to]) = wallets.get_many_mut([gift.from, gift.to]) else {
            continue;
        };
        from.coins -= gift.amount;
        to.coins += gift.amount;
        together.write(SaveTogether {
            players: vec![gift.from, gift.to],
            tag: gift.tag,
        });
    }
}

fn coins_game(app: &mut App) {
    app.register_persistent::<Wallet>("wallet")
        .register_required_components::<PlayerId, Wallet>()
        .add_message::<Gift>()
        .add_systems(FixedUpdate, give);
}

/// `count` player ids whose keys share one Redis Cluster slot (any ids do on one Redis).
fn players_of_one_slot(count: usize) -> Vec<PlayerId> {
    let slot = player_slot(PlayerId(1));
    (1..)
        .map(PlayerId)
        .filter(|p| player_slot(*p) == slot)
        .take(count)
        .collect()
}

fn stored_coins(server: &TestServer, player: PlayerId) -> Option<u64> {
    server
        .stored(player)
        .and_then(|r| r.sections.get("wallet").and_then(|w| w["coins"].as_u64()))
}

/// A player joined with `coins`, stored.
fn player_with(server: &mut TestServer, player: PlayerId, coins: u64) -> Entity {
    let entity = server.spawn_player(player, Wallet::default());
    server.world_mut().get_mut::<Wallet>(entity).unwrap().coins = coins;
    server.flush_now();
    server.wait_for_store();
    server.frame();
    assert_eq!(stored_coins(server, player), Some(coins));
    entity
}

fn gift(server: &mut TestServer, from: Entity, to: Entity, amount: u64, tag: u64) {
    server.world_mut().write_message(Gift {
        from,
        to,
        amount,
        tag,
    });
}

/// Runs frames until `SavedTogether` answers `tag`; panics after 200 frames.
fn until_answered(server: &mut TestServer, tag: u64) -> TogetherOutcome {
    for _ in 0..200 {
        server.frame();
        if let Some(answer) = server
            .read_messages::<SavedTogether>()
            .into_iter()
            .find(|a| a.tag == tag)
        {
            return answer.outcome;
        }
    }
    panic!("linked save {tag} not answered within 200 frames");
}

/// Both sides of a gift are stored once `SavedTogether` answers; while it is pending, a forced
/// flush writes neither side alone.
fn a_gift_is_stored_on_both_sides_and_never_on_one(stores: &dyn StoreFactory) {
    let mut server = stores.game_server(config("a"), coins_game);
    let ids = players_of_one_slot(2);
    let g = player_with(&mut server, ids[0], 100);
    let r = player_with(&mut server, ids[1], 1);
    server.store().pause();
    gift(&mut server, g, r, 30, 7);
    server.frame(); // the linked save goes out and is held
    server.flush_now(); // would save each dirty player alone
    server.frame();
    assert!(server.read_messages::<SavedTogether>().is_empty());
    server.store().resume();
    assert_eq!(until_answered(&mut server, 7), TogetherOutcome::Saved);
    assert_eq!(stored_coins(&server, ids[0]), Some(70));
    assert_eq!(stored_coins(&server, ids[1]), Some(31));
}

/// While a failed linked save waits for its retry, the store answers again and a forced flush
/// saves every dirty player: neither side of the gift is written alone. The retry then
/// writes both.
fn no_side_is_saved_alone_while_the_link_waits(stores: &dyn StoreFactory) {
    let mut server = stores.game_server(config("a"), coins_game);
    let ids = players_of_one_slot(2);
    let g = player_with(&mut server, ids[0], 100);
    let r = player_with(&mut server, ids[1], 1);
    server.store().set_unavailable(true);
    gift(&mut server, g, r, 40, 8);
    server.frame(); // the linked save goes out and fails
    server.frame(); // its failure is applied: a retry in a second
    server.store().set_unavailable(false);
    server.flush_now();
    server.wait_for_store();
    assert_eq!(
        (stored_coins(&server, ids[0]), stored_coins(&server, ids[1])),
        (Some(100), Some(1)),
        "neither side saved alone"
    );
    assert!(server.world().get::<Dirty>(g).is_some(), "still to save");
    // Retried once the retry delay passed (in the frames `until_answered` runs).
    assert_eq!(until_answered(&mut server, 8), TogetherOutcome::Saved);
    assert_eq!(
        (stored_coins(&server, ids[0]), stored_coins(&server, ids[1])),
        (Some(60), Some(41))
    );
}

/// Gifts sharing a player (A to B, then B to C while the first is held) are written as one
/// group: every answer is `Saved` and the total is conserved in the store.
fn links_sharing_a_player_are_saved_as_one(stores: &dyn StoreFactory) {
    let mut server = stores.game_server(config("a"), coins_game);
    let ids = players_of_one_slot(3);
    let [a, b, c] = [0, 1, 2].map(|i| player_with(&mut server, ids[i], 10));
    server.store().set_unavailable(true);
    gift(&mut server, a, b, 5, 1);
    server.frame();
    gift(&mut server, b, c, 12, 2);
    server.frame();
    server.wait_for_store();
    server.store().set_unavailable(false);
    let mut answers = Vec::new();
    for _ in 0..200 {
        server.frame();
        answers.extend(server.read_messages::<SavedTogether>());
        if answers.len() >= 2 {
            break;
        }
    }
    let mut answered: Vec<_> = answers.iter().map(|a| (a.tag, a.outcome.clone())).collect();
    answered.sort_by_key(|a| a.0);
    assert_eq!(
        answered,
        [(1, TogetherOutcome::Saved), (2, TogetherOutcome::Saved)]
    );
    let stored: Vec<_> = ids.iter().map(|p| stored_coins(&server, *p)).collect();
    assert_eq!(stored, [Some(5), Some(3), Some(22)]);
}

/// A recipient another server took over (its lease expired here and was claimed there)
/// abandons the gift: nothing is written for the giver either.
fn a_player_no_longer_ours_abandons_the_link_with_nothing_written(stores: &dyn StoreFactory) {
    let mut a = stores.game_server(config("a"), coins_game);
    let mut b = stores.game_server(config("b"), coins_game);
    let ids = players_of_one_slot(2);
    let g = player_with(&mut a, ids[0], 100);
    let r = player_with(&mut a, ids[1], 1);
    a.store().advance_clock(Duration::from_secs(120)); // every lease of a expired
    b.join(ids[1]);
    gift(&mut a, g, r, 50, 3);
    assert_eq!(
        until_answered(&mut a, 3),
        TogetherOutcome::Abandoned { entity: r }
    );
    assert_eq!(
        stored_coins(&a, ids[0]),
        Some(100),
        "the giver's side unwritten"
    );
    assert_eq!(stored_coins(&a, ids[1]), Some(1));
}

/// Players whose keys live in different cluster slots (on one Redis and in memory, any two).
fn players_of_two_slots() -> [PlayerId; 2] {
    let first = PlayerId(1);
    let other = (2..)
        .map(PlayerId)
        .find(|p| player_slot(*p) != player_slot(first))
        .expect("another slot");
    [first, other]
}

/// A gift between players of different cluster slots (on a cluster: prepared on each slot,
/// committed by one decision, then applied) is stored on both sides, and no pending record
/// or decision is left behind.
fn a_gift_across_slots_is_stored_on_both_sides(stores: &dyn StoreFactory) {
    let mut server = stores.game_server(config("a"), coins_game);
    let ids = players_of_two_slots();
    let g = player_with(&mut server, ids[0], 100);
    let r = player_with(&mut server, ids[1], 1);
    gift(&mut server, g, r, 25, 5);
    assert_eq!(until_answered(&mut server, 5), TogetherOutcome::Saved);
    assert_eq!(
        (stored_coins(&server, ids[0]), stored_coins(&server, ids[1])),
        (Some(75), Some(26))
    );
    // A second gift between the same two goes through as well (nothing left in the way).
    gift(&mut server, r, g, 6, 6);
    assert_eq!(until_answered(&mut server, 6), TogetherOutcome::Saved);
    assert_eq!(
        (stored_coins(&server, ids[0]), stored_coins(&server, ids[1])),
        (Some(81), Some(20))
    );
}

/// Across slots too, a recipient no longer ours abandons the gift with nothing written.
fn a_lost_player_across_slots_abandons_the_link_with_nothing_written(stores: &dyn StoreFactory) {
    let mut a = stores.game_server(config("a"), coins_game);
    let mut b = stores.game_server(config("b"), coins_game);
    let ids = players_of_two_slots();
    let g = player_with(&mut a, ids[0], 100);
    let r = player_with(&mut a, ids[1], 1);
    a.store().advance_clock(Duration::from_secs(120));
    b.join(ids[1]);
    gift(&mut a, g, r, 50, 3);
    assert_eq!(
        until_answered(&mut a, 3),
        TogetherOutcome::Abandoned { entity: r }
    );
    assert_eq!(
        stored_coins(&a, ids[0]),
        Some(100),
        "the giver's side unwritten"
    );
    assert_eq!(stored_coins(&a, ids[1]), Some(1));
}

on_every_store!(
    a_gift_across_slots_is_stored_on_both_sides,
    a_lost_player_across_slots_abandons_the_link_with_nothing_written,
    a_gift_is_stored_on_both_sides_and_never_on_one,
    no_side_is_saved_alone_while_the_link_waits,
    links_sharing_a_player_are_saved_as_one,
    a_player_no_longer_ours_abandons_the_link_with_nothing_written,
);
