//! The swarm against a real Hearth server running in this process: every bot logs in,
//! plays, and the run keeps its promises. No timing is asserted (limits are lenient).

use clap::Parser;
use hearth::prelude::*;
use hearth::testing::ServerThread;
use hearth_swarm::Config;

/// The default server (memory store, demo game) on a free port, as the binary runs it.
fn start_server() -> ServerThread {
    let mut config = ServerConfig::default();
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    ServerThread::demo(config).expect("the server starts")
}

/// Twenty bots in `encoding`, in two steps, then eight again on the same accounts: every
/// bot logs in, plays, rebuilds its world from the updates and finds every promise kept.
fn twenty_bots_log_in_play_and_keep_every_promise(encoding: &str) {
    let server = start_server();
    let addr = server.game_addr();
    let config = Config::parse_from([
        "hearth-swarm",
        "--addr",
        &addr.to_string(),
        "--encoding",
        encoding,
        "--steps",
        "8,20",
        "--hold",
        "2s",
        "--placement",
        "spread",
        "--max-walk-steps",
        "30",
        "--threads",
        "2",
        "--server-pid",
        &std::process::id().to_string(),
        // Performance is not what this test checks.
        "--min-update-rate",
        "1",
        "--max-rtt-p99",
        "10s",
        "--ramp-timeout",
        "60s",
        "--quiet",
    ]);
    let report = hearth_swarm::run(config).expect("a valid run");
    assert_eq!(report.failures, Vec::<String>::new());
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.steps.len(), 2);
    for (step, bots) in report.steps.iter().zip([8, 20]) {
        assert_eq!(step.bots, bots);
        assert_eq!(step.online, bots as u64, "{step:?}");
        assert_eq!(step.disconnects, 0, "{step:?}");
        assert_eq!(step.encoding.to_string(), encoding);
        assert!(step.updates_per_bot_per_s > 0.0, "{step:?}");
        assert!(step.bytes_per_bot_per_s > 0.0, "{step:?}");
        assert_eq!(step.violations, 0, "{step:?}");
        assert_eq!(step.unchecked_bots, 0, "{step:?}");
        assert!(step.rtt.count > 0, "{step:?}");
        assert!(step.broken.is_empty(), "{step:?}");
        // The server is this process: its threads and memory were read.
        assert!(!step.server_cpu.as_ref().expect("server CPU").is_empty());
        assert!(step.server_rss_mib.expect("server RSS") > 0.0);
    }
    let table = hearth_swarm::report::markdown(&report.steps);
    assert!(
        table.contains(&format!("| 20 (20) | spread, {encoding}, tcp |")),
        "{table}"
    );

    // A second run reuses the accounts (`username_taken`, then a login).
    let again = Config::parse_from([
        "hearth-swarm",
        "--addr",
        &addr.to_string(),
        "--encoding",
        encoding,
        "--steps",
        "8",
        "--hold",
        "1s",
        "--min-update-rate",
        "1",
        "--max-rtt-p99",
        "10s",
        "--quiet",
    ]);
    let report = hearth_swarm::run(again).expect("a valid run");
    assert_eq!(report.failures, Vec::<String>::new());
    assert_eq!(report.steps[0].online, 8);
    assert_eq!(report.steps[0].login_failures, 0);
    assert_eq!(report.steps[0].violations, 0);

    assert_eq!(server.stop(), 0, "every player saved on shutdown");
}

#[test]
fn binary_bots_keep_every_promise() {
    twenty_bots_log_in_play_and_keep_every_promise("binary");
}

#[test]
fn json_bots_keep_every_promise() {
    twenty_bots_log_in_play_and_keep_every_promise("json");
}

/// `--reconnect`: after every connection drops at once, all 20 bots get back in by resume
/// token and then by password, and a wave says why any bot did not.
#[test]
fn every_bot_gets_back_in_after_a_reconnect_wave() {
    let server = start_server();
    let config = Config::parse_from([
        "hearth-swarm",
        "--addr",
        &server.game_addr().to_string(),
        "--steps",
        "20",
        "--hold",
        "1s",
        "--reconnect",
        "--min-update-rate",
        "1",
        "--max-rtt-p99",
        "10s",
        "--ramp-timeout",
        "60s",
        "--quiet",
    ]);
    let report = hearth_swarm::run(config).expect("a valid run");
    assert_eq!(report.failures, Vec::<String>::new());
    let kinds: Vec<_> = report.reconnects.iter().map(|w| w.kind).collect();
    assert_eq!(kinds, ["resume", "password"]);
    for wave in &report.reconnects {
        assert_eq!((wave.back, wave.bots), (20, 20), "{wave:?}");
        assert!(wave.not_back.is_empty(), "{wave:?}");
    }
    let table = hearth_swarm::reconnect::markdown(&report.reconnects);
    assert!(table.contains("| resume | 20/20 |"), "{table}");
    assert_eq!(server.stop(), 0, "every player saved on shutdown");
}

#[test]
fn a_run_that_cannot_be_bounded_is_refused() {
    let config = Config::parse_from(["hearth-swarm", "--steps", "30000"]);
    let refused = hearth_swarm::run(config).unwrap_err();
    assert!(refused.contains("--max-bots"), "{refused}");
}

/// Bots over WebSocket (`--transport ws`, binary frames under `hearth.binary`): every bot
/// logs in, plays and finds every promise kept, as over TCP.
#[test]
fn websocket_bots_keep_every_promise() {
    let mut config = ServerConfig::default();
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    config.front_door.listen_ws = Some("127.0.0.1:0".parse().unwrap());
    let server = ServerThread::demo(config).expect("the server starts");
    let ws = server.addrs().ws.expect("a WebSocket listener");
    let config = Config::parse_from([
        "hearth-swarm",
        "--addr",
        &ws.to_string(),
        "--transport",
        "ws",
        "--steps",
        "12",
        "--hold",
        "2s",
        "--placement",
        "spread",
        "--max-walk-steps",
        "30",
        "--min-update-rate",
        "1",
        "--max-rtt-p99",
        "10s",
        "--ramp-timeout",
        "60s",
        "--quiet",
    ]);
    let report = hearth_swarm::run(config).expect("a valid run");
    assert_eq!(report.failures, Vec::<String>::new());
    let step = &report.steps[0];
    assert_eq!(
        (step.online, step.disconnects, step.violations),
        (12, 0, 0),
        "{step:?}"
    );
    assert!(step.updates_per_bot_per_s > 0.0, "{step:?}");
    let table = hearth_swarm::report::markdown(&report.steps);
    assert!(
        table.contains("| 12 (12) | spread, binary, ws |"),
        "{table}"
    );
    assert_eq!(server.stop(), 0, "every player saved on shutdown");
}
