//! The binary encoding of the client protocol (docs/protocol.md, "Binary encoding"): data
//! and pure functions only, no I/O.
//!
//! A binary client opens with a [`PREAMBLE`] (a NUL byte, `HRTH`, a version byte); JSON lines
//! never start with NUL, so the server tells the two apart from the first byte. Then both
//! sides exchange length-prefixed [frames](frame): a kind byte and a payload, either a
//! MessagePack message (the same fields as the JSON form) or a replication
//! [update] whose bytes are specified by hand. Decoders return typed errors
//! ([`WireError`]) for any input and never panic.

pub mod frame;
pub mod message;
pub mod position;
pub mod update;
pub mod varint;

pub use frame::{Frame, FrameKind, decode_frame, encode_frame, encode_frame_with, read_preamble};
pub use message::{
    MAX_MESSAGE_DEPTH, MessageError, decode_json_message, decode_message, encode_message,
};
pub use position::{POSITION_UNITS_PER_WORLD_UNIT, QuantisedPosition};
pub use update::{EntityState, UpdateFrame, UpdateWriter};

/// The first bytes a binary client sends (and the server answers with): NUL, `HRTH`.
pub const MAGIC: [u8; 5] = [0x00, b'H', b'R', b'T', b'H'];
/// The binary protocol version this code speaks, sent right after [`MAGIC`].
pub const VERSION: u8 = 1;
/// The whole preamble: [`MAGIC`] then [`VERSION`].
pub const PREAMBLE: [u8; 6] = [0x00, b'H', b'R', b'T', b'H', VERSION];
/// Most bytes a frame may hold after its length prefix (kind byte included): 64 KiB, as a
/// JSON line.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Why bytes are not a valid binary stream. A binary stream cannot resynchronise, so the
/// server answers any of these with an `error` and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a frame, varint or preamble.
    #[error("truncated: the input ended inside a {0}")]
    Truncated(&'static str),
    /// A frame longer than [`MAX_FRAME_BYTES`].
    #[error("a frame of {0} bytes is over the limit of {MAX_FRAME_BYTES}")]
    Oversized(u64),
    /// A frame of length 0 (it must hold at least its kind byte).
    #[error("a frame must hold at least its kind byte")]
    Empty,
    /// A kind byte this version does not define.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A preamble that does not start with [`MAGIC`].
    #[error("not a Hearth binary preamble")]
    BadMagic,
    /// A version this code does not speak.
    #[error("unsupported binary protocol version {0}; this server speaks {VERSION}")]
    UnknownVersion(u8),
    /// A varint of more than 10 bytes, or over the range of its type.
    #[error("a varint over the range of its type")]
    BadVarint,
    /// An update payload that is well framed but inconsistent (a count larger than the
    /// bytes left, bytes after the last section).
    #[error("malformed update: {0}")]
    Malformed(&'static str),
}
