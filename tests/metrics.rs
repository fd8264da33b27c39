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
    // The one client came in over plain TCP.
    assert_eq!(
        sample(
            &text,
            "hearth_client_connections_by_transport{transport=\"tcp\"}"
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "hearth_client_connections_opened_total{transport=\"tcp\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(
            &text,
            "hearth_client_connections_opened_total{transport=\"ws\"}"
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
    assert!(
        sample(
            &text,
            "hearth_client_messages_received_total{transport=\"tcp\"}"
        )
        .unwrap()
            >= 3.0
    );
    assert!(
        sample(
            &text,
            "hearth_client_messages_sent_total{transport=\"tcp\"}"
        )
        .unwrap()
            >= 3.0
    );
    assert_eq!(
        sample(&text, "hearth_auth_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "hearth_auth_queue_depth"), Some(0.0));

    // Over the limits: a second registration this minute (from a connection without a
    // player: a logged-in one may not register), a third connection.
    client.send(serde_json::json!({"type": "logout"}));
    client.expect("logged_out");
    client.send(serde_json::json!({"type": "register", "username": "bob", "password": "correct horse battery"}));
    client.expect_error("rate_limited");
    client.login("ada", "correct horse battery");
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

/// The metrics port is reachable by whoever reaches its interface: no client of it can stall
/// the probes, hold unbounded memory or take every connection for long.
mod abuse {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use hearth::observability::http::{
        MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS, MAX_HEAD_BYTES,
    };
    use hearth::prelude::*;
    use hearth::testing::ServerThread;

    use super::common::connect_from;
    use super::common::http::{get, get_from, wait_for_status};

    /// A server on the memory store with its metrics endpoint on a free port, its tick
    /// running (so `/healthz` is 200 while it lives).
    fn server() -> (ServerThread, SocketAddr) {
        let mut config = ServerConfig::default();
        config.front_door.listen = "127.0.0.1:0".parse().unwrap();
        config.metrics_endpoint.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        let server = ServerThread::start(move || {
            let mut app = App::new();
            app.add_plugins(HearthPlugins::new(config));
            app
        })
        .expect("the server starts");
        let metrics = server.addrs().metrics.expect("the metrics listener bound");
        wait_for_status(metrics, "/healthz", 200, Duration::from_secs(20));
        (server, metrics)
    }

    /// Whether the server reset `stream` (its pending socket error), without reading it.
    fn was_reset(stream: &TcpStream) -> bool {
        matches!(stream.take_error(), Ok(Some(e)) if e.kind() == ErrorKind::ConnectionReset)
    }

    #[test]
    fn a_client_pipelining_requests_and_never_reading_stalls_only_itself() {
        let (server, metrics) = server();
        // 3,000 requests for the whole exposition (several KiB each), each padded so the
        // requests outgrow the socket buffers: the server's writes to this client block.
        let mut stalled = TcpStream::connect(metrics).unwrap();
        let pad = "x".repeat(200);
        let requests: String = (0..3_000)
            .map(|_| format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nX-Pad: {pad}\r\n\r\n"))
            .collect();
        let mut writer = stalled.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(requests.as_bytes()));

        // While it stays connected without reading, every endpoint answers, again and again.
        let started = Instant::now();
        let mut probes = 0;
        while !was_reset(&stalled) {
            for path in ["/healthz", "/readyz", "/metrics"] {
                assert_eq!(
                    get(metrics, path).0,
                    200,
                    "{path} while a client never reads"
                );
            }
            probes += 1;
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the stalled connection was not closed"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(probes > 1, "probed while the client was stalled");
        // Closed by the write timeout, long before its 3,000 answers were written.
        let mut answered = Vec::new();
        stalled
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stalled.read_to_end(&mut answered);
        let answers = String::from_utf8_lossy(&answered)
            .matches("HTTP/1.1 200")
            .count();
        assert!(
            answers < 3_000,
            "{answers} answers to a client that never read"
        );
        // The writer ends either way (its last writes may fail on the closed connection).
        let _ = writing.join().unwrap();
        assert_eq!(server.stop(), 0);
    }

    #[test]
    fn a_header_line_that_never_ends_is_cut_off_at_the_head_limit() {
        let (server, metrics) = server();
        let mut client = TcpStream::connect(metrics).unwrap();
        client
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = client.try_clone().unwrap();
        let sending = std::thread::spawn(move || {
            client.write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ")?;
            // Up to 64 MiB of one header line, no CRLF: the server must stop taking it.
            let chunk = vec![b'a'; 64 * 1024];
            let mut sent = 0usize;
            while sent < 64 * 1024 * 1024 {
                client.write_all(&chunk)?;
                sent += chunk.len();
            }
            Ok::<usize, std::io::Error>(sent)
        });
        reader
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut answer = Vec::new();
        let read = reader.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        // Either the 431 arrived before the close, or the close reset the connection first.
        assert!(
            answer.starts_with("HTTP/1.1 431")
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
            "{answer:?} {read:?}"
        );
        assert!(
            sending.join().unwrap().is_err(),
            "the server took a 64 MiB header line (the head limit is {MAX_HEAD_BYTES} bytes)"
        );
        assert_eq!(get(metrics, "/healthz").0, 200);
        assert_eq!(server.stop(), 0);
    }

    #[test]
    fn too_many_headers_or_too_long_a_head_is_answered_431() {
        let (server, metrics) = server();
        let ask = |head: String| {
            let mut stream = TcpStream::connect(metrics).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            answer
        };
        let many: String = (0..100).map(|i| format!("X-H{i}: {i}\r\n")).collect();
        let answer = ask(format!("GET /healthz HTTP/1.1\r\nHost: h\r\n{many}\r\n"));
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
        let long = "y".repeat(MAX_HEAD_BYTES + 1);
        let answer = ask(format!("GET /healthz HTTP/1.1\r\nX-Long: {long}\r\n\r\n"));
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
        // Within the limits: answered.
        let answer = ask("GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".into());
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert_eq!(server.stop(), 0);
    }

    /// Promise (M4): a flood of held connections from one host does not silence the probes:
    /// that host gets its share of the slots, and a probe from another host is answered;
    /// past the total the next connection from anywhere is answered 503; slots free as
    /// connections close.
    #[test]
    fn one_host_holding_its_share_of_connections_leaves_the_probes_answered() {
        let (server, metrics) = server();
        let host = |i: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i));
        let hold = |from| -> Vec<TcpStream> {
            (0..MAX_CONNECTIONS_PER_ADDRESS)
                .map(|_| connect_from(from, metrics))
                .collect()
        };
        let mut held = hold(host(1));
        let (status, body) = get_from(host(1), metrics, "/healthz");
        assert_eq!(
            (status, body.as_str()),
            (503, "too many metrics connections\n"),
            "the flooding host's next connection"
        );
        assert_eq!(
            get_from(host(2), metrics, "/healthz").0,
            200,
            "a probe from elsewhere"
        );
        assert_eq!(get_from(host(2), metrics, "/readyz").0, 200);
        for i in 2..=(MAX_CONNECTIONS / MAX_CONNECTIONS_PER_ADDRESS) as u8 {
            held.extend(hold(host(i)));
        }
        assert_eq!(held.len(), MAX_CONNECTIONS);
        assert_eq!(
            get_from(host(200), metrics, "/healthz").0,
            503,
            "past the total, any host"
        );
        drop(held);
        wait_for_status(metrics, "/healthz", 200, Duration::from_secs(20));
        assert_eq!(server.stop(), 0);
    }
}
