//! The protobuf wire format, read without copying: shared by the 1.0 and 2.0 decoders.

use crate::DecodeError;

pub const WT_VARINT: u8 = 0;
pub const WT_I64: u8 = 1;
pub const WT_LEN: u8 = 2;
pub const WT_I32: u8 = 5;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline]
    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        // Field keys and short lengths: one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_multi_byte()
    }

    fn varint_multi_byte(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(DecodeError::Protobuf("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::Protobuf("varint overflow"))
    }

    #[inline]
    pub fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let k = self.varint()?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(DecodeError::Protobuf("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::Protobuf("truncated fixed64"))?;
        self.pos = end;
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Protobuf(
                "length-delimited field overruns its message",
            ))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    pub fn string(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8)
    }

    pub fn skip(&mut self, wire_type: u8) -> Result<(), DecodeError> {
        match wire_type {
            WT_VARINT => {
                self.varint()?;
            }
            WT_I64 => {
                self.fixed64()?;
            }
            WT_LEN => {
                self.bytes()?;
            }
            WT_I32 => {
                let end = self.pos + 4;
                if end > self.buf.len() {
                    return Err(DecodeError::Protobuf("truncated fixed32"));
                }
                self.pos = end;
            }
            _ => return Err(DecodeError::Protobuf("unsupported wire type")),
        }
        Ok(())
    }

    #[inline]
    pub fn expect(&self, got: u8, want: u8) -> Result<(), DecodeError> {
        if got == want {
            Ok(())
        } else {
            Err(DecodeError::Protobuf(
                "unexpected wire type for a known field",
            ))
        }
    }

    /// A `repeated uint32` field, packed or not, appended to `out`.
    pub fn uint32s(&mut self, wire_type: u8, out: &mut Vec<u32>) -> Result<(), DecodeError> {
        let to_u32 = |v: u64| {
            u32::try_from(v).map_err(|_| DecodeError::Protobuf("uint32 field out of range"))
        };
        match wire_type {
            WT_VARINT => out.push(to_u32(self.varint()?)?),
            WT_LEN => {
                let mut r = Reader::new(self.bytes()?);
                while !r.done() {
                    out.push(to_u32(r.varint()?)?);
                }
            }
            _ => {
                return Err(DecodeError::Protobuf(
                    "unexpected wire type for a known field",
                ))
            }
        }
        Ok(())
    }
}

pub fn idx(n: usize) -> Result<u32, DecodeError> {
    u32::try_from(n).map_err(|_| DecodeError::Protobuf("too many elements"))
}

#[inline]
pub fn zigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Calls `f` for each element of a repeated scalar field, packed or not.
pub fn repeated(
    r: &mut Reader<'_>,
    wt: u8,
    elem: u8,
    mut f: impl FnMut(&mut Reader<'_>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    if wt == WT_LEN {
        let mut p = Reader::new(r.bytes()?);
        while !p.done() {
            f(&mut p)?;
        }
        return Ok(());
    }
    r.expect(wt, elem)?;
    f(r)
}
