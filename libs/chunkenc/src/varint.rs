//! Go's `encoding/binary` varints and a bounds-checked cursor.

use crate::ChunkError;

pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push(x as u8 | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

/// Zigzag-encoded signed varint.
pub(crate) fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

/// A cursor over encoded bytes; every read past the end is an error.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn err(&self, detail: &str) -> ChunkError {
        ChunkError::corrupt(self.what, detail)
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ChunkError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.err("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, ChunkError> {
        if self.buf.len() < 8 {
            return Err(self.err("truncated"));
        }
        let (a, b) = self.buf.split_at(8);
        self.buf = b;
        let mut x = [0u8; 8];
        x.copy_from_slice(a);
        Ok(u64::from_le_bytes(x))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, ChunkError> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                break;
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(x);
            }
        }
        Err(self.err("varint overflow"))
    }

    pub(crate) fn varint(&mut self) -> Result<i64, ChunkError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}
