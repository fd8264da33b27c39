//! A connection's encoding (docs/protocol.md, "Binary encoding"): told from the client's
//! first byte (NUL: a binary preamble; anything else: JSON lines), then used to read the
//! client's messages ([`WireCodec`]) and to write the server's ([`write_message`]).
//!
//! A binary client's messages are turned into the JSON text the JSON path parses, so both
//! encodings share one parser and refuse the same things. What the JSON text could no longer
//! show (a repeated key, bytes after the map, a payload that is not one map with a string
//! `type`) is refused before, by [`decode_json_message`], in MessagePack's terms.

use std::io;

use bytes::{Buf, BytesMut};
use hearth_components::protocol::{MAX_LINE_BYTES, MAX_SERVER_LINE_BYTES, ServerMessage};
use hearth_components::wire::{
    self, FrameKind, MAGIC, MessageError, PREAMBLE, WireError, decode_frame, decode_json_message,
    encode_message,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

/// How a connection's bytes are encoded, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Newline-delimited JSON (the default).
    Json,
    /// Length-prefixed frames: MessagePack messages and binary updates.
    Binary,
}

/// Why a connection's first bytes chose no encoding.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The client closed, or the socket failed, before choosing.
    #[error("closed before the first byte: {0}")]
    Io(#[from] io::Error),
    /// A binary preamble that is not one (bad magic, unknown version).
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Reads the connection's first bytes: the encoding the client chose and, for JSON, the
/// byte already read (the start of its first line, for the decoder). Reads rather than
/// peeks, so it works over TLS as over plain TCP.
pub async fn detect<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<(Encoding, Option<u8>), DetectError> {
    let mut first = [0u8; 1];
    if reader.read(&mut first).await? == 0 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    if first[0] != MAGIC[0] {
        return Ok((Encoding::Json, Some(first[0])));
    }
    let mut preamble = [0u8; PREAMBLE.len()];
    preamble[0] = first[0];
    reader.read_exact(&mut preamble[1..]).await?;
    wire::read_preamble(&preamble)?;
    Ok((Encoding::Binary, None))
}

/// One message from the client, in its encoding.
#[derive(Debug)]
pub enum Incoming {
    /// A JSON line (may be blank).
    Line(String),
    /// A binary message frame's payload (MessagePack).
    Message(Vec<u8>),
}

impl Incoming {
    /// Whether it is a blank line (ignored, not counted).
    pub fn is_blank(&self) -> bool {
        matches!(self, Self::Line(line) if line.trim().is_empty())
    }

    /// The message as the JSON text the parser reads. A binary message is refused first, in
    /// MessagePack's terms, for what its JSON text could not show: not one map with a string
    /// `type` (bytes after it included), a repeated key, a value with no JSON form (`bin`,
    /// `ext`, a key that is not a string, NaN), nesting past the parser's depth. The
    /// connection answers that with `bad_request` (`not a valid MessagePack message:
    /// <reason>`) and reads on.
    pub fn into_text(self) -> Result<String, MessageError> {
        match self {
            Self::Line(line) => Ok(line),
            Self::Message(payload) => decode_json_message(&payload)
                .map(|object| serde_json::Value::Object(object).to_string()),
        }
    }
}

/// Why reading the client's messages stopped: every one of these closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    /// A line over [`MAX_LINE_BYTES`] or a frame over [`wire::MAX_FRAME_BYTES`].
    #[error("too large")]
    TooLarge,
    /// A line that is not UTF-8.
    #[error("a line must be valid UTF-8")]
    InvalidUtf8,
    /// A binary frame that breaks the format (truncated at the end of the stream, empty, of
    /// a kind a client may not send).
    #[error(transparent)]
    Wire(WireError),
    /// A WebSocket message that breaks the transport's rules (a binary message that is not
    /// exactly one frame, a message of the other encoding's kind), said in words.
    #[error("{0}")]
    Malformed(String),
    /// The socket failed.
    #[error(transparent)]
    Io(io::Error),
}

impl From<io::Error> for IncomingError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Splits the client's bytes into messages in the connection's encoding.
pub struct WireCodec {
    encoding: Encoding,
    lines: LinesCodec,
}

impl WireCodec {
    /// A decoder for `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        // One byte over the limit, so a line of exactly MAX_LINE_BYTES still fits with the
        // `\r` of a CRLF ending (the codec counts it, then strips it); the limit itself is
        // checked on the line the codec returns.
        Self {
            encoding,
            lines: LinesCodec::new_with_max_length(MAX_LINE_BYTES + 1),
        }
    }

    fn line(
        found: Result<Option<String>, LinesCodecError>,
    ) -> Result<Option<Incoming>, IncomingError> {
        match found {
            Ok(Some(line)) if line.len() > MAX_LINE_BYTES => Err(IncomingError::TooLarge),
            Ok(line) => Ok(line.map(Incoming::Line)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Err(IncomingError::TooLarge),
            Err(LinesCodecError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                Err(IncomingError::InvalidUtf8)
            }
            Err(LinesCodecError::Io(e)) => Err(IncomingError::Io(e)),
        }
    }

    fn frame(buf: &mut BytesMut) -> Result<Option<Incoming>, IncomingError> {
        match decode_frame(buf) {
            Ok((frame, used)) => {
                if frame.kind != FrameKind::Message {
                    return Err(IncomingError::Wire(WireError::UnknownKind(
                        frame.kind as u8,
                    )));
                }
                let payload = frame.payload.to_vec();
                buf.advance(used);
                Ok(Some(Incoming::Message(payload)))
            }
            Err(WireError::Truncated(_)) => Ok(None),
            Err(WireError::Oversized(_)) => Err(IncomingError::TooLarge),
            Err(e) => Err(IncomingError::Wire(e)),
        }
    }
}

impl Decoder for WireCodec {
    type Item = Incoming;
    type Error = IncomingError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, IncomingError> {
        match self.encoding {
            Encoding::Json => Self::line(self.lines.decode(buf)),
            Encoding::Binary => Self::frame(buf),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, IncomingError> {
        match self.encoding {
            Encoding::Json => Self::line(self.lines.decode_eof(buf)),
            Encoding::Binary => match Self::frame(buf)? {
                Some(message) => Ok(Some(message)),
                None if buf.is_empty() => Ok(None),
                None => Err(IncomingError::Wire(WireError::Truncated("frame"))),
            },
        }
    }
}

/// Appends `message` in `encoding` to `out`. A message without a form in that encoding (a
/// game's message that does not serialise, a programming error), or longer than a client
/// must accept ([`MAX_SERVER_LINE_BYTES`] as a JSON line, a frame of
/// [`wire::MAX_FRAME_BYTES`]), is logged and left out.
pub fn write_message(encoding: Encoding, message: &ServerMessage, out: &mut Vec<u8>) {
    match (encoding, message) {
        (Encoding::Json, message) => {
            let line = message.to_line();
            // The newline does not count, as for the client's lines.
            if line.len() > MAX_SERVER_LINE_BYTES + 1 {
                tracing::error!(
                    bytes = line.len() - 1,
                    max = MAX_SERVER_LINE_BYTES,
                    head = %line.chars().take(60).collect::<String>(),
                    "a server message is longer than a client must accept; not sent"
                );
                return;
            }
            out.extend_from_slice(line.as_bytes());
        }
        (Encoding::Binary, ServerMessage::Game(line)) => {
            let Ok(text) = line.line() else {
                tracing::error!("a game message could not be encoded; not sent");
                return;
            };
            // In the line's order, `type` first (serde_json's `Value` would sort the keys).
            match serde_json::from_str::<OrderedFields>(text) {
                Ok(fields) => packed(&fields, out),
                Err(e) => tracing::error!(%e, "a game message line is not JSON; not sent"),
            }
        }
        (Encoding::Binary, ServerMessage::Answer { .. }) => {
            // Its JSON line has the fields in their order (`type`, then `id`, then the
            // message's own): the map keeps that order.
            let line = message.to_line();
            match serde_json::from_str::<OrderedFields>(&line) {
                Ok(fields) => packed(&fields, out),
                Err(e) => tracing::error!(%e, "an answer's line is not a JSON object; not sent"),
            }
        }
        (Encoding::Binary, message) => packed(message, out),
    }
}

/// A JSON object's fields in the order they are written (serde_json's `Value` sorts them).
struct OrderedFields(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OrderedFields;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedFields, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(OrderedFields(fields))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl serde::Serialize for OrderedFields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn packed<T: serde::Serialize>(message: &T, out: &mut Vec<u8>) {
    if let Err(e) = encode_message(message, out) {
        tracing::error!(%e, "a message has no binary form; not sent");
    }
}

#[cfg(test)]
mod tests {
    use hearth_components::protocol::ErrorCode;
    use hearth_components::wire::{decode_message, encode_frame};

    use super::*;

    fn decode_all(encoding: Encoding, bytes: &[u8]) -> Vec<Result<Option<Incoming>, String>> {
        let mut codec = WireCodec::new(encoding);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(m)) => out.push(Ok(Some(m))),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn binary_messages_read_as_the_json_they_stand_for() {
        let mut bytes = Vec::new();
        encode_message(&serde_json::json!({"type": "ping", "nonce": 7}), &mut bytes).unwrap();
        let found = decode_all(Encoding::Binary, &bytes);
        let Ok(Some(message)) = found.into_iter().next().unwrap() else {
            panic!("a message")
        };
        assert_eq!(message.into_text().unwrap(), r#"{"nonce":7,"type":"ping"}"#);
    }

    #[test]
    fn hostile_binary_input_is_an_error() {
        let mut update = Vec::new();
        encode_frame(FrameKind::Update, &[0, 0, 0, 0], &mut update).unwrap();
        let truncated = [5, 1, 0x81];
        let oversized = [0xff, 0xff, 0x7f];
        for (bytes, expected) in [
            (&update[..], "unknown frame kind 0x02"),
            (&truncated[..], "truncated"),
            (&oversized[..], "too large"),
            (&[2, 0x33, 0][..], "unknown frame kind 0x33"),
        ] {
            let found = decode_all(Encoding::Binary, bytes);
            let Some(Err(e)) = found.last() else {
                panic!("{bytes:?}: {found:?}")
            };
            assert!(e.contains(expected), "{bytes:?}: {e}");
        }
        // A frame whose payload is not MessagePack is a bad request, not a closed stream.
        let mut junk = Vec::new();
        encode_frame(FrameKind::Message, &[0xc1], &mut junk).unwrap();
        let found = decode_all(Encoding::Binary, &junk);
        let Ok(Some(message)) = found.into_iter().next().unwrap() else {
            panic!("a message")
        };
        assert!(message.into_text().is_err());
    }

    #[test]
    fn a_binary_message_is_refused_for_what_its_json_line_would_be() {
        // {"type":"ping","nonce":1,"nonce":2}: a repeated field.
        let repeated = b"\x83\xa4type\xa4ping\xa5nonce\x01\xa5nonce\x02".to_vec();
        // {"type":"ping","nonce":1} then a nil: something after the object.
        let trailing = b"\x82\xa4type\xa4ping\xa5nonce\x01\xc0".to_vec();
        // 7: not a map.
        let integer = vec![0x07];
        for (payload, words) in [
            (repeated, "duplicate field `nonce`"),
            (trailing, "after the MessagePack value"),
            (integer, "a MessagePack map with a string \"type\""),
        ] {
            let e = Incoming::Message(payload)
                .into_text()
                .unwrap_err()
                .to_string();
            assert!(e.contains(words), "{e}");
            // The connection adds "not a valid MessagePack message: " itself.
            assert!(!e.contains("not a valid MessagePack"), "{e}");
            assert!(!e.contains("JSON"), "{e}");
        }
    }

    /// docs/protocol.md, "Field types": an `f32` goes out in a message frame as the float64 of
    /// its shortest decimal (the JSON text's value), and casting that to `f32` gives it back.
    #[test]
    fn an_f32_travels_as_the_float64_of_its_shortest_decimal() {
        #[derive(serde::Serialize)]
        struct At {
            x: f32,
        }
        let x = 5.999_999_5_f32;
        let at = ServerMessage::Game(hearth_components::protocol::GameLine::new("at", At { x }));
        let mut bin = Vec::new();
        write_message(Encoding::Binary, &at, &mut bin);
        let (frame, _) = decode_frame(&bin).unwrap();
        let float = frame.payload.len() - 9;
        assert_eq!(
            frame.payload[float], 0xcb,
            "a float64: {:02x?}",
            frame.payload
        );
        let sent = f64::from_be_bytes(frame.payload[float + 1..].try_into().unwrap());
        assert_eq!(sent, 5.999_999_5_f64, "the decimal's float64");
        assert_ne!(sent, f64::from(x), "not the f32 widened");
        assert_eq!(sent as f32, x, "cast back, the server's f32");
    }

    #[test]
    fn no_server_line_or_frame_is_longer_than_a_client_must_accept() {
        #[derive(serde::Serialize)]
        struct Blob {
            text: String,
        }
        // `{"type":"blob","text":"..."}` is 25 bytes around the text.
        let fits = ServerMessage::Game(hearth_components::protocol::GameLine::new(
            "blob",
            Blob {
                text: "a".repeat(MAX_SERVER_LINE_BYTES - 25),
            },
        ));
        let mut json = Vec::new();
        write_message(Encoding::Json, &fits, &mut json);
        assert_eq!(
            json.len(),
            MAX_SERVER_LINE_BYTES + 1,
            "the longest line is sent"
        );
        let over = ServerMessage::Game(hearth_components::protocol::GameLine::new(
            "blob",
            Blob {
                text: "a".repeat(MAX_SERVER_LINE_BYTES),
            },
        ));
        for encoding in [Encoding::Json, Encoding::Binary] {
            let mut out = Vec::new();
            write_message(encoding, &over, &mut out);
            assert!(out.is_empty(), "{encoding:?}: not sent");
        }
    }

    #[test]
    fn an_answer_carries_its_id_right_after_its_type_in_both_encodings() {
        use hearth_components::protocol::RequestId;
        let pong = ServerMessage::Pong { nonce: 7 }.answering(Some(RequestId::Number(5)));
        let mut json = Vec::new();
        write_message(Encoding::Json, &pong, &mut json);
        assert_eq!(json, b"{\"type\":\"pong\",\"id\":5,\"nonce\":7}\n");
        let mut bin = Vec::new();
        write_message(Encoding::Binary, &pong, &mut bin);
        // docs/protocol.md, "Request ids": 23 bytes, a message frame, a map of 3.
        let expected: &[u8] = &[
            0x17, 0x01, 0x83, 0xa4, b't', b'y', b'p', b'e', 0xa4, b'p', b'o', b'n', b'g', 0xa2,
            b'i', b'd', 0x05, 0xa5, b'n', b'o', b'n', b'c', b'e', 0x07,
        ];
        assert_eq!(bin, expected, "{bin:02x?}");
        let refusal = ServerMessage::game_error("stack_full", "no room")
            .answering(Some(RequestId::Text("g1".into())));
        let mut bin = Vec::new();
        write_message(Encoding::Binary, &refusal, &mut bin);
        let (frame, _) = decode_frame(&bin).unwrap();
        let value: serde_json::Value = decode_message(frame.payload).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type": "error", "id": "g1", "code": "stack_full", "message": "no room"})
        );
        assert_eq!(&frame.payload[1..6], b"\xa4type", "type first");
        assert_eq!(&frame.payload[12..15], b"\xa2id", "then id");
        // A game's message without an id: `type` first too, then its fields in order.
        #[derive(serde::Serialize)]
        struct PickedUp {
            item: &'static str,
            count: u32,
        }
        let game = ServerMessage::Game(hearth_components::protocol::GameLine::new(
            "picked_up",
            PickedUp {
                item: "gem",
                count: 1,
            },
        ));
        let mut bin = Vec::new();
        write_message(Encoding::Binary, &game, &mut bin);
        let (frame, _) = decode_frame(&bin).unwrap();
        let mut expected = vec![0x83, 0xa4];
        expected.extend_from_slice(b"type\xa9picked_up\xa4item\xa3gem\xa5count\x01");
        assert_eq!(frame.payload, expected, "{:02x?}", frame.payload);
    }

    #[test]
    fn server_messages_in_both_encodings() {
        let message = ServerMessage::error(ErrorCode::BadRequest, "no");
        let mut json = Vec::new();
        write_message(Encoding::Json, &message, &mut json);
        assert_eq!(
            json,
            b"{\"type\":\"error\",\"code\":\"bad_request\",\"message\":\"no\"}\n"
        );
        let mut bin = Vec::new();
        write_message(Encoding::Binary, &message, &mut bin);
        let (frame, _) = decode_frame(&bin).unwrap();
        let value: serde_json::Value = decode_message(frame.payload).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type": "error", "code": "bad_request", "message": "no"})
        );
    }
}
