//! The WebSocket transport (docs/protocol.md, "WebSocket"): after the HTTP upgrade
//! (`net::web`), each text message carries one JSON message and each binary message one
//! frame of the binary encoding, as the subprotocol chose. tokio-tungstenite speaks the
//! WebSocket framing (masking, fragments, pings, the close handshake) and enforces the size
//! limit; this module maps its messages onto the protocol's.

use std::io;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hearth_components::protocol::{MAX_LINE_BYTES, ServerMessage};
use hearth_components::wire::{FrameKind, MAX_FRAME_BYTES, WireError, decode_frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::connection::{CLIENT_MESSAGES_PER_SECOND, LINGER, WRITE_TIMEOUT};
use super::encoding::{Encoding, Incoming, IncomingError};
use super::sent_rate::{SentRate, SentRateReader};
use super::transport::{Outgoing, Received, Transport, close_code};

/// The subprotocol that chooses the binary encoding.
pub const BINARY_SUBPROTOCOL: &str = "hearth.binary";
/// The subprotocol that chooses JSON (also the encoding when none is asked for).
pub const JSON_SUBPROTOCOL: &str = "hearth.json";

/// The largest WebSocket message (and frame) read: a binary frame of
/// [`MAX_FRAME_BYTES`] with its longest length prefix (3 bytes). A text message is held to
/// [`MAX_LINE_BYTES`] after it is read.
pub const MAX_MESSAGE_BYTES: usize = MAX_FRAME_BYTES + 3;

/// Bytes read from the socket at a time (tungstenite's default, 128 KiB per connection, is
/// far more than a game client needs).
const READ_BUFFER: usize = 8 * 1024;

/// The encoding a handshake's `Sec-WebSocket-Protocol` offers choose: the first one offered
/// that this server speaks, with its name to echo; JSON and no name when none is.
pub fn choose_subprotocol(offered: &str) -> (Encoding, Option<&'static str>) {
    for name in offered.split(',').map(str::trim) {
        if name.eq_ignore_ascii_case(BINARY_SUBPROTOCOL) {
            return (Encoding::Binary, Some(BINARY_SUBPROTOCOL));
        }
        if name.eq_ignore_ascii_case(JSON_SUBPROTOCOL) {
            return (Encoding::Json, Some(JSON_SUBPROTOCOL));
        }
    }
    (Encoding::Json, None)
}

/// A client connection over WebSocket, on an upgraded HTTP connection `S` (plain or TLS).
pub struct WsTransport<S> {
    ws: WebSocketStream<SentRateReader<S>>,
    encoding: Encoding,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> WsTransport<S> {
    /// Starts the WebSocket protocol (server side) on `io`, whose handshake is done.
    pub async fn new(io: S, encoding: Encoding) -> Self {
        let limit = SentRate::new(CLIENT_MESSAGES_PER_SECOND, CLIENT_MESSAGES_PER_SECOND);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let ws = WebSocketStream::from_raw_socket(
            SentRateReader::new(io, limit),
            Role::Server,
            Some(config),
        )
        .await;
        Self { ws, encoding }
    }

    /// One WebSocket message from the client, as the protocol reads it.
    fn read(&self, message: Message) -> Option<Result<Received, IncomingError>> {
        let received = match (message, self.encoding) {
            (Message::Text(text), Encoding::Json) if text.len() > MAX_LINE_BYTES => {
                Err(IncomingError::TooLarge)
            }
            (Message::Text(text), Encoding::Json) => {
                Ok(Received::Message(Incoming::Line(text.as_str().to_owned())))
            }
            (Message::Binary(bytes), Encoding::Binary) => one_frame(&bytes),
            (Message::Text(_), Encoding::Binary) => Err(IncomingError::Malformed(format!(
                "the {BINARY_SUBPROTOCOL} subprotocol takes binary messages, one frame each"
            ))),
            (Message::Binary(_), Encoding::Json) => Err(IncomingError::Malformed(
                "JSON (no subprotocol, or hearth.json) takes text messages, one JSON message each"
                    .into(),
            )),
            (Message::Ping(_) | Message::Pong(_) | Message::Frame(_), _) => Ok(Received::Control),
            (Message::Close(_), _) => return None,
        };
        Some(received)
    }

    /// Sends `message` (its encoded bytes) as one WebSocket message, without flushing.
    async fn feed(&mut self, message: &[u8]) -> io::Result<()> {
        let message = match self.encoding {
            Encoding::Json => {
                // A text message is the JSON without the line's newline.
                let json = message.strip_suffix(b"\n").unwrap_or(message);
                let text = Utf8Bytes::try_from(Bytes::copy_from_slice(json))
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Message::Text(text)
            }
            Encoding::Binary => Message::Binary(Bytes::copy_from_slice(message)),
        };
        self.ws.feed(message).await.map_err(into_io)
    }

    async fn send_all(&mut self, out: &Outgoing) -> io::Result<()> {
        for message in out.messages() {
            self.feed(message).await?;
        }
        // One flush for the batch: tungstenite wrote the messages into its buffer.
        self.ws.flush().await.map_err(into_io)
    }
}

/// A binary message's frame: exactly one, of a kind a client may send.
fn one_frame(bytes: &[u8]) -> Result<Received, IncomingError> {
    match decode_frame(bytes) {
        Ok((_, used)) if used != bytes.len() => Err(IncomingError::Malformed(
            "a binary WebSocket message must hold exactly one frame".into(),
        )),
        Ok((frame, _)) if frame.kind != FrameKind::Message => Err(IncomingError::Wire(
            WireError::UnknownKind(frame.kind as u8),
        )),
        Ok((frame, _)) => Ok(Received::Message(Incoming::Message(frame.payload.to_vec()))),
        Err(WireError::Oversized(_)) => Err(IncomingError::TooLarge),
        Err(e) => Err(IncomingError::Wire(e)),
    }
}

/// What tungstenite's errors mean for the connection.
fn incoming_error(error: tungstenite::Error) -> Option<IncomingError> {
    use tungstenite::Error;
    match error {
        Error::ConnectionClosed | Error::AlreadyClosed => None,
        Error::Capacity(_) => Some(IncomingError::TooLarge),
        Error::Utf8(_) => Some(IncomingError::InvalidUtf8),
        Error::Io(e) => Some(IncomingError::Io(e)),
        other => Some(IncomingError::Malformed(format!("WebSocket: {other}"))),
    }
}

fn into_io(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for WsTransport<S> {
    fn encoding(&self) -> Encoding {
        self.encoding
    }

    async fn receive(&mut self) -> Option<Result<Received, IncomingError>> {
        // tungstenite keeps partial messages between polls: cancel-safe.
        match self.ws.next().await? {
            Ok(message) => self.read(message),
            Err(error) => incoming_error(error).map(Err),
        }
    }

    fn rate(&mut self) -> &mut SentRate {
        self.ws.get_mut().rate()
    }

    async fn send(&mut self, out: &Outgoing) -> io::Result<()> {
        tokio::time::timeout(WRITE_TIMEOUT, self.send_all(out))
            .await
            .map_err(|_| io::ErrorKind::TimedOut)?
    }

    async fn close(mut self, last: Option<ServerMessage>) {
        let code = close_code(last.as_ref());
        let closing = async {
            if let Some(message) = &last {
                self.send(&Outgoing::one(self.encoding, message)).await.ok();
            }
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: Utf8Bytes::from_static(""),
            };
            self.ws.close(Some(frame)).await.ok();
        };
        if tokio::time::timeout(WRITE_TIMEOUT, closing).await.is_err() {
            return;
        }
        // The client answers the close frame; until then (at most LINGER) what it still
        // sends is read and dropped, so the close does not reset the connection.
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        tokio::time::timeout(LINGER, drain).await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_subprotocol_offered_that_is_known_chooses_the_encoding() {
        assert_eq!(
            choose_subprotocol("hearth.binary"),
            (Encoding::Binary, Some(BINARY_SUBPROTOCOL))
        );
        assert_eq!(
            choose_subprotocol("chat, hearth.json, hearth.binary"),
            (Encoding::Json, Some(JSON_SUBPROTOCOL))
        );
        assert_eq!(choose_subprotocol(""), (Encoding::Json, None));
        assert_eq!(choose_subprotocol("chat"), (Encoding::Json, None));
    }

    #[test]
    fn a_binary_message_is_exactly_one_message_frame() {
        let mut frame = Vec::new();
        hearth_components::wire::encode_frame(FrameKind::Message, &[0x80], &mut frame).unwrap();
        assert!(matches!(
            one_frame(&frame),
            Ok(Received::Message(Incoming::Message(payload))) if payload == [0x80]
        ));
        let mut two = frame.clone();
        two.extend_from_slice(&frame);
        assert!(matches!(one_frame(&two), Err(IncomingError::Malformed(_))));
        assert!(matches!(
            one_frame(&frame[..1]),
            Err(IncomingError::Wire(_))
        ));
        let mut update = Vec::new();
        hearth_components::wire::encode_frame(FrameKind::Update, &[0; 4], &mut update).unwrap();
        assert!(matches!(one_frame(&update), Err(IncomingError::Wire(_))));
    }
}
