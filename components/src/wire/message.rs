//! Messages in the binary encoding: a [`FrameKind::Message`] frame whose payload is a
//! MessagePack map with the same keys and values as the JSON object (`"type"` included).
//!
//! A payload holds exactly one MessagePack value: bytes after it are refused. A client's
//! message is read with [`decode_json_message`], which refuses what its JSON twin line would
//! be refused for (a repeated key, no string `type`, nesting past the JSON parser's depth)
//! and what has no JSON form (`bin` and `ext` values, keys that are not strings, NaN), in
//! MessagePack's terms.

use std::fmt;
use std::io::{Cursor, ErrorKind};

use serde::Serialize;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::WireError;
use super::frame::{FrameKind, encode_frame_with};

/// Most maps and arrays a message may hold nested in one another, its own map included:
/// the JSON parser's limit (`serde_json` refuses the 128th level), so both encodings refuse
/// the same messages.
pub const MAX_MESSAGE_DEPTH: usize = 127;

/// Why a message frame could not be written or read. A reading error's text says what is
/// wrong in MessagePack's terms, without a prefix: the server answers a binary client's
/// frame with `not a valid MessagePack message: <this>`.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The frame itself (too large).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The value has no MessagePack form.
    #[error("not encodable as MessagePack: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The payload is not valid MessagePack for the expected type (cut short, a reserved
    /// marker byte, a value of another type, or, for a client's message, one the JSON form
    /// refuses).
    #[error("{}", DecodeReason(.0))]
    Decode(#[from] rmp_serde::decode::Error),
    /// Bytes after the payload's value (a frame holds exactly one).
    #[error("{} after the MessagePack value (a frame holds exactly one)", Bytes(*.0))]
    TrailingBytes(usize),
}

/// A count of bytes, in words (`1 byte`, `2 bytes`).
struct Bytes(usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("1 byte"),
            n => write!(f, "{n} bytes"),
        }
    }
}

/// An `rmp_serde` reading error in words about the payload (its own `Display` speaks of
/// I/O and markers).
struct DecodeReason<'a>(&'a rmp_serde::decode::Error);

impl fmt::Display for DecodeReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use rmp_serde::decode::Error;
        match self.0 {
            Error::InvalidMarkerRead(e) | Error::InvalidDataRead(e)
                if e.kind() == ErrorKind::UnexpectedEof =>
            {
                f.write_str("the payload ends inside a MessagePack value (cut short, or a map or array with fewer entries than its header says)")
            }
            // `rmp`'s `Marker`, named by its `Debug` form (`rmp` is not a dependency).
            Error::TypeMismatch(marker) if format!("{marker:?}") == "Reserved" => {
                f.write_str("0xc1 starts no MessagePack value (the format reserves that byte)")
            }
            Error::TypeMismatch(marker) => {
                write!(f, "a MessagePack value of the wrong kind (marker {marker:?})")
            }
            Error::Utf8Error(e) => write!(f, "a MessagePack string that is not UTF-8: {e}"),
            Error::DepthLimitExceeded => f.write_str("MessagePack nested too deep"),
            Error::Syntax(words) => f.write_str(words),
            other => write!(f, "{other}"),
        }
    }
}

/// Appends `message` as a message frame (MessagePack, fields by name).
pub fn encode_message<T: Serialize + ?Sized>(
    message: &T,
    out: &mut Vec<u8>,
) -> Result<(), MessageError> {
    encode_frame_with(FrameKind::Message, out, |out| {
        rmp_serde::encode::write_named(out, message).map_err(MessageError::from)
    })?;
    Ok(())
}

/// Reads a payload holding exactly one MessagePack value with `read`.
fn read_whole<T>(
    payload: &[u8],
    read: impl FnOnce(
        &mut rmp_serde::Deserializer<rmp_serde::decode::ReadReader<Cursor<&[u8]>>>,
    ) -> Result<T, rmp_serde::decode::Error>,
) -> Result<T, MessageError> {
    let mut reader = rmp_serde::Deserializer::new(Cursor::new(payload));
    let value = read(&mut reader)?;
    let used = usize::try_from(reader.position()).unwrap_or(usize::MAX);
    match payload.len().saturating_sub(used) {
        0 => Ok(value),
        left => Err(MessageError::TrailingBytes(left)),
    }
}

/// Reads a message frame's payload (or a `messagepack` component's) as a `T`: exactly one
/// MessagePack value, nothing after it.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, MessageError> {
    read_whole(payload, |reader| T::deserialize(reader))
}

/// Reads a client's message frame payload as the JSON object it stands for, refusing what
/// the JSON line would be refused for before any field is looked at, in MessagePack's terms:
/// anything but one map (bytes after it too) with a string `"type"`; a key repeated in any
/// map; nesting deeper than [`MAX_MESSAGE_DEPTH`]; and what has no JSON form: `bin` and `ext`
/// values, keys that are not strings, floats that are NaN or infinite.
pub fn decode_json_message(payload: &[u8]) -> Result<Map<String, Value>, MessageError> {
    let object = read_whole(payload, |reader| {
        de::Deserializer::deserialize_any(
            reader,
            Json {
                depth: 1,
                top: true,
            },
        )
    })?;
    // The top level reads only maps (anything else is an error above).
    let object = match object {
        Value::Object(object) => object,
        other => {
            return Err(refusal(format!(
                "a message must be a MessagePack map with a string \"type\", not {}",
                kind_of(&other)
            )));
        }
    };
    match object.get("type") {
        Some(Value::String(_)) => Ok(object),
        Some(other) => Err(refusal(format!(
            "a message must be a MessagePack map with a string \"type\", not {}",
            kind_of(other)
        ))),
        None => Err(refusal(
            "a message must be a MessagePack map with a string \"type\"; it has no \"type\"",
        )),
    }
}

fn refusal(words: impl Into<String>) -> MessageError {
    MessageError::Decode(rmp_serde::decode::Error::Syntax(words.into()))
}

/// What a JSON value is, in MessagePack's words.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nil",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a map",
    }
}

/// Reads one MessagePack value as JSON, `depth` maps and arrays deep (the message's own map
/// at 1). At the `top` only a map is a message.
#[derive(Clone, Copy)]
struct Json {
    depth: usize,
    top: bool,
}

impl Json {
    fn value<E: de::Error>(self, value: Value) -> Result<Value, E> {
        if self.top {
            return Err(E::custom(format!(
                "a message must be a MessagePack map with a string \"type\", not {}",
                kind_of(&value)
            )));
        }
        Ok(value)
    }

    fn nested<E: de::Error>(self, what: &str) -> Result<Self, E> {
        if self.top && what != "map" {
            return Err(E::custom(format!(
                "a message must be a MessagePack map with a string \"type\", not an {what}"
            )));
        }
        if self.depth > MAX_MESSAGE_DEPTH {
            return Err(E::custom(format!(
                "maps and arrays nested more than {MAX_MESSAGE_DEPTH} deep"
            )));
        }
        Ok(Self {
            depth: self.depth + 1,
            top: false,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Json {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Json {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a MessagePack value a message may hold")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.value(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.value(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.value(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.value(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.value(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match Number::from_f64(v) {
            Some(n) => self.value(Value::Number(n)),
            None => Err(E::custom(format!(
                "the float {v} (a message's floats are finite)"
            ))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.value(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.value(Value::String(v))
    }

    // A `bin` value (a string that is not UTF-8 comes here too, and is refused as such).
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom(
            "a MessagePack bin value (a message holds no raw bytes: send a string or an array)",
        ))
    }

    // An `ext` value.
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, _: D) -> Result<Value, D::Error> {
        Err(de::Error::custom(
            "a MessagePack ext value (a message holds none)",
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested("array")?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested("map")?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            let value = map.next_value_seed(inner)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A map's key: a string (JSON has no other keys).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key (a map's keys must be MessagePack strings)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientMessage;
    use crate::wire::decode_frame;
    use proptest::prelude::*;

    /// A MessagePack fixstr.
    fn fixstr(text: &str) -> Vec<u8> {
        let mut out = vec![0xa0 | text.len() as u8];
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// A fixmap of `entries` followed by `parts`.
    fn fixmap(entries: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x80 | entries];
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }

    fn refusal(payload: &[u8]) -> String {
        match decode_json_message(payload) {
            Ok(object) => panic!("{payload:02x?} read as {object:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_client_message_reads_as_its_json_twin() {
        let (ty, ping, nonce) = (fixstr("type"), fixstr("ping"), fixstr("nonce"));
        // Keys in any order, `type` not first; a float32 widened exactly.
        let payload = fixmap(
            3,
            &[
                &nonce,
                &[7],
                &ty,
                &ping,
                &fixstr("dx"),
                &[0xca, 0x3f, 0xc0, 0, 0],
            ],
        );
        let object = decode_json_message(&payload).unwrap();
        assert_eq!(
            Value::Object(object),
            serde_json::json!({"type": "ping", "nonce": 7, "dx": 1.5})
        );
    }

    #[test]
    fn what_a_json_line_would_be_refused_for_is_refused_in_messagepack_terms() {
        let (ty, ping, nonce) = (fixstr("type"), fixstr("ping"), fixstr("nonce"));
        let ping_1 = fixmap(2, &[&ty, &ping, &nonce, &[1]]);
        let deep = {
            let mut out = fixmap(2, &[&ty, &ping, &fixstr("a")]);
            out.extend(std::iter::repeat_n(0x91, MAX_MESSAGE_DEPTH));
            out.push(0xc0);
            out
        };
        for (payload, words) in [
            (
                fixmap(3, &[&ty, &ping, &nonce, &[1], &nonce, &[2]]),
                "duplicate field `nonce`",
            ),
            (
                fixmap(
                    2,
                    &[
                        &ty,
                        &ping,
                        &fixstr("a"),
                        &fixmap(2, &[&ty, &[1], &ty, &[2]]),
                    ],
                ),
                "duplicate field `type`",
            ),
            ([&ping_1[..], &[0xc0]].concat(), "1 byte after"),
            ([&ping_1[..], &ping_1[..]].concat(), "18 bytes after"),
            (
                vec![7],
                "MessagePack map with a string \"type\", not an integer",
            ),
            (vec![0x91, 1], "not an array"),
            (vec![], "ends inside"),
            (fixmap(3, &[&ty, &ping, &nonce, &[1]]), "ends inside"),
            (vec![0xc1], "0xc1"),
            (fixmap(1, &[&nonce, &[1]]), "no \"type\""),
            (fixmap(1, &[&ty, &[7]]), "not an integer"),
            (fixmap(2, &[&ty, &ping, &nonce, &[0xc4, 1, 7]]), "bin value"),
            (fixmap(2, &[&ty, &ping, &nonce, &[0xd4, 1, 7]]), "ext value"),
            (fixmap(2, &[&ty, &ping, &[1], &[1]]), "string key"),
            (fixmap(2, &[&ty, &ping, &nonce, &[0xa1, 0xff]]), "not UTF-8"),
            (
                fixmap(
                    2,
                    &[&ty, &ping, &nonce, &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]],
                ),
                "float NaN",
            ),
            (deep, "nested more than 127"),
        ] {
            let found = refusal(&payload);
            assert!(found.contains(words), "{payload:02x?}: {found}");
            assert!(!found.contains("JSON"), "{payload:02x?}: {found}");
            assert!(
                !found.contains("not a valid MessagePack"),
                "no prefix: {found}"
            );
        }
    }

    #[test]
    fn nesting_up_to_the_json_parsers_depth_is_read() {
        // The message's map, then 126 arrays: 127 levels, as many as serde_json reads.
        let mut payload = fixmap(2, &[&fixstr("type"), &fixstr("ping"), &fixstr("a")]);
        payload.extend(std::iter::repeat_n(0x91, MAX_MESSAGE_DEPTH - 1));
        payload.push(0xc0);
        let text = Value::Object(decode_json_message(&payload).unwrap()).to_string();
        let _: Value = serde_json::from_str(&text).expect("serde_json reads it too");
        // One level more, and serde_json refuses the text as this refuses the payload.
        let deeper = text.replacen('[', "[[", 1).replacen(']', "]]", 1);
        assert!(serde_json::from_str::<Value>(&deeper).is_err());
    }

    #[test]
    fn a_payload_holds_exactly_one_value() {
        assert_eq!(decode_message::<u64>(&[5]).unwrap(), 5);
        let found = decode_message::<u64>(&[5, 6]).unwrap_err();
        assert!(matches!(found, MessageError::TrailingBytes(1)), "{found}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn client_messages_round_trip(nonce in any::<u64>(), name in "[a-z]{0,40}") {
            for message in [
                ClientMessage::Ping { nonce },
                ClientMessage::Login { username: name.clone(), password: name.clone() },
                ClientMessage::Logout {},
            ] {
                let mut out = Vec::new();
                encode_message(&message, &mut out).unwrap();
                let (frame, _) = decode_frame(&out).unwrap();
                prop_assert_eq!(frame.kind, FrameKind::Message);
                prop_assert_eq!(&decode_message::<ClientMessage>(frame.payload).unwrap(), &message);
                // The payload is the JSON object's MessagePack twin.
                let as_json: serde_json::Value = decode_message(frame.payload).unwrap();
                prop_assert_eq!(as_json, serde_json::to_value(&message).unwrap());
            }
        }

        #[test]
        fn arbitrary_payloads_are_errors_not_panics(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_message::<ClientMessage>(&payload);
            let _ = decode_message::<serde_json::Value>(&payload);
            let _ = decode_json_message(&payload);
        }
    }
}
