//! Frames: `length` (varint: the bytes that follow, kind byte included, 1 to
//! [`MAX_FRAME_BYTES`]), `kind` (one byte, [`FrameKind`]), `payload` (`length - 1` bytes).

use super::varint::{read_u64, write_u64};
use super::{MAGIC, MAX_FRAME_BYTES, VERSION, WireError};

/// What a frame's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// `0x01`: a message, a MessagePack map with named fields (both directions).
    Message = 0x01,
    /// `0x02`: a replication update (server to client), see [`super::update`].
    Update = 0x02,
}

impl FrameKind {
    /// The kind a byte stands for.
    pub fn from_byte(byte: u8) -> Result<Self, WireError> {
        match byte {
            0x01 => Ok(Self::Message),
            0x02 => Ok(Self::Update),
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

/// One decoded frame, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub payload: &'a [u8],
}

/// Checks a binary preamble at the start of `input` (6 bytes: [`MAGIC`], then the version).
/// Returns the version; [`WireError::Truncated`] while fewer than 6 bytes arrived.
pub fn read_preamble(input: &[u8]) -> Result<u8, WireError> {
    let magic_seen = input.len().min(MAGIC.len());
    if input[..magic_seen] != MAGIC[..magic_seen] {
        return Err(WireError::BadMagic);
    }
    match input.get(MAGIC.len()) {
        None => Err(WireError::Truncated("preamble")),
        Some(&VERSION) => Ok(VERSION),
        Some(&other) => Err(WireError::UnknownVersion(other)),
    }
}

/// Decodes the frame at the start of `input`: the frame and the bytes it took. While the
/// frame is incomplete this is [`WireError::Truncated`] (a stream reader waits for more
/// bytes; at the end of the input it is an error); a length over the limit is
/// [`WireError::Oversized`] as soon as the length is read, before its bytes arrive.
pub fn decode_frame(input: &[u8]) -> Result<(Frame<'_>, usize), WireError> {
    let (length, prefix) = match read_u64(input) {
        Ok(read) => read,
        // A length prefix that already has more bytes than any allowed length needs.
        Err(WireError::Truncated(_)) if input.len() >= 4 => {
            return Err(WireError::Oversized(u64::MAX));
        }
        Err(WireError::Truncated(_)) => return Err(WireError::Truncated("frame length")),
        Err(e) => return Err(e),
    };
    if length > MAX_FRAME_BYTES as u64 {
        return Err(WireError::Oversized(length));
    }
    if length == 0 {
        return Err(WireError::Empty);
    }
    let end = prefix + length as usize;
    let Some(body) = input.get(prefix..end) else {
        return Err(WireError::Truncated("frame"));
    };
    let kind = FrameKind::from_byte(body[0])?;
    Ok((
        Frame {
            kind,
            payload: &body[1..],
        },
        end,
    ))
}

/// Appends a frame of `kind` around `payload`; [`WireError::Oversized`] (nothing appended)
/// when the payload does not fit.
pub fn encode_frame(kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    let length = payload.len() + 1;
    if length > MAX_FRAME_BYTES {
        return Err(WireError::Oversized(length as u64));
    }
    write_u64(out, length as u64);
    out.push(kind as u8);
    out.extend_from_slice(payload);
    Ok(())
}

/// Bytes of the longest length prefix ([`MAX_FRAME_BYTES`] as a varint).
const MAX_PREFIX: usize = 3;

/// Appends a frame of `kind` whose payload `write` appends to `out` in place: the payload is
/// written once, where it goes, instead of into a buffer of its own and copied (what an
/// update costs a connection every round). On an error from `write`, or
/// [`WireError::Oversized`] when the payload does not fit, nothing is appended.
pub fn encode_frame_with<E: From<WireError>>(
    kind: FrameKind,
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = out.len();
    // Room for the longest prefix; the kind byte and payload follow it.
    out.extend_from_slice(&[0; MAX_PREFIX]);
    out.push(kind as u8);
    if let Err(e) = write(out) {
        out.truncate(start);
        return Err(e);
    }
    let length = out.len() - start - MAX_PREFIX;
    if length > MAX_FRAME_BYTES {
        out.truncate(start);
        return Err(WireError::Oversized(length as u64).into());
    }
    let mut buffer = [0u8; MAX_PREFIX];
    let used = {
        let mut value = length as u64;
        let mut n = 0;
        while value >= 0x80 {
            buffer[n] = (value as u8) | 0x80;
            value >>= 7;
            n += 1;
        }
        buffer[n] = value as u8;
        n + 1
    };
    // Close the gap a shorter prefix leaves, then write the prefix before the kind byte.
    out.copy_within(start + MAX_PREFIX.., start + used);
    out.truncate(out.len() - (MAX_PREFIX - used));
    out[start..start + used].copy_from_slice(&buffer[..used]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PREAMBLE;
    use proptest::prelude::*;

    #[test]
    fn preambles() {
        assert_eq!(read_preamble(&PREAMBLE), Ok(VERSION));
        assert_eq!(
            read_preamble(&PREAMBLE[..3]),
            Err(WireError::Truncated("preamble"))
        );
        assert_eq!(read_preamble(b"{\"type\""), Err(WireError::BadMagic));
        let mut v2 = PREAMBLE;
        v2[5] = 2;
        assert_eq!(read_preamble(&v2), Err(WireError::UnknownVersion(2)));
    }

    #[test]
    fn hostile_frames_get_typed_errors() {
        assert_eq!(decode_frame(&[]), Err(WireError::Truncated("frame length")));
        assert_eq!(decode_frame(&[3, 1, 0]), Err(WireError::Truncated("frame")));
        assert_eq!(decode_frame(&[0]), Err(WireError::Empty));
        assert_eq!(decode_frame(&[2, 9, 0]), Err(WireError::UnknownKind(9)));
        let mut over = Vec::new();
        write_u64(&mut over, MAX_FRAME_BYTES as u64 + 1);
        assert_eq!(
            decode_frame(&over),
            Err(WireError::Oversized(MAX_FRAME_BYTES as u64 + 1))
        );
        assert_eq!(
            decode_frame(&[0x80; 4]),
            Err(WireError::Oversized(u64::MAX))
        );
        // docs/protocol.md, "Frames": a length prefix that is no 64-bit varint (10 bytes
        // without an end) when those bytes are there; 4 bytes without an end before that.
        assert_eq!(
            decode_frame(&[0x80; 11]),
            Err(WireError::BadVarint),
            "over the range"
        );
        assert_eq!(
            decode_frame(&[0x80; 9]),
            Err(WireError::Oversized(u64::MAX))
        );
        let big = vec![0; MAX_FRAME_BYTES];
        assert!(encode_frame(FrameKind::Message, &big, &mut Vec::new()).is_err());
    }

    /// docs/protocol.md, "Frames": a non-minimal length prefix read whole is accepted.
    #[test]
    fn non_minimal_length_prefixes_read_whole_are_accepted() {
        for prefix in [
            &[0x82, 0x00][..],
            &[0x82, 0x80, 0x00],
            &[0x82, 0x80, 0x80, 0x00],
        ] {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&[0x01, 0xc0]);
            let (frame, used) = decode_frame(&input).unwrap();
            assert_eq!(
                (frame.kind, frame.payload, used),
                (FrameKind::Message, &[0xc0][..], input.len())
            );
        }
    }

    #[test]
    fn a_failed_in_place_write_appends_nothing() {
        let mut out = vec![9];
        let result = encode_frame_with(FrameKind::Message, &mut out, |out| {
            out.push(1);
            Err(WireError::Empty)
        });
        assert_eq!((result, out), (Err(WireError::Empty), vec![9]));
    }

    #[test]
    fn the_largest_frame_fits() {
        let payload = vec![7; MAX_FRAME_BYTES - 1];
        let mut out = Vec::new();
        encode_frame(FrameKind::Message, &payload, &mut out).unwrap();
        let (frame, used) = decode_frame(&out).unwrap();
        assert_eq!((frame.payload.len(), used), (payload.len(), out.len()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes: a frame, a typed error, never a panic; a frame never claims
        /// more bytes than the input holds.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((frame, used)) = decode_frame(&input) {
                prop_assert!(used <= input.len());
                prop_assert!(frame.payload.len() < used);
                if frame.kind == FrameKind::Update {
                    let _ = crate::wire::UpdateFrame::decode(frame.payload);
                }
            }
            let _ = read_preamble(&input);
            let _ = crate::wire::UpdateFrame::decode(&input);
            let _ = crate::wire::QuantisedPosition::decode(&input);
        }

        /// A frame written in place is byte for byte the frame of its payload.
        #[test]
        fn frames_written_in_place_equal_copied_ones(
            head in proptest::collection::vec(any::<u8>(), 0..8),
            len in prop_oneof![0usize..300, 16_000usize..16_600, MAX_FRAME_BYTES - 2..MAX_FRAME_BYTES + 2],
        ) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut copied = head.clone();
            let copied_result = encode_frame(FrameKind::Update, &payload, &mut copied);
            let mut in_place = head.clone();
            let result = encode_frame_with(FrameKind::Update, &mut in_place, |out| {
                out.extend_from_slice(&payload);
                Ok::<(), WireError>(())
            });
            prop_assert_eq!(result, copied_result);
            prop_assert_eq!(in_place, copied);
        }

        #[test]
        fn message_frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut out = Vec::new();
            encode_frame(FrameKind::Message, &payload, &mut out).unwrap();
            let (frame, used) = decode_frame(&out).unwrap();
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(frame, Frame { kind: FrameKind::Message, payload: &payload });
            // Every strict prefix is truncated, never misread.
            for cut in 0..out.len().min(8) {
                prop_assert!(matches!(decode_frame(&out[..cut]), Err(WireError::Truncated(_))));
            }
        }
    }
}
