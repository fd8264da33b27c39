//! A bot's connection in the encoding of the run (`--encoding`): JSON lines, or the binary
//! encoding (a preamble, then length-prefixed frames: MessagePack messages and replication
//! updates), as docs/protocol.md specifies them. Counts every byte received.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hearth_components::wire::{
    FrameKind, PREAMBLE, WireError, decode_frame, decode_message, encode_message,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::config::Encoding;

/// One message from the server, borrowed from the reader's buffer.
pub enum Incoming<'a> {
    /// A JSON line (without its newline).
    Line(&'a [u8]),
    /// A binary message frame's payload (MessagePack).
    Message(&'a [u8]),
    /// A binary update frame's payload.
    Update(&'a [u8]),
}

impl Incoming<'_> {
    /// The message as `T` (JSON or MessagePack); `None` for an update frame or a message
    /// that is not a `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        match self {
            Incoming::Line(line) => serde_json::from_slice(line).ok(),
            Incoming::Message(payload) => decode_message(payload).ok(),
            Incoming::Update(_) => None,
        }
    }
}

/// The reading half: lines or frames.
pub struct Reader {
    inner: BufReader<OwnedReadHalf>,
    encoding: Encoding,
    buf: Vec<u8>,
    /// Bytes of `buf` the previous message took, dropped before reading the next.
    consumed: usize,
}

impl Reader {
    /// The next message; `None` at the end of the stream; an error for a broken binary
    /// stream (a frame the protocol does not allow is a broken promise of the server).
    pub async fn next(&mut self, received: &AtomicU64) -> io::Result<Option<Incoming<'_>>> {
        match self.encoding {
            Encoding::Json => {
                self.buf.clear();
                let n = self.inner.read_until(b'\n', &mut self.buf).await?;
                received.fetch_add(n as u64, Relaxed);
                if n == 0 {
                    return Ok(None);
                }
                Ok(Some(Incoming::Line(self.buf.trim_ascii_end())))
            }
            Encoding::Binary => {
                self.buf.drain(..self.consumed);
                self.consumed = 0;
                loop {
                    match decode_frame(&self.buf) {
                        Ok((_, used)) => {
                            self.consumed = used;
                            break;
                        }
                        Err(WireError::Truncated(_)) => {}
                        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                    }
                    let n = self.inner.read_buf(&mut self.buf).await?;
                    received.fetch_add(n as u64, Relaxed);
                    if n == 0 {
                        return if self.buf.is_empty() {
                            Ok(None)
                        } else {
                            Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "truncated frame",
                            ))
                        };
                    }
                }
                let (frame, _) = decode_frame(&self.buf[..self.consumed])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Ok(Some(match frame.kind {
                    FrameKind::Message => Incoming::Message(frame.payload),
                    FrameKind::Update => Incoming::Update(frame.payload),
                }))
            }
        }
    }
}

/// The writing half: sends JSON text as a line, or as a MessagePack frame.
pub struct Writer {
    inner: OwnedWriteHalf,
    encoding: Encoding,
    out: Vec<u8>,
}

impl Writer {
    /// Sends one message given as JSON text (with or without its newline).
    pub async fn send(&mut self, json: &str) -> io::Result<()> {
        match self.encoding {
            Encoding::Json => self.inner.write_all(json.as_bytes()).await,
            Encoding::Binary => {
                let value: serde_json::Value = serde_json::from_str(json)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                self.out.clear();
                encode_message(&value, &mut self.out)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                self.inner.write_all(&self.out).await
            }
        }
    }

    /// Ends the bot's side of the connection.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
}

/// Opens a connection in `encoding` (for binary: the preamble, and the server's answer).
pub async fn open(
    reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    encoding: Encoding,
) -> io::Result<(Reader, Writer)> {
    let mut inner = BufReader::with_capacity(64 * 1024, reader);
    if encoding == Encoding::Binary {
        writer.write_all(&PREAMBLE).await?;
        let mut answer = [0u8; PREAMBLE.len()];
        inner.read_exact(&mut answer).await?;
        if answer != PREAMBLE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server did not answer the binary preamble in kind",
            ));
        }
    }
    Ok((
        Reader {
            inner,
            encoding,
            buf: Vec::with_capacity(4096),
            consumed: 0,
        },
        Writer {
            inner: writer,
            encoding,
            out: Vec::with_capacity(256),
        },
    ))
}
