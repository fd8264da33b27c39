//! The stranger's client: `tests/spec_client/client.py` and `scenario.py`, a Python client
//! of both encodings (JSON lines and binary) written from docs/protocol.md alone, by someone
//! who never read Hearth's source, run here against the demo server. It is kept so that the
//! spec and the server cannot drift apart: a change to one that the other does not follow
//! fails this test. When it fails, fix the server or the spec (and the scenario only where the
//! spec changed on purpose).
//!
//! Needs `python3` (standard library only); `scripts/test.sh` installs it when missing.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth::testing::{ServerThread, test_config};
use hearth_components::StoreSelection;

/// Longest the scenario may run (it takes about 3 s): a guard against a hang, not a timing
/// assertion.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn a_client_written_from_the_spec_alone_passes_against_the_demo_server() {
    let python = Command::new("python3").arg("--version").output();
    assert!(
        matches!(&python, Ok(found) if found.status.success()),
        "python3 is needed to run tests/spec_client/scenario.py (standard library only, \
         Python 3.8 or later): install it (`apt-get install python3`; scripts/test.sh does \
         so when it is missing) and run again ({python:?})"
    );

    let mut config = test_config("spec-client");
    config.store.settings.selection = StoreSelection::Memory;
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    let server = ServerThread::demo(config).expect("the demo server starts");
    let addr = server.game_addr();

    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spec_client/scenario.py");
    let mut child = Command::new("python3")
        .arg("-B") // no __pycache__ in the source tree
        .arg(&scenario)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the scenario");
    // Read both pipes while it runs, so a full pipe never blocks it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).ok();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SCENARIO_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the scenario") {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    println!("{stdout}");
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    server.stop();

    let status = status.unwrap_or_else(|| {
        panic!("the scenario did not finish within {SCENARIO_LIMIT:?}:\n{stdout}\n{stderr}")
    });
    assert!(
        status.success(),
        "the client written from docs/protocol.md failed ({status}): the server and the spec \
         disagree (see the FAIL lines above)\n{stdout}\n{stderr}"
    );
}
