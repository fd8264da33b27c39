//! Messages in the binary encoding: a [`FrameKind::Message`] frame whose payload is a
//! MessagePack map with the same keys and values as the JSON object (`"type"` included).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::WireError;
use super::frame::{FrameKind, encode_frame_with};

/// Why a message frame could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The frame itself (too large).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The value has no MessagePack form.
    #[error("not encodable as MessagePack: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The payload is not valid MessagePack for the expected type.
    #[error("not a valid MessagePack message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
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

/// Reads a message frame's payload as a `T`.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, MessageError> {
    Ok(rmp_serde::from_slice(payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientMessage;
    use crate::wire::decode_frame;
    use proptest::prelude::*;

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
        }
    }
}
