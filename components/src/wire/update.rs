//! The replication update, the payload of a [`FrameKind::Update`](super::FrameKind) frame:
//!
//! ```text
//! update    = round:varint  entered:section  changed:section  left_count:varint  left_id:varint*
//! section   = count:varint  entity*
//! entity    = id:varint  mask:varint  component*      (one component per bit set in mask,
//!                                                       lowest bit first)
//! component = length:varint  payload:length bytes     (bit i = the i-th component of the
//!                                                       `replication` message)
//! ```
//!
//! *entered*: entities new to the client, with every replicated component; *changed*: only
//! the components that changed since the client was last sent them; *left*: entities the
//! client should forget.

use super::WireError;
use super::varint::{Reader, write_u64};

/// One entity in the entered or changed section: its id and its components' payloads, by
/// component index (ascending).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityState {
    pub id: u64,
    pub components: Vec<(u8, Vec<u8>)>,
}

/// A decoded update (what a client reads; the server writes with [`UpdateWriter`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateFrame {
    /// The replication round this update brings the client to.
    pub round: u64,
    pub entered: Vec<EntityState>,
    pub changed: Vec<EntityState>,
    pub left: Vec<u64>,
}

/// Writes an update payload in order: [`UpdateWriter::new`] (the round), then the entered
/// section ([`UpdateWriter::section`], then per entity [`UpdateWriter::entity`] and its
/// components' [`UpdateWriter::component`]), the changed section likewise, then
/// [`UpdateWriter::section`] with the left count and a [`UpdateWriter::left`] per id.
pub struct UpdateWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> UpdateWriter<'a> {
    /// Starts an update of `round` at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>, round: u64) -> Self {
        write_u64(out, round);
        Self { out }
    }

    /// A section's count (entered, changed, or left).
    pub fn section(&mut self, count: usize) {
        write_u64(self.out, count as u64);
    }

    /// An entity's header: its id and which components follow.
    pub fn entity(&mut self, id: u64, mask: u64) {
        write_u64(self.out, id);
        write_u64(self.out, mask);
    }

    /// One component's payload, length-prefixed.
    pub fn component(&mut self, payload: &[u8]) {
        write_u64(self.out, payload.len() as u64);
        self.out.extend_from_slice(payload);
    }

    /// An id in the left section.
    pub fn left(&mut self, id: u64) {
        write_u64(self.out, id);
    }
}

impl UpdateFrame {
    /// Appends this update's payload to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = UpdateWriter::new(out, self.round);
        for section in [&self.entered, &self.changed] {
            w.section(section.len());
            for entity in section {
                let mask = entity
                    .components
                    .iter()
                    .fold(0u64, |m, (i, _)| m | 1u64 << (i % 64));
                w.entity(entity.id, mask);
                for (_, payload) in &entity.components {
                    w.component(payload);
                }
            }
        }
        w.section(self.left.len());
        for &id in &self.left {
            w.left(id);
        }
    }

    /// Reads an update payload; any inconsistency is an error, never a panic.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let round = r.u64()?;
        let entered = read_section(&mut r)?;
        let changed = read_section(&mut r)?;
        let left_count = count(&mut r, 1)?;
        let left = (0..left_count).map(|_| r.u64()).collect::<Result<_, _>>()?;
        if r.remaining() != 0 {
            return Err(WireError::Malformed("bytes after the left section"));
        }
        Ok(Self {
            round,
            entered,
            changed,
            left,
        })
    }
}

/// A count of items of at least `min_bytes` each: more than the bytes left is malformed
/// (so a hostile count cannot make the decoder allocate).
fn count(r: &mut Reader, min_bytes: usize) -> Result<usize, WireError> {
    let n = r.u64()?;
    if n > (r.remaining() / min_bytes) as u64 {
        return Err(WireError::Malformed("a count larger than the bytes left"));
    }
    Ok(n as usize)
}

fn read_section(r: &mut Reader) -> Result<Vec<EntityState>, WireError> {
    let n = count(r, 2)?;
    let mut entities = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u64()?;
        let mask = r.u64()?;
        let mut components = Vec::with_capacity(mask.count_ones() as usize);
        for index in 0..64u8 {
            if mask & (1u64 << index) != 0 {
                let len = r.u64()?;
                components.push((index, r.bytes(len)?.to_vec()));
            }
        }
        entities.push(EntityState { id, components });
    }
    Ok(entities)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entity() -> impl Strategy<Value = EntityState> {
        (
            any::<u64>(),
            proptest::collection::btree_map(
                0u8..64,
                proptest::collection::vec(any::<u8>(), 0..12),
                0..4,
            ),
        )
            .prop_map(|(id, components)| EntityState {
                id,
                components: components.into_iter().collect(),
            })
    }

    #[test]
    fn a_known_update_byte_for_byte() {
        // Round 5; entity 3 entered with component 0 = [0x80, 0x01] and component 1 = [0x07];
        // entity 9 changed component 1 = []; entity 4 left.
        let update = UpdateFrame {
            round: 5,
            entered: vec![EntityState {
                id: 3,
                components: vec![(0, vec![0x80, 0x01]), (1, vec![0x07])],
            }],
            changed: vec![EntityState {
                id: 9,
                components: vec![(1, vec![])],
            }],
            left: vec![4],
        };
        let mut out = Vec::new();
        update.encode(&mut out);
        assert_eq!(
            out,
            [5, 1, 3, 0b11, 2, 0x80, 0x01, 1, 0x07, 1, 9, 0b10, 0, 1, 4]
        );
        assert_eq!(UpdateFrame::decode(&out), Ok(update));
    }

    #[test]
    fn the_example_of_docs_protocol_md() {
        let mut position = Vec::new();
        crate::wire::QuantisedPosition::from_world(1.5, -2.0).encode(&mut position);
        let update = UpdateFrame {
            round: 64,
            entered: vec![EntityState {
                id: 51,
                components: vec![(0, position), (1, vec![0x01])],
            }],
            changed: vec![],
            left: vec![7],
        };
        let mut payload = Vec::new();
        update.encode(&mut payload);
        let mut frame = Vec::new();
        crate::wire::encode_frame(crate::wire::FrameKind::Update, &payload, &mut frame).unwrap();
        assert_eq!(
            frame,
            [
                0x0f, 0x02, 0x40, 0x01, 0x33, 0x03, 0x04, 0xc0, 0x01, 0xff, 0x01, 0x01, 0x01, 0x00,
                0x01, 0x07
            ]
        );
        let mut ping = Vec::new();
        crate::wire::encode_message(
            &crate::protocol::ClientMessage::Ping { nonce: 7 },
            &mut ping,
        )
        .unwrap();
        assert_eq!(
            ping,
            [
                0x13, 0x01, 0x82, 0xa4, b't', b'y', b'p', b'e', 0xa4, b'p', b'i', b'n', b'g', 0xa5,
                b'n', b'o', b'n', b'c', b'e', 0x07
            ]
        );
    }

    #[test]
    fn inconsistent_updates_are_errors() {
        assert_eq!(
            UpdateFrame::decode(&[]),
            Err(WireError::Truncated("varint"))
        );
        assert_eq!(
            UpdateFrame::decode(&[1, 0xff, 0xff, 0x03]),
            Err(WireError::Malformed("a count larger than the bytes left"))
        );
        assert_eq!(
            UpdateFrame::decode(&[1, 0, 0, 0, 7]),
            Err(WireError::Malformed("bytes after the left section"))
        );
        assert_eq!(
            UpdateFrame::decode(&[1, 1, 3, 1, 5, 0]),
            Err(WireError::Truncated("byte string"))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn updates_round_trip(
            round in any::<u64>(),
            entered in proptest::collection::vec(entity(), 0..8),
            changed in proptest::collection::vec(entity(), 0..8),
            left in proptest::collection::vec(any::<u64>(), 0..8),
        ) {
            let update = UpdateFrame { round, entered, changed, left };
            let mut out = Vec::new();
            update.encode(&mut out);
            prop_assert_eq!(UpdateFrame::decode(&out), Ok(update));
        }

        #[test]
        fn positions_round_trip(x in any::<i32>(), y in any::<i32>()) {
            let q = crate::wire::QuantisedPosition { x, y };
            let mut out = Vec::new();
            q.encode(&mut out);
            prop_assert_eq!(crate::wire::QuantisedPosition::decode(&out), Ok(q));
        }
    }
}
