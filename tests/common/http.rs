//! A plain HTTP/1.1 GET over a real TCP connection, and `promtool` for checking an
//! exposition, for tests of the metrics endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `GET path`: the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).expect("connecting to the metrics listener");
    request(stream, addr, path)
}

/// [`get`] from the local address `local`.
pub fn get_from(local: std::net::IpAddr, addr: SocketAddr, path: &str) -> (u16, String) {
    request(super::connect_from(local, addr), addr, path)
}

fn request(mut stream: TcpStream, addr: SocketAddr, path: &str) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// Waits (up to `limit`) until `GET path` answers `status` (the listener may not be up
/// yet); returns the body.
pub fn wait_for_status(addr: SocketAddr, path: &str, status: u16, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let (got, body) = match TcpStream::connect(addr) {
            Ok(stream) => request(stream, addr, path),
            Err(e) => (0, e.to_string()),
        };
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < limit,
            "{path} still answers {got} ({body:?}), not {status}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// What `promtool check metrics` finds wrong with an exposition, one problem a line.
/// Fails the test (with how to install it) when promtool is not installed: never a skip.
///
/// promtool lints the classic text format; the endpoint serves OpenMetrics, where a counter
/// family `x` has the sample `x_total` with its HELP under `x`. promtool reports such a
/// sample as `x_total no help text`: those are dropped here when the exposition has a
/// HELP and a `counter` TYPE for `x`; every other problem is returned.
pub fn promtool_problems(exposition: &str) -> Vec<String> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed to check the metrics exposition and could not be run ({e}); \
             install it: `apt-get install -y prometheus` (scripts/test.sh does this)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let problems: Vec<String> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter(|line| {
            let Some(family) = line
                .strip_suffix(" no help text")
                .and_then(|name| name.strip_suffix("_total"))
            else {
                return true;
            };
            let counter_family = exposition.contains(&format!("# HELP {family} "))
                && exposition.contains(&format!("# TYPE {family} counter\n"));
            !counter_family
        })
        .map(str::to_string)
        .collect();
    assert!(
        output.status.success() || !problems.is_empty() || text.contains("no help text"),
        "promtool failed without saying why: {text}"
    );
    problems
}
