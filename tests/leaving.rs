//! Players never lose progress, even while they leave: a change made to a leaving player at
//! any point of its leave (before its final snapshot, while the final save is in flight,
//! after the save returned but before the player is gone) is in the stored record once the
//! player is gone, and `PlayerLeft` is answered only once that record is durable. On every
//! store, through ECS world fixtures running a small game of its own.

mod common;

use std::time::Duration;

use common::{StoreFactory, config};
use hearth::prelude::bevy_ecs::system::RunSystemOnce;
use hearth::prelude::*;
use hearth::systems::persistence::MAX_LEAVE_FOLLOW_UPS;
use hearth::testing::TestServer;
use hearth_components::SaveState;

/// The game's persistent component.
#[derive(Component, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Wallet {
    coins: u64,
}

/// Coins the game sets on every leaving player in `Last`, after the frame's saves took their
/// snapshots: once (`Set`), or one more every frame (`Grow`).
#[derive(Resource, Default)]
enum LateChange {
    #[default]
    None,
    Set(u64),
    Grow,
}

fn change_leaving_players_late(
    mut change: ResMut<LateChange>,
    mut wallets: Query<&mut Wallet, With<Leaving>>,
) {
    for mut wallet in &mut wallets {
        match *change {
            LateChange::None => {}
            LateChange::Set(coins) => wallet.coins = coins,
            LateChange::Grow => wallet.coins += 1,
        }
    }
    if matches!(*change, LateChange::Set(_)) {
        *change = LateChange::None;
    }
}

/// `{"type":"gift","to":2,"amount":5}`: moves coins to another online player, found by id
/// (leaving or not: the gift is saved before the recipient is gone).
#[derive(Deserialize, Debug, Clone, JsonSchema)]
struct Gift {
    to: u64,
    amount: u64,
}

fn give(
    mut gifts: MessageReader<FromClient<Gift>>,
    players: Players,
    mut wallets: Query<&mut Wallet>,
) {
    for gift in gifts.read() {
        let Some(to) = players.online(PlayerId(gift.message.to)) else {
            continue;
        };
        let Ok([mut from, mut to]) = wallets.get_many_mut([gift.entity, to]) else {
            continue;
        };
        let amount = gift.message.amount.min(from.coins);
        from.coins -= amount;
        to.coins += amount;
    }
}

fn coins_game(app: &mut App) {
    app.register_persistent::<Wallet>("wallet")
        .register_required_components::<PlayerId, Wallet>()
        .add_client_message::<Gift>("gift")
        .init_resource::<LateChange>()
        .add_systems(Update, give)
        .add_systems(Last, change_leaving_players_late);
}

fn stored_coins(server: &TestServer, player: PlayerId) -> Option<u64> {
    server
        .stored(player)
        .and_then(|r| r.sections.get("wallet").and_then(|w| w["coins"].as_u64()))
}

fn set_coins(server: &mut TestServer, entity: Entity, coins: u64) {
    server.world_mut().get_mut::<Wallet>(entity).unwrap().coins = coins;
}

fn final_save_in_flight(server: &TestServer, entity: Entity) -> bool {
    server
        .world()
        .get::<SaveState>(entity)
        .and_then(|s| s.in_flight.as_ref())
        .is_some_and(|f| f.release)
}

/// Runs frames until `PlayerLeft` answers the leave of `origin`, checking at that frame that
/// the store holds `coins` and the lease is free; panics after 100 frames.
fn until_left(server: &mut TestServer, entity: Entity, player: PlayerId, origin: u64, coins: u64) {
    for _ in 0..100 {
        server.frame();
        let left = server
            .read_messages::<PlayerLeft>()
            .into_iter()
            .any(|l| l.player == player && l.origin == origin);
        if left {
            assert_eq!(
                stored_coins(server, player),
                Some(coins),
                "PlayerLeft answered only once the last change is durable"
            );
            assert_eq!(server.store().lease_owner(player), None, "lease released");
            assert!(server.world().get_entity(entity).is_err(), "entity gone");
            return;
        }
        assert!(
            server.world().get_entity(entity).is_ok(),
            "the player is gone without PlayerLeft"
        );
    }
    panic!("{player} did not leave within 100 frames");
}

/// A change at every point of the leave, each after the one before was snapshotted: the last
/// one is stored when the player is gone.
fn a_change_at_every_point_of_a_leave_is_saved_before_the_player_is_gone(
    stores: &dyn StoreFactory,
) {
    let mut server = stores.game_server(config("a"), coins_game);
    let p = PlayerId(1);
    let e = server.spawn_player(p, Wallet { coins: 1 });
    server.world_mut().write_message(LeaveRequest {
        entity: e,
        origin: 7,
    });
    set_coins(&mut server, e, 10); // right after the leave request
    *server.world_mut().resource_mut::<LateChange>() = LateChange::Set(15);
    server.store().pause();
    server.frame(); // the final save (10) goes out; then, in `Last`, 15
    assert!(
        final_save_in_flight(&server, e),
        "the final save is in flight"
    );
    set_coins(&mut server, e, 20); // while the final save is in flight
    server.frame();
    set_coins(&mut server, e, 30);
    server.frame();
    assert!(
        server.read_messages::<PlayerLeft>().is_empty(),
        "not durable yet"
    );
    server.store().resume();
    server.wait_for_store(); // the final save returned; its result is applied next frame
    set_coins(&mut server, e, 40); // after the final save returned, before the despawn
    until_left(&mut server, e, p, 7, 40);
}

/// The gift: coins given to a player whose final save is in flight are stored on both
/// sides once the recipient is gone; `Players` finds the recipient while it leaves, but does
/// not count it as playing.
fn a_gift_to_a_player_whose_final_save_is_in_flight_is_saved(stores: &dyn StoreFactory) {
    let mut server = stores.game_server(config("a"), coins_game);
    let (giver, recipient) = (PlayerId(1), PlayerId(2));
    let g = server.spawn_player(giver, Wallet { coins: 100 });
    let r = server.spawn_player(recipient, Wallet { coins: 1 });
    server.world_mut().write_message(LeaveRequest {
        entity: r,
        origin: 9,
    });
    server.store().pause();
    server.frame(); // the recipient's final save (1 coin) is in flight
    assert!(
        final_save_in_flight(&server, r),
        "the final save is in flight"
    );
    let found = server
        .world_mut()
        .run_system_once(move |players: Players| {
            (players.online(recipient), players.playing(recipient))
        })
        .unwrap();
    assert_eq!(found, (Some(r), None), "online, not playing");
    server.client_message(g, Gift { to: 2, amount: 99 });
    server.frame();
    server.store().resume();
    until_left(&mut server, r, recipient, 9, 100);
    server.flush_now();
    assert_eq!(
        stored_coins(&server, giver),
        Some(1),
        "the giver's side saved"
    );
}

/// The one window left: the first final save released the lease, and another server claimed
/// the player before the follow-up re-claimed it. The follow-up writes nothing over what that
/// server loaded; the player is dropped here with `OwnershipLost`, the late change unsaved.
fn a_follow_up_after_another_server_took_the_player_writes_nothing(stores: &dyn StoreFactory) {
    let mut a = stores.game_server(config("a"), coins_game);
    let mut b = stores.game_server(config("b"), coins_game);
    let p = PlayerId(1);
    let e = a.spawn_player(p, Wallet { coins: 1 });
    set_coins(&mut a, e, 10);
    a.world_mut().write_message(LeaveRequest {
        entity: e,
        origin: 7,
    });
    a.frame(); // the final save (10) is durable and released the lease; applied next frame
    set_coins(&mut a, e, 20);
    let on_b = b.join(p);
    assert_eq!(b.world().get::<Wallet>(on_b).unwrap().coins, 10);
    a.frame(); // the follow-up (20) goes out
    a.frame(); // and comes back lost
    let lost = a.read_messages::<OwnershipLost>();
    assert!(lost.iter().any(|l| l.player == p), "{lost:?}");
    assert!(a.world().get_entity(e).is_err(), "dropped on a");
    assert_eq!(stored_coins(&a, p), Some(10), "b's copy is not overwritten");
    assert_eq!(a.store().lease_owner(p), Some(b.lease_owner()));
}

/// A player the game changes after every final snapshot of its leave still leaves, its lease
/// released, once the follow-up saves reach their bound: with the state of the last follow-up
/// (the final save took 1 coin; each follow-up one more).
fn a_player_changed_after_every_final_save_still_leaves(stores: &dyn StoreFactory) {
    let mut server = stores.game_server(config("a"), coins_game);
    let p = PlayerId(1);
    let e = server.spawn_player(p, Wallet { coins: 1 });
    *server.world_mut().resource_mut::<LateChange>() = LateChange::Grow;
    server.world_mut().write_message(LeaveRequest {
        entity: e,
        origin: 7,
    });
    until_left(&mut server, e, p, 7, 1 + u64::from(MAX_LEAVE_FOLLOW_UPS));
}

/// Shutdown takes the same path: changes after the final snapshots are saved, everyone
/// leaves, every lease is released.
fn shutdown_saves_changes_made_while_players_leave(stores: &dyn StoreFactory) {
    let mut server = stores.game_server(config("a"), coins_game);
    let players: Vec<_> = (1..=5)
        .map(PlayerId)
        .map(|p| (p, server.spawn_player(p, Wallet { coins: 1 })))
        .collect();
    *server.world_mut().resource_mut::<LateChange>() = LateChange::Set(99);
    let report = server.shutdown(Duration::from_secs(10));
    assert!(report.unsaved.is_empty(), "{report:?}");
    for (p, _) in players {
        assert_eq!(
            stored_coins(&server, p),
            Some(99),
            "{p}: the late change saved"
        );
        assert_eq!(server.store().lease_owner(p), None, "{p}: lease released");
    }
}

on_every_store!(
    a_follow_up_after_another_server_took_the_player_writes_nothing,
    a_gift_to_a_player_whose_final_save_is_in_flight_is_saved,
    a_change_at_every_point_of_a_leave_is_saved_before_the_player_is_gone,
    a_player_changed_after_every_final_save_still_leaves,
    shutdown_saves_changes_made_while_players_leave,
);
