//! The arena's rules on Hearth's world fixtures (memory store, manual time): what a request
//! changes, who hears a chat, what is saved and restored.

use arena::{
    ARENA_HALF_EXTENT, ArenaPlugin, Chat, HEARING, Inventory, MAX_CHAT_CHARS, MAX_STACK, Pickup,
    STRIDE, Walk,
};
use hearth::components::Dirty;
use hearth::prelude::*;
use hearth::testing::{TestServer, test_config};
use serde_json::json;

fn arena() -> TestServer {
    TestServer::for_game(test_config("arena"), ArenaPlugin)
}

fn pickup(item: &str) -> Pickup {
    Pickup { item: item.into() }
}

fn inventory(items: &[(&str, u32)]) -> Inventory {
    Inventory(items.iter().map(|&(i, n)| (i.to_string(), n)).collect())
}

#[test]
fn a_pickup_adds_one_to_the_inventory_and_answers_with_the_count() {
    let mut server = arena();
    let player = server.join(PlayerId(1));
    let client = server.connect(player);
    assert!(server.world().get::<Dirty>(player).is_none());
    for count in 1..=2 {
        server.client_message(player, pickup("gem"));
        server.frame();
        assert_eq!(
            client.take(),
            [json!({"type": "picked_up", "item": "gem", "count": count})]
        );
    }
    assert_eq!(
        server.world().get::<Inventory>(player),
        Some(&inventory(&[("gem", 2)]))
    );
    assert!(
        server.world().get::<Dirty>(player).is_some(),
        "the change is due for saving"
    );
}

#[test]
fn a_refused_pickup_answers_why_and_changes_nothing() {
    let mut server = arena();
    let full = inventory(&[("coin", MAX_STACK)]);
    let player = server.spawn_player(PlayerId(1), full.clone());
    let client = server.connect(player);
    for (item, reason) in [("sword", "unknown_item"), ("coin", "stack_full")] {
        server.client_message(player, pickup(item));
        server.frame();
        let replies = client.take();
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["type"], "error");
        assert_eq!(replies[0]["code"], reason);
        assert!(replies[0]["message"].as_str().is_some(), "{replies:?}");
    }
    assert_eq!(server.world().get::<Inventory>(player), Some(&full));
    assert!(
        server.world().get::<Dirty>(player).is_none(),
        "a refusal does not even mark the player for saving"
    );
}

#[test]
fn a_chat_reaches_the_players_within_hearing_and_no_one_else() {
    let mut server = arena();
    let at = |x: f32, y: f32| Position { x, y };
    let speaker = server.spawn_player(PlayerId(1), at(0.0, 0.0));
    let near = server.spawn_player(PlayerId(2), at(20.0, -10.0));
    let edge = server.spawn_player(PlayerId(3), at(0.0, HEARING));
    let far = server.spawn_player(PlayerId(4), at(HEARING + 1.0, 0.0));
    let clients = [speaker, near, edge, far].map(|e| server.connect(e));
    server.client_message(
        speaker,
        Chat {
            text: "hello".into(),
        },
    );
    server.frame();
    let line = json!({"type": "chat_line", "from": 1, "text": "hello"});
    let heard = clients.each_ref().map(|c| c.take());
    let once = std::slice::from_ref(&line);
    assert_eq!(heard[0], once, "the speaker hears itself");
    assert_eq!(heard[1], once, "a player within hearing");
    assert_eq!(heard[2], once, "a player exactly at the hearing distance");
    assert!(heard[3].is_empty(), "a player farther away: {:?}", heard[3]);
}

#[test]
fn a_chat_over_the_length_cap_reaches_no_one_and_tells_the_speaker() {
    let mut server = arena();
    let speaker = server.join(PlayerId(1));
    let listener = server.join(PlayerId(2));
    let (speaker_client, listener_client) = (server.connect(speaker), server.connect(listener));
    for (text, reason) in [
        ("a".repeat(MAX_CHAT_CHARS + 1), "too_long"),
        (" ".into(), "empty"),
    ] {
        server.client_message(speaker, Chat { text });
        server.frame();
        let replies = speaker_client.take();
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["type"], "error");
        assert_eq!(replies[0]["code"], reason);
        assert!(listener_client.take().is_empty(), "nothing was said");
    }
}

#[test]
fn walks_within_one_tick_collapse_and_stop_at_the_arena_edge() {
    let mut server = arena();
    let start = Position {
        x: ARENA_HALF_EXTENT - 1.0,
        y: 0.0,
    };
    let player = server.spawn_player(PlayerId(1), start);
    let client = server.connect(player);
    server.client_message(player, Walk { dx: 0.0, dy: 100.0 });
    server.client_message(
        player,
        Walk {
            dx: STRIDE,
            dy: 0.0,
        },
    );
    server.frame();
    let x = ARENA_HALF_EXTENT;
    assert_eq!(
        client.take(),
        [json!({"type": "walked", "x": x, "y": 0.0})],
        "only the latest walk of the tick is taken, and it stops at the edge"
    );
    assert_eq!(
        server.world().get::<Position>(player),
        Some(&Position { x, y: 0.0 })
    );
}

#[test]
fn the_inventory_is_saved_by_a_flush_and_restored_on_rejoin() {
    let mut server = arena();
    let id = PlayerId(7);
    let player = server.join(id);
    for item in ["gem", "herb", "gem"] {
        server.client_message(player, pickup(item));
    }
    server.client_message(player, Walk { dx: 3.0, dy: 4.0 });
    server.frame();
    server.flush_now();
    let record = server.stored(id).expect("the flush saved the player");
    assert_eq!(record.sections["inventory"], json!({"gem": 2, "herb": 1}));
    assert_eq!(record.sections["position"], json!({"x": 3.0, "y": 4.0}));

    server.leave(player);
    let player = server.join(id);
    let expected = inventory(&[("gem", 2), ("herb", 1)]);
    assert_eq!(server.world().get::<Inventory>(player), Some(&expected));
    assert_eq!(
        server.world().get::<Position>(player),
        Some(&Position { x: 3.0, y: 4.0 })
    );
}
