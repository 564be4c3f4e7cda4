//! Prometheus' XOR chunk encoding (Gorilla, with Prometheus' millisecond bit buckets).
//!
//! The byte layout is identical to `tsdb/chunkenc/xor.go`: a big-endian `u16` sample count, then a
//! bit stream. The first sample is a signed varint timestamp and the raw 64 value bits; the second
//! an unsigned varint timestamp delta and an XOR'd value; later samples a delta-of-delta timestamp
//! (`0`, `10`+14 bits, `110`+17, `1110`+20, `1111`+64) and an XOR'd value (`0` = same value,
//! `10` = reuse the previous leading/trailing zero window, `11` + 5 bits leading + 6 bits length).
//! Value bits are stored exactly, so every NaN payload (including the stale marker) round-trips.

use std::sync::Arc;

use bytes::Bytes;

use crate::bits::{
    bit_range, read_xor, sign_extend, write_xor, BitReader, BitWriter, XorState, WRITE_SLACK,
};
use crate::ChunkError;

const HEADER_LEN: usize = 2;

/// An encoded XOR chunk: owned bytes plus the cached sample count and time range.
#[derive(Clone, PartialEq, Eq)]
pub struct XorChunk {
    data: Bytes,
    num_samples: u16,
    min_t: i64,
    max_t: i64,
}

impl std::fmt::Debug for XorChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XorChunk")
            .field("num_samples", &self.num_samples)
            .field("min_t", &self.min_t)
            .field("max_t", &self.max_t)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl XorChunk {
    /// Wraps encoded bytes (e.g. received over gRPC), validating them by decoding every sample.
    pub fn from_bytes(data: impl Into<Bytes>) -> Result<Self, ChunkError> {
        let data = data.into();
        let mut it = XorIter::new(&data)?;
        let num_samples = it.remaining;
        let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
        for (i, (t, _)) in it.by_ref().enumerate() {
            if i == 0 {
                min_t = t;
            }
            max_t = t;
        }
        if let Some(e) = it.take_err() {
            return Err(e);
        }
        Ok(Self {
            data,
            num_samples,
            min_t,
            max_t,
        })
    }

    /// The encoded chunk, in Prometheus' format.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    pub fn num_samples(&self) -> u16 {
        self.num_samples
    }

    /// Timestamp of the first sample (`i64::MAX` when empty).
    pub fn min_time(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample (`i64::MIN` when empty).
    pub fn max_time(&self) -> i64 {
        self.max_t
    }

    pub fn iter(&self) -> XorIter<'_> {
        XorIter::from_valid(&self.data)
    }
}

/// The appender records a seek point before every this many samples.
pub const SEEK_INTERVAL: u16 = 40;

/// A decoder state inside a chunk: decoding can start at sample `index` instead of the first.
/// The appender records them as it writes, so readers of a chunk's tail (instant queries' windows)
/// skip the samples before their range without decoding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XorSeek {
    /// Sample the decoder reads next (at least 2).
    pub index: u16,
    /// Bit offset of that sample after the 2-byte header.
    pub bit: u16,
    /// Timestamp, timestamp delta and value bits of the sample before it.
    pub t: i64,
    pub t_delta: u64,
    pub v_bits: u64,
    /// XOR window (`leading` 0xff: no window yet).
    pub leading: u8,
    pub trailing: u8,
}

/// The last of `seeks` (in sample order) whose previous sample is older than `mint`: decoding
/// from there yields every sample at or after `mint`.
pub fn seek_before(seeks: &[XorSeek], mint: i64) -> Option<XorSeek> {
    let n = seeks.partition_point(|s| s.t < mint);
    n.checked_sub(1).map(|i| seeks[i])
}

/// Appends samples to a growing XOR chunk.
#[derive(Clone)]
pub struct XorAppender {
    w: BitWriter,
    num: u16,
    min_t: i64,
    t: i64,
    t_delta: u64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
    /// Seek points every `SEEK_INTERVAL` samples, shared with the chunk copies readers take.
    seeks: Option<Arc<[XorSeek]>>,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for XorAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XorAppender")
            .field("num_samples", &self.num)
            .field("min_t", &self.min_t)
            .field("max_t", &self.t)
            .finish()
    }
}

impl XorAppender {
    pub fn new() -> Self {
        Self::with_capacity(128)
    }

    /// Starts an empty chunk with room for about `bytes` bytes before reallocating.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            w: BitWriter::new(HEADER_LEN, bytes),
            num: 0,
            min_t: i64::MAX,
            t: i64::MIN,
            t_delta: 0,
            v_bits: 0,
            leading: 0xff,
            trailing: 0,
            seeks: None,
        }
    }

    /// Continues appending to an existing chunk. Decodes it once to restore the encoder state;
    /// later appends produce the same bytes as if the chunk had never been interrupted.
    pub fn resume(data: &[u8]) -> Result<Self, ChunkError> {
        let mut it = XorIter::new(data)?;
        let mut min_t = i64::MAX;
        let mut seeks = Vec::new();
        let mut i = 0u16;
        loop {
            if i > 0 && i.is_multiple_of(SEEK_INTERVAL) && it.remaining > 0 {
                seeks.extend(it.seek_point(i));
            }
            let Some((t, _)) = it.next() else { break };
            if i == 0 {
                min_t = t;
            }
            i = i.wrapping_add(1);
        }
        if let Some(e) = it.take_err() {
            return Err(e);
        }
        let num = it.total;
        let used_bits = HEADER_LEN * 8 + it.r.consumed_bits();
        let mut w = BitWriter::new(HEADER_LEN, data.len() + WRITE_SLACK);
        w.buf.clear();
        w.buf.extend_from_slice(&data[..used_bits.div_ceil(8)]);
        // Bits past the end of the stream must be zero for OR-based writes.
        if !used_bits.is_multiple_of(8) {
            if let Some(last) = w.buf.last_mut() {
                *last &= 0xffu8 << (8 - used_bits % 8);
            }
        }
        w.buf.resize(w.buf.len() + WRITE_SLACK, 0);
        w.bit_len = used_bits;
        Ok(Self {
            w,
            num,
            min_t,
            t: if num == 0 { i64::MIN } else { it.t },
            t_delta: it.t_delta,
            v_bits: it.v_bits,
            // 0xff means "no window yet", so identical values keep their 1-bit encoding.
            leading: if it.window_set { it.leading } else { 0xff },
            trailing: it.trailing,
            seeks: (!seeks.is_empty()).then(|| seeks.into()),
        })
    }

    /// Seek points recorded so far, in sample order.
    pub fn seeks(&self) -> Option<&Arc<[XorSeek]>> {
        self.seeks.as_ref()
    }

    fn record_seek(&mut self) {
        // Bit offsets fit u16: chunks are cut at 1 KiB, far below 8 KiB.
        let Ok(bit) = u16::try_from(self.w.bit_len - HEADER_LEN * 8) else {
            return;
        };
        let point = XorSeek {
            index: self.num,
            bit,
            t: self.t,
            t_delta: self.t_delta,
            v_bits: self.v_bits,
            leading: self.leading,
            trailing: self.trailing,
        };
        let mut all: Vec<XorSeek> = self.seeks.as_deref().unwrap_or(&[]).to_vec();
        all.push(point);
        self.seeks = Some(all.into());
    }

    /// Appends a sample. Callers keep timestamps increasing; the codec itself round-trips any
    /// sequence, using wrapping arithmetic for extreme deltas. Fails once 65535 samples are stored.
    #[inline]
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::ChunkFull);
        }
        let v_bits = v.to_bits();
        if self.num > 0 && self.num.is_multiple_of(SEEK_INTERVAL) {
            self.record_seek();
        }
        match self.num {
            0 => {
                self.w.write_varint(t);
                self.w.write_bits(v_bits, 64);
                self.min_t = t;
            }
            1 => {
                let t_delta = (t as u64).wrapping_sub(self.t as u64);
                self.w.write_uvarint(t_delta);
                self.write_value(v_bits);
                self.t_delta = t_delta;
            }
            _ => {
                let t_delta = (t as u64).wrapping_sub(self.t as u64);
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.w.write_bits(0, 1);
                } else if bit_range(dod, 14) {
                    self.w.write_bits((0b10 << 14) | (dod as u64 & 0x3fff), 16);
                } else if bit_range(dod, 17) {
                    self.w
                        .write_bits((0b110 << 17) | (dod as u64 & 0x1_ffff), 20);
                } else if bit_range(dod, 20) {
                    self.w
                        .write_bits((0b1110 << 20) | (dod as u64 & 0xf_ffff), 24);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                self.write_value(v_bits);
                self.t_delta = t_delta;
            }
        }
        self.t = t;
        self.v_bits = v_bits;
        self.num += 1;
        self.w.buf[..HEADER_LEN].copy_from_slice(&self.num.to_be_bytes());
        Ok(())
    }

    #[inline]
    fn write_value(&mut self, v_bits: u64) {
        let mut s = XorState {
            bits: self.v_bits,
            leading: self.leading,
            trailing: self.trailing,
        };
        write_xor(&mut self.w, &mut s, v_bits);
        (self.leading, self.trailing) = (s.leading, s.trailing);
    }

    pub fn num_samples(&self) -> u16 {
        self.num
    }

    pub fn is_empty(&self) -> bool {
        self.num == 0
    }

    /// Timestamp of the first sample (`i64::MAX` when empty).
    pub fn min_time(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample (`i64::MIN` when empty).
    pub fn max_time(&self) -> i64 {
        self.t
    }

    /// Bits of the last appended value.
    pub fn last_value_bits(&self) -> u64 {
        self.v_bits
    }

    /// The chunk encoded so far.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf[..self.w.bit_len.div_ceil(8)]
    }

    pub fn iter(&self) -> XorIter<'_> {
        XorIter::from_valid(self.bytes())
    }

    /// A snapshot of the chunk so far.
    pub fn to_chunk(&self) -> XorChunk {
        XorChunk {
            data: Bytes::copy_from_slice(self.bytes()),
            num_samples: self.num,
            min_t: self.min_t,
            max_t: self.t,
        }
    }

    /// Finishes the chunk without copying.
    pub fn into_chunk(mut self) -> XorChunk {
        let len = self.w.bit_len.div_ceil(8);
        self.w.buf.truncate(len);
        XorChunk {
            data: Bytes::from(self.w.buf),
            num_samples: self.num,
            min_t: self.min_t,
            max_t: self.t,
        }
    }
}

/// Iterates the `(timestamp, value)` pairs of an encoded XOR chunk.
///
/// Decoding stops at the first malformed bit; [`XorIter::err`] then reports it.
#[derive(Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    remaining: u16,
    t: i64,
    t_delta: u64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
    window_set: bool,
    err: Option<&'static str>,
}

impl<'a> XorIter<'a> {
    /// Starts decoding `data`; fails only if the header is missing.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        if data.len() < HEADER_LEN {
            return Err(ChunkError::corrupt("xor chunk", "shorter than its header"));
        }
        Ok(Self::from_valid(data))
    }

    /// Starts decoding `data` at a seek point its appender recorded. A point that does not fit
    /// the chunk is refused; one that fits but is wrong decodes garbage or reports an error, as a
    /// corrupt chunk would.
    pub fn resume_at(data: &'a [u8], seek: &XorSeek) -> Result<Self, ChunkError> {
        let mut it = Self::new(data)?;
        let bits = (data.len() - HEADER_LEN) * 8;
        if seek.index < 2 || seek.index > it.total || usize::from(seek.bit) > bits {
            return Err(ChunkError::corrupt(
                "xor chunk",
                "seek point outside the chunk",
            ));
        }
        it.r = BitReader::new(&data[HEADER_LEN + usize::from(seek.bit / 8)..]);
        let skip = u32::from(seek.bit % 8);
        if skip > 0 && it.r.read_bits(skip).is_none() {
            return Err(ChunkError::corrupt(
                "xor chunk",
                "seek point outside the chunk",
            ));
        }
        it.remaining = it.total - seek.index;
        it.t = seek.t;
        it.t_delta = seek.t_delta;
        it.v_bits = seek.v_bits;
        (it.leading, it.trailing, it.window_set) = match seek.leading {
            0xff => (0, 0, false),
            l => (l, seek.trailing, true),
        };
        if u32::from(it.leading) + u32::from(it.trailing) > 64 {
            return Err(ChunkError::corrupt("xor chunk", "invalid seek window"));
        }
        Ok(it)
    }

    /// The decoder's state before sample `index`, as the appender records it.
    fn seek_point(&self, index: u16) -> Option<XorSeek> {
        Some(XorSeek {
            index,
            bit: u16::try_from(self.r.consumed_bits()).ok()?,
            t: self.t,
            t_delta: self.t_delta,
            v_bits: self.v_bits,
            leading: if self.window_set { self.leading } else { 0xff },
            trailing: self.trailing,
        })
    }

    /// Like `new` for data known to hold a header; an empty slice yields nothing.
    fn from_valid(data: &'a [u8]) -> Self {
        let total = match data {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        Self {
            r: BitReader::new(data.get(HEADER_LEN..).unwrap_or(&[])),
            total,
            remaining: total,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            leading: 0,
            trailing: 0,
            window_set: false,
            err: None,
        }
    }

    /// Number of samples the chunk header announces.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    /// The decoding error that ended iteration early, if any.
    pub fn err(&self) -> Option<ChunkError> {
        self.err.map(|d| ChunkError::corrupt("xor chunk", d))
    }

    fn take_err(&mut self) -> Option<ChunkError> {
        self.err().inspect(|_| self.err = None)
    }

    #[inline]
    fn read_dod(&mut self) -> Option<i64> {
        if self.r.avail < 4 {
            self.r.refill();
        }
        if self.r.avail >= 4 {
            // Fast path: the prefix is the run of leading ones in the next 4 bits.
            let (len, size) = match self.r.acc.leading_ones() {
                0 => (1, 0),
                1 => (2, 14),
                2 => (3, 17),
                3 => (4, 20),
                _ => (4, 64),
            };
            self.r.acc <<= len;
            self.r.avail -= len;
            return match size {
                0 => Some(0),
                64 => self.r.read_bits_wide(64).map(|b| b as i64),
                _ => {
                    let bits = self.r.read_bits(size)?;
                    Some(sign_extend(bits, size))
                }
            };
        }
        let mut prefix = 0u32;
        let mut len = 0u32;
        while len < 4 {
            let bit = self.r.read_bit()?;
            len += 1;
            prefix = (prefix << 1) | u32::from(bit);
            if !bit {
                break;
            }
        }
        let size = match (prefix, len) {
            (0, 1) => return Some(0),
            (0b10, 2) => 14,
            (0b110, 3) => 17,
            (0b1110, 4) => 20,
            (0b1111, 4) => return self.r.read_bits_wide(64).map(|b| b as i64),
            _ => return None,
        };
        let bits = self.r.read_bits(size)?;
        Some(sign_extend(bits, size))
    }

    #[inline]
    fn read_value(&mut self) -> Option<()> {
        let mut s = XorState {
            bits: self.v_bits,
            leading: self.leading,
            trailing: self.trailing,
        };
        self.window_set |= read_xor(&mut self.r, &mut s)?;
        (self.v_bits, self.leading, self.trailing) = (s.bits, s.leading, s.trailing);
        Some(())
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        match self.total - self.remaining {
            0 => {
                self.t = self.r.read_varint()?;
                self.v_bits = self.r.read_bits_wide(64)?;
            }
            1 => {
                self.t_delta = self.r.read_uvarint()?;
                self.t = (self.t as u64).wrapping_add(self.t_delta) as i64;
                self.read_value()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.t_delta = self.t_delta.wrapping_add(dod as u64);
                self.t = (self.t as u64).wrapping_add(self.t_delta) as i64;
                self.read_value()?;
            }
        }
        Some((self.t, f64::from_bits(self.v_bits)))
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.remaining == 0 {
            return None;
        }
        match self.step() {
            Some(s) => {
                self.remaining -= 1;
                Some(s)
            }
            None => {
                self.err = Some("truncated or malformed bit stream");
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic randomness without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v).unwrap();
        }
        a.into_chunk()
    }

    fn assert_round_trip(samples: &[(i64, f64)]) {
        let c = encode(samples);
        let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        assert_eq!(c.num_samples() as usize, samples.len());
        // Decoding from network bytes gives the same chunk.
        let again = XorChunk::from_bytes(c.bytes().clone()).unwrap();
        assert_eq!(again, c);
        if let (Some(f), Some(l)) = (samples.first(), samples.last()) {
            assert_eq!(c.min_time(), f.0);
            assert_eq!(c.max_time(), l.0);
        }
        // Resuming at every prefix yields byte-identical output.
        for cut in 0..=samples.len() {
            let prefix = encode(&samples[..cut]);
            let mut a = XorAppender::resume(prefix.bytes()).unwrap();
            for &(t, v) in &samples[cut..] {
                a.append(t, v).unwrap();
            }
            assert_eq!(a.bytes(), &c.bytes()[..], "resume at {cut}");
        }
        assert_seeks(samples);
    }

    /// Every seek point decodes exactly the samples from its index on, and `resume` finds the
    /// points the appender recorded.
    fn assert_seeks(samples: &[(i64, f64)]) {
        let mut a = XorAppender::new();
        for &(t, v) in samples {
            a.append(t, v).unwrap();
        }
        let seeks: Vec<XorSeek> = a.seeks().map(|s| s.to_vec()).unwrap_or_default();
        let bits_fit = a.bytes().len() < 8 * 1024;
        if bits_fit {
            let want = samples.len().saturating_sub(1) / usize::from(SEEK_INTERVAL);
            assert_eq!(
                seeks.len(),
                want,
                "one seek point per {SEEK_INTERVAL} samples"
            );
        }
        for p in &seeks {
            let mut it = XorIter::resume_at(a.bytes(), p).unwrap();
            let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
            assert!(it.err().is_none());
            let want: Vec<(i64, u64)> = samples[usize::from(p.index)..]
                .iter()
                .map(|&(t, v)| (t, v.to_bits()))
                .collect();
            assert_eq!(got, want, "from seek point {}", p.index);
            assert_eq!(p.t, samples[usize::from(p.index) - 1].0);
        }
        let resumed = XorAppender::resume(a.bytes()).unwrap();
        assert_eq!(
            resumed.seeks().map(|s| s.to_vec()).unwrap_or_default(),
            seeks
        );
    }

    #[test]
    fn seek_points_skip_older_samples() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (i * 15_000, (i * i) as f64 * 0.5))
            .collect();
        let mut a = XorAppender::new();
        for &(t, v) in &samples {
            a.append(t, v).unwrap();
        }
        let seeks = a.seeks().unwrap().to_vec();
        assert_eq!(seeks.iter().map(|p| p.index).collect::<Vec<_>>(), [40, 80]);
        // The memory a chunk in the head pays for them (docs/ARCHITECTURE.md).
        assert_eq!(std::mem::size_of::<XorSeek>(), 32);
        // The window (100 × 15 s, 119 × 15 s] starts after sample 80's predecessor.
        let p = seek_before(&seeks, 100 * 15_000 + 1).unwrap();
        assert_eq!(p.index, 80);
        let it = XorIter::resume_at(a.bytes(), &p).unwrap();
        assert_eq!(it.count(), 40);
        // 79 × 15 s is not older than 79 × 15 s: the point before sample 40 is needed.
        assert_eq!(seek_before(&seeks, 79 * 15_000).unwrap().index, 40);
        assert_eq!(seek_before(&seeks, 39 * 15_000), None);
        // A point that does not fit the chunk is refused, never a panic.
        let bytes = a.bytes();
        for bad in [
            XorSeek { index: 1, ..p },
            XorSeek { index: 121, ..p },
            XorSeek { bit: u16::MAX, ..p },
            XorSeek {
                leading: 40,
                trailing: 40,
                ..p
            },
        ] {
            assert!(XorIter::resume_at(bytes, &bad).is_err(), "{bad:?}");
        }
        // A wrong point that fits decodes garbage or stops with an error, like a corrupt chunk.
        let mut it = XorIter::resume_at(
            bytes,
            &XorSeek {
                bit: p.bit + 3,
                ..p
            },
        )
        .unwrap();
        for _ in it.by_ref() {}
        let short = &bytes[..bytes.len() / 2];
        let mut it = XorIter::resume_at(short, &seeks[0]).unwrap();
        assert!(it.by_ref().count() < 80);
        assert!(it.err().is_some());
    }

    #[test]
    fn empty_chunk() {
        let c = XorAppender::new().into_chunk();
        assert_eq!(&c.bytes()[..], &[0, 0]);
        assert_eq!(c.iter().count(), 0);
        assert_eq!(c.num_samples(), 0);
        let c2 = XorChunk::from_bytes(Bytes::from_static(&[0, 0])).unwrap();
        assert_eq!(c2.num_samples(), 0);
        assert!(XorChunk::from_bytes(Bytes::from_static(&[0])).is_err());
    }

    #[test]
    fn matches_prometheus_bytes() {
        // The layout prometheus/tsdb/chunkenc writes for (1000,1), (2000,1), (3000,2).
        let c = encode(&[(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
        let b = c.bytes();
        assert_eq!(&b[..2], &[0, 3]);
        // zigzag varint of 1000 = 2000 = 0xd0 0x0f.
        assert_eq!(&b[2..4], &[0xd0, 0x0f]);
        assert_eq!(&b[4..12], &1.0f64.to_bits().to_be_bytes());
        // uvarint 1000 = 0xe8 0x07, then value '0' (unchanged), then dod 0 → '0',
        // then value 2.0^1.0 = 0x7ff0... : '11' + leading(1)=00001 + sig(11)=001011 + 11 bits.
        assert_eq!(&b[12..14], &[0xe8, 0x07]);
        let mut r = BitReader::new(&b[14..]);
        assert_eq!(r.read_bits(1), Some(0));
        assert_eq!(r.read_bits(1), Some(0));
        assert_eq!(r.read_bits(2), Some(0b11));
        assert_eq!(r.read_bits(5), Some(1));
        assert_eq!(r.read_bits(6), Some(11));
        assert_eq!(
            r.read_bits(11),
            Some((1.0f64.to_bits() ^ 2.0f64.to_bits()) >> 52)
        );
    }

    #[test]
    fn edge_values() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let samples = vec![
            (0, f64::NAN),
            (15_000, stale),
            (30_000, f64::INFINITY),
            (45_000, f64::NEG_INFINITY),
            (60_000, -0.0),
            (75_000, 0.0),
            (90_000, f64::MIN_POSITIVE),
            (105_000, f64::MAX),
            (120_000, f64::MIN),
            (135_000, stale),
            (150_000, f64::from_bits(1)),
            (165_000, f64::from_bits(u64::MAX)),
        ];
        assert_round_trip(&samples);
        let c = encode(&samples);
        assert_eq!(c.iter().nth(1).unwrap().1.to_bits(), 0x7ff0_0000_0000_0002);
    }

    #[test]
    fn edge_timestamps() {
        assert_round_trip(&[(-5_000_000, 1.0)]);
        assert_round_trip(&[(-1_000, 1.0), (-500, 2.0), (0, 3.0), (500, 4.0)]);
        assert_round_trip(&[(i64::MIN, 1.0), (0, 1.0), (i64::MAX, 1.0)]);
        assert_round_trip(&[(i64::MAX, 1.0), (i64::MIN, 2.0), (i64::MAX, 3.0), (0, 4.0)]);
        // Every bucket boundary of the delta-of-delta encoding.
        let mut samples = vec![(0i64, 0.0), (1000, 0.0)];
        let mut t = 1000i64;
        let mut delta = 1000i64;
        for dod in [
            0i64,
            1,
            -1,
            8191,
            -8191,
            8192,
            -8192,
            8193,
            65535,
            -65535,
            65536,
            -65536,
            65537,
            524287,
            -524287,
            524288,
            -524288,
            524289,
            1 << 40,
            -(1 << 40),
        ] {
            delta += dod;
            t += delta;
            samples.push((t, t as f64));
        }
        assert_round_trip(&samples);
    }

    #[test]
    fn identical_values_take_one_bit() {
        let samples: Vec<(i64, f64)> = (0..120).map(|i| (i * 15_000, 42.0)).collect();
        let c = encode(&samples);
        assert_round_trip(&samples);
        // header + first sample (3+8 bytes) + second (3 bytes + 1 bit) + 118 * 2 bits.
        assert!(c.bytes().len() <= 2 + 11 + 3 + 31, "{}", c.bytes().len());
    }

    #[test]
    fn randomized_round_trips() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let n = rng.below(250) as usize;
            let mut t = rng.next() as i64 >> rng.below(64);
            let mut v = 0.0f64;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                t = match rng.below(6) {
                    0 => t.wrapping_add(15_000),
                    1 => t.wrapping_add(rng.below(1 << 20) as i64),
                    2 => t.wrapping_add(rng.next() as i64),
                    _ => t.wrapping_add(14_990 + rng.below(20) as i64),
                };
                v = match rng.below(7) {
                    0 => v,
                    1 => v + 1.0,
                    2 => f64::from_bits(rng.next()),
                    3 => (rng.below(1000) as f64) / 10.0,
                    4 => v * 1.5,
                    5 => -v,
                    _ => rng.next() as f64,
                };
                samples.push((t, v));
            }
            let c = encode(&samples);
            let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
            let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            assert_eq!(got, want, "round {round}");
            assert_seeks(&samples);
            if round % 20 == 0 {
                assert_round_trip(&samples);
            }
        }
    }

    #[test]
    fn chunk_full_at_u16_max() {
        let mut a = XorAppender::new();
        for i in 0..u16::MAX as i64 {
            a.append(i, 1.0).unwrap();
        }
        assert!(matches!(a.append(1 << 20, 1.0), Err(ChunkError::ChunkFull)));
        assert_eq!(a.iter().count(), u16::MAX as usize);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let samples: Vec<(i64, f64)> = (0..50)
            .map(|i| (i * 1000 + i * i, i as f64 * 0.37))
            .collect();
        let c = encode(&samples);
        let b = c.bytes();
        for len in 0..b.len() {
            let r = XorChunk::from_bytes(Bytes::copy_from_slice(&b[..len]));
            assert!(r.is_err(), "len {len}");
            assert!(XorAppender::resume(&b[..len]).is_err(), "len {len}");
        }
        // Random garbage never panics.
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let len = rng.below(64) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = XorChunk::from_bytes(data.clone());
            if let Ok(it) = XorIter::new(&data) {
                let _ = it.count();
            }
        }
    }
}
