//! A bot's connection in either encoding (docs/protocol.md): JSON lines, or the binary
//! preamble then length-prefixed frames. Reads messages and updates, counting the bytes
//! received; writes the few messages a bot sends.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hearth_components::wire::{
    self, FrameKind, PREAMBLE, UpdateFrame, WireError, decode_frame, decode_message, encode_message,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::config::{Config, Encoding};
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
    half: BufReader<OwnedReadHalf>,
    encoding: Encoding,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already consumed (binary).
    start: usize,
}

/// The writing half of a connection.
pub(crate) struct Writer {
    half: OwnedWriteHalf,
    encoding: Encoding,
    out: Vec<u8>,
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

/// Connects bot `n` and opens the connection in the configured encoding (a binary
/// connection sends the preamble and reads the server's).
pub(crate) async fn connect(config: &Config, n: usize) -> io::Result<Conn> {
    let socket = match config.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source_ip(config, n) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(config.addr).await?;
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    if config.encoding == Encoding::Binary {
        writer.write_all(&PREAMBLE).await?;
        let mut answer = [0u8; PREAMBLE.len()];
        reader.read_exact(&mut answer).await?;
        // Anything but our preamble (a refusal such as `server_busy` is a JSON line).
        if wire::read_preamble(&answer).is_err() {
            return Err(io::Error::other("the server did not answer the preamble"));
        }
    }
    Ok(Conn {
        reader: Reader {
            half: reader,
            encoding: config.encoding,
            buffer: Vec::with_capacity(4096),
            start: 0,
        },
        writer: Writer {
            half: writer,
            encoding: config.encoding,
            out: Vec::with_capacity(256),
        },
    })
}

impl Writer {
    /// Sends one message (a line or a frame).
    pub(crate) async fn send(&mut self, message: &Outgoing<'_>) -> io::Result<()> {
        self.out.clear();
        match self.encoding {
            Encoding::Json => {
                serde_json::to_writer(&mut self.out, message).map_err(io::Error::other)?;
                self.out.push(b'\n');
            }
            Encoding::Binary => encode_message(message, &mut self.out).map_err(io::Error::other)?,
        }
        self.half.write_all(&self.out).await
    }

    /// Ends the writing side.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        self.half.shutdown().await
    }
}

impl Reader {
    /// The next message or update and the bytes it took on the wire; `Ok(None)` at a clean
    /// end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<(Incoming, usize)>, ReadError> {
        match self.encoding {
            Encoding::Json => self.next_line().await,
            Encoding::Binary => self.next_frame().await,
        }
    }

    async fn next_line(&mut self) -> Result<Option<(Incoming, usize)>, ReadError> {
        loop {
            self.buffer.clear();
            let read = self
                .half
                .read_until(b'\n', &mut self.buffer)
                .await
                .map_err(|_| ReadError::Io)?;
            if read == 0 {
                return Ok(None);
            }
            let line = self.buffer.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let incoming = if line.starts_with(br#"{"type":"update""#) {
                serde_json::from_slice(line).map(|u| Incoming::Update(RawUpdate::Json(u)))
            } else {
                serde_json::from_slice(line).map(Incoming::Message)
            };
            return incoming
                .map(|i| Some((i, read)))
                .map_err(|e| ReadError::Decode(format!("not a valid JSON message: {e}")));
        }
    }

    async fn next_frame(&mut self) -> Result<Option<(Incoming, usize)>, ReadError> {
        loop {
            match decode_frame(&self.buffer[self.start..]) {
                Ok((frame, used)) => {
                    let incoming = match frame.kind {
                        FrameKind::Message => decode_message(frame.payload)
                            .map(Incoming::Message)
                            .map_err(|e| e.to_string()),
                        FrameKind::Update => UpdateFrame::decode(frame.payload)
                            .map(|u| Incoming::Update(RawUpdate::Binary(u)))
                            .map_err(|e| e.to_string()),
                    };
                    self.start += used;
                    return incoming.map(|i| Some((i, used))).map_err(ReadError::Decode);
                }
                Err(WireError::Truncated(_)) => {
                    self.buffer.drain(..self.start);
                    self.start = 0;
                    self.buffer.reserve(16 * 1024);
                    let read = self
                        .half
                        .read_buf(&mut self.buffer)
                        .await
                        .map_err(|_| ReadError::Io)?;
                    if read == 0 {
                        return if self.buffer.is_empty() {
                            Ok(None)
                        } else {
                            Err(ReadError::Framing("the stream ended inside a frame".into()))
                        };
                    }
                }
                Err(e) => return Err(ReadError::Framing(format!("a bad frame: {e}"))),
            }
        }
    }
}
