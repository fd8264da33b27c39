//! `--zones`: bots walk back and forth across the border of two zone servers (in this
//! process, on a real Redis): every handoff is followed to the end, no bot is lost, no source
//! sends an update after its handoff, and bots near the border see each other across it.
//! No timing is asserted (the limits are lenient).

#[path = "../../../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::path::Path;

use clap::Parser;
use hearth::config::Cli;
use hearth::testing::ServerThread;
use hearth_swarm::Config;
use redis_server::{RedisServer, free_port};

/// A two-zone world 100 units across, the border at x = 0 (the demo world is larger; the
/// bots stay inside this map).
const MAP: &str = "[[zone]]\nname = \"west\"\nmin = [-50, -50]\nmax = [0, 50]\n\n\
                   [[zone]]\nname = \"east\"\nmin = [0, -50]\nmax = [50, 50]\n";

/// The demo game serving `zone` of `map`, on `redis`.
fn zone_server(redis: &RedisServer, map: &Path, zone: &'static str) -> ServerThread {
    let listen = format!("127.0.0.1:{}", free_port());
    let url = redis.url();
    let map = map.display().to_string();
    let cli = Cli::with(&[
        ("store", &url),
        ("zones", &map),
        ("zone", zone),
        ("listen", &listen),
        ("instance_id", zone),
    ]);
    let config = hearth::config::load(&cli).expect("a valid zone configuration");
    ServerThread::demo(config).expect("the zone server starts")
}

#[test]
fn bots_cross_the_border_back_and_forth_and_nobody_is_lost_or_held_twice() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("zones.toml");
    std::fs::write(&map, MAP).unwrap();
    let west = zone_server(&redis, &map, "west");
    let east = zone_server(&redis, &map, "east");
    let config = Config::parse_from([
        "hearth-swarm",
        // West's server: new players stand at (0, 0), in east, so every login is handed over.
        "--addr",
        &west.game_addr().to_string(),
        "--zones",
        &map.display().to_string(),
        "--cross-depth",
        "3",
        "--steps",
        "12",
        "--hold",
        "4s",
        "--move-rate",
        "10",
        "--min-update-rate",
        "1",
        "--max-rtt-p99",
        "10s",
        "--max-handoff-gap-p99",
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
    let zones = step.zones.as_ref().expect("zone figures");
    assert!(zones.handoffs > 0, "{zones:?}");
    assert_eq!(zones.login_handoffs, 12, "{zones:?}");
    assert_eq!(
        (zones.lost, zones.updates_after_handoff),
        (0, 0),
        "{zones:?}"
    );
    assert!(zones.gap_p99_ms.is_some(), "{zones:?}");
    assert!(
        zones.staleness_samples > 0,
        "bots saw each other across the border: {zones:?}"
    );
    let table = hearth_swarm::report::zones_markdown(&report.steps);
    assert!(table.contains("| 12 | "), "{table}");
    assert_eq!(west.stop(), 0, "every player saved on shutdown");
    assert_eq!(east.stop(), 0, "every player saved on shutdown");
}
