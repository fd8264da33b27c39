//! Zone fixtures: a two-zone map file and a walk that ends in a `handoff`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::Client;

/// A two-zone map (west and east of the demo world) with the border at `x = border`, in a
/// temporary directory (kept while the returned guard lives).
pub fn zones_at(border: i32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zones.toml");
    std::fs::write(
        &path,
        format!(
            "[[zone]]\nname = \"west\"\nmin = [-1000, -1000]\nmax = [{border}, 1000]\n\n\
             [[zone]]\nname = \"east\"\nmin = [{border}, -1000]\nmax = [1000, 1000]\n"
        ),
    )
    .unwrap();
    (dir, path)
}

/// Steps `client`'s player by `dx` once per `move` until the server hands it off, refusing
/// at first while the source has not yet seen the destination's process (its directory is
/// read every 500 ms); returns the `handoff`.
pub fn walk_until_handoff(client: &mut Client, dx: i32) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "never handed off");
        client.send(json!({"type": "move", "dx": dx, "dy": 0}));
        let wait_until = Instant::now() + Duration::from_millis(150);
        while let Some(message) = client.next(wait_until.saturating_duration_since(Instant::now()))
        {
            match (message["type"].as_str(), message["code"].as_str()) {
                (Some("handoff"), _) => return message,
                // Refused until the source's directory has seen the destination's process;
                // a move that arrived while the player was leaving.
                (Some("error"), Some("zone_unavailable" | "not_logged_in")) => {}
                (Some("error"), _) => panic!("{message}"),
                _ => {}
            }
            if Instant::now() >= wait_until {
                break;
            }
        }
    }
}
