//! Replication end to end within the systems crate: an app takes rounds, client views compose
//! and confirm updates, the encoders write what the wire module decodes.

use std::sync::Arc;
use std::time::Duration;

use bevy_app::App;
use bevy_ecs::prelude::*;
use bevy_time::{TimePlugin, TimeUpdateStrategy};
use hearth_components::wire::{
    FrameKind, QuantisedPosition, UpdateFrame, decode_frame, decode_message,
};
use hearth_components::{PlayerId, Position};

use super::*;

/// An app replicating positions (quantised) and player ids, one round per update.
fn app() -> App {
    let mut app = App::new();
    app.add_plugins(TimePlugin)
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
            50,
        )))
        .replicate_with::<Position, QuantisedPositionEncoding>()
        .replicate::<PlayerId>();
    app.update(); // the first frame has no time delta
    app
}

fn spawn(app: &mut App, id: u64, x: f32, y: f32) -> Entity {
    app.world_mut()
        .spawn((PlayerId(id), Position { x, y }))
        .id()
}

fn round(app: &mut App) -> Arc<ReplicationRound> {
    app.update();
    app.world().resource::<ReplicationFeed>().latest()
}

fn ids(round: &ReplicationRound, slots: &[(u32, u64)]) -> Vec<u64> {
    let mut ids: Vec<u64> = slots
        .iter()
        .map(|&(s, _)| round.entities()[s as usize].id)
        .collect();
    ids.sort();
    ids
}

fn bits(entity: Entity) -> u64 {
    round::wire_id(entity)
}

const BIG: usize = 1 << 20;

#[test]
fn rounds_share_unchanged_values_and_version_changed_ones() {
    let mut app = app();
    let a = spawn(&mut app, 1, 0.0, 0.0);
    let b = spawn(&mut app, 2, 10.0, 0.0);
    let first = round(&mut app);
    assert_eq!(first.entities().len(), 2);
    let slot_a = first.slot_of(PlayerId(1)).unwrap();
    let slot_b = first.slot_of(PlayerId(2)).unwrap();
    assert_eq!(first.entities()[slot_a as usize].id, bits(a));
    app.world_mut().get_mut::<Position>(a).unwrap().x = 5.0;
    let second = round(&mut app);
    assert_eq!(second.number(), first.number() + 1);
    let (a1, a2) = (&first.values(slot_a)[0], &second.values(slot_a)[0]);
    assert!(a2.as_ref().unwrap().version() > a1.as_ref().unwrap().version());
    assert!(
        Arc::ptr_eq(
            first.values(slot_b)[0].as_ref().unwrap(),
            second.values(slot_b)[0].as_ref().unwrap()
        ),
        "an unchanged value is shared, not copied"
    );
    app.world_mut().despawn(b);
    app.world_mut().entity_mut(a).remove::<PlayerId>();
    let third = round(&mut app);
    assert_eq!(third.entities().len(), 1, "the despawned entity is gone");
    assert!(third.values(0)[1].is_none(), "a removed component is gone");
}

#[test]
fn first_update_enters_everyone_in_range_then_only_changes_then_leaves() {
    let mut app = app();
    let me = spawn(&mut app, 1, 0.0, 0.0);
    let near = spawn(&mut app, 2, 30.0, 0.0);
    let far = spawn(&mut app, 3, 300.0, 0.0);
    let mut view = ClientView::new();
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.introduces(), Some(bits(me)));
    assert_eq!(ids(&r, update.entered()), {
        let mut v = vec![bits(me), bits(near)];
        v.sort();
        v
    });
    assert!(
        update.entered().iter().all(|&(_, mask)| mask == 0b11),
        "full state"
    );
    assert!(!ids(&r, update.entered()).contains(&bits(far)));
    view.confirm(update);

    // Nothing changed: an empty update.
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.introduces(), None);
    assert!(update.entered().is_empty() && update.changed().is_empty() && update.left().is_empty());
    view.confirm(update);

    // One moves: only its position.
    app.world_mut().get_mut::<Position>(near).unwrap().x = 31.0;
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(ids(&r, update.changed()), [bits(near)]);
    assert_eq!(update.changed()[0].1, 0b01, "only the position changed");
    view.confirm(update);

    // It walks out of range, the far one walks in.
    app.world_mut().get_mut::<Position>(near).unwrap().x = 200.0;
    app.world_mut().get_mut::<Position>(far).unwrap().x = 10.0;
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.left(), [bits(near)]);
    assert_eq!(ids(&r, update.entered()), [bits(far)]);
    view.confirm(update);
    assert_eq!(view.known(), 2);

    // A despawned entity leaves.
    app.world_mut().despawn(far);
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.left(), [bits(far)]);
}

#[test]
fn a_skipped_update_leaves_the_baseline_as_it_was() {
    let mut app = app();
    spawn(&mut app, 1, 0.0, 0.0);
    let other = spawn(&mut app, 2, 5.0, 0.0);
    let mut view = ClientView::new();
    let r = round(&mut app);
    let skipped = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(skipped.entered().len(), 2);
    drop(skipped); // not written (backpressure): never confirmed
    app.world_mut().get_mut::<Position>(other).unwrap().x = 6.0;
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert!(
        update.introduces().is_some(),
        "the introduction was never written"
    );
    assert_eq!(
        update.entered().len(),
        2,
        "still full state: nothing was written"
    );
    assert!(update.changed().is_empty());
    view.confirm(update);

    // Skip a change: the next update still carries it.
    app.world_mut().get_mut::<Position>(other).unwrap().x = 7.0;
    let r = round(&mut app);
    drop(view.compose(&r, PlayerId(1), BIG).unwrap());
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(
        ids(&r, update.changed()),
        [bits(other)],
        "the skipped change is resent"
    );
}

#[test]
fn the_budget_is_respected_and_everything_in_range_is_eventually_sent() {
    let mut app = app();
    spawn(&mut app, 1, 0.0, 0.0);
    let crowd: Vec<Entity> = (0..200)
        .map(|i| {
            spawn(
                &mut app,
                100 + i,
                (i % 20) as f32 * 2.0 - 20.0,
                (i / 20) as f32 * 2.0,
            )
        })
        .collect();
    let settings = ReplicationPlugin::default().settings;
    let budget = settings.round_budget();
    let mut view = ClientView::new();
    let mut rounds = 0;
    loop {
        let r = round(&mut app);
        let update = view.compose(&r, PlayerId(1), budget).unwrap();
        let mut out = Vec::new();
        write_binary(&update, &mut out).unwrap();
        // The estimate is the payload exactly.
        let (frame, used) =
            decode_frame(&out[out.len() - frame_len(&out)..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(frame.kind, FrameKind::Update);
        assert_eq!(frame.payload.len(), update.binary_bytes());
        assert!(
            update.binary_bytes() <= budget,
            "{} > {budget}",
            update.binary_bytes()
        );
        assert!(used > 0);
        view.confirm(update);
        rounds += 1;
        if view.known() == (1 + crowd.len()).min(settings.max_candidates) {
            break;
        }
        assert!(rounds < 100, "everyone in range is sent eventually");
        // Everybody keeps moving: changes compete with entries for the budget.
        for &e in &crowd {
            app.world_mut().get_mut::<Position>(e).unwrap().y += 0.01;
        }
    }
    assert!(rounds > 3, "a crowd takes several rounds within the budget");
}

/// Length of the last frame in `out` (after an optional introduction message).
fn frame_len(out: &[u8]) -> usize {
    let (frame, used) = decode_frame(out).unwrap();
    if frame.kind == FrameKind::Message {
        out.len() - used
    } else {
        used
    }
}

#[test]
fn binary_and_json_updates_carry_the_same_state() {
    let mut app = app();
    let me = spawn(&mut app, 1, 1.25, -3.5);
    let mut view = ClientView::new();
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    let mut bin = Vec::new();
    write_binary(&update, &mut bin).unwrap();
    let (intro, used) = decode_frame(&bin).unwrap();
    assert_eq!(intro.kind, FrameKind::Message);
    let intro: serde_json::Value = decode_message(intro.payload).unwrap();
    assert_eq!(intro["type"], "replication");
    assert_eq!(intro["you"], bits(me));
    assert_eq!(intro["components"][0]["name"], "position");
    assert_eq!(intro["components"][0]["encoding"], "position_q64");
    assert_eq!(intro["components"][1]["encoding"], "messagepack");
    let (frame, _) = decode_frame(&bin[used..]).unwrap();
    let decoded = UpdateFrame::decode(frame.payload).unwrap();
    assert_eq!(decoded.round, r.number());
    let entity = &decoded.entered[0];
    assert_eq!(entity.id, bits(me));
    let q = QuantisedPosition::decode(&entity.components[0].1).unwrap();
    assert_eq!(q.to_world(), (1.25, -3.5));
    let id: u64 = decode_message(&entity.components[1].1).unwrap();
    assert_eq!(id, 1);

    let mut json = String::new();
    write_json(&update, &mut json).unwrap();
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["you"], bits(me));
    assert_eq!(
        lines[1],
        serde_json::json!({"type": "update", "round": r.number(), "entered": [
            {"id": bits(me), "position": {"x": 1.25, "y": -3.5}, "player_id": 1}
        ], "changed": [], "left": []})
    );
}

#[test]
fn the_games_rule_filters_and_a_crowd_is_bounded() {
    let mut app = app();
    app.set_interest_rule(|v: &InterestTags, o: &InterestTags| v.group == o.group);
    // In a corner of the crowd, so the candidates' cut could leave it out.
    let me = spawn(&mut app, 1, 9.9, 4.9);
    let stranger = spawn(&mut app, 2, 1.0, 0.0);
    app.world_mut().entity_mut(stranger).insert(InterestTags {
        layers: 1,
        group: 9,
    });
    for i in 0..5000 {
        spawn(
            &mut app,
            10 + i,
            (i % 100) as f32 * 0.1,
            (i / 100) as f32 * 0.1,
        );
    }
    let r = round(&mut app);
    let mut view = ClientView::new();
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert!(
        !ids(&r, update.entered()).contains(&bits(stranger)),
        "another group"
    );
    assert!(update.entered().len() <= r.settings().max_candidates + 1);
    assert!(
        ids(&r, update.entered()).contains(&bits(me)),
        "the viewer is always in its own view, whatever the crowd (docs/protocol.md)"
    );
    assert!(view.heap_bytes() < 64 * 1024, "{} bytes", view.heap_bytes());
}
