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

/// The wire id of a player's entity, in the latest round.
fn bits(app: &App, entity: Entity) -> u64 {
    let player = *app.world().get::<PlayerId>(entity).expect("a player");
    let round = app.world().resource::<ReplicationFeed>().latest();
    let slot = round.slot_of(player).expect("in the latest round");
    round.entities()[slot as usize].id
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
    assert_eq!(first.entities()[slot_a as usize].id, bits(&app, a));
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
    assert_eq!(update.introduces(), Some(bits(&app, me)));
    assert_eq!(ids(&r, update.entered()), {
        let mut v = vec![bits(&app, me), bits(&app, near)];
        v.sort();
        v
    });
    assert!(
        update.entered().iter().all(|&(_, mask)| mask == 0b11),
        "full state"
    );
    assert!(!ids(&r, update.entered()).contains(&bits(&app, far)));
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
    assert_eq!(ids(&r, update.changed()), [bits(&app, near)]);
    assert_eq!(update.changed()[0].1, 0b01, "only the position changed");
    view.confirm(update);

    // It walks out of range, the far one walks in.
    app.world_mut().get_mut::<Position>(near).unwrap().x = 200.0;
    app.world_mut().get_mut::<Position>(far).unwrap().x = 10.0;
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.left(), [bits(&app, near)]);
    assert_eq!(ids(&r, update.entered()), [bits(&app, far)]);
    view.confirm(update);
    assert_eq!(view.known(), 2);

    // A despawned entity leaves.
    let far_id = bits(&app, far);
    app.world_mut().despawn(far);
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.left(), [far_id]);
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
        [bits(&app, other)],
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
    assert_eq!(intro["you"], bits(&app, me));
    assert_eq!(intro["components"][0]["name"], "position");
    assert_eq!(intro["components"][0]["encoding"], "position_q64");
    assert_eq!(intro["components"][1]["encoding"], "messagepack");
    let (frame, _) = decode_frame(&bin[used..]).unwrap();
    let decoded = UpdateFrame::decode(frame.payload).unwrap();
    assert_eq!(decoded.round, r.number());
    let entity = &decoded.entered[0];
    assert_eq!(entity.id, bits(&app, me));
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
    assert_eq!(lines[0]["you"], bits(&app, me));
    assert_eq!(
        lines[1],
        serde_json::json!({"type": "update", "round": r.number(), "entered": [
            {"id": bits(&app, me), "position": {"x": 1.25, "y": -3.5}, "player_id": 1}
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
        !ids(&r, update.entered()).contains(&bits(&app, stranger)),
        "another group"
    );
    assert!(update.entered().len() <= r.settings().max_candidates + 1);
    assert!(
        ids(&r, update.entered()).contains(&bits(&app, me)),
        "the viewer is always in its own view, whatever the crowd (docs/protocol.md)"
    );
    assert!(view.heap_bytes() < 64 * 1024, "{} bytes", view.heap_bytes());
}

/// A xorshift generator: repeatable randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn coordinate(&mut self, half: u64) -> f32 {
        (self.next() % (2 * half + 1)) as f32 - half as f32
    }
}

/// What a binary client holds: id → component index → payload.
type ClientWorld = std::collections::HashMap<u64, Vec<(u8, Vec<u8>)>>;

/// Applies the frames of one written update the way a client does, asserting the protocol's
/// promises: an entered entity is new to the client, a changed or left one is known.
fn apply(world: &mut ClientWorld, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let (frame, used) = decode_frame(bytes).unwrap();
        bytes = &bytes[used..];
        if frame.kind == FrameKind::Message {
            world.clear(); // `replication`: start from nothing
            continue;
        }
        let update = UpdateFrame::decode(frame.payload).unwrap();
        for e in update.entered {
            assert!(world.insert(e.id, e.components).is_none(), "entered twice");
        }
        for e in update.changed {
            let known = world.get_mut(&e.id).expect("a change to an unknown entity");
            for (i, payload) in e.components {
                known.retain(|c| c.0 != i);
                known.push((i, payload));
            }
            known.sort();
        }
        for id in update.left {
            assert!(world.remove(&id).is_some(), "an unknown entity left");
        }
    }
}

/// The baseline survives churn: entities walking in and out of range, despawns and spawns,
/// updates skipped (never confirmed), all within a tight budget; once the world stands still
/// the client's world is exactly what is in its range, component for component.
#[test]
fn a_client_applying_its_updates_converges_on_what_is_in_range() {
    let mut app = app();
    spawn(&mut app, 1, 0.0, 0.0);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut others: Vec<Entity> = (0..80)
        .map(|i| {
            let (x, y) = (rng.coordinate(70), rng.coordinate(70));
            spawn(&mut app, 100 + i, x, y)
        })
        .collect();
    let budget = ReplicationPlugin::default().settings.round_budget();
    let mut view = ClientView::new();
    let mut world = ClientWorld::new();
    let mut next_id = 1000;
    for phase in 0..4 {
        // Churn.
        for _ in 0..30 {
            for &e in &others {
                if rng.next().is_multiple_of(3) {
                    let mut p = app.world_mut().get_mut::<Position>(e).unwrap();
                    p.x = (p.x + rng.coordinate(8)).clamp(-80.0, 80.0);
                    p.y = (p.y + rng.coordinate(8)).clamp(-80.0, 80.0);
                }
            }
            if rng.next().is_multiple_of(4) {
                let gone = others.swap_remove((rng.next() % others.len() as u64) as usize);
                app.world_mut().despawn(gone);
                let (x, y) = (rng.coordinate(40), rng.coordinate(40));
                others.push(spawn(&mut app, next_id, x, y));
                next_id += 1;
            }
            let r = round(&mut app);
            let update = view.compose(&r, PlayerId(1), budget).unwrap();
            let mut out = Vec::new();
            write_binary(&update, &mut out).unwrap();
            if rng.next().is_multiple_of(4) {
                continue; // not written: never confirmed
            }
            apply(&mut world, &out);
            view.confirm(update);
        }
        // Stand still until nothing is left to send.
        let mut quiet = 0;
        while quiet < 3 {
            let r = round(&mut app);
            let update = view.compose(&r, PlayerId(1), budget).unwrap();
            let empty = update.entered().is_empty()
                && update.changed().is_empty()
                && update.left().is_empty();
            let mut out = Vec::new();
            write_binary(&update, &mut out).unwrap();
            apply(&mut world, &out);
            view.confirm(update);
            quiet = if empty { quiet + 1 } else { 0 };
        }
        let r = round(&mut app);
        let mut expected = ClientWorld::new();
        for (slot, e) in r.entities().iter().enumerate() {
            let (x, y) = e.at.unwrap();
            if x * x + y * y <= r.settings().radius.powi(2) {
                let components = r
                    .values(slot as u32)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((i as u8, v.as_ref()?.binary()?.to_vec())))
                    .collect();
                expected.insert(e.id, components);
            }
        }
        assert!(expected.len() > 10, "phase {phase}: a crowd in range");
        assert_eq!(world, expected, "phase {phase}");
        assert_eq!(view.known(), expected.len(), "phase {phase}");
    }
}

/// Wire ids count up as entities start replicating and are never given again, however
/// often entity indexes are reused: a client that still shows a gone entity can never
/// mistake a newcomer for it, and ids stay one or two bytes.
#[test]
fn wire_ids_stay_small_and_are_never_reused() {
    let mut app = app();
    let mut seen = std::collections::HashSet::new();
    for i in 0..300 {
        let e = spawn(&mut app, i + 1, 0.0, 0.0);
        round(&mut app);
        let id = bits(&app, e);
        assert!(seen.insert(id), "id {id} given twice");
        app.world_mut().despawn(e); // its index is reused by the next spawn
    }
    let r = round(&mut app);
    assert!(r.entities().is_empty());
    assert!(seen.iter().all(|&id| id < 300), "{:?}", seen.iter().max());
}

/// The encoded forms a registry of this app gives `value` (as a neighbouring zone's would).
fn encoded<C: Send + Sync + 'static, E: ReplicationEncoding<C>>(value: C) -> Option<EncodedValue> {
    let value = ComponentValue::new::<C, E>(value, 1);
    Some(EncodedValue {
        binary: value.binary()?.into(),
        json: value.json()?.to_owned(),
    })
}

fn replica(x: f32, player: u64) -> EncodedReplica {
    EncodedReplica {
        at: (x, 0.0),
        values: vec![
            encoded::<_, QuantisedPositionEncoding>(Position { x, y: 0.0 }),
            encoded::<_, SerdeEncoding>(PlayerId(player)),
        ],
    }
}

#[test]
fn an_encoded_replica_enters_changes_and_leaves_like_any_entity() {
    let mut app = app();
    spawn(&mut app, 1, 0.0, 0.0);
    let remote = app.world_mut().spawn(replica(20.0, 9)).id();
    let mut view = ClientView::new();
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    let (slot, mask) = *update
        .entered()
        .iter()
        .find(|&&(slot, _)| r.entities()[slot as usize].player.is_none())
        .expect("the replica entered");
    assert_eq!(mask, 0b11, "with every component it carries");
    let mut json = String::new();
    write_json(&update, &mut json).unwrap();
    assert!(
        json.contains(r#""position":{"x":20.0,"y":0.0},"player_id":9"#),
        "{json}"
    );
    view.confirm(update);
    let id = r.entities()[slot as usize].id;

    // The same values again: nothing to send.
    app.world_mut().entity_mut(remote).insert(replica(20.0, 9));
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert!(
        update.changed().is_empty(),
        "equal values keep their version"
    );
    view.confirm(update);

    // It moved: only its position changes.
    app.world_mut().entity_mut(remote).insert(replica(25.0, 9));
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(ids(&r, update.changed()), vec![id]);
    assert_eq!(update.changed()[0].1, 0b01);
    view.confirm(update);

    // Out of the radius (interest by its position): it leaves.
    app.world_mut().entity_mut(remote).insert(replica(80.0, 9));
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.left(), &[id]);
    view.confirm(update);

    // Back, then despawned: it leaves.
    app.world_mut().entity_mut(remote).insert(replica(10.0, 9));
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    view.confirm(update);
    app.world_mut().despawn(remote);
    let r = round(&mut app);
    let update = view.compose(&r, PlayerId(1), BIG).unwrap();
    assert_eq!(update.left().len(), 1);
}

/// A player who joins between two rounds gets an early round in that very frame (with it in
/// it, marked early for the clients that already have an update to skip); frames without a
/// join or the cadence take no round.
#[test]
fn a_join_between_rounds_takes_an_early_round_in_that_frame() {
    let mut app = App::new();
    app.add_plugins(TimePlugin)
        .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
            10,
        )))
        .replicate_with::<Position, QuantisedPositionEncoding>()
        .replicate::<PlayerId>();
    app.update(); // the first frame has no time delta
    spawn(&mut app, 1, 0.0, 0.0);
    let mut latest = round(&mut app);
    assert!(latest.is_early(), "player 1 joined in that frame");
    // Up to the next round of the cadence (every 50 ms: five frames).
    for _ in 0..5 {
        latest = round(&mut app);
    }
    assert!(!latest.is_early(), "the cadence's round");
    let number = latest.number();
    assert_eq!(round(&mut app).number(), number, "no join, no round");
    let feed = app.world().resource::<ReplicationFeed>().clone();
    let (cadence, mut arrivals) = (feed.subscribe(), feed.subscribe_arrivals());
    spawn(&mut app, 2, 1.0, 0.0);
    let early = round(&mut app);
    assert_eq!(early.number(), number + 1);
    assert!(early.is_early());
    assert!(
        early.slot_of(PlayerId(2)).is_some(),
        "the new player is in it"
    );
    // Only the cell of every round has it: clients at the cadence are not woken for it.
    assert!(arrivals.has_changed().unwrap());
    assert_eq!(arrivals.borrow_and_update().number(), number + 1);
    assert!(!cadence.has_changed().unwrap());
    assert_eq!(cadence.borrow().number(), number);
}
