//! The Redis store against a real `redis-server` per test (started on a free port by
//! `common::redis_server`): key layout, script semantics, round trips, connections,
//! recovery, NOSCRIPT, a hung server, and start-up errors. The tests of the store's semantics
//! run twice (`on_one_redis_and_a_cluster!`): on one Redis and on a 3-master Redis Cluster.

mod common;

on_one_redis_and_a_cluster!(
    record_round_trip_is_plain_json_under_the_player_key,
    save_is_refused_for_a_server_that_does_not_own_the_lease,
    an_expired_lease_is_re_claimed_by_a_save_only_if_nobody_wrote_since,
    an_older_or_equal_sequence_is_refused_and_release_still_happens,
    claim_reclaim_refresh_and_release_follow_the_lease_rules,
    a_batch_save_answers_each_player_in_order_across_script_calls,
    a_player_redis_refuses_fails_alone_within_its_script_call,
    a_batch_refresh_answers_each_lease_in_order_and_touches_only_its_own,
    a_record_that_cannot_be_decoded_is_refused_untouched_and_the_lease_released,
    noscript_after_script_flush_is_handled_on_every_path,
    saving_together_writes_every_record_or_none,
);

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bevy_ecs::entity::Entity;
use common::redis_cluster::{RedisCluster, TestRedis};
use common::redis_server::{RedisServer, free_port};
use crossbeam_channel::Receiver;
use hearth::config::ServerConfig;
use hearth::demo_game::Progress;
use hearth::store::redis::cluster::{player_slot, slot_of};
use hearth::store::{OpenError, RedisStore};
use hearth::testing::{RedisTestStore, TestServer, test_config};
use hearth_components::{JoinRefusal, PlayerId, PlayerRecord, StoreSelection};
use hearth_systems::storage::{
    JoinGrant, Lane, LeaseItem, PlayerSnapshot, PlayerStore, RefreshOutcome, RefreshResult,
    SaveItem, SaveOutcome, SaveResult, StoreCompletion, StoreJob, StoreMetrics,
};
use redis::{Commands, ConnectionLike};

/// How long a test waits for any one completion before declaring the store stuck. A bound
/// against hanging forever, not a performance assertion.
const STUCK: Duration = Duration::from_secs(60);

/// The boot token of every store these tests open directly, so a test can name the lease
/// owner of store `a` as `a/boot` (see `StoreSettings::lease_owner`).
const BOOT: &str = "boot";

fn config(instance: &str, url: &str) -> ServerConfig {
    let mut config = test_config(instance);
    config.store.settings.selection = StoreSelection::parse(url).expect("a Redis URL");
    config.store.settings.boot_token = BOOT.into();
    config
}

/// A store opened directly (no ECS), with its completion channel.
struct Store {
    store: RedisStore,
    completions: Receiver<StoreCompletion>,
}

impl Store {
    fn open(config: &ServerConfig) -> Self {
        let (StoreSelection::Redis(url) | StoreSelection::RedisCluster(url)) =
            &config.store.settings.selection
        else {
            panic!("not a Redis config")
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let store =
            RedisStore::open(&config.store.settings, url, tx).expect("opening the Redis store");
        Self {
            store,
            completions: rx,
        }
    }

    fn next(&self) -> StoreCompletion {
        self.completions
            .recv_timeout(STUCK)
            .expect("the store answered the job")
    }

    fn join(&self, player: PlayerId) -> Result<JoinGrant, JoinRefusal> {
        self.store.submit(StoreJob::Join { ticket: 1, player });
        match self.next() {
            StoreCompletion::Joined { result, .. } => result,
            other => panic!("expected a join completion, got {other:?}"),
        }
    }

    fn save(&self, lane: Lane, items: Vec<SaveItem>) -> Vec<SaveResult> {
        self.store.submit(StoreJob::Save {
            lane,
            batch: 1,
            items,
        });
        match self.next() {
            StoreCompletion::Saved { results, .. } => results,
            other => panic!("expected a save completion, got {other:?}"),
        }
    }

    fn save_together(&self, items: Vec<SaveItem>) -> Vec<SaveOutcome> {
        self.store
            .submit(StoreJob::SaveTogether { batch: 1, items });
        match self.next() {
            StoreCompletion::Saved { results, .. } => {
                results.into_iter().map(|r| r.outcome).collect()
            }
            other => panic!("expected a save completion, got {other:?}"),
        }
    }

    fn save_one(&self, player: PlayerId, seq: u64, xp: u64, release: bool) -> SaveOutcome {
        let mut results = self.save(Lane::Interactive, vec![item(player, seq, xp, release)]);
        assert_eq!(results.len(), 1);
        results.remove(0).outcome
    }

    fn refresh(&self, players: impl IntoIterator<Item = PlayerId>) -> Vec<RefreshResult> {
        let leases = players
            .into_iter()
            .map(|player| LeaseItem {
                entity: Entity::PLACEHOLDER,
                player,
            })
            .collect();
        self.store.submit(StoreJob::Refresh { batch: 1, leases });
        match self.next() {
            StoreCompletion::Refreshed { results, .. } => results,
            other => panic!("expected a refresh completion, got {other:?}"),
        }
    }

    fn release(&self, player: PlayerId) {
        self.store.submit(StoreJob::Release { player });
        assert!(matches!(self.next(), StoreCompletion::Released { .. }));
    }

    fn metric(&self, counter: impl Fn(&StoreMetrics) -> &AtomicU64) -> u64 {
        StoreMetrics::get(counter(self.store.metrics()))
    }
}

fn item(player: PlayerId, seq: u64, xp: u64, release: bool) -> SaveItem {
    SaveItem {
        entity: Entity::PLACEHOLDER,
        snapshot: PlayerSnapshot {
            player,
            seq,
            sections: vec![("progress", Box::new(Progress { xp, level: 1 }))],
            unknown: BTreeMap::new(),
        },
        release,
        last_stored_seq: 0,
    }
}

fn players(n: u64) -> impl Iterator<Item = PlayerId> {
    (1..=n).map(PlayerId)
}

fn stored(conn: &mut impl ConnectionLike, player: PlayerId) -> Option<PlayerRecord> {
    let bytes: Option<Vec<u8>> = conn.get(format!("hearth:player:{{{}}}", player.0)).unwrap();
    bytes.map(|b| PlayerRecord::decode(&b).expect("stored record decodes"))
}

fn owner(conn: &mut impl ConnectionLike, player: PlayerId) -> Option<String> {
    conn.get(format!("hearth:session:{{{}}}", player.0))
        .unwrap()
}

fn pttl(conn: &mut impl ConnectionLike, player: PlayerId) -> i64 {
    conn.pttl(format!("hearth:session:{{{}}}", player.0))
        .unwrap()
}

/// `SCRIPT FLUSH` on every master: the store's scripts are gone everywhere.
fn script_flush(redis: &dyn TestRedis) {
    for mut conn in redis.masters_connections() {
        redis::cmd("SCRIPT").arg("FLUSH").exec(&mut conn).unwrap();
    }
}

fn xp_of(record: &PlayerRecord) -> u64 {
    record.sections["progress"]["xp"].as_u64().unwrap()
}

fn record_round_trip_is_plain_json_under_the_player_key(redis: &dyn TestRedis) {
    let store = Store::open(&config("a", &redis.url()));
    let p = PlayerId(42);
    let grant = store.join(p).expect("claim");
    assert!(grant.record.is_none(), "a new player has no record");
    assert_eq!(grant.lease_key, "hearth:session:{42}");
    assert_eq!(store.save_one(p, 1, 250, false), SaveOutcome::Saved);

    let mut conn = redis.inspector();
    let raw: Vec<u8> = conn.get("hearth:player:{42}").unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.starts_with(r#"{"version":2,"seq":1,"id":42,"#),
        "record layout: {text}"
    );
    let record = stored(&mut conn, p).unwrap();
    assert_eq!(record.seq, 1);
    assert_eq!(
        record.sections["progress"],
        serde_json::json!({"xp": 250, "level": 1})
    );
    assert_eq!(owner(&mut conn, p).as_deref(), Some("a/boot"));

    store.release(p);
    let again = store.join(p).expect("re-join after release");
    assert_eq!(
        again.record,
        Some(record),
        "the join loads what was saved, in the same round trip as the claim"
    );
    assert_eq!(store.metric(|m| &m.saves), 1);
    assert_eq!(store.metric(|m| &m.loads), 2);
}

fn save_is_refused_for_a_server_that_does_not_own_the_lease(redis: &dyn TestRedis) {
    let a = Store::open(&config("a", &redis.url()));
    let b = Store::open(&config("b", &redis.url()));
    let mut conn = redis.inspector();
    let p = PlayerId(1);

    let foreign = br#"{"version":2,"seq":5,"id":1,"sections":{"progress":{"xp":7,"level":1}}}"#;
    let _: () = conn.set("hearth:player:{1}", &foreign[..]).unwrap();
    assert_eq!(
        a.save_one(p, 6, 1, false),
        SaveOutcome::LeaseLost,
        "no lease, and a record this server never stored: nothing written"
    );
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 7);
    assert_eq!(owner(&mut conn, p), None, "no lease taken");
    let _: () = conn.del("hearth:player:{1}").unwrap();

    a.join(p).unwrap();
    assert_eq!(a.save_one(p, 1, 10, false), SaveOutcome::Saved);
    assert_eq!(
        b.save_one(p, 2, 99, true),
        SaveOutcome::LeaseLost,
        "b does not own the lease"
    );
    assert_eq!(
        xp_of(&stored(&mut conn, p).unwrap()),
        10,
        "a's record intact"
    );
    assert_eq!(
        owner(&mut conn, p).as_deref(),
        Some("a/boot"),
        "b's release flag did not touch a's lease"
    );
    assert_eq!(b.metric(|m| &m.saves_lease_lost), 1);
}

fn an_expired_lease_is_re_claimed_by_a_save_only_if_nobody_wrote_since(redis: &dyn TestRedis) {
    let a = Store::open(&config("a", &redis.url()));
    let b = Store::open(&config("b", &redis.url()));
    let mut conn = redis.inspector();
    let p = PlayerId(1);
    let ttl_ms = test_config("a").store.settings.lease_ttl.as_millis() as i64;
    let save = |store: &Store, seq, last_stored_seq, xp| {
        let mut item = item(p, seq, xp, false);
        item.last_stored_seq = last_stored_seq;
        store.save(Lane::Periodic, vec![item]).remove(0).outcome
    };
    a.join(p).unwrap();
    assert_eq!(save(&a, 1, 0, 10), SaveOutcome::Saved);

    // The lease expires (an outage longer than its TTL); nobody writes the player meanwhile.
    let _: () = conn.del("hearth:session:{1}").unwrap();
    assert_eq!(
        save(&a, 2, 1, 20),
        SaveOutcome::Saved,
        "re-claimed and saved"
    );
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 20);
    assert_eq!(owner(&mut conn, p).as_deref(), Some("a/boot"));
    let pttl = pttl(&mut conn, p);
    assert!(pttl > 0 && pttl <= ttl_ms, "re-claimed with the lease TTL");

    // Expired again, and the record moved on since what this save believes was stored last:
    // another server had the player. Nothing is written and no lease is taken.
    let _: () = conn.del("hearth:session:{1}").unwrap();
    assert_eq!(save(&a, 3, 1, 30), SaveOutcome::LeaseLost);
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 20);
    assert_eq!(owner(&mut conn, p), None);

    // Another server holds the lease: never taken, whatever the record.
    b.join(p).unwrap();
    assert_eq!(save(&a, 3, 2, 30), SaveOutcome::LeaseLost);
    assert_eq!(owner(&mut conn, p).as_deref(), Some("b/boot"));
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 20);
}

fn an_older_or_equal_sequence_is_refused_and_release_still_happens(redis: &dyn TestRedis) {
    let store = Store::open(&config("a", &redis.url()));
    let mut conn = redis.inspector();
    let p = PlayerId(1);
    store.join(p).unwrap();
    assert_eq!(store.save_one(p, 5, 50, false), SaveOutcome::Saved);
    assert_eq!(store.save_one(p, 5, 51, false), SaveOutcome::StaleSequence);
    assert_eq!(store.save_one(p, 3, 30, false), SaveOutcome::StaleSequence);
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 50);
    assert_eq!(store.save_one(p, 6, 60, false), SaveOutcome::Saved);
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 60);

    // A record written by a newer process (seq 50) fences every older snapshot.
    let newer = br#"{"version":2,"seq":50,"id":1,"sections":{"progress":{"xp":999,"level":9}}}"#;
    let _: () = conn.set("hearth:player:{1}", &newer[..]).unwrap();
    assert_eq!(store.save_one(p, 7, 70, true), SaveOutcome::StaleSequence);
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 999);
    assert_eq!(
        owner(&mut conn, p),
        None,
        "a stale final save still releases the lease it owns"
    );
    assert_eq!(store.metric(|m| &m.saves_stale), 3);

    // A record without a sequence (v1) counts as sequence 0.
    let v1 = br#"{"version":1,"id":1,"xp":5}"#;
    let _: () = conn.set("hearth:player:{1}", &v1[..]).unwrap();
    store.join(p).unwrap();
    assert_eq!(store.save_one(p, 1, 1, false), SaveOutcome::Saved);

    // Sequences are compared exactly over the whole u64 range: 2^53 + 1 is newer than 2^53,
    // though both are the same double-precision number (Lua's own number type).
    let big = 1u64 << 53;
    assert_eq!(store.save_one(p, big, 2, false), SaveOutcome::Saved);
    assert_eq!(store.save_one(p, big + 1, 3, false), SaveOutcome::Saved);
    assert_eq!(store.save_one(p, big, 4, false), SaveOutcome::StaleSequence);
    assert_eq!(store.save_one(p, u64::MAX, 5, false), SaveOutcome::Saved);
    assert_eq!(
        store.save_one(p, u64::MAX - 1, 6, false),
        SaveOutcome::StaleSequence
    );
    let raw: String = conn.get("hearth:player:{1}").unwrap();
    assert!(
        raw.starts_with(r#"{"version":2,"seq":18446744073709551615,"#),
        "{raw}"
    );
    // A stored sequence written with leading zeros (foreign data) still reads as its value.
    let padded = br#"{"version":2,"seq":0007,"id":1,"sections":{}}"#;
    let _: () = conn.set("hearth:player:{1}", &padded[..]).unwrap();
    assert_eq!(store.save_one(p, 7, 7, false), SaveOutcome::StaleSequence);
    assert_eq!(store.save_one(p, 8, 8, false), SaveOutcome::Saved);
}

fn claim_reclaim_refresh_and_release_follow_the_lease_rules(redis: &dyn TestRedis) {
    let url = redis.url();
    let a = Store::open(&config("a", &url));
    let b = Store::open(&config("b", &url));
    let mut conn = redis.inspector();
    let p = PlayerId(7);
    let ttl_ms = test_config("a").store.settings.lease_ttl.as_millis() as i64;

    a.join(p).expect("a claims a free lease");
    assert_eq!(owner(&mut conn, p).as_deref(), Some("a/boot"));
    assert!(pttl(&mut conn, p) > 0 && pttl(&mut conn, p) <= ttl_ms);
    assert_eq!(
        b.join(p).unwrap_err(),
        JoinRefusal::AlreadyOnline {
            owner: "a/boot".into()
        }
    );

    let _: () = conn.pexpire("hearth:session:{7}", 5_000).unwrap();
    a.join(p).expect("the owner may re-claim");
    assert!(
        pttl(&mut conn, p) > 5_000,
        "re-claiming extends the lease to the full TTL"
    );

    let _: () = conn.pexpire("hearth:session:{7}", 5_000).unwrap();
    let refreshed = b.refresh([p]);
    assert_eq!(refreshed[0].outcome, RefreshOutcome::LeaseLost);
    assert!(
        pttl(&mut conn, p) <= 5_000,
        "b's refresh did not extend a's lease"
    );
    let refreshed = a.refresh([p]);
    assert_eq!(refreshed[0].outcome, RefreshOutcome::Refreshed);
    assert!(pttl(&mut conn, p) > 5_000, "a's refresh extended it");

    b.release(p);
    assert_eq!(
        owner(&mut conn, p).as_deref(),
        Some("a/boot"),
        "a non-owner cannot release"
    );
    a.release(p);
    assert_eq!(owner(&mut conn, p), None, "the owner releases");
    assert_eq!(
        a.refresh([p])[0].outcome,
        RefreshOutcome::LeaseLost,
        "a released lease is not refreshed back into existence"
    );

    // An expired lease can be claimed by another server.
    a.join(p).unwrap();
    let _: () = conn.pexpire("hearth:session:{7}", 1).unwrap();
    while owner(&mut conn, p).is_some() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(a.refresh([p])[0].outcome, RefreshOutcome::LeaseLost);
    b.join(p).expect("b claims the expired lease");
    assert_eq!(owner(&mut conn, p).as_deref(), Some("b/boot"));
    assert_eq!(a.metric(|m| &m.refreshes), 1);
}

fn a_batch_save_answers_each_player_in_order_across_script_calls(redis: &dyn TestRedis) {
    // 90 players span several save.lua calls (the last one partial), each call mixing every
    // outcome; one record that cannot be encoded sits in the middle and is answered alone.
    let url = redis.url();
    let a = Store::open(&config("a", &url));
    let b = Store::open(&config("b", &url));
    let mut conn = redis.inspector();
    let unencodable = PlayerId(44);
    for p in players(90) {
        if p.0 % 4 == 1 {
            b.join(p).map(drop).expect("b claims");
        } else {
            a.join(p).map(drop).expect("a claims");
        }
        if p.0 % 4 == 2 {
            assert_eq!(a.save_one(p, 50, 1, false), SaveOutcome::Saved);
        }
    }
    let items = players(90)
        .map(|p| {
            let mut item = item(p, 10, 1000 + p.0, p.0 % 4 == 3);
            if p == unencodable {
                // JSON object keys must be strings: this section cannot be written.
                let bad: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
                item.snapshot.sections.push(("bad", Box::new(bad)));
            }
            item
        })
        .collect();

    let results = a.save(Lane::Periodic, items);

    assert_eq!(results.len(), 90);
    let mut results: Vec<_> = results.into_iter().map(|r| (r.player, r)).collect();
    results.sort_by_key(|(p, _)| p.0);
    for (p, result) in &results {
        let p = *p;
        assert_eq!(result.seq, 10);
        if p == unencodable {
            assert!(
                matches!(&result.outcome, SaveOutcome::Failed(e) if e.contains("encoding")),
                "{result:?}"
            );
            assert_eq!(stored(&mut conn, p), None, "nothing written for it");
            continue;
        }
        let expected = match p.0 % 4 {
            1 => SaveOutcome::LeaseLost,
            2 => SaveOutcome::StaleSequence,
            _ => SaveOutcome::Saved,
        };
        assert_eq!(result.outcome, expected, "{p:?}");
        let record = stored(&mut conn, p);
        match p.0 % 4 {
            1 => assert_eq!(record, None, "{p:?}: b's player not written"),
            2 => assert_eq!(xp_of(&record.unwrap()), 1, "{p:?}: newer record kept"),
            _ => assert_eq!(xp_of(&record.unwrap()), 1000 + p.0, "{p:?}: written"),
        }
        let expected_owner = match p.0 % 4 {
            1 => Some("b/boot"),
            3 => None,
            _ => Some("a/boot"),
        };
        assert_eq!(owner(&mut conn, p).as_deref(), expected_owner, "{p:?}");
    }
}

fn a_player_redis_refuses_fails_alone_within_its_script_call(redis: &dyn TestRedis) {
    // Redis does not undo a script that fails half-way: one player's error must not turn the
    // players before it (written) and after it into failures.
    let store = Store::open(&config("a", &redis.url()));
    let mut conn = redis.inspector();
    for p in players(3) {
        store.join(p).unwrap();
    }
    let _: () = conn.hset("hearth:player:{2}", "not", "a string").unwrap();

    let results = store.save(
        Lane::Periodic,
        players(3).map(|p| item(p, 5, 50, p.0 == 3)).collect(),
    );

    assert_eq!(results[0].outcome, SaveOutcome::Saved);
    assert!(
        matches!(&results[1].outcome, SaveOutcome::Failed(e) if e.contains("WRONGTYPE")),
        "{:?}",
        results[1].outcome
    );
    assert_eq!(results[2].outcome, SaveOutcome::Saved);
    assert_eq!(xp_of(&stored(&mut conn, PlayerId(1)).unwrap()), 50);
    assert_eq!(xp_of(&stored(&mut conn, PlayerId(3)).unwrap()), 50);
    assert_eq!(
        owner(&mut conn, PlayerId(2)).as_deref(),
        Some("a/boot"),
        "its lease untouched"
    );
    assert_eq!(
        owner(&mut conn, PlayerId(3)),
        None,
        "the release after the error happened"
    );
    assert_eq!(store.metric(|m| &m.save_errors), 1);
}

fn a_batch_refresh_answers_each_lease_in_order_and_touches_only_its_own(redis: &dyn TestRedis) {
    // 130 leases span several refresh.lua calls (the last one partial); every third is
    // another server's and every third missing, so each call mixes all outcomes.
    let url = redis.url();
    let a = Store::open(&config("a", &url));
    let b = Store::open(&config("b", &url));
    let mut conn = redis.inspector();
    let whose = |p: PlayerId| p.0 % 3;
    for p in players(130) {
        match whose(p) {
            0 => a.join(p).map(drop).expect("a claims"),
            1 => b.join(p).map(drop).expect("b claims"),
            _ => {}
        }
        if whose(p) != 2 {
            let _: () = conn
                .pexpire(format!("hearth:session:{{{}}}", p.0), 5_000)
                .unwrap();
        }
    }

    let results = a.refresh(players(130));

    assert_eq!(results.len(), 130);
    for (p, result) in players(130).zip(&results) {
        assert_eq!(result.player, p, "results come back in submission order");
        match whose(p) {
            0 => {
                assert_eq!(result.outcome, RefreshOutcome::Refreshed, "{p:?}");
                assert!(pttl(&mut conn, p) > 5_000, "{p:?}: a's lease extended");
            }
            1 => {
                assert_eq!(result.outcome, RefreshOutcome::LeaseLost, "{p:?}");
                assert_eq!(owner(&mut conn, p).as_deref(), Some("b/boot"));
                assert!(pttl(&mut conn, p) <= 5_000, "{p:?}: b's lease untouched");
            }
            _ => {
                assert_eq!(result.outcome, RefreshOutcome::LeaseLost, "{p:?}");
                assert_eq!(owner(&mut conn, p), None, "{p:?}: not re-created");
            }
        }
    }
    assert_eq!(a.metric(|m| &m.refreshes), 43);
    assert_eq!(a.metric(|m| &m.refresh_errors), 0);
}

fn a_record_that_cannot_be_decoded_is_refused_untouched_and_the_lease_released(
    redis: &dyn TestRedis,
) {
    let store = Store::open(&config("a", &redis.url()));
    let mut conn = redis.inspector();
    let from_the_future = br#"{"version":99,"seq":3,"id":1,"sections":{}}"#;
    let _: () = conn.set("hearth:player:{1}", &from_the_future[..]).unwrap();
    assert!(matches!(
        store.join(PlayerId(1)),
        Err(JoinRefusal::BadRecord(_))
    ));
    assert_eq!(owner(&mut conn, PlayerId(1)), None, "lease released again");
    let kept: Vec<u8> = conn.get("hearth:player:{1}").unwrap();
    assert_eq!(kept, from_the_future.to_vec(), "the record is kept intact");
}

#[test]
fn flush_and_refresh_cycles_open_no_new_connections() {
    let redis = RedisServer::start();
    let store = Store::open(&config("a", &redis.url()));
    let mut conn = redis.connection(); // opened before the baseline
    for p in players(1_000) {
        store.join(p).unwrap();
    }
    let baseline = redis.info_stat_on(&mut conn, "total_connections_received");
    for cycle in 1..=5u64 {
        let items = players(1_000)
            .map(|p| item(p, cycle, cycle * 10, false))
            .collect();
        let results = store.save(Lane::Periodic, items);
        assert!(results.iter().all(|r| r.outcome == SaveOutcome::Saved));
        let refreshed = store.refresh(players(1_000));
        assert!(
            refreshed
                .iter()
                .all(|r| r.outcome == RefreshOutcome::Refreshed)
        );
    }
    assert_eq!(
        redis.info_stat_on(&mut conn, "total_connections_received"),
        baseline,
        "5 flush + refresh cycles of 1,000 players opened no connection"
    );
    // One per lane and the liveness heartbeat's.
    assert_eq!(store.metric(|m| &m.connections_opened), 3);
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        clients.lines().count(),
        4,
        "the store's two lanes, its liveness heartbeat and this test's connection:\n{clients}"
    );
    assert_eq!(xp_of(&stored(&mut conn, PlayerId(1_000)).unwrap()), 50);
}

#[test]
fn a_10000_player_flush_costs_ceil_n_over_chunk_round_trips() {
    let redis = RedisServer::start();
    for chunk in [1_000usize, 1_500] {
        let mut cfg = config("a", &redis.url());
        cfg.store.settings.batch_chunk = chunk;
        cfg.store.settings.key_prefix = "hearth".into();
        let store = Store::open(&cfg);
        let n = 10_000u64;
        let expected = n.div_ceil(chunk as u64);
        // Claim the leases directly: 10,000 joins would be 10,000 round trips.
        let mut conn = redis.connection();
        let mut pipe = redis::pipe();
        for p in players(n) {
            pipe.cmd("SET")
                .arg(format!("hearth:session:{{{}}}", p.0))
                .arg("a/boot")
                .arg("PX")
                .arg(60_000)
                .ignore();
        }
        pipe.exec(&mut conn).unwrap();

        let before = store.metric(|m| &m.round_trips);
        let seq = chunk as u64; // newer on every pass
        let results = store.save(
            Lane::Periodic,
            players(n).map(|p| item(p, seq, p.0, false)).collect(),
        );
        assert_eq!(results.len(), n as usize);
        assert!(results.iter().all(|r| r.outcome == SaveOutcome::Saved));
        assert_eq!(
            store.metric(|m| &m.round_trips) - before,
            expected,
            "a flush of {n} with chunk {chunk} costs ceil(n/chunk) round trips"
        );

        let before = store.metric(|m| &m.round_trips);
        let refreshed = store.refresh(players(n));
        assert!(
            refreshed
                .iter()
                .all(|r| r.outcome == RefreshOutcome::Refreshed)
        );
        assert_eq!(store.metric(|m| &m.round_trips) - before, expected);
        assert_eq!(
            store.store.metrics().save_batch_latency.summary().count,
            expected,
            "one batch latency sample per chunk"
        );
        assert_eq!(
            store.store.metrics().save_record_latency.summary().count,
            n,
            "one record latency sample per save"
        );
        assert_eq!(xp_of(&stored(&mut conn, PlayerId(n)).unwrap()), n);
    }
}

#[test]
fn the_store_recovers_after_client_kill_and_writes_what_was_dirty() {
    let redis = RedisServer::start();
    let mut server = TestServer::on_redis(&redis.url(), test_config("a"));
    let players: Vec<_> = players(10).map(|p| (p, server.join(p))).collect();
    for (_, e) in &players {
        server.world_mut().get_mut::<Progress>(*e).unwrap().xp = 1;
    }
    server.flush_now();
    let mut conn = redis.connection();
    assert_eq!(xp_of(&stored(&mut conn, PlayerId(10)).unwrap()), 1);

    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(&mut conn)
        .unwrap();
    assert!(
        killed >= 2,
        "the store's connections were killed ({killed})"
    );
    for (_, e) in &players {
        server.world_mut().get_mut::<Progress>(*e).unwrap().xp = 2;
    }
    server.flush_now(); // may fail on the dead connection: the players stay dirty
    let mut joined = None;
    for _ in 0..5 {
        match server.try_join(PlayerId(11)) {
            Ok(e) => {
                joined = Some(e);
                break;
            }
            Err(JoinRefusal::Unavailable(_)) => continue,
            Err(other) => panic!("unexpected refusal {other}"),
        }
    }
    assert!(joined.is_some(), "joins work again after the kill");
    server.advance_secs(31.0);
    let mut conn = redis.connection();
    for (p, _) in &players {
        assert_eq!(
            xp_of(&stored(&mut conn, *p).unwrap()),
            2,
            "{p}: the change made around the kill was written after recovery"
        );
    }
    let metrics = hearth::systems::metrics::MetricsReport::read(server.world()).unwrap();
    // Three at start (the lanes and the liveness heartbeat), one reconnect per lane; the
    // heartbeat reconnects on its own real-time clock, by now or a moment later.
    assert!(
        (5..=6).contains(&metrics.connections_opened),
        "three at start, one reconnect per lane (and the heartbeat's): {}",
        metrics.connections_opened
    );
}

#[test]
fn the_store_recovers_after_a_redis_restart_with_nothing_lost() {
    let mut redis = RedisServer::start_durable();
    let cfg = test_config("a");
    let (port, fixture) = RedisTestStore::open(&redis.url(), &cfg.store.settings);
    let mut server = TestServer::on_store(cfg.clone(), port, fixture.clone());
    let players: Vec<_> = players(20).map(|p| (p, server.join(p))).collect();
    for (i, (_, e)) in players.iter().enumerate() {
        server.world_mut().get_mut::<Progress>(*e).unwrap().xp = i as u64;
    }
    server.flush_now();

    redis.kill();
    for (i, (_, e)) in players.iter().enumerate() {
        server.world_mut().get_mut::<Progress>(*e).unwrap().xp = 100 + i as u64;
    }
    server.flush_now();
    let errors = |server: &TestServer| {
        hearth::systems::metrics::MetricsReport::read(server.world())
            .unwrap()
            .save_errors
    };
    assert!(errors(&server) > 0, "saves failed while Redis was down");
    assert!(
        players
            .iter()
            .all(|(_, e)| server.world().get::<hearth_components::Dirty>(*e).is_some()),
        "failed saves leave the players dirty"
    );

    redis.restart();
    // The fixture's per-server ACL user is not persisted (no ACL file): create it again.
    fixture.restore_store_user();
    let mut conn = redis.connection();
    let all_written = |conn: &mut redis::Connection| {
        players
            .iter()
            .enumerate()
            .all(|(i, (p, _))| stored(conn, *p).map(|r| xp_of(&r)) == Some(100 + i as u64))
    };
    for _ in 0..4 {
        if all_written(&mut conn) {
            break;
        }
        server.advance_secs(31.0);
    }
    if !all_written(&mut conn) {
        let m = hearth::systems::metrics::MetricsReport::read(server.world()).unwrap();
        for (p, e) in &players {
            eprintln!(
                "{p}: online {} stored {:?} owner {:?}",
                server.world().get_entity(*e).is_ok(),
                stored(&mut conn, *p).map(|r| xp_of(&r)),
                owner(&mut conn, *p)
            );
        }
        panic!("every change made during the outage was written after the restart: {m:#?}");
    }
    for (p, e) in &players {
        assert!(server.world().get_entity(*e).is_ok(), "{p} still online");
        assert_eq!(
            owner(&mut conn, *p),
            Some(cfg.lease_owner()),
            "{p} lease kept"
        );
    }
}

fn noscript_after_script_flush_is_handled_on_every_path(redis: &dyn TestRedis) {
    let store = Store::open(&config("a", &redis.url()));
    let mut conn = redis.inspector();
    let p = PlayerId(1);
    store.join(p).unwrap();
    assert_eq!(store.save_one(p, 1, 1, false), SaveOutcome::Saved);
    for round in 2..=3u64 {
        script_flush(redis);
        let results = store.save(Lane::Periodic, vec![item(p, round, round, false)]);
        assert_eq!(results[0].outcome, SaveOutcome::Saved, "round {round}");
        script_flush(redis);
        assert_eq!(store.refresh([p])[0].outcome, RefreshOutcome::Refreshed);
        script_flush(redis);
        store.release(p);
        assert_eq!(owner(&mut conn, p), None, "release ran after SCRIPT FLUSH");
        script_flush(redis);
        store.join(p).expect("claim after SCRIPT FLUSH");
    }
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 3);
    assert_eq!(store.metric(|m| &m.save_errors), 0);
}

#[test]
fn a_hung_redis_fails_calls_at_the_timeout_then_the_store_recovers() {
    let redis = RedisServer::start();
    let mut cfg = config("a", &redis.url());
    cfg.store.settings.store_timeout = Duration::from_millis(300);
    let store = Store::open(&cfg);
    let p = PlayerId(1);
    store.join(p).unwrap();
    assert_eq!(store.save_one(p, 1, 1, false), SaveOutcome::Saved);

    redis.freeze(); // SIGSTOP: the kernel still accepts connections, nothing answers
    let results = store.save(Lane::Periodic, vec![item(p, 2, 2, false)]);
    assert!(
        matches!(&results[0].outcome, SaveOutcome::Failed(reason) if reason.contains("no reply")),
        "{:?}",
        results[0].outcome
    );
    assert!(matches!(
        store.join(PlayerId(2)),
        Err(JoinRefusal::Unavailable(_))
    ));
    assert!(matches!(
        store.refresh([p])[0].outcome,
        RefreshOutcome::Failed(_)
    ));
    assert_eq!(store.metric(|m| &m.save_errors), 1);
    assert_eq!(store.metric(|m| &m.load_errors), 1);
    assert_eq!(store.metric(|m| &m.refresh_errors), 1);

    redis.thaw();
    let mut outcome = SaveOutcome::Failed(String::new());
    for seq in 3..10 {
        outcome = store.save_one(p, seq, seq, false);
        if outcome == SaveOutcome::Saved {
            break;
        }
    }
    assert_eq!(
        outcome,
        SaveOutcome::Saved,
        "saves work again after the hang"
    );
    store
        .join(PlayerId(2))
        .expect("joins work again after the hang");
    let mut conn = redis.connection();
    assert!(xp_of(&stored(&mut conn, p).unwrap()) >= 3);
}

#[test]
fn opening_an_unreachable_redis_fails_naming_the_url() {
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let (tx, _rx) = crossbeam_channel::unbounded();
    let mut cfg = config("a", &url);
    cfg.store.settings.store_timeout = Duration::from_millis(500);
    let error = RedisStore::open(&cfg.store.settings, &url, tx)
        .err()
        .expect("opening must fail");
    let OpenError::Redis { url: named, .. } = &error else {
        panic!("expected an unreachable Redis, got {error}");
    };
    assert_eq!(named, &url);
    let message = error.to_string();
    assert!(message.contains(&url), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert!(
        hearth::store::open(&cfg.store.settings).is_err(),
        "open() fails the same way"
    );
}

#[test]
fn the_fixture_store_fails_only_its_own_server() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (port_a, a) = RedisTestStore::open(&url, &test_config("a").store.settings);
    let (port_b, _b) = RedisTestStore::open(&url, &test_config("b").store.settings);
    use hearth::testing::TestStore;
    a.set_unavailable(true);
    let join = |port: &hearth_systems::storage::StorePort, p: u64| {
        port.submit(StoreJob::Join {
            ticket: p,
            player: PlayerId(p),
        });
        match port.completions().recv_timeout(STUCK).unwrap() {
            StoreCompletion::Joined { result, .. } => result,
            other => panic!("{other:?}"),
        }
    };
    assert!(matches!(join(&port_a, 1), Err(JoinRefusal::Unavailable(_))));
    assert!(join(&port_b, 2).is_ok(), "b is not affected by a's fault");
    a.set_unavailable(false);
    assert!(join(&port_a, 1).is_ok());
}

/// Polls until `player`'s lease is gone, or fails after `within`.
fn wait_until_released(conn: &mut redis::Connection, player: PlayerId, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while let Some(holder) = owner(conn, player) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease of {player} is still held by {holder} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_claim_answered_unavailable_that_redis_runs_later_is_undone() {
    let redis = RedisServer::start();
    let mut cfg = config("a", &redis.url());
    cfg.store.settings.store_timeout = Duration::from_millis(300);
    let a = Store::open(&cfg);
    let b = Store::open(&config("b", &redis.url()));
    let p = PlayerId(1);
    redis.freeze(); // the claim reaches Redis's socket and waits there
    assert!(
        matches!(a.join(p), Err(JoinRefusal::Unavailable(_))),
        "no reply within the store timeout"
    );
    redis.thaw(); // Redis runs the queued claim now, after the client was told `unavailable`
    let mut conn = redis.connection();
    // Without the undo the lease would stay held for its whole TTL (60 s).
    wait_until_released(&mut conn, p, Duration::from_secs(10));
    b.join(p)
        .expect("another server can take the player at once");
}

#[test]
fn a_claim_redis_refuses_leaves_no_lease_held() {
    let redis = RedisServer::start();
    let store = Store::open(&config("a", &redis.url()));
    let mut conn = redis.connection();
    let p = PlayerId(1);
    // Foreign data of the wrong type under the record key: Redis refuses GET (WRONGTYPE).
    let _: () = conn.hset("hearth:player:{1}", "field", "value").unwrap();
    assert!(
        matches!(store.join(p), Err(JoinRefusal::Unavailable(reason)) if reason.contains("WRONGTYPE")),
    );
    assert_eq!(owner(&mut conn, p), None, "no lease left behind");
}

#[test]
fn the_first_join_after_redis_closed_idle_connections_or_restarted_succeeds() {
    let mut redis = RedisServer::start();
    let store = Store::open(&config("a", &redis.url()));
    store.join(PlayerId(1)).expect("join before");
    // Redis closes connections idle for 1 s (its `timeout` setting)...
    redis.config_set("timeout", "1");
    std::thread::sleep(Duration::from_millis(2500));
    store
        .join(PlayerId(2))
        .expect("a connection closed while idle does not fail a login");
    // ... or restarts.
    redis.restart();
    store
        .join(PlayerId(3))
        .expect("the first login after a Redis restart succeeds");
    assert_eq!(store.metric(|m| &m.load_errors), 0);
}

/// A record's sequence as stored, read through `conn`.
fn seq_of(conn: &mut impl ConnectionLike, player: PlayerId) -> Option<u64> {
    stored(conn, player).map(|record| record.seq)
}

#[test]
fn the_store_computes_the_slots_redis_cluster_does() {
    let cluster = RedisCluster::start(3, 0);
    for key in [
        "foo",
        "hearth:player:{1}",
        "hearth:session:{99999}",
        "a{}b",
        "{}",
        "x{y}z{w}",
    ] {
        assert_eq!(
            slot_of(key.as_bytes()),
            cluster.slot_of(key),
            "slot of {key:?}"
        );
    }
    for id in (0..5_000u64).step_by(37) {
        let key = format!("hearth:player:{{{id}}}");
        assert_eq!(player_slot(PlayerId(id)), cluster.slot_of(&key), "{key}");
    }
}

#[test]
fn players_spread_over_three_masters_join_flush_refresh_and_log_out() {
    let cluster = RedisCluster::start(3, 0);
    let store = Store::open(&config("a", &cluster.url()));
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let n = 300u64;
    for p in players(n) {
        store.join(p).expect("claim");
    }
    let mut baseline = Vec::new();
    for &port in &masters {
        let mut conn = cluster.connection(port);
        let received: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
        baseline.push((port, conn, received_connections(&received)));
    }
    for cycle in 1..=3u64 {
        let results = store.save(
            Lane::Periodic,
            players(n)
                .map(|p| item(p, cycle, cycle * 10 + p.0, false))
                .collect(),
        );
        assert_eq!(results.len(), n as usize);
        for (p, result) in players(n).zip(&results) {
            assert_eq!(result.player, p, "results in submission order");
            assert_eq!(result.outcome, SaveOutcome::Saved, "{p:?}");
        }
        let refreshed = store.refresh(players(n));
        assert!(
            refreshed
                .iter()
                .all(|r| r.outcome == RefreshOutcome::Refreshed)
        );
    }
    // Connections: one per master per lane, plus one short-lived connection per lane at
    // start to read the slot table; the liveness heartbeat's to the master of its key, and
    // its own short-lived one for the slot table; none opened by the cycles.
    assert_eq!(store.metric(|m| &m.connections_opened), 2 + 2 * 3 + 2);
    for (port, mut conn, before) in baseline {
        let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
        assert_eq!(
            received_connections(&info),
            before,
            "master {port}: 3 flush + refresh cycles opened no connection"
        );
    }
    let mut total = 0;
    for &port in &masters {
        let records = cluster.keys_on(port, "hearth:player:*");
        let leases = cluster.keys_on(port, "hearth:session:*");
        assert!(!records.is_empty(), "master {port} holds records");
        assert_eq!(records.len(), leases.len(), "each record beside its lease");
        total += records.len();
    }
    assert_eq!(
        total, n as usize,
        "every player's record on exactly one master"
    );
    let mut conn = cluster.inspector();
    for p in players(n) {
        assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 30 + p.0, "{p:?}");
    }
    // Log out: a final save that releases each lease.
    let results = store.save(
        Lane::Interactive,
        players(n).map(|p| item(p, 4, 40 + p.0, true)).collect(),
    );
    assert!(results.iter().all(|r| r.outcome == SaveOutcome::Saved));
    for &port in &masters {
        assert_eq!(
            cluster.keys_on(port, "hearth:session:*"),
            Vec::<String>::new()
        );
    }
    assert_eq!(xp_of(&stored(&mut conn, PlayerId(n)).unwrap()), 40 + n);
}

/// Joins players 1..=n and saves them all at sequence 1 (every save must succeed); returns
/// how to save them all again at a sequence.
fn joined_and_saved(store: &Store, n: u64) -> impl Fn(u64) -> Vec<SaveResult> + '_ {
    for p in players(n) {
        store.join(p).unwrap();
    }
    let save_all = move |seq: u64| {
        store.save(
            Lane::Periodic,
            players(n).map(|p| item(p, seq, seq, false)).collect(),
        )
    };
    let first = save_all(1);
    assert!(
        first.iter().all(|r| r.outcome == SaveOutcome::Saved),
        "{first:?}"
    );
    save_all
}

fn received_connections(info: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has total_connections_received")
}

#[test]
fn saves_claims_and_refreshes_follow_a_slot_being_moved_and_moved() {
    // Slot moves while the store works: first half-way (the player's keys already moved, so
    // the old owner answers ASK), then done (MOVED). Every save is applied exactly once: a
    // redirected call did not run, and the sequence fence would refuse a second copy.
    let cluster = RedisCluster::start(3, 0);
    let store = Store::open(&config("a", &cluster.url()));
    let mut conn = cluster.inspector();
    let p = PlayerId(1);
    let others: Vec<PlayerId> = players(40).collect();
    for &q in &others {
        store.join(q).unwrap();
    }
    assert_eq!(store.save_one(p, 1, 10, false), SaveOutcome::Saved);
    let slot = player_slot(p);
    let from = cluster.master_of_slot(slot);
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();

    cluster.begin_slot_move(slot, to);
    cluster.migrate_keys(from, to, &["hearth:player:{1}", "hearth:session:{1}"]);
    let batch = |seq: u64| {
        let results = store.save(
            Lane::Periodic,
            others.iter().map(|&q| item(q, seq, seq, false)).collect(),
        );
        assert!(
            results.iter().all(|r| r.outcome == SaveOutcome::Saved),
            "{results:?}"
        );
    };
    batch(2);
    assert_eq!(store.refresh([p])[0].outcome, RefreshOutcome::Refreshed);
    store.join(p).expect("re-claim through ASK");
    assert_eq!(
        seq_of(&mut conn, p),
        Some(2),
        "saved once, on the new owner, through ASK"
    );

    cluster.finish_slot_move(slot, from, to);
    batch(3);
    assert_eq!(store.refresh([p])[0].outcome, RefreshOutcome::Refreshed);
    assert_eq!(
        seq_of(&mut conn, p),
        Some(3),
        "saved once, on the new owner, after MOVED"
    );
    assert_eq!(store.metric(|m| &m.save_errors), 0, "no save failed");
    assert_eq!(
        cluster.keys_on(from, "hearth:*:{1}"),
        Vec::<String>::new(),
        "nothing of the player left on the old owner"
    );
    assert_eq!(cluster.keys_on(to, "hearth:*:{1}").len(), 2);
}

#[test]
fn after_a_master_fails_over_its_players_save_again_and_the_rest_never_stop() {
    let mut cluster = RedisCluster::start(3, 1);
    let mut cfg = config("a", &cluster.url());
    cfg.store.settings.store_timeout = Duration::from_millis(500);
    let (store, n) = (Store::open(&cfg), 60);
    let save_all = joined_and_saved(&store, n);
    let victim = cluster.master_of_slot(player_slot(PlayerId(1)));
    let replica = cluster.replica_of(victim);
    cluster.wait_until_replicated(victim, replica);
    cluster.kill(victim);

    // The dead master's players fail (and stay dirty); everyone else is saved.
    let on_victim = |p: PlayerId| cluster.master_of_slot(player_slot(p)) == victim;
    let mut lost = Vec::new();
    for result in save_all(2) {
        if on_victim(result.player) {
            assert!(
                matches!(result.outcome, SaveOutcome::Failed(_)),
                "{result:?}"
            );
            lost.push(result.player);
        } else {
            assert_eq!(result.outcome, SaveOutcome::Saved, "{result:?}");
        }
    }
    assert!(!lost.is_empty());

    cluster.failover_force(replica);
    // The store reads the slot table again after the failure and writes to the new master.
    let results = save_all(3);
    assert!(
        results.iter().all(|r| r.outcome == SaveOutcome::Saved),
        "{results:?}"
    );
    let mut conn = cluster.inspector();
    for p in players(n) {
        assert_eq!(seq_of(&mut conn, p), Some(3), "{p:?}");
    }
    assert!(
        store
            .refresh(players(n))
            .iter()
            .all(|r| r.outcome == RefreshOutcome::Refreshed)
    );
}

#[test]
fn with_durable_replicas_a_save_counts_only_once_a_replica_has_it() {
    let mut cluster = RedisCluster::start(3, 1);
    let mut cfg = config("a", &cluster.url());
    cfg.store.settings.store_timeout = Duration::from_millis(1_000);
    cfg.store.settings.durable_replicas = 1;
    let (store, n) = (Store::open(&cfg), 40);
    let save_all = joined_and_saved(&store, n);

    // Saved means a replica has it: the master may die at once, its replica is promoted,
    // and nothing a player was told is saved is gone.
    let victim = cluster.master_of_slot(player_slot(PlayerId(1)));
    let promoted = cluster.replica_of(victim);
    cluster.kill(victim);
    cluster.failover_force(promoted);
    let on_promoted: Vec<PlayerId> = players(n)
        .filter(|&p| cluster.master_of_slot(player_slot(p)) == promoted)
        .collect();
    assert!(!on_promoted.is_empty());
    let mut conn = cluster.inspector();
    for p in players(n) {
        assert_eq!(seq_of(&mut conn, p), Some(1), "{p:?}: acknowledged, kept");
    }

    // The promoted master has no replica: its players' saves are written but do not count
    // (they stay dirty and are retried); every other player's do.
    save_all(2); // finds the old master gone and reads the slots again
    for result in save_all(3) {
        if on_promoted.contains(&result.player) {
            assert!(
                matches!(&result.outcome, SaveOutcome::Failed(e) if e.contains("not durable")),
                "{result:?}"
            );
            assert_eq!(
                seq_of(&mut conn, result.player),
                Some(3),
                "written on the master"
            );
        } else {
            assert_eq!(result.outcome, SaveOutcome::Saved, "{result:?}");
        }
    }
    // Without the option the same saves count at the master's reply.
    let mut cfg = config("b", &cluster.url());
    cfg.store.settings.durable_replicas = 0;
    let other = Store::open(&cfg);
    let p = on_promoted[0];
    store.release(p);
    other.join(p).unwrap();
    assert_eq!(other.save_one(p, 4, 4, false), SaveOutcome::Saved);
}

#[test]
fn a_failover_can_lose_what_a_master_did_not_replicate_unless_saves_wait_for_a_replica() {
    // Without durable_replicas a save is acknowledged at the master's reply: a master that dies
    // before its replica copied it takes the save, and a lease it granted, with it. The fence
    // still holds: the server that lost the lease cannot write the player again. With
    // durable_replicas 1 the same save is not acknowledged in the first place.
    let mut cluster = RedisCluster::start(3, 1);
    let mut cfg = config("a", &cluster.url());
    cfg.store.settings.store_timeout = Duration::from_millis(1_000);
    let a = Store::open(&cfg);
    let mut durable_config = config("d", &cluster.url());
    durable_config.store.settings.durable_replicas = 1;
    let durable = Store::open(&durable_config);
    let master = cluster.master_of_slot(player_slot(PlayerId(1)));
    let on_master: Vec<PlayerId> = players(200)
        .filter(|&p| cluster.master_of_slot(player_slot(p)) == master)
        .take(3)
        .collect();
    let (p, q, d) = (on_master[0], on_master[1], on_master[2]);
    a.join(p).unwrap();
    durable.join(d).unwrap();
    assert_eq!(a.save_one(p, 1, 1, false), SaveOutcome::Saved);
    let replica = cluster.replica_of(master);
    cluster.wait_until_replicated(master, replica);

    // The replica falls behind: frozen, with its socket buffers filled by a large write (a
    // frozen process's kernel would otherwise still take in what follows, and hand it over
    // once thawed), so what the master acknowledges next stays in the master's memory.
    cluster.freeze(replica);
    let filler = vec![b'x'; 64 << 20];
    let _: () = cluster
        .connection(master)
        .set(format!("filler:{{{}}}", p.0), filler)
        .unwrap();
    assert_eq!(
        a.save_one(p, 2, 2, false),
        SaveOutcome::Saved,
        "acknowledged"
    );
    a.join(q).expect("a lease granted by the master alone");
    assert!(
        matches!(durable.save_one(d, 2, 2, false), SaveOutcome::Failed(e) if e.contains("not durable")),
        "with durable_replicas 1 the unreplicated save is not acknowledged"
    );
    cluster.kill(master);
    cluster.thaw(replica);
    cluster.failover_force(replica);

    let mut conn = cluster.inspector();
    assert_eq!(
        seq_of(&mut conn, p),
        Some(1),
        "the acknowledged save 2 is gone"
    );
    assert_eq!(owner(&mut conn, q), None, "the lease granted to a is gone");
    let b = Store::open(&config("b", &cluster.url()));
    b.join(q).expect("so another server claims the player");
    // a still believes it holds q: its next save finds b's lease and writes nothing.
    a.refresh([p]); // reads the slots again after the failover
    let mut save = item(q, 1, 99, false);
    save.last_stored_seq = 0;
    assert_eq!(
        a.save(Lane::Periodic, vec![save]).remove(0).outcome,
        SaveOutcome::LeaseLost
    );
    assert_eq!(owner(&mut conn, q).as_deref(), Some("b/boot"));
    assert_eq!(stored(&mut conn, q), None, "a wrote nothing for q");
}

/// `save_together.lua`: two records written in one call, or neither when one player's lease
/// is another server's or its stored sequence is as new; an expired lease nobody took is
/// re-claimed as by `save.lua`. (On a cluster, with players whose keys share a slot.)
fn saving_together_writes_every_record_or_none(redis: &dyn TestRedis) {
    let a = Store::open(&config("a", &redis.url()));
    let b = Store::open(&config("b", &redis.url()));
    let mut conn = redis.inspector();
    let slot = player_slot(PlayerId(1));
    let mut same_slot = (1..).map(PlayerId).filter(|p| player_slot(*p) == slot);
    let (p, q) = (same_slot.next().unwrap(), same_slot.next().unwrap());
    a.join(p).unwrap();
    a.join(q).unwrap();
    assert_eq!(
        a.save_together(vec![item(p, 1, 10, false), item(q, 1, 20, false)]),
        [SaveOutcome::Saved, SaveOutcome::Saved]
    );
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 10);
    assert_eq!(xp_of(&stored(&mut conn, q).unwrap()), 20);
    assert_eq!(
        owner(&mut conn, p).as_deref(),
        Some("a/boot"),
        "never released"
    );

    let outcomes = a.save_together(vec![item(p, 2, 11, false), item(q, 1, 21, false)]);
    assert_eq!(outcomes[1], SaveOutcome::StaleSequence);
    assert!(
        matches!(&outcomes[0], SaveOutcome::Failed(_)),
        "{outcomes:?}"
    );
    assert_eq!(
        xp_of(&stored(&mut conn, p).unwrap()),
        10,
        "p not written either"
    );

    let _: () = conn.del(format!("hearth:session:{{{}}}", q.0)).unwrap();
    b.join(q).unwrap();
    let outcomes = a.save_together(vec![item(p, 3, 12, false), item(q, 3, 22, false)]);
    assert_eq!(outcomes[1], SaveOutcome::LeaseLost);
    assert!(
        matches!(&outcomes[0], SaveOutcome::Failed(_)),
        "{outcomes:?}"
    );
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 10, "p not written");
    assert_eq!(xp_of(&stored(&mut conn, q).unwrap()), 20);

    b.release(q);
    let mut p_item = item(p, 4, 13, false);
    p_item.last_stored_seq = 1;
    let mut q_item = item(q, 4, 23, false);
    q_item.last_stored_seq = 1;
    assert_eq!(
        a.save_together(vec![p_item, q_item]),
        [SaveOutcome::Saved, SaveOutcome::Saved],
        "q's lease expired and nobody wrote it since: re-claimed"
    );
    assert_eq!(owner(&mut conn, q).as_deref(), Some("a/boot"));
    assert_eq!(xp_of(&stored(&mut conn, q).unwrap()), 23);
}

/// A linked save across cluster slots interrupted by a crash (pending records written, the
/// store gone): a claim of such a player applies the pending record when its link was
/// committed, and aborts an undecided link (so its committer can no longer commit it) keeping
/// the stored record. Either way no pending record is left. (Only a cluster has them.)
#[test]
fn a_claim_rolls_a_committed_link_forward_and_aborts_an_undecided_one() {
    let redis = &RedisCluster::start(3, 0);
    let store = Store::open(&config("a", &redis.url()));
    let mut conn = redis.inspector();
    let (p, q) = (PlayerId(1), PlayerId(2));
    let before = br#"{"version":2,"seq":3,"id":1,"sections":{"progress":{"xp":1,"level":1}}}"#;
    let pending = r#"{"version":2,"seq":4,"id":1,"sections":{"progress":{"xp":9,"level":1}}}"#;
    let _: () = conn.set("hearth:player:{1}", &before[..]).unwrap();
    let _: () = conn
        .hset_multiple(
            "hearth:pending:{1}",
            &[("link", "dead/1"), ("seq", "4"), ("record", pending)],
        )
        .unwrap();
    let _: () = conn.set("hearth:link:{dead/1}", "committed").unwrap();
    let grant = store.join(p).expect("claim");
    assert_eq!(xp_of(grant.record.as_ref().unwrap()), 9, "rolled forward");
    assert_eq!(xp_of(&stored(&mut conn, p).unwrap()), 9);
    let left: bool = conn.exists("hearth:pending:{1}").unwrap();
    assert!(!left, "no pending record left");

    let stored_q = br#"{"version":2,"seq":3,"id":2,"sections":{"progress":{"xp":2,"level":1}}}"#;
    let pending_q = r#"{"version":2,"seq":4,"id":2,"sections":{"progress":{"xp":8,"level":1}}}"#;
    let _: () = conn.set("hearth:player:{2}", &stored_q[..]).unwrap();
    let _: () = conn
        .hset_multiple(
            "hearth:pending:{2}",
            &[("link", "dead/2"), ("seq", "4"), ("record", pending_q)],
        )
        .unwrap();
    let grant = store.join(q).expect("claim");
    assert_eq!(
        xp_of(grant.record.as_ref().unwrap()),
        2,
        "undecided: dropped"
    );
    let decision: Option<String> = conn.get("hearth:link:{dead/2}").unwrap();
    assert_eq!(
        decision.as_deref(),
        Some("aborted"),
        "its committer can no longer commit"
    );
    let left: bool = conn.exists("hearth:pending:{2}").unwrap();
    assert!(!left, "no pending record left");
}
