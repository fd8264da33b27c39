//! `hearth_client` through every door of the server (docs/protocol.md, "Transport"): TCP in
//! TLS, WebSocket (`ws://`, JSON text or binary frames by subprotocol) and WebSocket in TLS
//! (`wss://`), with a certificate made for the test (rcgen, self-signed for `localhost`).

mod common;

use std::net::SocketAddr;

use common::{Relay, until};
use hearth::components::Position;
use hearth::testing::{ServerThread, test_config};
use hearth_client::{Client, ClientConfig, ClientError, Encoding, Event, Target, TlsConfig};
use serde::Serialize;

#[derive(Serialize)]
struct Move {
    dx: f32,
    dy: f32,
}

/// A certificate for `localhost` in PEM files (the server's) and as what a client trusts.
struct Certificate {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    pem: String,
    _dir: tempfile::TempDir,
}

impl Certificate {
    fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a certificate");
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        Self {
            cert,
            key,
            pem: certified.cert.pem(),
            _dir: dir,
        }
    }

    /// A client config that trusts it, in `encoding`.
    fn trusted(&self, encoding: Encoding) -> ClientConfig {
        let tls = TlsConfig::from_pem(self.pem.as_bytes())
            .unwrap()
            .with_server_name("localhost");
        ClientConfig {
            encoding,
            tls: Some(tls),
            ..ClientConfig::default()
        }
    }
}

/// The demo game with its TCP and WebSocket listeners, both in TLS when `tls` is given.
fn server(instance: &str, tls: Option<&Certificate>) -> (ServerThread, SocketAddr, SocketAddr) {
    let mut config = test_config(instance);
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    config.front_door.listen_ws = Some("127.0.0.1:0".parse().unwrap());
    if let Some(tls) = tls {
        config.front_door.tls_cert = Some(tls.cert.clone());
        config.front_door.tls_key = Some(tls.key.clone());
    }
    let server = ServerThread::demo(config).expect("the server starts");
    let (tcp, ws) = (
        server.game_addr(),
        server.addrs().ws.expect("a WebSocket listener"),
    );
    (server, tcp, ws)
}

fn seen_at(client: &Client, player_id: u64) -> Option<Position> {
    let world = client.world();
    let entity = world.player(player_id)?;
    world.get::<Position>(entity.id, "position").ok()
}

/// `alice` and `bob` register, log in, and `alice` sees `bob` step east.
async fn see_each_other_move(mut alice: Client, bob: Client) {
    alice.register("alice", "password1").await.unwrap();
    let bob_id = bob.register("bob", "password1").await.unwrap();
    alice.login("alice", "password1").await.unwrap();
    bob.login("bob", "password1").await.unwrap();
    until(&mut alice, "bob at the origin", |a, _| {
        (seen_at(a, bob_id) == Some(Position { x: 0.0, y: 0.0 })).then_some(())
    })
    .await;
    bob.send("move", &Move { dx: 1.0, dy: 0.0 }).await.unwrap();
    until(&mut alice, "bob one step east", |a, _| {
        (seen_at(a, bob_id) == Some(Position { x: 1.0, y: 0.0 })).then_some(())
    })
    .await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket_a_json_and_a_binary_client_see_each_other_move() {
    let (server, _, ws) = server("client-ws", None);
    let url = format!("ws://{ws}/ws");
    let alice = Client::connect_ws(&url).await.unwrap();
    let binary = ClientConfig {
        encoding: Encoding::Binary,
        ..ClientConfig::default()
    };
    let bob = Client::connect_to(Target::WebSocket(url), binary)
        .await
        .unwrap();
    see_each_other_move(alice, bob).await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_and_wss_clients_see_each_other_move() {
    let certificate = Certificate::new();
    let (server, tcp, ws) = server("client-tls", Some(&certificate));
    let alice = Client::connect_to(
        Target::Tls(tcp.to_string()),
        certificate.trusted(Encoding::Binary),
    )
    .await
    .unwrap();
    let bob = Client::connect_to(
        Target::WebSocket(format!("wss://{ws}/ws")),
        certificate.trusted(Encoding::Json),
    )
    .await
    .unwrap();
    see_each_other_move(alice, bob).await;
    assert_eq!(server.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_not_trusted_or_not_configured_is_refused() {
    let certificate = Certificate::new();
    let (server, tcp, ws) = server("client-tls-refused", Some(&certificate));
    let other = Certificate::new();
    let untrusted =
        Client::connect_to(Target::Tls(tcp.to_string()), other.trusted(Encoding::Json)).await;
    assert!(
        matches!(untrusted, Err(ClientError::Tls(_))),
        "{:?}",
        untrusted.err()
    );
    let wss = Target::WebSocket(format!("wss://{ws}/ws"));
    let unconfigured = Client::connect_to(wss, ClientConfig::default()).await;
    assert!(
        matches!(unconfigured, Err(ClientError::Tls(_))),
        "{:?}",
        unconfigured.err()
    );
    // Plain text to the TLS port is not a session either.
    let plain = Client::connect(tcp).await;
    if let Ok(client) = plain {
        let answer = client.ping().await;
        assert!(
            answer.is_err(),
            "a plain client on the TLS port got {answer:?}"
        );
    }
    assert_eq!(server.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket_a_dropped_connection_is_resumed() {
    let (server, _, ws) = server("client-ws-resume", None);
    let relay = Relay::start(ws).await;
    let mut client = Client::connect_ws(&format!("ws://{}/ws", relay.addr))
        .await
        .unwrap();
    let id = client.register("carol", "password1").await.unwrap();
    client.login("carol", "password1").await.unwrap();
    relay.cut();
    let resumed = until(&mut client, "the resume", |_, e| match e {
        Event::Resumed { player_id } => Some(*player_id),
        Event::ResumeFailed { reason } => panic!("resume failed: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(resumed, id);
    client
        .send("move", &Move { dx: 0.0, dy: 1.0 })
        .await
        .unwrap();
    until(&mut client, "the step after the resume", |c, _| {
        (seen_at(c, id) == Some(Position { x: 0.0, y: 1.0 })).then_some(())
    })
    .await;
    client.close().await;
    assert_eq!(server.stop(), 0);
}
