//! A bot's connection, opened by `hearth_client`'s connection layer (`hearth_client::raw`:
//! TCP, TLS, `ws://` or `wss://`, in either encoding), whose messages the bot decodes itself
//! with care (typed, only the fields it reads): messages and updates, counting the bytes
//! received; writes the few messages a bot sends.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::{SinkExt, StreamExt};
use hearth_client::raw::{self, Incoming as RawIncoming, Outbound, RawMessage};
use hearth_client::{ClientConfig, Target};
use hearth_components::wire::{FrameKind, UpdateFrame, decode_message};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Encoding, Transport};
use crate::update::JsonUpdate;

/// What a bot sends.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum Outgoing<'a> {
    Register {
        username: &'a str,
        password: &'a str,
    },
    Login {
        username: &'a str,
        password: &'a str,
    },
    Resume {
        token: &'a str,
    },
    /// `dx`, `dy` are exact in both encodings (the bot sends multiples of 2^-12, see
    /// [`crate::walk`]), so the server steps exactly the way the bot expects.
    Move {
        dx: f64,
        dy: f64,
    },
    Ping {
        nonce: u64,
    },
}

/// One component of the `replication` message.
#[derive(Deserialize, Clone, Debug)]
pub(crate) struct ComponentInfo {
    pub(crate) name: String,
    pub(crate) encoding: String,
}

/// The fields of server messages a bot looks at (the rest is skipped).
#[derive(Deserialize)]
pub(crate) struct Message {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) nonce: Option<u64>,
    pub(crate) state: Option<serde_json::Value>,
    pub(crate) resume_token: Option<String>,
    /// `logged_in`: the player's id.
    pub(crate) player_id: Option<u64>,
    /// `handoff`: where to continue (TCP or TLS), and the WebSocket listener there.
    pub(crate) addr: Option<String>,
    pub(crate) ws_addr: Option<String>,
    /// `replication`: the bot's own entity id.
    pub(crate) you: Option<u64>,
    /// `replication`: the replicated components, in index order.
    pub(crate) components: Option<Vec<ComponentInfo>>,
}

/// One update, as its encoding carries it.
pub(crate) enum RawUpdate {
    Json(JsonUpdate),
    Binary(UpdateFrame),
}

/// What the server sent.
pub(crate) enum Incoming {
    Message(Message),
    Update(RawUpdate),
}

/// Why reading failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection failed.
    Io,
    /// A message or update that does not decode (a broken promise); the stream is still in
    /// step.
    Decode(String),
    /// Bytes that break the framing (a broken promise); the stream cannot go on.
    Framing(String),
}

/// The reading half of a connection.
pub(crate) struct Reader {
    incoming: RawIncoming,
}

/// The writing half of a connection.
pub(crate) struct Writer {
    outbound: Outbound,
    encoding: hearth_client::Encoding,
}

/// A connection: both halves.
pub(crate) struct Conn {
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
}

/// The source address of bot `n`: on loopback, a few bots per 127.x.y.z so the server's
/// per-address limits see many clients, as in production.
fn source_ip(config: &Config, n: usize) -> Option<IpAddr> {
    if config.bots_per_address == 0 || !config.addr.ip().is_loopback() || !config.addr.is_ipv4() {
        return None;
    }
    let k = n / config.bots_per_address;
    Some(IpAddr::V4(Ipv4Addr::new(
        127,
        (1 + k / (254 * 256)) as u8,
        ((k / 254) % 256) as u8,
        (1 + k % 254) as u8,
    )))
}

/// The encoding in `hearth_client`'s terms.
fn encoding(config: &Config) -> hearth_client::Encoding {
    match config.encoding {
        Encoding::Json => hearth_client::Encoding::Json,
        Encoding::Binary => hearth_client::Encoding::Binary,
    }
}

/// Where bots connect: `--addr` through `--transport`.
fn target(config: &Config) -> Target {
    let addr = config.addr;
    match config.transport {
        Transport::Tcp => Target::Tcp(addr.to_string()),
        Transport::Tls => Target::Tls(addr.to_string()),
        Transport::Ws => Target::WebSocket(format!("ws://{addr}/ws")),
        Transport::Wss => Target::WebSocket(format!("wss://{addr}/ws")),
    }
}

/// Connects bot `n` and opens the connection in the configured transport and encoding (a
/// binary connection on a byte stream sends the preamble and reads the server's).
pub(crate) async fn connect(config: &Config, n: usize) -> io::Result<Conn> {
    connect_target(config, n, &target(config)).await
}

/// Connects bot `n` to another server, `addr` (`host:port`, as a `handoff` names it), through
/// the configured transport.
pub(crate) async fn connect_to(config: &Config, n: usize, addr: &str) -> io::Result<Conn> {
    connect_target(config, n, &target(config).with_addr(addr)).await
}

async fn connect_target(config: &Config, n: usize, target: &Target) -> io::Result<Conn> {
    let client = ClientConfig {
        encoding: encoding(config),
        tls: config.tls(),
        bind_ip: source_ip(config, n),
        ..ClientConfig::default()
    };
    let conn = raw::connect_raw(target, &client)
        .await
        .map_err(io::Error::other)?;
    Ok(Conn {
        reader: Reader {
            incoming: conn.incoming,
        },
        writer: Writer {
            outbound: conn.outbound,
            encoding: client.encoding,
        },
    })
}

impl Writer {
    /// Sends one message (a line, a frame, or a WebSocket message).
    pub(crate) async fn send(&mut self, message: &Outgoing<'_>) -> io::Result<()> {
        let message = raw::Outgoing::encode(self.encoding, message).map_err(io::Error::other)?;
        self.outbound.send(message).await.map_err(io::Error::other)
    }

    /// Ends the writing side.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        self.outbound.close().await.map_err(io::Error::other)
    }
}

impl Reader {
    /// The next message or update and the bytes it took in its encoding; `Ok(None)` at a
    /// clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<(Incoming, usize)>, ReadError> {
        let raw = match self.incoming.next().await {
            None => return Ok(None),
            Some(Err(raw::CodecError::Io(_))) => return Err(ReadError::Io),
            Some(Err(e)) => return Err(ReadError::Framing(format!("a bad frame: {e}"))),
            Some(Ok(raw)) => raw,
        };
        let bytes = raw.wire_bytes();
        let incoming = match raw {
            RawMessage::Json(line) => {
                let line = line.trim_ascii();
                if line.starts_with(br#"{"type":"update""#) {
                    serde_json::from_slice(line).map(|u| Incoming::Update(RawUpdate::Json(u)))
                } else {
                    serde_json::from_slice(line).map(Incoming::Message)
                }
                .map_err(|e| format!("not a valid JSON message: {e}"))
            }
            RawMessage::Frame { kind, payload } => match kind {
                FrameKind::Message => decode_message(&payload)
                    .map(Incoming::Message)
                    .map_err(|e| e.to_string()),
                FrameKind::Update => UpdateFrame::decode(&payload)
                    .map(|u| Incoming::Update(RawUpdate::Binary(u)))
                    .map_err(|e| e.to_string()),
            },
        };
        incoming
            .map(|i| Some((i, bytes)))
            .map_err(ReadError::Decode)
    }
}
