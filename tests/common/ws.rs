//! A WebSocket test client (tokio-tungstenite) speaking the protocol as a browser or WASM
//! client would: JSON text messages, or binary frames under `hearth.binary`; and TLS helpers
//! (a certificate generated with rcgen, a client that trusts it) for the TLS tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hearth_components::wire::{
    FrameKind, UpdateFrame, decode_frame, decode_message, encode_message,
};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

/// The demo game with a WebSocket listener and metrics on free ports, `configure`d (the TLS
/// tests add their certificate there), under the store key prefix `name`.
pub fn demo_server(
    name: &str,
    configure: impl FnOnce(&mut hearth::config::ServerConfig),
) -> Result<hearth::testing::ServerThread, hearth::testing::NotStarted> {
    let mut config = hearth::testing::test_config(name);
    config.front_door.listen = "127.0.0.1:0".parse().unwrap();
    config.front_door.listen_ws = Some("127.0.0.1:0".parse().unwrap());
    config.metrics_endpoint.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    hearth::testing::ServerThread::demo(config)
}

/// How long a client waits for a message before failing the test: a guard against a hang,
/// not a timing assertion.
pub const WAIT: Duration = Duration::from_secs(15);

/// The WebSocket handshake on `stream` (to `addr`'s `/ws`, as `scheme`), offering
/// `subprotocol` and sending `origin`, if given.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    scheme: &str,
    addr: SocketAddr,
    subprotocol: Option<&str>,
    origin: Option<&str>,
) -> Result<(WebSocketStream<S>, Response), tungstenite::Error> {
    let mut request = format!("{scheme}://localhost:{}/ws", addr.port()).into_client_request()?;
    let headers = request.headers_mut();
    if let Some(subprotocol) = subprotocol {
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(subprotocol).unwrap(),
        );
    }
    if let Some(origin) = origin {
        headers.insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    tokio_tungstenite::client_async(request, stream).await
}

/// One WebSocket client connection.
pub struct WsClient<S> {
    pub ws: WebSocketStream<S>,
    /// Under `hearth.binary`: messages are frames of the binary encoding.
    binary: bool,
    /// Our entity, from the last `replication` message read.
    you: Option<u64>,
    /// Whether an update read since brought it into view.
    in_view: bool,
}

impl WsClient<TcpStream> {
    /// Connects to `addr` over plain WebSocket, offering `subprotocol`.
    pub async fn connect(addr: SocketAddr, subprotocol: Option<&str>) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connecting");
        let (ws, response) = handshake(stream, "ws", addr, subprotocol, None)
            .await
            .expect("the WebSocket handshake");
        Self::new(ws, &response)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    /// A client on a handshaken connection, in the encoding the server chose.
    pub fn new(ws: WebSocketStream<S>, response: &Response) -> Self {
        let binary = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .is_some_and(|p| p == "hearth.binary");
        Self {
            ws,
            binary,
            you: None,
            in_view: false,
        }
    }

    /// Sends one message in the connection's encoding.
    pub async fn send(&mut self, message: Value) {
        let message = if self.binary {
            // A whole frame: the length, the message kind, the MessagePack payload.
            let mut frame = Vec::new();
            encode_message(&message, &mut frame).unwrap();
            Message::Binary(frame.into())
        } else {
            Message::Text(message.to_string().into())
        };
        self.ws.send(message).await.expect("sending");
    }

    /// The next message, as JSON (a binary update as `{"type":"update","round",
    /// "entered":[ids],"changed":[ids],"left":[ids]}`); `Err` with the close frame when the
    /// server closes instead.
    pub async fn next(&mut self) -> Result<Value, Option<CloseFrame>> {
        let message = self.read_one().await?;
        match message["type"].as_str() {
            Some("replication") => {
                self.you = message["you"].as_u64();
                self.in_view = false;
            }
            Some("update") => {
                let entered = message["entered"].as_array().expect("an entered section");
                // JSON: entities as objects with an id; the test's binary view: bare ids.
                let you = self.you;
                if entered
                    .iter()
                    .any(|e| you.is_some_and(|you| e["id"] == you || *e == you))
                {
                    self.in_view = true;
                }
            }
            _ => {}
        }
        Ok(message)
    }

    async fn read_one(&mut self) -> Result<Value, Option<CloseFrame>> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no message within {WAIT:?}"));
            match message {
                Some(Ok(Message::Text(text))) => {
                    assert!(!self.binary, "a text message under hearth.binary: {text}");
                    assert!(!text.ends_with('\n'), "no newline: {text:?}");
                    return Ok(serde_json::from_str(&text).expect("one JSON message"));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    assert!(self.binary, "a binary message under JSON");
                    let (frame, used) = decode_frame(&bytes).expect("a frame");
                    assert_eq!(used, bytes.len(), "exactly one frame per message");
                    return Ok(match frame.kind {
                        FrameKind::Update => {
                            let update = UpdateFrame::decode(frame.payload).expect("an update");
                            let ids = |section: &[hearth_components::wire::EntityState]| {
                                section.iter().map(|e| e.id).collect::<Vec<_>>()
                            };
                            json!({"type": "update", "round": update.round,
                                "entered": ids(&update.entered), "changed": ids(&update.changed),
                                "left": update.left})
                        }
                        _ => decode_message(frame.payload).expect("a MessagePack message"),
                    });
                }
                Some(Ok(Message::Close(frame))) => return Err(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// The next message other than replication, which must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self
                .next()
                .await
                .unwrap_or_else(|close| panic!("closed ({close:?}) while expecting {kind}"));
            let replication = matches!(message["type"].as_str(), Some("replication" | "update"));
            if replication && kind != "replication" && kind != "update" {
                continue;
            }
            assert_eq!(message["type"], kind, "expected {kind}, got {message}");
            return message;
        }
    }

    /// Sends `message` and returns the answer, which must be of type `kind`.
    pub async fn ask(&mut self, message: Value, kind: &str) -> Value {
        self.send(message).await;
        self.expect(kind).await
    }

    /// Reads until an update brings our own entity into view (after the `replication`
    /// message that named it); returns its id.
    pub async fn until_in_view(&mut self) -> u64 {
        while !self.in_view {
            if let Err(close) = self.next().await {
                panic!("closed ({close:?}) before our entity came into view");
            }
        }
        self.you.expect("a replication message")
    }

    /// Registers and logs in `username`; returns the `logged_in` message.
    pub async fn register_and_login(&mut self, username: &str) -> Value {
        let account = json!({"username": username, "password": "correct horse"});
        let mut register = account.clone();
        register["type"] = json!("register");
        self.ask(register, "registered").await;
        let mut login = account;
        login["type"] = json!("login");
        self.ask(login, "logged_in").await
    }

    /// A ping answered (the connection is served).
    pub async fn pings(&mut self, nonce: u64) {
        let pong = self
            .ask(json!({"type": "ping", "nonce": nonce}), "pong")
            .await;
        assert_eq!(pong["nonce"], nonce);
    }

    /// Reads until the server closes: the messages it sent last (replication left out) and
    /// its close frame.
    pub async fn until_closed(&mut self) -> (Vec<Value>, Option<CloseFrame>) {
        let mut last = Vec::new();
        loop {
            match self.next().await {
                Ok(message)
                    if matches!(message["type"].as_str(), Some("replication" | "update")) => {}
                Ok(message) => last.push(message),
                Err(close) => return (last, close),
            }
        }
    }
}

/// A self-signed certificate for `localhost` and its key, written as PEM files in a
/// temporary folder, and a client configuration that trusts it.
pub struct TestCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl TestCertificate {
    pub fn new() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("generating a certificate");
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            cert,
            key,
            client: Arc::new(client),
            _dir: dir,
        }
    }

    /// A TLS connection to `addr` that checks the server's certificate.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let stream = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        TlsConnector::from(Arc::clone(&self.client))
            .connect(name, stream)
            .await
    }
}
