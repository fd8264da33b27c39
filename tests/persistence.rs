//! Persistence by change detection, batch flush, lease refresh and shutdown, through ECS
//! world fixtures, on every store.

mod common;

use std::time::Duration;

use common::{StoreFactory, config};
use hearth::demo_game::{Progress, Vitals};
use hearth::testing::TestServer;
use hearth_components::{Dirty, OwnershipLost, PlayerId, Position, SaveState, UnknownSections};
use hearth_systems::storage::StorePort;

fn xp(server: &TestServer, player: PlayerId) -> Option<u64> {
    server
        .stored(player)
        .map(|r| r.sections["progress"]["xp"].as_u64().unwrap())
}

fn give_xp(server: &mut TestServer, entity: bevy_ecs::entity::Entity, amount: u64) {
    server.world_mut().get_mut::<Progress>(entity).unwrap().xp += amount;
}

/// Real time since the server started.
fn elapsed(server: &TestServer) -> Duration {
    server
        .world()
        .resource::<bevy_time::Time<bevy_time::Real>>()
        .elapsed()
}

/// Runs frames until `secs` seconds since the server started.
fn advance_to(server: &mut TestServer, secs: f64) {
    let target = Duration::from_secs_f64(secs);
    server.advance(target.saturating_sub(elapsed(server)));
}

fn players_flushed(server: &TestServer) -> u64 {
    server
        .world()
        .resource::<hearth::systems::FlushStats>()
        .players_flushed
}

/// Saves a frame may submit with `players` online: those one frame's share of the 30 s
/// interval (300 frames of 100 ms), rounded up, plus one for the rounding of the pace.
fn slice_bound(players: u64) -> u64 {
    let frames_per_interval = (30.0 / TestServer::FRAME.as_secs_f64()).round() as u64;
    players.div_ceil(frames_per_interval) + 1
}

const SPREAD_PLAYERS: u64 = 600;

/// Everyone changes in one frame (a server-wide event): the saves are spread over the
/// interval, a slice per frame, and every player is written within the interval.
fn players_dirty_together_are_saved_in_slices_within_the_interval(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let ids: Vec<PlayerId> = (1..=SPREAD_PLAYERS).map(PlayerId).collect();
    let entities = server.join_many(&ids);
    for &e in &entities {
        give_xp(&mut server, e, 1);
    }
    server.frame(); // every player is marked dirty in this frame
    let dirty_at = elapsed(&server);
    let bound = slice_bound(SPREAD_PLAYERS);
    let (mut most, mut frames_saving) = (0, 0);
    let mut before = players_flushed(&server);
    // Up to the last frame of the interval, plus one to apply its results.
    while elapsed(&server) < dirty_at + Duration::from_secs(30) + TestServer::FRAME {
        server.frame();
        let now = players_flushed(&server);
        most = most.max(now - before);
        frames_saving += u64::from(now > before);
        before = now;
    }
    assert_eq!(before, SPREAD_PLAYERS, "each player saved once");
    assert!(
        most <= bound,
        "no frame saves more than one frame's share ({bound}); one saved {most}"
    );
    assert!(
        frames_saving >= SPREAD_PLAYERS / bound,
        "spread over the interval: {frames_saving} frames saved"
    );
    for &p in &ids {
        assert_eq!(xp(&server, p), Some(1), "{p} written within the interval");
    }
}

/// Everyone changes every frame (all players moving): each frame saves about its share,
/// and no player's stored record is ever more than an interval behind.
fn players_dirty_every_frame_are_saved_once_an_interval_in_even_slices(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let ids: Vec<PlayerId> = (1..=SPREAD_PLAYERS).map(PlayerId).collect();
    let entities = server.join_many(&ids);
    let bound = slice_bound(SPREAD_PLAYERS);
    let frames_per_interval = (30.0 / TestServer::FRAME.as_secs_f64()).round() as u64;
    let mut most = 0;
    let mut before = players_flushed(&server);
    // Two intervals; xp counts the frames, so the stored xp tells how old a record is.
    for frame in 1..=2 * frames_per_interval {
        for &e in &entities {
            give_xp(&mut server, e, 1);
        }
        server.frame();
        let now = players_flushed(&server);
        most = most.max(now - before);
        before = now;
        if frame == 2 * frames_per_interval {
            for &p in &ids {
                let stored = xp(&server, p).unwrap_or(0);
                assert!(
                    stored + frames_per_interval + 1 >= frame,
                    "{p}: stored xp {stored} at frame {frame} is more than an interval old"
                );
            }
        }
    }
    assert!(
        most <= bound,
        "no frame saves more than one frame's share ({bound}); one saved {most}"
    );
    assert!(
        before >= 2 * SPREAD_PLAYERS - bound,
        "each player saved about once an interval: {before} saves"
    );
}

fn changed_player_is_flushed_at_the_interval_and_not_before(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    give_xp(&mut server, e, 7);
    server.frame();
    assert!(
        server.world().get::<Dirty>(e).is_some(),
        "a change marks the player dirty"
    );
    server.advance_secs(25.0);
    assert_eq!(
        xp(&server, p),
        None,
        "nothing is written before the 30 s flush interval"
    );
    server.advance_secs(6.0);
    assert_eq!(
        xp(&server, p),
        Some(7),
        "the change is written once the interval passed"
    );
    assert!(server.world().get::<Dirty>(e).is_none());
    assert!(
        server
            .world()
            .get::<SaveState>(e)
            .unwrap()
            .in_flight
            .is_none()
    );
}

fn unchanged_player_is_not_flushed(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let changed = server.join(PlayerId(1));
    server.join(PlayerId(2));
    give_xp(&mut server, changed, 1);
    server.advance_secs(31.0);
    assert_eq!(xp(&server, PlayerId(1)), Some(1));
    assert_eq!(
        server.stored(PlayerId(2)),
        None,
        "a player without changes is not written"
    );
    let flush = server
        .world()
        .resource::<hearth::systems::FlushStats>()
        .clone();
    assert_eq!((flush.batches, flush.players_flushed), (1, 1));
    server.advance_secs(31.0);
    assert_eq!(
        server
            .world()
            .resource::<hearth::systems::FlushStats>()
            .batches,
        1,
        "no dirty player, no batch"
    );
}

fn change_during_an_in_flight_batch_is_not_lost(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    give_xp(&mut server, e, 1);
    server.frame();
    server.store().pause();
    server.flush_now();
    assert!(
        server
            .world()
            .get::<SaveState>(e)
            .unwrap()
            .in_flight
            .is_some(),
        "the batch is in flight"
    );
    give_xp(&mut server, e, 10);
    server.frame();
    assert!(
        server.world().get::<Dirty>(e).is_some(),
        "the change during the flight marks the player dirty again"
    );
    server.flush_now();
    assert_eq!(
        server
            .world()
            .resource::<hearth::systems::FlushStats>()
            .batches,
        1,
        "a player in flight is not put in a second batch"
    );
    server.store().resume();
    server.frame();
    server.frame();
    assert_eq!(
        xp(&server, p),
        Some(1),
        "the in-flight batch landed with the old state"
    );
    server.advance_secs(31.0);
    assert_eq!(
        xp(&server, p),
        Some(11),
        "the change made in flight is written by the next flush"
    );
}

fn failed_write_keeps_the_player_dirty_and_succeeds_later(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    give_xp(&mut server, e, 5);
    server.frame();
    server.store().set_unavailable(true);
    server.flush_now();
    assert_eq!(xp(&server, p), None);
    assert!(
        server.world().get::<Dirty>(e).is_some(),
        "a failed write leaves the player dirty"
    );
    server.store().set_unavailable(false);
    server.advance_secs(31.0);
    assert_eq!(xp(&server, p), Some(5), "the retry writes it");
}

/// Critical-event saves answer in the order they were asked for, also when one failed while
/// later ones waited behind it (a client hears level 2, 3, 4, never 3, 4, 2).
fn immediate_saves_answer_in_request_order_across_a_failed_save(stores: &dyn StoreFactory) {
    use hearth_components::{SaveNowRequest, SavedNow};
    let mut server = stores.server(config("a"));
    let e = server.join(PlayerId(1));
    let mut answered = Vec::new();
    let frame = |server: &mut TestServer, answered: &mut Vec<u64>| {
        server.frame();
        answered.extend(server.read_messages::<SavedNow>().iter().map(|s| s.tag));
    };
    server.store().pause();
    server
        .world_mut()
        .write_message(SaveNowRequest { entity: e, tag: 2 });
    frame(&mut server, &mut answered); // the save of tag 2 is in flight, held
    for tag in [3, 4] {
        server
            .world_mut()
            .write_message(SaveNowRequest { entity: e, tag });
        frame(&mut server, &mut answered); // waiting behind it
    }
    server.store().set_unavailable(true);
    server.store().resume(); // the save of tag 2 fails
    frame(&mut server, &mut answered);
    server.store().set_unavailable(false);
    for _ in 0..30 {
        frame(&mut server, &mut answered);
    }
    assert_eq!(answered, [2, 3, 4]);
}

fn a_player_whose_save_is_refused_as_stale_is_dropped_and_its_lease_released(
    stores: &dyn StoreFactory,
) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    // A newer record appears under the player (an operator's import, say).
    let newer = br#"{"version":2,"seq":50,"id":1,"sections":{"progress":{"xp":999,"level":10}}}"#;
    server.store().put_raw_record(p, newer.to_vec());
    give_xp(&mut server, e, 5);
    server.flush_now();
    server.frame();
    assert!(server.world().get_entity(e).is_err(), "dropped");
    assert_eq!(xp(&server, p), Some(999), "the newer record is kept");
    assert_eq!(
        server.store().lease_owner(p),
        None,
        "the lease is not left held"
    );
    server.join(p);
}

fn lease_refresh_keeps_leases_alive_past_their_ttl(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    assert_eq!(server.store().lease_owner(p), Some(server.lease_owner()));
    server.advance_secs(150.0); // 2.5 lease TTLs
    assert_eq!(
        server.store().lease_owner(p),
        Some(server.lease_owner()),
        "refreshed leases outlive their TTL"
    );
    assert!(server.world().get_entity(e).is_ok());
}

fn lease_taken_by_another_owner_removes_the_player_without_saving(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    give_xp(&mut server, e, 3);
    server.flush_now();
    assert_eq!(xp(&server, p), Some(3));
    give_xp(&mut server, e, 100);
    server.store().force_lease(p, "b", Duration::from_secs(60));
    server.advance_secs(21.0); // one refresh interval
    assert!(
        server.world().get_entity(e).is_err(),
        "the player is removed"
    );
    let lost: Vec<OwnershipLost> = server.read_messages();
    assert!(
        lost.iter().any(|l| l.player == p)
            || server
                .world()
                .resource::<hearth::systems::TickMetrics>()
                .ownership_lost()
                == 1
    );
    server.advance_secs(31.0);
    assert_eq!(
        xp(&server, p),
        Some(3),
        "nothing was saved after the lease was lost"
    );
    assert_eq!(
        server.store().lease_owner(p).as_deref(),
        Some("b"),
        "the other owner's lease is untouched"
    );
}

/// Joins a player, saves 5 xp, gains 7 more unsaved, then runs 90 s (1.5 lease TTLs) with the
/// store unavailable: refreshes and saves fail and the lease expires in the store.
fn outage_longer_than_the_lease(server: &mut TestServer, p: PlayerId) -> bevy_ecs::entity::Entity {
    let e = server.join(p);
    give_xp(server, e, 5);
    server.flush_now();
    assert_eq!(xp(server, p), Some(5));
    give_xp(server, e, 7);
    server.frame();
    server.store().set_unavailable(true);
    server.advance_secs(90.0);
    assert_eq!(
        server.store().lease_owner(p),
        None,
        "the lease expired during the outage"
    );
    e
}

fn an_outage_longer_than_the_lease_ttl_loses_nothing_if_nobody_took_the_player(
    stores: &dyn StoreFactory,
) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = outage_longer_than_the_lease(&mut server, p);
    assert!(
        server.world().get_entity(e).is_ok(),
        "online through the outage"
    );

    server.store().set_unavailable(false);
    server.advance_secs(31.0); // a lease refresh and a flush

    assert!(server.world().get_entity(e).is_ok(), "still online");
    assert_eq!(
        xp(&server, p),
        Some(12),
        "the progress made before and during the outage is saved"
    );
    assert_eq!(
        server.store().lease_owner(p),
        Some(server.lease_owner()),
        "the lease is ours again"
    );
    server.advance_secs(70.0); // more than a lease TTL
    assert_eq!(
        server.store().lease_owner(p),
        Some(server.lease_owner()),
        "and refreshed as before"
    );
}

fn after_a_long_outage_a_player_written_elsewhere_meanwhile_is_dropped(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = outage_longer_than_the_lease(&mut server, p);
    // Meanwhile another server claimed the player, played and saved it, and released it.
    let elsewhere =
        br#"{"version":2,"seq":50,"id":1,"sections":{"progress":{"xp":999,"level":10}}}"#;
    server.store().put_raw_record(p, elsewhere.to_vec());

    server.store().set_unavailable(false);
    server.advance_secs(31.0);

    assert!(
        server.world().get_entity(e).is_err(),
        "the player is dropped"
    );
    assert_eq!(
        xp(&server, p),
        Some(999),
        "the other server's record is kept"
    );
    assert_eq!(server.store().lease_owner(p), None, "no lease was taken");
}

fn a_lost_save_and_a_lost_refresh_in_one_frame_drop_the_player_without_a_panic(
    stores: &dyn StoreFactory,
) {
    use bevy_app::PreUpdate;
    use bevy_ecs::schedule::IntoScheduleConfigs;
    use hearth::systems::{PersistenceSystems, SessionSystems};
    let mut server = stores.server(config("a"));
    // Save results first, with no command flush before refresh results: the order the
    // scheduler may pick (the refresh's follow-up save must tolerate the despawn).
    server.app().configure_sets(
        PreUpdate,
        SessionSystems::ApplyResults.after_ignore_deferred(PersistenceSystems::ApplyResults),
    );
    let p = PlayerId(1);
    let e = server.join(p);
    advance_to(&mut server, 45.0); // past the refresh at 40 s
    give_xp(&mut server, e, 5);
    server.store().force_lease(p, "b", Duration::from_secs(60));
    advance_to(&mut server, 59.9);
    // The batch save goes out in the frame of the refresh at 60 s: both come back lost.
    server
        .world_mut()
        .resource_mut::<hearth::systems::FlushSchedule>()
        .flush_now();
    advance_to(&mut server, 65.0);
    assert!(server.world().get_entity(e).is_err(), "dropped");
    assert_eq!(server.store().lease_owner(p).as_deref(), Some("b"));
}

fn older_sequence_never_overwrites_a_newer_one(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    give_xp(&mut server, e, 1);
    server.flush_now();
    let newer = br#"{"version":2,"seq":50,"id":1,"sections":{"progress":{"xp":999,"level":10}}}"#;
    server.store().put_raw_record(p, newer.to_vec());
    give_xp(&mut server, e, 1);
    server.flush_now();
    assert_eq!(
        xp(&server, p),
        Some(999),
        "the stale snapshot did not overwrite the newer record"
    );
    assert!(
        server.world().get_entity(e).is_err(),
        "a player whose record moved on elsewhere is dropped"
    );
}

fn unknown_sections_survive_a_round_trip(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let stored = br#"{"version":2,"seq":4,"id":1,"sections":{"progress":{"xp":10,"level":1},"pet":{"name":"rex","age":3}}}"#;
    server.store().put_raw_record(p, stored.to_vec());
    let e = server.join(p);
    assert!(server.world().get::<UnknownSections>(e).is_some());
    give_xp(&mut server, e, 5);
    server.flush_now();
    let record = server.stored(p).unwrap();
    assert_eq!(record.seq, 5);
    assert_eq!(record.sections["progress"]["xp"], 15);
    assert_eq!(
        record.sections["pet"],
        serde_json::json!({"name": "rex", "age": 3}),
        "unknown section written back unchanged"
    );
}

fn v1_record_migrates_on_load(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(7);
    let v1 = br#"{"version":1,"id":7,"x":3.5,"y":-1.0,"hp":80,"max_hp":100,"xp":250,"level":3}"#;
    server.store().put_raw_record(p, v1.to_vec());
    let e = server.join(p);
    assert_eq!(
        *server.world().get::<Position>(e).unwrap(),
        Position { x: 3.5, y: -1.0 }
    );
    assert_eq!(
        *server.world().get::<Vitals>(e).unwrap(),
        Vitals {
            hp: 80,
            max_hp: 100
        }
    );
    assert_eq!(
        *server.world().get::<Progress>(e).unwrap(),
        Progress { xp: 250, level: 3 }
    );
    server.world_mut().get_mut::<Position>(e).unwrap().x = 4.0;
    server.flush_now();
    let raw = String::from_utf8(server.store().raw_record(p).unwrap()).unwrap();
    assert!(
        raw.starts_with(r#"{"version":2,"seq":1,"#),
        "written back as v2: {raw}"
    );
}

/// Records a join must refuse: each is left exactly as stored, the lease is released, and the
/// refusal names the reason.
fn unusable_records_are_refused_untouched_and_their_lease_released(stores: &dyn StoreFactory) {
    use hearth_components::JoinRefusal;
    let mut server = stores.server(config("a"));
    let cases: [(&str, &str); 4] = [
        // A v1 field of the wrong type used to load as its default (xp 0) and be overwritten.
        (r#"{"version":1,"id":1,"x":3.5,"xp":"650","level":7}"#, "xp"),
        // A record stored under another player's key.
        (
            r#"{"version":2,"seq":4,"id":99,"sections":{}}"#,
            "player 99",
        ),
        // A sequence near u64::MAX used to load, then wrap and never save again.
        (
            r#"{"version":2,"seq":18446744073709551614,"id":3,"sections":{}}"#,
            "sequence",
        ),
        (r#"{"version":2,"seq":"5","id":4,"sections":{}}"#, "layout"),
    ];
    for (i, (raw, why)) in cases.iter().enumerate() {
        let p = PlayerId(i as u64 + 1);
        server.store().put_raw_record(p, raw.as_bytes().to_vec());
        match server.try_join(p) {
            Err(JoinRefusal::BadRecord(reason)) => {
                assert!(reason.contains(why), "{raw}: refused for {reason}")
            }
            other => panic!("{raw}: expected a refusal, got {other:?}"),
        }
        assert_eq!(server.store().lease_owner(p), None, "{raw}: lease released");
        server.advance_secs(31.0);
        assert_eq!(
            server.store().raw_record(p).as_deref(),
            Some(raw.as_bytes()),
            "{raw}: left untouched"
        );
    }
}

fn shutdown_saves_everyone_and_releases_leases(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let players: Vec<_> = (1..=50)
        .map(PlayerId)
        .map(|p| (p, server.join(p)))
        .collect();
    for (i, (_, e)) in players.iter().enumerate() {
        give_xp(&mut server, *e, i as u64 + 1);
    }
    server.frame();
    let report = server.shutdown(Duration::from_secs(10));
    assert!(report.unsaved.is_empty(), "{report:?}");
    for (i, (p, _)) in players.iter().enumerate() {
        assert_eq!(
            xp(&server, *p),
            Some(i as u64 + 1),
            "player {p} saved at shutdown"
        );
        assert_eq!(
            server.store().lease_owner(*p),
            None,
            "lease of {p} released"
        );
    }
}

fn shutdown_that_cannot_save_reports_who_was_not_saved(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let e = server.join(PlayerId(1));
    give_xp(&mut server, e, 1);
    server.frame();
    server.store().set_unavailable(true);
    let report = server.shutdown(Duration::from_millis(500));
    assert_eq!(report.unsaved, vec![PlayerId(1)]);
    server.store().set_unavailable(false);
}

fn a_join_in_flight_at_shutdown_is_released_and_new_joins_are_refused(stores: &dyn StoreFactory) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    server.store().pause();
    server
        .world_mut()
        .write_message(hearth_components::JoinRequest {
            player: p,
            origin: 1,
        });
    server.frame(); // the claim is in flight, held by the store
    server.store().resume();
    let report = server.shutdown(Duration::from_secs(10));
    assert!(report.unsaved.is_empty(), "{report:?}");
    assert_eq!(
        server.store().lease_owner(p),
        None,
        "the lease claimed during shutdown was released"
    );
    assert!(
        matches!(
            server.try_join(PlayerId(2)),
            Err(hearth_components::JoinRefusal::Unavailable(_))
        ),
        "no join once shutdown began"
    );
}

fn a_leave_during_an_in_flight_batch_saves_the_latest_state_and_releases(
    stores: &dyn StoreFactory,
) {
    let mut server = stores.server(config("a"));
    let p = PlayerId(1);
    let e = server.join(p);
    give_xp(&mut server, e, 1);
    server.frame();
    server.store().pause();
    server.flush_now(); // batch save of xp 1 in flight
    give_xp(&mut server, e, 10);
    server
        .world_mut()
        .write_message(hearth_components::LeaveRequest {
            entity: e,
            origin: 0,
        });
    server.frame(); // leaving now; the final save waits for the batch in flight
    server.store().resume();
    server.leave(e); // the batch lands, then the final save writes xp 11 and releases
    assert_eq!(
        xp(&server, p),
        Some(11),
        "the leave saved the state after the batch"
    );
    assert_eq!(
        server.store().lease_owner(p),
        None,
        "the leave released the lease"
    );
}

fn a_player_online_here_or_elsewhere_cannot_join_twice(stores: &dyn StoreFactory) {
    let mut a = stores.server(config("a"));
    let mut b = stores.server(config("b"));
    let p = PlayerId(1);
    let e = a.join(p);
    assert!(matches!(
        a.try_join(p),
        Err(hearth_components::JoinRefusal::AlreadyOnline { .. })
    ));
    assert!(matches!(
        b.try_join(p),
        Err(hearth_components::JoinRefusal::AlreadyOnline { .. })
    ));
    give_xp(&mut a, e, 9);
    a.leave(e);
    assert_eq!(a.store().lease_owner(p), None);
    let e2 = b.join(p);
    assert_eq!(
        b.world().get::<Progress>(e2).unwrap().xp,
        9,
        "the second server gets the state saved at leave"
    );
}

/// Leases are refreshed in slices over the refresh interval (not all in one frame), and
/// every lease is refreshed, so every one outlives several lease TTLs.
fn lease_refreshes_are_spread_over_the_interval_and_reach_everyone(stores: &dyn StoreFactory) {
    use std::sync::atomic::Ordering;

    let mut cfg = config("a");
    cfg.sessions.lease_refresh_interval = Duration::from_secs(2);
    cfg.store.settings.lease_ttl = Duration::from_secs(6);
    let mut server = stores.server(cfg);
    let players: Vec<PlayerId> = (1..=200).map(PlayerId).collect();
    server.join_many(&players);
    let refreshed = |server: &TestServer| {
        let metrics = server.world().resource::<StorePort>().metrics();
        metrics.refreshes.load(Ordering::Relaxed)
    };
    // Three lease TTLs, a frame (100 ms) at a time.
    let (mut most, mut frames_refreshing) = (0, 0);
    for _ in 0..180 {
        let before = refreshed(&server);
        server.frame();
        let now = refreshed(&server) - before;
        most = most.max(now);
        frames_refreshing += usize::from(now > 0);
    }
    // 200 leases over 2 s in 100 ms slices: 10 a slice, not 200 in one frame.
    assert!(most <= 20, "{most} leases refreshed in one frame");
    assert!(
        frames_refreshing >= 150,
        "{frames_refreshing} frames refreshed"
    );
    assert!(
        refreshed(&server) >= 8 * 200,
        "about 9 refreshes of each lease"
    );
    for &p in &players {
        assert_eq!(
            server.store().lease_owner(p),
            Some(server.lease_owner()),
            "player {p:?}: refreshed past three lease TTLs"
        );
    }
}

on_every_store!(
    changed_player_is_flushed_at_the_interval_and_not_before,
    unusable_records_are_refused_untouched_and_their_lease_released,
    immediate_saves_answer_in_request_order_across_a_failed_save,
    a_player_whose_save_is_refused_as_stale_is_dropped_and_its_lease_released,
    unchanged_player_is_not_flushed,
    change_during_an_in_flight_batch_is_not_lost,
    failed_write_keeps_the_player_dirty_and_succeeds_later,
    lease_refresh_keeps_leases_alive_past_their_ttl,
    lease_taken_by_another_owner_removes_the_player_without_saving,
    older_sequence_never_overwrites_a_newer_one,
    unknown_sections_survive_a_round_trip,
    v1_record_migrates_on_load,
    shutdown_saves_everyone_and_releases_leases,
    shutdown_that_cannot_save_reports_who_was_not_saved,
    a_player_online_here_or_elsewhere_cannot_join_twice,
    a_join_in_flight_at_shutdown_is_released_and_new_joins_are_refused,
    a_leave_during_an_in_flight_batch_saves_the_latest_state_and_releases,
    an_outage_longer_than_the_lease_ttl_loses_nothing_if_nobody_took_the_player,
    after_a_long_outage_a_player_written_elsewhere_meanwhile_is_dropped,
    a_lost_save_and_a_lost_refresh_in_one_frame_drop_the_player_without_a_panic,
    players_dirty_together_are_saved_in_slices_within_the_interval,
    players_dirty_every_frame_are_saved_once_an_interval_in_even_slices,
    lease_refreshes_are_spread_over_the_interval_and_reach_everyone,
);
