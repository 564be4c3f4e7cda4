//! Go's `encoding/binary` varints (shared by the storage keys and the block format) and this
//! crate's bounds-checked cursor.

use crate::ChunkError;

pub fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push(x as u8 | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

/// Zigzag-encoded signed varint.
pub fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

/// Reads a uvarint from the front of `buf`: the value and the bytes it took, or why it could not
/// ("truncated", "varint overflow").
pub fn read_uvarint(buf: &[u8]) -> Result<(u64, usize), &'static str> {
    let mut x = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        if i == 9 && b > 1 {
            return Err("varint overflow");
        }
        x |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok((x, i + 1));
        }
    }
    Err(if buf.len() < 10 {
        "truncated"
    } else {
        "varint overflow"
    })
}

/// The signed value of a zigzag-encoded uvarint.
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
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
        let (x, n) = read_uvarint(self.buf).map_err(|e| self.err(e))?;
        self.buf = &self.buf[n..];
        Ok(x)
    }

    pub(crate) fn varint(&mut self) -> Result<i64, ChunkError> {
        self.uvarint().map(unzigzag)
    }
}
