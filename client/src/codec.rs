//! The two encodings of docs/protocol.md: on a byte stream (TCP, TLS) a tokio-util codec that
//! cuts JSON lines or length-prefixed binary frames (after the preamble exchange, which the
//! connection layer does when it connects) into [`RawMessage`]s, cancel-safe so the session
//! can `select!` on it; then the decoding of a raw message into what it says ([`Inbound`]),
//! and the encoding of a message to the server ([`Outgoing`], or why not: [`EncodeError`]).

use bytes::{Buf, Bytes, BytesMut};
use hearth_components::protocol::{MAX_LINE_BYTES, MAX_SERVER_LINE_BYTES};
use hearth_components::wire::{
    self, FrameKind, MessageError, UpdateFrame, WireError, decode_frame,
};
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

use crate::world::Update;

/// How messages travel: chosen when connecting (docs/protocol.md, "Binary encoding").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// Newline-delimited JSON, what `nc` speaks: easy to read in a capture.
    #[default]
    Json,
    /// MessagePack messages and compact replication updates in length-prefixed frames:
    /// about a seventh of JSON's bytes for a crowd's updates.
    Binary,
}

/// One message as the connection carried it, not yet decoded: what a client that decodes
/// with care (hearth-swarm) reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMessage {
    /// A JSON message: a line without its newline (TCP), or a WebSocket text message.
    Json(Bytes),
    /// A binary frame's kind and payload.
    Frame { kind: FrameKind, payload: Bytes },
}

impl RawMessage {
    /// The message's size in its encoding (a line with its newline, a frame with its length
    /// prefix), before any TLS or WebSocket framing.
    pub fn wire_bytes(&self) -> usize {
        match self {
            Self::Json(text) => text.len() + 1,
            Self::Frame { payload, .. } => {
                let length = payload.len() as u64 + 1;
                let prefix = (64 - length.leading_zeros()).div_ceil(7).max(1) as usize;
                prefix + length as usize
            }
        }
    }

    /// What the message says.
    pub(crate) fn decode(&self) -> Inbound {
        match self {
            Self::Json(text) => decode_json(text),
            Self::Frame { kind, payload } => decode_binary(*kind, payload),
        }
    }
}

/// What one line or frame from the server carried.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message (any `type` but `update`), as its JSON object.
    Message(Map<String, Value>),
    /// A JSON `update`: complete in itself.
    JsonUpdate(Update),
    /// A binary update: its components are read with the `replication` message's list.
    BinaryUpdate(UpdateFrame),
    /// A line or message frame that did not decode (the stream is still in step).
    Invalid(String),
}

/// A message to the server, encoded: a JSON object (the codec adds the newline; a WebSocket
/// sends it as a text message) or a binary message frame.
#[derive(Debug, Clone)]
pub struct Outgoing(pub(crate) Vec<u8>);

impl Outgoing {
    /// `message` (any serde type that serialises as an object with its `type`) in
    /// `encoding`, or why it cannot be sent (not serialisable, over the protocol's limit).
    pub fn encode<T: serde::Serialize + ?Sized>(
        encoding: Encoding,
        message: &T,
    ) -> Result<Self, EncodeError> {
        match encoding {
            Encoding::Json => {
                let text = serde_json::to_vec(message).map_err(EncodeError::Json)?;
                if text.len() > MAX_LINE_BYTES {
                    return Err(EncodeError::TooLong {
                        bytes: text.len(),
                        limit: MAX_LINE_BYTES,
                    });
                }
                Ok(Self(text))
            }
            Encoding::Binary => {
                let mut out = Vec::new();
                wire::encode_message(message, &mut out).map_err(EncodeError::MessagePack)?;
                Ok(Self(out))
            }
        }
    }
}

/// Why a message cannot be sent: it is not something the protocol can carry.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A game message that does not serialise (a failing `Serialize`, a map with keys that
    /// are not strings).
    #[error("a {name} message does not serialise: {source}")]
    Serialise {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// A message that serialises, but not as a JSON object, so it cannot carry a `type`.
    #[error("a {name} message must serialise as an object, got {json}")]
    NotAnObject { name: String, json: String },
    /// A game message with a field the protocol reserves for itself (`type`, `id`).
    #[error("a {name} message has a field `{field}`, which the protocol reserves")]
    ReservedField { name: String, field: &'static str },
    /// The message has no JSON form.
    #[error("not encodable as JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The message has no MessagePack form, or its frame is over the protocol's limit.
    #[error("in the binary encoding: {0}")]
    MessagePack(#[source] MessageError),
    /// The encoded JSON line is longer than the server reads.
    #[error("a message of {bytes} bytes is over the limit of {limit}")]
    TooLong { bytes: usize, limit: usize },
}

/// Why the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Bytes that break the framing: a line or frame over the limit, a bad frame.
    #[error("{0}")]
    Framing(String),
    /// The WebSocket connection failed.
    #[error("websocket: {0}")]
    WebSocket(String),
}

/// Encodes and decodes one connection's messages in its [`Encoding`].
#[derive(Debug)]
pub(crate) struct Codec {
    encoding: Encoding,
}

impl Codec {
    pub(crate) fn new(encoding: Encoding) -> Self {
        Self { encoding }
    }
}

/// One JSON message, decoded: a message, an update, or why it is not one.
pub(crate) fn decode_json(text: &[u8]) -> Inbound {
    let object = match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(other) => return Inbound::Invalid(format!("not a JSON object: {other}")),
        Err(e) => return Inbound::Invalid(format!("not valid JSON: {e}")),
    };
    if object.get("type").and_then(Value::as_str) == Some("update") {
        return match serde_json::from_value::<Update>(Value::Object(object)) {
            Ok(update) => Inbound::JsonUpdate(update),
            Err(e) => Inbound::Invalid(format!("not a valid update: {e}")),
        };
    }
    match object.get("type") {
        Some(Value::String(_)) => Inbound::Message(object),
        _ => Inbound::Invalid("a message without a string `type`".into()),
    }
}

/// A binary frame's payload, decoded.
pub(crate) fn decode_binary(kind: FrameKind, payload: &[u8]) -> Inbound {
    match kind {
        FrameKind::Message => match wire::decode_message::<Value>(payload) {
            Ok(Value::Object(object)) if object.get("type").is_some_and(Value::is_string) => {
                Inbound::Message(object)
            }
            Ok(other) => Inbound::Invalid(format!("a message frame without a `type`: {other}")),
            Err(e) => Inbound::Invalid(e.to_string()),
        },
        FrameKind::Update => match UpdateFrame::decode(payload) {
            Ok(update) => Inbound::BinaryUpdate(update),
            Err(e) => Inbound::Invalid(format!("not a valid update frame: {e}")),
        },
    }
}

impl Decoder for Codec {
    type Item = RawMessage;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawMessage>, CodecError> {
        match self.encoding {
            Encoding::Json => loop {
                let Some(end) = src.iter().position(|&b| b == b'\n') else {
                    // A line may hold MAX_SERVER_LINE_BYTES and a "\r".
                    if src.len() > MAX_SERVER_LINE_BYTES + 1 {
                        return Err(CodecError::Framing(format!(
                            "a line over {MAX_SERVER_LINE_BYTES} bytes"
                        )));
                    }
                    return Ok(None);
                };
                let mut line = src.split_to(end + 1).freeze();
                line.truncate(end);
                if line.ends_with(b"\r") {
                    line.truncate(end - 1);
                }
                if !line.trim_ascii().is_empty() {
                    return Ok(Some(RawMessage::Json(line)));
                }
            },
            Encoding::Binary => match decode_frame(src) {
                Ok((frame, used)) => {
                    let kind = frame.kind;
                    let start = used - frame.payload.len();
                    let mut bytes = src.split_to(used);
                    bytes.advance(start);
                    Ok(Some(RawMessage::Frame {
                        kind,
                        payload: bytes.freeze(),
                    }))
                }
                Err(WireError::Truncated(_)) => Ok(None),
                Err(e) => Err(CodecError::Framing(format!("a bad frame: {e}"))),
            },
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<RawMessage>, CodecError> {
        match self.decode(src)? {
            Some(inbound) => Ok(Some(inbound)),
            None if src.is_empty() => Ok(None),
            // The server ends every line and frame: a rest is a connection cut mid-message.
            None => {
                src.clear();
                Ok(None)
            }
        }
    }
}

/// `message` (a JSON object, `type` included) in `encoding`.
pub(crate) fn encode(
    encoding: Encoding,
    message: &Map<String, Value>,
) -> Result<Outgoing, EncodeError> {
    Outgoing::encode(encoding, message)
}

impl Encoder<Outgoing> for Codec {
    type Error = CodecError;

    fn encode(&mut self, message: Outgoing, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&message.0);
        if self.encoding == Encoding::Json {
            dst.extend_from_slice(b"\n");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(encoding: Encoding, bytes: &[u8]) -> Vec<Inbound> {
        let mut codec = Codec::new(encoding);
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(raw) = codec.decode(&mut src).unwrap() {
            out.push(raw.decode());
        }
        out
    }

    #[test]
    fn json_lines_split_into_messages_and_updates_and_bad_lines_stay_in_step() {
        let input = b"{\"type\":\"pong\",\"nonce\":7}\r\n\n{\"type\":\"update\",\"round\":3,\"entered\":[{\"id\":1,\"position\":{\"x\":1.0,\"y\":2.0}}],\"changed\":[],\"left\":[4]}\nnot json\n{\"type\":\"pong\"";
        let out = decode_all(Encoding::Json, input);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(&out[0], Inbound::Message(m) if m["nonce"] == 7));
        let Inbound::JsonUpdate(update) = &out[1] else {
            panic!("{:?}", out[1])
        };
        assert_eq!((update.round, update.left.as_slice()), (3, &[4][..]));
        assert_eq!(update.entered[0].components["position"]["y"], 2.0);
        assert!(matches!(&out[2], Inbound::Invalid(_)));
    }

    #[test]
    fn an_endless_line_is_a_framing_error_not_a_growing_buffer() {
        let mut codec = Codec::new(Encoding::Json);
        let mut src = BytesMut::from(&vec![b'a'; MAX_SERVER_LINE_BYTES + 2][..]);
        assert!(matches!(
            codec.decode(&mut src),
            Err(CodecError::Framing(_))
        ));
    }

    #[test]
    fn binary_frames_round_trip_and_a_bad_kind_is_a_framing_error() {
        let mut object = Map::new();
        object.insert("type".into(), "ping".into());
        object.insert("nonce".into(), 7.into());
        let bytes = encode(Encoding::Binary, &object).unwrap();
        let out = decode_all(Encoding::Binary, &bytes.0);
        assert!(matches!(&out[..], [Inbound::Message(m)] if *m == object));
        let mut codec = Codec::new(Encoding::Binary);
        let raw = codec
            .decode(&mut BytesMut::from(&bytes.0[..]))
            .unwrap()
            .unwrap();
        assert_eq!(raw.wire_bytes(), bytes.0.len());
        let mut codec = Codec::new(Encoding::Binary);
        assert!(codec.decode(&mut BytesMut::from(&[2u8, 9, 0][..])).is_err());
    }
}
