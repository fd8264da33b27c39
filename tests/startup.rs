//! The `hearth` binary at start: what it refuses, what it warns about and what it says it
//! read, before any client connects. An operator sees only this log, so it must be true.

mod common;

use std::net::TcpListener;

use common::process::{Hearth, run_hearth, run_hearth_in};

#[test]
fn a_busy_listen_port_fails_naming_the_address_without_announcing_the_server() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_hearth(&["--store", "memory", "--listen", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&addr), "names the address: {err}");
    assert!(
        !err.contains("hearth running"),
        "announces nothing it could not start: {err}"
    );
}

#[test]
fn a_busy_metrics_port_fails_naming_it_without_announcing_the_server() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_hearth(&[
        "--store",
        "memory",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        &addr,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}")),
        "names the address: {err}"
    );
    assert!(
        !err.contains("hearth running"),
        "announces nothing it could not start: {err}"
    );
}

#[test]
fn a_rediss_url_is_a_configuration_error_naming_the_key_and_tls() {
    let out = run_hearth(&[
        "--store",
        "rediss://:s3cret@127.0.0.1:6380/0",
        "--listen",
        "127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a configuration error: {err}");
    assert!(err.contains("`store`"), "names the key: {err}");
    assert!(err.contains("TLS"), "says why: {err}");
    assert!(!err.contains("s3cret"), "never prints the password: {err}");
}

#[test]
fn a_store_value_that_is_not_understood_is_quoted_once() {
    let out = run_hearth(&["--store", "postgres://db.example/game"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.matches("postgres://db.example/game").count(),
        1,
        "the value appears once: {err}"
    );
}

#[test]
fn risky_lease_timings_start_with_a_warning_naming_the_keys() {
    let server = Hearth::start_args(&[
        "--store",
        "memory",
        "--lease-ttl",
        "3s",
        "--lease-refresh-interval",
        "2s",
        "--store-timeout",
        "2s",
    ]);
    let log = server.wait_for_log("accepting game clients");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("lease_refresh_interval") && l.contains("lease_ttl")),
        "warns about a refresh interval over a third of the TTL: {log}"
    );
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("store_timeout") && l.contains("lease_refresh_interval")),
        "warns about a store timeout not shorter than the refresh interval: {log}"
    );
}

#[test]
fn safe_lease_timings_start_without_a_timing_warning() {
    let server = Hearth::start_args(&["--store", "memory"]);
    let log = server.wait_for_log("accepting game clients");
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("lease_refresh_interval")),
        "the defaults are not risky: {log}"
    );
}

#[test]
fn the_config_file_in_use_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(&path, "flush_interval = \"5s\"\n").unwrap();
    let server = Hearth::start_args(&["--store", "memory", "--config", path.to_str().unwrap()]);
    let log = server.wait_for_log("accepting game clients");
    assert!(
        log.lines()
            .any(|l| l.contains("config file") && l.contains(path.to_str().unwrap())),
        "names the file it read: {log}"
    );
}

#[test]
fn running_without_a_config_file_says_defaults_apply() {
    // No assets/server.toml in an empty directory. A busy port ends the run right after the
    // configuration is loaded.
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_hearth_in(dir.path(), &["--store", "memory", "--listen", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.contains("no config file") && l.contains("defaults")),
        "says no file was read and defaults apply: {err}"
    );
}
