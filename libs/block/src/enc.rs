//! Byte encodings of the block files: Go's varints, big-endian integers and CRC32C, read through a
//! bounds-checked cursor so malformed input is an error, never a panic.

use crate::BlockError;

pub(crate) use hestia_chunkenc::varint::{put_uvarint, put_varint};
use hestia_chunkenc::varint::{read_uvarint, unzigzag};

/// A uvarint length, then the bytes.
pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// CRC32 with the Castagnoli polynomial, as every checksum of the block format.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// A cursor over bytes of one structure (`what` names it in errors).
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    pub(crate) fn err(&self, detail: impl Into<String>) -> BlockError {
        BlockError::corrupt(self.what, detail)
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], BlockError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, BlockError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn be32(&mut self) -> Result<u32, BlockError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn be64(&mut self) -> Result<u64, BlockError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, BlockError> {
        let (x, n) = read_uvarint(self.buf).map_err(|e| self.err(e))?;
        self.buf = &self.buf[n..];
        Ok(x)
    }

    pub(crate) fn uvarint32(&mut self) -> Result<u32, BlockError> {
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| self.err("value does not fit 32 bits"))
    }

    pub(crate) fn varint(&mut self) -> Result<i64, BlockError> {
        self.uvarint().map(unzigzag)
    }

    /// A uvarint-length-prefixed UTF-8 string.
    pub(crate) fn str(&mut self) -> Result<&'a str, BlockError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| self.err("string length overflow"))?;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| self.err("string is not UTF-8"))
    }
}

/// Splits a `len u32 BE | content | CRC32C` section, verifying the checksum; returns the content.
pub(crate) fn checked_section<'a>(b: &'a [u8], what: &'static str) -> Result<&'a [u8], BlockError> {
    let mut d = Decoder::new(b, what);
    let len = d.be32()? as usize;
    let content = d.take(len)?;
    let crc = d.be32()?;
    if crc32c(content) != crc {
        return Err(BlockError::corrupt(what, "checksum mismatch"));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_garbage() {
        let mut b = Vec::new();
        for x in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            put_uvarint(&mut b, x);
        }
        for x in [0i64, -1, 1, i64::MIN, i64::MAX] {
            put_varint(&mut b, x);
        }
        let mut d = Decoder::new(&b, "t");
        for x in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(d.uvarint().unwrap(), x);
        }
        for x in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(d.varint().unwrap(), x);
        }
        assert!(d.is_empty());
        assert!(Decoder::new(&[0xff; 11], "t").uvarint().is_err());
        assert!(Decoder::new(&[0x80], "t").uvarint().is_err());
        assert!(Decoder::new(&[0x80, 0x80, 0x80, 0x80, 0x10], "t")
            .uvarint32()
            .is_err());
    }
}
