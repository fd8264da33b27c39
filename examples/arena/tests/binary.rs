//! The `arena` binary as an operator starts it: its log names the arena, not the framework.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_arena_binary_says_the_arena_is_running() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arena"))
        .args(["--store", "memory", "--listen", "127.0.0.1:0"])
        .env_remove("HEARTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the arena binary");
    let stderr = child.stderr.take().unwrap();
    let (lines, found) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let running = loop {
        match found.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(" running;") => break line,
            Ok(line) => log.push(line),
            Err(e) => panic!("no `running` line ({e}):\n{}", log.join("\n")),
        }
    };
    child.kill().ok();
    child.wait().ok();
    assert!(running.contains("arena running;"), "{running}");
    assert!(!running.contains("hearth running"), "{running}");
}
