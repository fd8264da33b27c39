//! The swarm against a real Hearth server running in this process: every bot logs in,
//! plays, and the run keeps its promises. No timing is asserted (limits are lenient).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Parser;
use hearth::components::ServerConfig;
use hearth::store::{MemoryBackend, MemoryStore, StoreClock};
use hearth_swarm::Config;

/// A default server on a fresh memory store and a free port, as `NetServer::memory` in the
/// root crate's tests builds it. Returns its address, its stop flag and its thread.
fn start_server() -> (
    std::net::SocketAddr,
    Arc<AtomicBool>,
    std::thread::JoinHandle<i32>,
) {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let backend = MemoryBackend::new(StoreClock::Real(Instant::now()));
    let (_, port) = MemoryStore::open(backend, &config);
    let accounts = hearth::net::account_stores(&config).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    // The app is not Send: build it on the thread that runs it.
    let thread = std::thread::spawn(move || {
        let mut app = hearth::build_app(config, port);
        let addr = hearth::net::start(&mut app, accounts).expect("front door starts");
        addr_tx.send(addr).unwrap();
        hearth::server::run(app, flag)
    });
    (addr_rx.recv().unwrap(), stop, thread)
}

#[test]
fn twenty_bots_log_in_play_and_keep_every_promise() {
    let (addr, stop, server) = start_server();
    let config = Config::parse_from([
        "hearth-swarm",
        "--addr",
        &addr.to_string(),
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
        "--min-snapshot-rate",
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
        assert!(step.snapshots_per_bot_per_s > 0.0, "{step:?}");
        assert!(step.rtt.count > 0, "{step:?}");
        assert!(step.broken.is_empty(), "{step:?}");
        // The server is this process: its threads and memory were read.
        assert!(!step.server_cpu.as_ref().expect("server CPU").is_empty());
        assert!(step.server_rss_mib.expect("server RSS") > 0.0);
    }
    let table = hearth_swarm::report::markdown(&report.steps);
    assert!(table.contains("| 20 (20) | spread |"), "{table}");

    // A second run reuses the accounts (`username_taken`, then a login).
    let again = Config::parse_from([
        "hearth-swarm",
        "--addr",
        &addr.to_string(),
        "--steps",
        "8",
        "--hold",
        "1s",
        "--min-snapshot-rate",
        "1",
        "--max-rtt-p99",
        "10s",
        "--quiet",
    ]);
    let report = hearth_swarm::run(again).expect("a valid run");
    assert_eq!(report.failures, Vec::<String>::new());
    assert_eq!(report.steps[0].online, 8);
    assert_eq!(report.steps[0].login_failures, 0);

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(server.join().unwrap(), 0, "every player saved on shutdown");
}

#[test]
fn a_run_that_cannot_be_bounded_is_refused() {
    let config = Config::parse_from(["hearth-swarm", "--steps", "30000"]);
    let refused = hearth_swarm::run(config).unwrap_err();
    assert!(refused.contains("--max-bots"), "{refused}");
}
