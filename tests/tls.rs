//! TLS on both listeners (`tls_cert`, `tls_key`), over real sockets with a certificate the
//! test generates (rcgen): the game protocol over TLS-TCP (JSON lines and the binary
//! encoding), WebSocket over TLS (`wss://`) and the browser client over https; and hostile
//! input (a bad TLS handshake, plain text or plain HTTP to a TLS port), each closed cleanly
//! while a well-behaved client on the same server is served throughout.

mod common;

use std::time::Duration;

use common::ws::{TestCertificate, WAIT, WsClient, demo_server, handshake};
use hearth::config::ServerConfig;
use hearth::testing::{NotStarted, ServerThread};
use hearth_components::wire::{PREAMBLE, decode_frame, decode_message, encode_message};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The demo game with both listeners in TLS on free ports (and metrics).
fn start(
    cert: &TestCertificate,
    configure: impl FnOnce(&mut ServerConfig),
) -> Result<ServerThread, NotStarted> {
    let (cert_file, key_file) = (cert.cert.clone(), cert.key.clone());
    demo_server("tls", move |config| {
        config.front_door.tls_cert = Some(cert_file);
        config.front_door.tls_key = Some(key_file);
        configure(config);
    })
}

/// JSON lines over a TLS connection.
struct TlsLines {
    stream: BufReader<tokio_rustls::client::TlsStream<TcpStream>>,
}

impl TlsLines {
    async fn connect(cert: &TestCertificate, server: &ServerThread) -> Self {
        let tls = cert
            .connect(server.game_addr())
            .await
            .expect("a TLS connection");
        Self {
            stream: BufReader::new(tls),
        }
    }

    async fn ask(&mut self, message: Value, kind: &str) -> Value {
        self.stream
            .get_mut()
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, self.stream.read_line(&mut line))
                .await
                .expect("a line in time")
                .expect("reading");
            assert!(read > 0, "closed while expecting {kind}");
            let answer: Value = serde_json::from_str(&line).unwrap();
            if matches!(answer["type"].as_str(), Some("replication" | "update")) {
                continue;
            }
            assert_eq!(answer["type"], kind, "{answer}");
            return answer;
        }
    }
}

/// Reads until the server closes the connection (an alert, if any, then the end), failing
/// the test on a hang: what it sent.
async fn closed_by_server(mut stream: TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("closed by the server in time")
        .ok();
    rest
}

#[tokio::test]
async fn the_game_protocol_over_tls_in_json_lines_and_binary() {
    let cert = TestCertificate::new();
    let server = start(&cert, |_| {}).unwrap();
    let mut client = TlsLines::connect(&cert, &server).await;
    let account = |kind| json!({"type": kind, "username": "tess", "password": "correct horse"});
    client.ask(account("register"), "registered").await;
    client.ask(account("login"), "logged_in").await;
    let pong = client
        .ask(json!({"type": "ping", "id": 1, "nonce": 5}), "pong")
        .await;
    assert_eq!(
        (pong["id"].as_u64(), pong["nonce"].as_u64()),
        (Some(1), Some(5))
    );
    client.ask(json!({"type": "logout"}), "logged_out").await;
    // The binary encoding inside TLS: the preamble both ways, then frames.
    let mut binary = cert.connect(server.game_addr()).await.unwrap();
    binary.write_all(&PREAMBLE).await.unwrap();
    let mut frame = Vec::new();
    encode_message(&json!({"type": "ping", "nonce": 8}), &mut frame).unwrap();
    binary.write_all(&frame).await.unwrap();
    let mut preamble = [0u8; PREAMBLE.len()];
    binary.read_exact(&mut preamble).await.unwrap();
    assert_eq!(preamble, PREAMBLE);
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    let pong: Value = loop {
        let n = tokio::time::timeout(WAIT, binary.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
        if let Ok((frame, _)) = decode_frame(&got) {
            break decode_message(frame.payload).unwrap();
        }
    };
    assert_eq!(pong, json!({"type": "pong", "nonce": 8}));
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn websocket_over_tls_and_the_browser_client_over_https() {
    let cert = TestCertificate::new();
    let server = start(&cert, |_| {}).unwrap();
    let tls = cert.connect(server.ws_addr()).await.unwrap();
    let (ws, response) = handshake(tls, "wss", server.ws_addr(), Some("hearth.binary"), None)
        .await
        .expect("a wss:// handshake");
    let mut client = WsClient::new(ws, &response);
    client.register_and_login("wes").await;
    client.pings(3).await;
    client.until_in_view().await;
    // The page itself over https.
    let mut https = cert.connect(server.ws_addr()).await.unwrap();
    https
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    tokio::time::timeout(WAIT, https.read_to_string(&mut page))
        .await
        .unwrap()
        .ok();
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("<html"),
        "{page}"
    );
    // Counted under their transports.
    let (_, metrics) = common::http::get(server.addrs().metrics.unwrap(), "/metrics");
    for line in [
        "hearth_client_connections_opened_total{transport=\"wss\"} 1",
        "hearth_client_connections_by_transport{transport=\"wss\"} 1.0",
        "hearth_client_connections_opened_total{transport=\"ws\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    assert_eq!(server.stop(), 0);
}

#[tokio::test]
async fn a_bad_handshake_or_plain_text_on_a_tls_port_is_closed_and_harms_no_one() {
    let cert = TestCertificate::new();
    let server = start(&cert, |config| {
        config.front_door.idle_timeout = Duration::from_secs(1);
    })
    .unwrap();
    let mut bystander = TlsLines::connect(&cert, &server).await;
    let account = |kind| json!({"type": kind, "username": "bob", "password": "correct horse"});
    bystander.ask(account("register"), "registered").await;
    bystander.ask(account("login"), "logged_in").await;
    for (port, bytes) in [
        // A TLS record header announcing a ClientHello, then nonsense.
        (
            server.game_addr(),
            &b"\x16\x03\x01\x00\x08\x01\x00\x00\x04garbage!"[..],
        ),
        // The game protocol in plain text, to the TLS game port.
        (
            server.game_addr(),
            &b"{\"type\":\"ping\",\"nonce\":1}\n"[..],
        ),
        // Plain HTTP to the wss:// port.
        (
            server.ws_addr(),
            &b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..],
        ),
    ] {
        let mut stream = TcpStream::connect(port).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let answer = closed_by_server(stream).await;
        // At most a TLS alert (content type 21): never a protocol message in clear.
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "{bytes:?} got {:?}",
            String::from_utf8_lossy(&answer)
        );
        let pong = bystander
            .ask(json!({"type": "ping", "nonce": 2}), "pong")
            .await;
        assert_eq!(pong["nonce"], 2);
    }
    // A client that connects and never starts its handshake is closed after the idle
    // timeout.
    let silent = TcpStream::connect(server.game_addr()).await.unwrap();
    let closed = tokio::spawn(closed_by_server(silent));
    let mut nonce = 10;
    while !closed.is_finished() {
        // The bystander is served all the while.
        nonce += 1;
        bystander
            .ask(json!({"type": "ping", "nonce": nonce}), "pong")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed.await.unwrap().is_empty());
    // A client that does not trust the certificate gives up; the server carries on.
    let stranger = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
        .with_no_client_auth(),
    ));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = TcpStream::connect(server.game_addr()).await.unwrap();
    assert!(
        stranger.connect(name, stream).await.is_err(),
        "an unknown issuer"
    );
    let pong = bystander
        .ask(json!({"type": "ping", "nonce": 3}), "pong")
        .await;
    assert_eq!(pong["nonce"], 3);
    assert_eq!(server.stop(), 0);
}

#[test]
fn a_missing_or_mismatched_certificate_stops_the_server_from_starting() {
    let cert = TestCertificate::new();
    let missing = start(&cert, |config| {
        config.front_door.tls_cert = Some("/nonexistent/cert.pem".into());
    })
    .err()
    .expect("no server without its certificate");
    let said = missing.to_string();
    assert!(
        said.contains("tls_cert") && said.contains("/nonexistent/cert.pem"),
        "{said}"
    );
    let other = TestCertificate::new();
    let mismatched = start(&cert, |config| {
        config.front_door.tls_key = Some(other.key.clone())
    })
    .err()
    .expect("no server with a key that is not the certificate's");
    assert!(
        mismatched.to_string().contains("tls_cert and tls_key"),
        "{mismatched}"
    );
}
