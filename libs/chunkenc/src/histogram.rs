//! Native histograms and their chunk encoding.
//!
//! Counts are stored as `f64` whether the sender used integer or float histograms (integer counts
//! up to 2^53 are exact), so one chunk format serves both.
//!
//! Chunk layout (Hestia's own; the ingester stores it with encoding byte `2`):
//!
//! ```text
//! u16 BE sample count
//! per sample:
//!   flags u8            bit 0: a layout follows; bits 1-2: counter reset hint
//!   zigzag varint       timestamp: absolute for the first sample, then delta-of-delta
//!   [layout]            when flagged (always for the first sample): zigzag varint schema,
//!                       f64 LE zero threshold, positive spans, negative spans (uvarint count,
//!                       then zigzag varint offset + uvarint length each), uvarint custom value
//!                       count and f64 LE each
//!   values              count, sum, zero count, positive buckets, negative buckets (absolute
//!                       counts), each as the XOR with the same value of the previous sample (0
//!                       after a layout change) written as `u8 trailing zero bits (64 = equal)`
//!                       then `uvarint(xor >> trailing)`
//! ```
//!
//! Unchanged layouts cost one flag bit; a counter that moved costs 2–4 bytes per bucket because
//! integer-valued floats differ in a few mantissa bits only. Chunks are sealed at the sample target
//! or at [`MAX_HISTOGRAM_CHUNK_BYTES`].

use crate::varint::{put_uvarint, put_varint, Decoder};
use crate::ChunkError;

/// Histogram chunks are sealed at this size (several times a float chunk: a sample is bigger).
pub const MAX_HISTOGRAM_CHUNK_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
}

impl CounterResetHint {
    fn to_bits(self) -> u8 {
        self as u8
    }

    fn from_bits(b: u8) -> Self {
        match b & 3 {
            1 => Self::CounterReset,
            2 => Self::NotCounterReset,
            3 => Self::Gauge,
            _ => Self::Unknown,
        }
    }
}

/// A run of consecutive buckets; `offset` is the gap to the previous span's end (or the first index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// One native histogram sample's value, bucket counts absolute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    /// Bucket upper bounds of custom-bucket histograms (schema -53).
    pub custom_values: Vec<f64>,
}

impl Histogram {
    /// Bitwise equality (so a re-sent stale marker with NaN sum is a duplicate, not a conflict).
    pub fn same_bits(&self, o: &Histogram) -> bool {
        let eq = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        self.counter_reset_hint == o.counter_reset_hint
            && self.same_layout(o)
            && eq(
                &[self.zero_count, self.count, self.sum],
                &[o.zero_count, o.count, o.sum],
            )
            && eq(&self.positive_buckets, &o.positive_buckets)
            && eq(&self.negative_buckets, &o.negative_buckets)
    }

    pub(crate) fn same_layout(&self, o: &Histogram) -> bool {
        self.schema == o.schema
            && self.zero_threshold.to_bits() == o.zero_threshold.to_bits()
            && self.positive_spans == o.positive_spans
            && self.negative_spans == o.negative_spans
            && self.custom_values.len() == o.custom_values.len()
            && self
                .custom_values
                .iter()
                .zip(&o.custom_values)
                .all(|(a, b)| a.to_bits() == b.to_bits())
            && self.positive_buckets.len() == o.positive_buckets.len()
            && self.negative_buckets.len() == o.negative_buckets.len()
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        [self.count, self.sum, self.zero_count]
            .into_iter()
            .chain(self.positive_buckets.iter().copied())
            .chain(self.negative_buckets.iter().copied())
    }
}

fn put_f64(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&v.to_bits().to_le_bytes());
}

fn get_f64(d: &mut Decoder<'_>) -> Result<f64, ChunkError> {
    Ok(f64::from_bits(d.u64_le()?))
}

fn put_spans(buf: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(buf, spans.len() as u64);
    for s in spans {
        put_varint(buf, i64::from(s.offset));
        put_uvarint(buf, u64::from(s.length));
    }
}

fn get_spans(d: &mut Decoder<'_>) -> Result<(Vec<Span>, usize), ChunkError> {
    let n = d.uvarint()?;
    let mut spans = Vec::with_capacity(n.min(64) as usize);
    let mut buckets = 0usize;
    for _ in 0..n {
        let offset = i32::try_from(d.varint()?)
            .map_err(|_| ChunkError::corrupt("histogram", "span offset overflow"))?;
        let length = u32::try_from(d.uvarint()?)
            .map_err(|_| ChunkError::corrupt("histogram", "span length overflow"))?;
        buckets = buckets
            .checked_add(length as usize)
            .filter(|&b| b <= 1 << 20)
            .ok_or_else(|| ChunkError::corrupt("histogram", "too many buckets"))?;
        spans.push(Span { offset, length });
    }
    Ok((spans, buckets))
}

fn put_layout(buf: &mut Vec<u8>, h: &Histogram) {
    put_varint(buf, i64::from(h.schema));
    put_f64(buf, h.zero_threshold);
    put_spans(buf, &h.positive_spans);
    put_spans(buf, &h.negative_spans);
    put_uvarint(buf, h.custom_values.len() as u64);
    for &v in &h.custom_values {
        put_f64(buf, v);
    }
}

/// Reads layout fields; also returns the positive and negative bucket counts the spans imply.
fn get_layout(d: &mut Decoder<'_>) -> Result<(Histogram, usize, usize), ChunkError> {
    let schema = i32::try_from(d.varint()?)
        .map_err(|_| ChunkError::corrupt("histogram", "schema overflow"))?;
    let zero_threshold = get_f64(d)?;
    let (positive_spans, np) = get_spans(d)?;
    let (negative_spans, nn) = get_spans(d)?;
    let nc = d.uvarint()?;
    if nc > 1 << 16 {
        return Err(ChunkError::corrupt("histogram", "too many custom values"));
    }
    let custom_values = (0..nc).map(|_| get_f64(d)).collect::<Result<_, _>>()?;
    let h = Histogram {
        schema,
        zero_threshold,
        positive_spans,
        negative_spans,
        custom_values,
        ..Histogram::default()
    };
    Ok((h, np, nn))
}

/// Appends a self-contained encoding of one histogram (Hestia's WAL records).
pub fn encode_histogram(buf: &mut Vec<u8>, h: &Histogram) {
    buf.push(h.counter_reset_hint.to_bits());
    put_layout(buf, h);
    put_uvarint(buf, h.positive_buckets.len() as u64);
    put_uvarint(buf, h.negative_buckets.len() as u64);
    for v in h.values() {
        put_f64(buf, v);
    }
}

/// Decodes an [`encode_histogram`] encoding at the start of `buf`; returns it and the bytes read.
pub fn decode_histogram(buf: &[u8]) -> Result<(Histogram, usize), ChunkError> {
    let mut d = Decoder::new(buf, "histogram");
    let h = get_histogram(&mut d)?;
    Ok((h, buf.len() - d.rest().len()))
}

fn get_histogram(d: &mut Decoder<'_>) -> Result<Histogram, ChunkError> {
    let hint = CounterResetHint::from_bits(d.u8()?);
    let (mut h, _, _) = get_layout(d)?;
    h.counter_reset_hint = hint;
    let np = d.uvarint()?;
    let nn = d.uvarint()?;
    if np > 1 << 20 || nn > 1 << 20 {
        return Err(ChunkError::corrupt("histogram", "too many buckets"));
    }
    h.count = get_f64(d)?;
    h.sum = get_f64(d)?;
    h.zero_count = get_f64(d)?;
    h.positive_buckets = (0..np).map(|_| get_f64(d)).collect::<Result<_, _>>()?;
    h.negative_buckets = (0..nn).map(|_| get_f64(d)).collect::<Result<_, _>>()?;
    Ok(h)
}

fn put_xor(buf: &mut Vec<u8>, prev: u64, v: f64) {
    let x = v.to_bits() ^ prev;
    if x == 0 {
        buf.push(64);
        return;
    }
    let tz = x.trailing_zeros();
    buf.push(tz as u8);
    put_uvarint(buf, x >> tz);
}

fn get_xor(d: &mut Decoder<'_>, prev: u64) -> Result<f64, ChunkError> {
    let tz = d.u8()?;
    if tz == 64 {
        return Ok(f64::from_bits(prev));
    }
    if tz > 63 {
        return Err(ChunkError::corrupt("histogram chunk", "bad xor header"));
    }
    let x = d.uvarint()?;
    if x.leading_zeros() < u32::from(tz) {
        return Err(ChunkError::corrupt("histogram chunk", "xor overflow"));
    }
    Ok(f64::from_bits(prev ^ (x << tz)))
}

/// Appends to a histogram chunk; every sample must be newer than the previous one.
#[derive(Debug, Clone)]
pub struct HistogramAppender {
    buf: Vec<u8>,
    num: u16,
    min_t: i64,
    last_t: i64,
    last_delta: i64,
    last: Option<Histogram>,
}

impl Default for HistogramAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl HistogramAppender {
    pub fn new() -> Self {
        Self {
            buf: vec![0, 0],
            num: 0,
            min_t: 0,
            last_t: 0,
            last_delta: 0,
            last: None,
        }
    }

    /// Reopens an encoded chunk for appending.
    pub fn resume(data: &[u8]) -> Result<Self, ChunkError> {
        let mut app = Self::new();
        let mut it = HistogramIter::new(data)?;
        let mut n = 0u16;
        for (t, _) in it.by_ref() {
            if n == 0 {
                app.min_t = t;
            } else {
                app.last_delta = t - app.last_t;
            }
            app.last_t = t;
            n += 1;
        }
        if let Some(e) = it.err.take() {
            return Err(e);
        }
        app.last = it.prev;
        app.num = n;
        app.buf = data.to_vec();
        Ok(app)
    }

    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::ChunkFull);
        }
        let layout = self.last.as_ref().is_none_or(|l| !l.same_layout(h));
        self.buf
            .push(u8::from(layout) | (h.counter_reset_hint.to_bits() << 1));
        match self.num {
            0 => {
                put_varint(&mut self.buf, t);
                self.min_t = t;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                put_varint(&mut self.buf, delta.wrapping_sub(self.last_delta));
                self.last_delta = delta;
            }
        }
        if layout {
            put_layout(&mut self.buf, h);
        }
        match self.last.as_ref().filter(|_| !layout) {
            Some(prev) => {
                for (v, p) in h.values().zip(prev.values()) {
                    put_xor(&mut self.buf, p.to_bits(), v);
                }
            }
            None => {
                for v in h.values() {
                    put_xor(&mut self.buf, 0, v);
                }
            }
        }
        self.last_t = t;
        self.num += 1;
        self.buf[..2].copy_from_slice(&self.num.to_be_bytes());
        self.last = Some(h.clone());
        Ok(())
    }

    pub fn num_samples(&self) -> u16 {
        self.num
    }

    pub fn is_empty(&self) -> bool {
        self.num == 0
    }

    pub fn min_time(&self) -> i64 {
        self.min_t
    }

    pub fn max_time(&self) -> i64 {
        self.last_t
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The newest sample's histogram.
    pub fn last(&self) -> Option<&Histogram> {
        self.last.as_ref()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Iterates `(timestamp, histogram)` over an encoded chunk; check [`HistogramIter::err`] after.
pub struct HistogramIter<'a> {
    d: Decoder<'a>,
    remaining: u16,
    first: bool,
    t: i64,
    delta: i64,
    prev: Option<Histogram>,
    err: Option<ChunkError>,
}

impl<'a> HistogramIter<'a> {
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let mut d = Decoder::new(data, "histogram chunk");
        let n = u16::from_be_bytes([d.u8()?, d.u8()?]);
        Ok(Self {
            d,
            remaining: n,
            first: true,
            t: 0,
            delta: 0,
            prev: None,
            err: None,
        })
    }

    /// The error that ended iteration early, if any.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    fn read(&mut self) -> Result<(i64, Histogram), ChunkError> {
        let flags = self.d.u8()?;
        let dod = self.d.varint()?;
        if self.first {
            self.t = dod;
            self.first = false;
        } else {
            self.delta = self.delta.wrapping_add(dod);
            self.t = self.t.wrapping_add(self.delta);
        }
        let (mut h, np, nn, prev) = match (flags & 1 == 1, self.prev.take()) {
            (false, Some(p)) => {
                let mut h = p.clone();
                h.positive_buckets.clear();
                h.negative_buckets.clear();
                let (np, nn) = (p.positive_buckets.len(), p.negative_buckets.len());
                (h, np, nn, Some(p))
            }
            (false, None) => {
                return Err(ChunkError::corrupt(
                    "histogram chunk",
                    "first sample has no layout",
                ))
            }
            (true, _) => {
                let (h, np, nn) = get_layout(&mut self.d)?;
                (h, np, nn, None)
            }
        };
        h.counter_reset_hint = CounterResetHint::from_bits(flags >> 1);
        let mut prev_values = prev.iter().flat_map(|p| p.values());
        let mut next = |d: &mut Decoder<'_>| {
            let p = prev_values.next().map_or(0, f64::to_bits);
            get_xor(d, p)
        };
        h.count = next(&mut self.d)?;
        h.sum = next(&mut self.d)?;
        h.zero_count = next(&mut self.d)?;
        for _ in 0..np {
            let v = next(&mut self.d)?;
            h.positive_buckets.push(v);
        }
        for _ in 0..nn {
            let v = next(&mut self.d)?;
            h.negative_buckets.push(v);
        }
        self.prev = Some(h.clone());
        Ok((self.t, h))
    }
}

impl Iterator for HistogramIter<'_> {
    type Item = (i64, Histogram);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.err.is_some() {
            return None;
        }
        self.remaining -= 1;
        match self.read() {
            Ok(x) => Some(x),
            Err(e) => {
                self.err = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(i: u32) -> Histogram {
        let f = f64::from(i);
        Histogram {
            counter_reset_hint: CounterResetHint::NotCounterReset,
            schema: 3,
            zero_threshold: 1e-128,
            zero_count: f,
            count: 10.0 * f,
            sum: 12.5 * f,
            positive_spans: vec![
                Span {
                    offset: -2,
                    length: 3,
                },
                Span {
                    offset: 4,
                    length: 2,
                },
            ],
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![f, 2.0 * f, f, 3.0 * f, 0.5 * f],
            negative_buckets: vec![1.5 * f],
            custom_values: vec![],
        }
    }

    #[test]
    fn chunk_round_trip() {
        let mut app = HistogramAppender::new();
        let mut want = Vec::new();
        for i in 0..100u32 {
            let mut h = hist(i);
            if i == 40 {
                // Layout change mid-chunk.
                h.positive_spans = vec![Span {
                    offset: 1,
                    length: 1,
                }];
                h.positive_buckets = vec![7.0];
                h.counter_reset_hint = CounterResetHint::CounterReset;
            }
            if i == 41 {
                h.sum = f64::from_bits(0x7ff0_0000_0000_0002); // stale marker
            }
            if i == 60 {
                h.schema = -53;
                h.negative_spans.clear();
                h.negative_buckets.clear();
                h.custom_values = vec![0.1, 0.5, 1.0, 2.5, 5.0];
            }
            let t = 1_000_000 + i64::from(i) * 15_000 + i64::from(i % 3);
            app.append(t, &h).unwrap();
            want.push((t, h));
        }
        let bytes = app.bytes().to_vec();
        let got: Vec<_> = HistogramIter::new(&bytes).unwrap().collect();
        assert_eq!(got.len(), want.len());
        for ((gt, gh), (wt, wh)) in got.iter().zip(&want) {
            assert_eq!(gt, wt);
            assert!(gh.same_bits(wh), "{gt}: {gh:?} != {wh:?}");
        }
        // Steady counters encode in a few bytes per bucket.
        assert!(bytes.len() < 100 * 40, "{} bytes", bytes.len());

        let mut resumed = HistogramAppender::resume(&bytes).unwrap();
        assert_eq!(resumed.num_samples(), 100);
        assert_eq!(resumed.max_time(), want[99].0);
        resumed.append(want[99].0 + 15_000, &hist(200)).unwrap();
        let last = HistogramIter::new(resumed.bytes()).unwrap().last().unwrap();
        assert!(last.1.same_bits(&hist(200)));
    }

    #[test]
    fn raw_round_trip_and_truncation() {
        let mut buf = Vec::new();
        let mut h = hist(7);
        h.schema = -53;
        h.custom_values = vec![1.0, 2.0];
        encode_histogram(&mut buf, &h);
        buf.push(0xff);
        let (got, n) = decode_histogram(&buf).unwrap();
        assert!(got.same_bits(&h));
        assert_eq!(n, buf.len() - 1);
        for cut in 0..n {
            assert!(decode_histogram(&buf[..cut]).is_err());
        }
        let mut app = HistogramAppender::new();
        app.append(1, &h).unwrap();
        app.append(2, &h).unwrap();
        let bytes = app.bytes();
        for cut in 2..bytes.len() {
            let mut it = HistogramIter::new(&bytes[..cut]).unwrap();
            assert!(it.by_ref().count() < 2);
            assert!(it.err().is_some());
        }
    }
}
