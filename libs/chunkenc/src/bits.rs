//! Bit streams as Prometheus' `bstream` writes them (most significant bit first) and the
//! encodings shared by the chunk formats: Gorilla XOR values and Prometheus' varbit integers.

/// Spare zero bytes kept after the last written bit so writes can OR whole words.
pub(crate) const WRITE_SLACK: usize = 16;

/// Whether `x` fits the signed `nbits` bucket as Prometheus defines it: `-(2^(n-1)-1) ..= 2^(n-1)`.
#[inline]
pub(crate) fn bit_range(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Prometheus' sign extension: values above `2^(size-1)` are negative.
#[inline]
pub(crate) fn sign_extend(bits: u64, size: u32) -> i64 {
    if bits > 1 << (size - 1) {
        bits as i64 - (1i64 << size)
    } else {
        bits as i64
    }
}

/// Bit writer that ORs whole big-endian words into a zero-filled buffer.
#[derive(Debug, Clone)]
pub(crate) struct BitWriter {
    pub(crate) buf: Vec<u8>,
    /// Number of valid bits, including the header.
    pub(crate) bit_len: usize,
}

impl BitWriter {
    /// An empty stream after `header` zero bytes, with room for about `bytes` bytes.
    pub(crate) fn new(header: usize, bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(header + WRITE_SLACK));
        buf.resize(header + WRITE_SLACK, 0);
        Self {
            buf,
            bit_len: header * 8,
        }
    }

    /// Writes the low `n` bits of `v`, most significant first (`1 <= n <= 64`).
    #[inline]
    pub(crate) fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!((1..=64).contains(&n));
        let byte = self.bit_len / 8;
        let shift = (self.bit_len % 8) as u32;
        if self.buf.len() < byte + 9 {
            let new_len = (self.buf.len() * 2).max(byte + WRITE_SLACK);
            self.buf.resize(new_len, 0);
        }
        let aligned = v << (64 - n);
        let word: [u8; 8] = match self.buf[byte..byte + 8].try_into() {
            Ok(w) => w,
            Err(_) => return, // unreachable: the slice is exactly 8 bytes
        };
        let merged = u64::from_be_bytes(word) | (aligned >> shift);
        self.buf[byte..byte + 8].copy_from_slice(&merged.to_be_bytes());
        if shift + n > 64 {
            self.buf[byte + 8] |= (aligned << (64 - shift) >> 56) as u8;
        }
        self.bit_len += n as usize;
    }

    pub(crate) fn write_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write_bits((x as u8 | 0x80) as u64, 8);
            x >>= 7;
        }
        self.write_bits(x, 8);
    }

    pub(crate) fn write_varint(&mut self, x: i64) {
        self.write_uvarint(((x << 1) ^ (x >> 63)) as u64);
    }
}

/// Bit reader over a byte slice with a 64-bit refill buffer.
#[derive(Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load into `acc`.
    pos: usize,
    /// Unread bits, left-aligned.
    pub(crate) acc: u64,
    /// Number of valid bits in `acc`.
    pub(crate) avail: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            acc: 0,
            avail: 0,
        }
    }

    pub(crate) fn consumed_bits(&self) -> usize {
        self.pos * 8 - self.avail as usize
    }

    #[inline]
    pub(crate) fn refill(&mut self) {
        if let Some(chunk) = self.data.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            // Bits beyond `avail` that land in `acc` are the true next bits, so OR-ing them
            // again on the next refill is harmless.
            self.acc |= u64::from_be_bytes(w) >> self.avail;
            let bytes = (63 - self.avail) / 8;
            self.pos += bytes as usize;
            self.avail += bytes * 8;
        } else {
            while self.avail <= 56 {
                match self.data.get(self.pos) {
                    Some(&b) => {
                        self.acc |= u64::from(b) << (56 - self.avail);
                        self.avail += 8;
                        self.pos += 1;
                    }
                    None => break,
                }
            }
        }
    }

    /// Reads `n` bits (`1 <= n <= 56`).
    #[inline]
    pub(crate) fn read_bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=56).contains(&n));
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return None;
            }
        }
        let v = self.acc >> (64 - n);
        self.acc <<= n;
        self.avail -= n;
        Some(v)
    }

    #[inline]
    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    /// Reads `n` bits (`1 <= n <= 64`).
    #[inline]
    pub(crate) fn read_bits_wide(&mut self, n: u32) -> Option<u64> {
        if n <= 56 {
            return self.read_bits(n);
        }
        let hi = self.read_bits(n - 32)?;
        let lo = self.read_bits(32)?;
        Some((hi << 32) | lo)
    }

    pub(crate) fn read_uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.read_bits(8)?;
            if i == 9 && b > 1 {
                return None;
            }
            x |= (b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }

    pub(crate) fn read_varint(&mut self) -> Option<i64> {
        let u = self.read_uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// Gorilla XOR state of one value stream: the previous value's bits and the current window
/// (`leading` 0xff: no window yet, as Prometheus' appenders start).
#[derive(Debug, Clone, Copy)]
pub(crate) struct XorState {
    pub(crate) bits: u64,
    pub(crate) leading: u8,
    pub(crate) trailing: u8,
}

impl XorState {
    pub(crate) fn new(bits: u64) -> Self {
        Self {
            bits,
            leading: 0xff,
            trailing: 0,
        }
    }
}

/// Writes `v_bits` XOR'd with the previous value: `0` (equal), `10` + the meaningful bits inside
/// the previous window, or `11` + 5 bits leading zeros + 6 bits length (64 written as 0) + bits.
#[inline]
pub(crate) fn write_xor(w: &mut BitWriter, s: &mut XorState, v_bits: u64) {
    let delta = v_bits ^ s.bits;
    s.bits = v_bits;
    if delta == 0 {
        w.write_bits(0, 1);
        return;
    }
    let leading = (delta.leading_zeros() as u8).min(31);
    let trailing = delta.trailing_zeros() as u8;
    if s.leading != 0xff && leading >= s.leading && trailing >= s.trailing {
        let sig = 64 - u32::from(s.leading) - u32::from(s.trailing);
        w.write_bits(0b10, 2);
        w.write_bits(delta >> s.trailing, sig);
        return;
    }
    s.leading = leading;
    s.trailing = trailing;
    let sig = 64 - u32::from(leading) - u32::from(trailing);
    let head = (0b11 << 11) | (u64::from(leading) << 6) | (u64::from(sig) & 0x3f);
    w.write_bits(head, 13);
    w.write_bits(delta >> trailing, sig);
}

/// Reads a value written by [`write_xor`]; `None` on a truncated or malformed stream, else
/// whether the value set a new window. A reader's window starts at `leading` 0, `trailing` 0, as
/// in Prometheus' iterators.
#[inline]
pub(crate) fn read_xor(r: &mut BitReader<'_>, s: &mut XorState) -> Option<bool> {
    if !r.read_bit()? {
        return Some(false);
    }
    let new_window = r.read_bit()?;
    if new_window {
        let head = r.read_bits(11)?;
        let leading = (head >> 6) as u8;
        let sig = match (head & 0x3f) as u8 {
            0 => 64,
            n => n,
        };
        if u32::from(leading) + u32::from(sig) > 64 {
            return None;
        }
        s.leading = leading;
        s.trailing = 64 - leading - sig;
    } else if s.leading == 0xff {
        // No window yet: Prometheus' readers start from an empty one.
        (s.leading, s.trailing) = (0, 0);
    }
    let sig = 64 - u32::from(s.leading) - u32::from(s.trailing);
    if sig == 0 {
        return None;
    }
    let bits = r.read_bits_wide(sig)?;
    s.bits ^= bits << s.trailing;
    Some(new_window)
}

/// Prometheus' varbit buckets: payload sizes after the `0`, `10`, `110`, … prefixes.
const VARBIT_SIZES: [u32; 8] = [3, 6, 9, 12, 18, 25, 56, 64];

/// Writes a signed integer in Prometheus' varbit encoding (1 bit for 0, at most 9 bytes).
pub(crate) fn write_varbit_int(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.write_bits(0, 1);
        return;
    }
    for (i, &size) in VARBIT_SIZES.iter().enumerate() {
        if size == 64 || bit_range(v, size) {
            write_varbit_prefix(w, i);
            w.write_bits(v as u64, size);
            return;
        }
    }
}

/// Writes an unsigned integer with the same buckets as [`write_varbit_int`].
pub(crate) fn write_varbit_uint(w: &mut BitWriter, v: u64) {
    if v == 0 {
        w.write_bits(0, 1);
        return;
    }
    for (i, &size) in VARBIT_SIZES.iter().enumerate() {
        if size == 64 || v >> size == 0 {
            write_varbit_prefix(w, i);
            w.write_bits(v, size);
            return;
        }
    }
}

/// `i + 1` one bits, then a zero bit unless all 8 prefix bits are ones.
fn write_varbit_prefix(w: &mut BitWriter, i: usize) {
    let ones = i as u32 + 1;
    if ones == 8 {
        w.write_bits(0xff, 8);
    } else {
        w.write_bits(((1u64 << ones) - 1) << 1, ones + 1);
    }
}

/// Reads the prefix of a varbit number: `None` for zero, else the payload size in bits.
fn read_varbit_size(r: &mut BitReader<'_>) -> Option<Option<u32>> {
    let mut ones = 0usize;
    while ones < 8 && r.read_bit()? {
        ones += 1;
    }
    Some(ones.checked_sub(1).map(|i| VARBIT_SIZES[i]))
}

pub(crate) fn read_varbit_int(r: &mut BitReader<'_>) -> Option<i64> {
    match read_varbit_size(r)? {
        None => Some(0),
        Some(64) => r.read_bits_wide(64).map(|b| b as i64),
        Some(size) => r.read_bits_wide(size).map(|b| sign_extend(b, size)),
    }
}

pub(crate) fn read_varbit_uint(r: &mut BitReader<'_>) -> Option<u64> {
    match read_varbit_size(r)? {
        None => Some(0),
        Some(size) => r.read_bits_wide(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varbit_round_trip_at_every_bucket_edge() {
        let mut ints = vec![0i64, i64::MIN, i64::MAX, -1, 1];
        let mut uints = vec![0u64, u64::MAX, 1];
        for size in VARBIT_SIZES.into_iter().filter(|&s| s < 64) {
            let half = 1i64 << (size - 1);
            ints.extend([half, half + 1, -(half - 1), -half]);
            uints.extend([(1u64 << size) - 1, 1u64 << size]);
        }
        let mut w = BitWriter::new(0, 16);
        for &v in &ints {
            write_varbit_int(&mut w, v);
        }
        for &v in &uints {
            write_varbit_uint(&mut w, v);
        }
        let bytes = &w.buf[..w.bit_len.div_ceil(8)];
        let mut r = BitReader::new(bytes);
        for &v in &ints {
            assert_eq!(read_varbit_int(&mut r), Some(v));
        }
        for &v in &uints {
            assert_eq!(read_varbit_uint(&mut r), Some(v));
        }
        // Prometheus' sizes: 1 bit for 0, 5 bits for 4, 9 bits for -31.
        let mut w = BitWriter::new(0, 16);
        write_varbit_int(&mut w, 0);
        write_varbit_int(&mut w, 4);
        write_varbit_int(&mut w, -31);
        assert_eq!(w.bit_len, 1 + 5 + 9);
    }

    #[test]
    fn xor_values_round_trip() {
        let values = [0.0, 1.0, 1.0, -2.5, f64::NAN, 1e300, 3.0, 3.5, 4.0];
        let mut w = BitWriter::new(0, 16);
        let mut s = XorState::new(0);
        for v in values {
            write_xor(&mut w, &mut s, v.to_bits());
        }
        let bytes = &w.buf[..w.bit_len.div_ceil(8)];
        let mut r = BitReader::new(bytes);
        let mut s = XorState {
            bits: 0,
            leading: 0,
            trailing: 0,
        };
        for v in values {
            read_xor(&mut r, &mut s).unwrap();
            assert_eq!(s.bits, v.to_bits());
        }
    }
}
