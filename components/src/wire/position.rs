//! The compact form of a position: fixed-point, [`POSITION_UNITS_PER_WORLD_UNIT`] units per
//! world unit (1/64, so within 1/128 of the true value), each axis a zigzag varint.

use super::WireError;
use super::varint::{Reader, write_u64, zigzag};

/// Fixed-point units per world unit: a quantised coordinate is within half of 1/64 of the
/// true value.
pub const POSITION_UNITS_PER_WORLD_UNIT: f32 = 64.0;

/// A position in fixed-point units (see [`POSITION_UNITS_PER_WORLD_UNIT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantisedPosition {
    pub x: i32,
    pub y: i32,
}

impl QuantisedPosition {
    /// Rounds a world position to the nearest unit; coordinates beyond the `i32` range are
    /// clamped to it, and a NaN is 0.
    pub fn from_world(x: f32, y: f32) -> Self {
        let q = |v: f32| (v * POSITION_UNITS_PER_WORLD_UNIT).round() as i32;
        Self { x: q(x), y: q(y) }
    }

    /// The world position this stands for.
    pub fn to_world(self) -> (f32, f32) {
        (
            self.x as f32 / POSITION_UNITS_PER_WORLD_UNIT,
            self.y as f32 / POSITION_UNITS_PER_WORLD_UNIT,
        )
    }

    /// Appends the payload: x then y, zigzag varints.
    pub fn encode(self, out: &mut Vec<u8>) {
        write_u64(out, zigzag(i64::from(self.x)));
        write_u64(out, zigzag(i64::from(self.y)));
    }

    /// Reads a payload written by [`QuantisedPosition::encode`] (and nothing more).
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut reader = Reader::new(payload);
        let axis = |reader: &mut Reader| {
            i32::try_from(reader.i64()?).map_err(|_| WireError::Malformed("position out of range"))
        };
        let x = axis(&mut reader)?;
        let y = axis(&mut reader)?;
        if reader.remaining() != 0 {
            return Err(WireError::Malformed("bytes after a position"));
        }
        Ok(Self { x, y })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_half_a_unit_and_compact() {
        for (x, y) in [
            (0.0, 0.0),
            (12.34, -999.99),
            (1000.0, -1000.0),
            (0.007, -0.008),
        ] {
            let q = QuantisedPosition::from_world(x, y);
            let (qx, qy) = q.to_world();
            assert!((qx - x).abs() <= 0.5 / 64.0 + 1e-4, "{x} -> {qx}");
            assert!((qy - y).abs() <= 0.5 / 64.0 + 1e-4, "{y} -> {qy}");
            let mut out = Vec::new();
            q.encode(&mut out);
            assert!(
                out.len() <= 6,
                "two 3-byte varints at most in a ±1000 world"
            );
            assert_eq!(QuantisedPosition::decode(&out), Ok(q));
        }
        assert_eq!(QuantisedPosition::from_world(f32::NAN, f32::INFINITY).x, 0);
    }

    /// docs/protocol.md, `position_q64`: times 64 (exact), then the nearest unit, ties away
    /// from zero.
    #[test]
    fn ties_round_away_from_zero() {
        let unit = 1.0 / POSITION_UNITS_PER_WORLD_UNIT;
        for (world, units) in [
            (0.5 * unit, 1),
            (-0.5 * unit, -1),
            (1.5 * unit, 2),
            (-1.5 * unit, -2),
            (2.5 * unit, 3),
            (0.49 * unit, 0),
        ] {
            assert_eq!(
                QuantisedPosition::from_world(world, -world),
                QuantisedPosition {
                    x: units,
                    y: -units
                },
                "{world}"
            );
        }
    }
}
