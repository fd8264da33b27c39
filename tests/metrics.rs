//! The operations endpoints over real HTTP: the Prometheus exposition (checked by
//! `promtool`) moving as players act over real TCP on a real Redis, readiness following a
//! Redis outage, liveness following the tick.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::{get, promtool_problems, sample, wait_for_status};
use common::process::Hearth;
use common::redis_server::{RedisServer, free_port};
use hearth::observability::Readiness;
use hearth::prelude::*;

const WAIT: Duration = Duration::from_secs(20);

/// Scrapes until `series` has at least `at_least`; returns the exposition.
fn scrape_until(addr: SocketAddr, series: &str, at_least: f64) -> String {
    let started = std::time::Instant::now();
    loop {
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        if sample(&text, series).is_some_and(|v| v >= at_least) {
            return text;
        }
        assert!(
            started.elapsed() < WAIT,
            "{series} did not reach {at_least} within {WAIT:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_exposition_is_valid_and_moves_when_players_act_and_readiness_follows_redis() {
    let redis = RedisServer::start();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = Hearth::start_with(
        &redis,
        "metrics-1",
        &[
            "--metrics-listen",
            &metrics.to_string(),
            "--registrations-per-minute",
            "1",
            "--max-connections-per-address",
            "2",
        ],
    );
    assert_eq!(wait_for_status(metrics, "/healthz", 200, WAIT), "ok\n");
    wait_for_status(metrics, "/readyz", 200, WAIT);

    let (status, idle) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(promtool_problems(&idle), Vec::<String>::new(), "{idle}");
    assert_eq!(sample(&idle, "hearth_players_online"), Some(0.0));

    let mut client = server.client();
    client.register("ada", "correct horse battery");
    client.login("ada", "correct horse battery");
    client.step(1.0, 0.0);
    // The flush interval is 500 ms: the move is saved by the next flush.
    let text = scrape_until(metrics, "hearth_store_saves_total{outcome=\"saved\"}", 1.0);
    assert_eq!(promtool_problems(&text), Vec::<String>::new(), "{text}");
    assert_eq!(sample(&text, "hearth_players_online"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "hearth_player_joins_total"), Some(1.0));
    assert_eq!(sample(&text, "hearth_client_connections"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "hearth_client_connections_by_state{state=\"playing\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "hearth_client_connections_by_state{state=\"anonymous\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "hearth_store_loads_total{outcome=\"loaded\"}"),
        Some(1.0)
    );
    assert!(sample(&text, "hearth_flush_batches_total").unwrap() >= 1.0);
    assert!(sample(&text, "hearth_store_round_trips_total").unwrap() >= 3.0);
    assert!(sample(&text, "hearth_store_connections_opened_total").unwrap() >= 2.0);
    assert!(sample(&text, "hearth_tick_duration_seconds_count").unwrap() > 0.0);
    assert!(
        sample(
            &text,
            "hearth_store_call_duration_seconds_count{operation=\"load\",lane=\"interactive\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "hearth_store_call_duration_seconds_count{operation=\"save\",lane=\"periodic\"}"
        )
        .unwrap()
            >= 1.0,
        "the flush's saves are timed on the periodic lane"
    );
    assert_eq!(
        sample(&text, "hearth_store_connections_open"),
        Some(3.0),
        "both lanes' connections and the liveness heartbeat's answer"
    );
    assert_eq!(
        sample(&text, "hearth_store_lane_down{lane=\"periodic\"}"),
        Some(0.0)
    );
    assert!(sample(&text, "hearth_client_messages_received_total").unwrap() >= 3.0);
    assert!(sample(&text, "hearth_client_messages_sent_total").unwrap() >= 3.0);
    assert_eq!(
        sample(&text, "hearth_auth_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "hearth_auth_queue_depth"), Some(0.0));

    // Over the limits: a second registration this minute, a third connection.
    client.send(serde_json::json!({"type": "register", "username": "bob", "password": "correct horse battery"}));
    client.expect_error("rate_limited");
    let _second = std::net::TcpStream::connect(server.addr).unwrap();
    let mut third = server.client();
    third.expect_error("server_busy");
    let text = scrape_until(
        metrics,
        "hearth_client_connections_refused_total{reason=\"address_full\"}",
        1.0,
    );
    assert_eq!(
        sample(&text, "hearth_rate_limited_total{limit=\"registrations\"}"),
        Some(1.0)
    );
    assert_eq!(promtool_problems(&text), Vec::<String>::new(), "{text}");

    // A hung Redis: the lease refreshes time out, the store is unreachable.
    redis.freeze();
    let reason = wait_for_status(metrics, "/readyz", 503, WAIT);
    assert!(reason.contains("store unreachable"), "{reason}");
    assert_eq!(get(metrics, "/healthz").0, 200, "the game goes on");
    scrape_until(metrics, "hearth_store_lane_down{lane=\"periodic\"}", 1.0);
    let text = scrape_until(
        metrics,
        "hearth_store_lease_refreshes_total{outcome=\"failed\"}",
        1.0,
    );
    assert!(
        sample(&text, "hearth_store_connections_open").unwrap() < 3.0,
        "the periodic lane's connection no longer answers: {text}"
    );
    redis.thaw();
    // The outage ends once the lane has worked for a few seconds.
    wait_for_status(metrics, "/readyz", 200, Duration::from_secs(30));
    let (_, text) = get(metrics, "/metrics");
    assert_eq!(
        sample(&text, "hearth_store_lane_down{lane=\"periodic\"}"),
        Some(0.0)
    );
    assert_eq!(sample(&text, "hearth_players_online"), Some(1.0));
}

#[test]
fn liveness_fails_while_the_tick_stalls_and_draining_makes_the_server_unready() {
    // The app is driven frame by frame here (no runner, no front door) to stall its tick.
    let mut config = ServerConfig::default();
    config.metrics_endpoint.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut app = App::new();
    app.add_plugins(
        HearthPlugins::new(config)
            .build()
            .disable::<FrontDoorPlugin>()
            .disable::<RunnerPlugin>(),
    );
    app.finish();
    app.cleanup();
    let addr = app.world().resource::<BoundAddresses>().metrics.unwrap();
    app.update();
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(addr, "/readyz").0, 200);

    // No frame for longer than the stall floor (2 s, more than 5 periods at 60 Hz).
    std::thread::sleep(Duration::from_millis(2300));
    let (status, reason) = get(addr, "/healthz");
    assert_eq!(status, 503);
    assert!(reason.starts_with("tick stalled"), "{reason}");
    assert_eq!(get(addr, "/readyz").0, 503, "a stalled server is not ready");
    app.update();
    assert_eq!(get(addr, "/healthz").0, 200, "a frame completed again");

    app.world().resource::<Readiness>().set_draining(true);
    assert_eq!(get(addr, "/readyz"), (503, "draining\n".into()));
    assert_eq!(get(addr, "/healthz").0, 200, "draining is alive");
    app.world().resource::<Readiness>().set_draining(false);
    assert_eq!(get(addr, "/readyz").0, 200);

    assert_eq!(get(addr, "/nothing").0, 404);
}
