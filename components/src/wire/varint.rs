//! LEB128 varints (7 bits a byte, least significant group first, high bit set on every byte
//! but the last) and zigzag signed integers (0, -1, 1, -2, 2 ... map to 0, 1, 2, 3, 4 ...).

use super::WireError;

/// Appends `value` as a varint (1 to 10 bytes).
pub fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Bytes `value` takes as a varint.
pub fn len_u64(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads a varint from the start of `input`: the value and the bytes it took.
pub fn read_u64(input: &[u8]) -> Result<(u64, usize), WireError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return Err(WireError::BadVarint);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= 10 {
        Err(WireError::BadVarint)
    } else {
        Err(WireError::Truncated("varint"))
    }
}

/// A signed integer as the unsigned value its zigzag varint carries.
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// The signed integer a zigzag value stands for.
pub fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A cursor over a payload, reading varints and byte strings with typed errors.
pub struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// The next varint.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        let (value, used) = read_u64(self.input)?;
        self.input = &self.input[used..];
        Ok(value)
    }

    /// The next zigzag varint.
    pub fn i64(&mut self) -> Result<i64, WireError> {
        self.u64().map(unzigzag)
    }

    /// The next `len` bytes.
    pub fn bytes(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(len).map_err(|_| WireError::Truncated("byte string"))?;
        if len > self.input.len() {
            return Err(WireError::Truncated("byte string"));
        }
        let (taken, rest) = self.input.split_at(len);
        self.input = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        let cases: [(u64, &[u8]); 5] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(len_u64(value), bytes.len());
            assert_eq!(read_u64(bytes), Ok((value, bytes.len())));
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        assert_eq!(read_u64(&out), Ok((u64::MAX, 10)));
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        assert_eq!(read_u64(&[0x80]), Err(WireError::Truncated("varint")));
        assert_eq!(read_u64(&[]), Err(WireError::Truncated("varint")));
        assert_eq!(read_u64(&[0xff; 11]), Err(WireError::BadVarint));
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(read_u64(&over), Err(WireError::BadVarint));
    }
}
