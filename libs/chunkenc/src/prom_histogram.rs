//! Prometheus' native histogram chunks, as TSDB blocks store them: integer histograms
//! ([`Encoding::Histogram`], byte 2) and float histograms ([`Encoding::FloatHistogram`], byte 3),
//! laid out as `tsdb/docs/format/chunks.md` describes.
//!
//! ```text
//! u16 BE sample count | flags u8 (bits 7-6: counter reset header) | bit stream:
//!   layout    zero threshold (1 byte, or 0xff + f64), varbit schema, positive and negative spans
//!             (varbit count, then varbit length + varbit offset each), custom bounds (schema -53)
//!   sample 0  varbit t; integer: varbit count, zero count, raw f64 sum, varbit bucket deltas;
//!             float: raw f64 count, zero count, sum and buckets
//!   sample n  varbit delta-of-delta t; integer: varbit dod of count and zero count, XOR sum,
//!             varbit dod of each bucket delta; float: XOR of count, zero count, sum, each bucket
//! ```
//!
//! A chunk holds one bucket layout. [`PromHistogramAppender::fits`] says whether a sample can join
//! the chunk: not when its layout differs, when a counter went down (counter chunks hold no resets
//! after their first sample, which is what readers assume) or when the chunk switches between gauge
//! and counter histograms; the caller then starts a new chunk. Unlike Prometheus' appender, a new
//! bucket does not recode the chunk: it starts a new one. A stale marker (sum = stale NaN) always
//! fits and is stored without buckets; a chunk ending in a stale marker takes only stale markers.
//!
//! Prometheus 2.42 reads the integer chunks (hestia-block's tests query its server); it has no
//! float histogram encoding, which later versions added.

use crate::bits::{
    read_varbit_int, read_varbit_uint, read_xor, write_varbit_int, write_varbit_uint, write_xor,
    BitReader, BitWriter, XorState,
};
use crate::histogram::{CounterResetHint, Histogram, Span};
use crate::{ChunkError, Encoding};

/// Sample count and flags byte.
const HEADER_LEN: usize = 3;
/// Bits of Prometheus' stale marker NaN.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Schema of custom-bucket histograms.
const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// Decoded layouts may announce at most this many buckets or custom bounds.
const MAX_BUCKETS: usize = 1 << 16;

const HEADER_UNKNOWN: u8 = 0b0000_0000;
const HEADER_COUNTER_RESET: u8 = 0b1000_0000;
const HEADER_NOT_COUNTER_RESET: u8 = 0b0100_0000;
const HEADER_GAUGE: u8 = 0b1100_0000;

fn is_stale(h: &Histogram) -> bool {
    h.sum.to_bits() == STALE_NAN_BITS
}

/// An integer count as Prometheus' integer histograms hold it, if `v` is one.
fn as_count(v: f64) -> Option<u64> {
    ((0.0..9.2e18).contains(&v) && v.fract() == 0.0).then_some(v as u64)
}

/// Whether every count of `h` is a non-negative integer, so an integer chunk can hold it.
pub fn is_integer_histogram(h: &Histogram) -> bool {
    [h.count, h.zero_count]
        .iter()
        .chain(&h.positive_buckets)
        .chain(&h.negative_buckets)
        .all(|&v| as_count(v).is_some())
}

fn span_buckets(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.length as usize).sum()
}

/// Absolute bucket counts → Prometheus' integer deltas (first absolute, then differences).
fn bucket_deltas(buckets: &[f64], out: &mut Vec<i64>) {
    out.clear();
    let mut prev = 0i64;
    for &b in buckets {
        let v = b as i64;
        out.push(v.wrapping_sub(prev));
        prev = v;
    }
}

#[derive(Debug, Clone, Default)]
struct IntState {
    cnt: u64,
    zcnt: u64,
    cnt_delta: i64,
    zcnt_delta: i64,
    /// Per bucket: its delta to the previous bucket, and that delta's change since the last sample.
    pos: Vec<(i64, i64)>,
    neg: Vec<(i64, i64)>,
}

#[derive(Debug, Clone)]
struct FloatState {
    cnt: XorState,
    zcnt: XorState,
    pos: Vec<XorState>,
    neg: Vec<XorState>,
}

#[derive(Debug, Clone)]
enum Values {
    Int(IntState),
    Float(FloatState),
}

/// Appends native histograms to a Prometheus histogram or float histogram chunk.
#[derive(Debug, Clone)]
pub struct PromHistogramAppender {
    w: BitWriter,
    values: Values,
    num: u16,
    min_t: i64,
    t: i64,
    t_delta: i64,
    sum: XorState,
    /// The last sample that was not a stale marker (its layout is the chunk's).
    last: Option<Histogram>,
    last_stale: bool,
    scratch: Vec<i64>,
}

impl PromHistogramAppender {
    /// An empty integer histogram chunk (Prometheus' `EncHistogram`).
    pub fn integer() -> Self {
        Self::with_values(Values::Int(IntState::default()))
    }

    /// An empty float histogram chunk (Prometheus' `EncFloatHistogram`).
    pub fn float() -> Self {
        Self::with_values(Values::Float(FloatState {
            cnt: XorState::new(0),
            zcnt: XorState::new(0),
            pos: Vec::new(),
            neg: Vec::new(),
        }))
    }

    fn with_values(values: Values) -> Self {
        Self {
            w: BitWriter::new(HEADER_LEN, 256),
            values,
            num: 0,
            min_t: i64::MAX,
            t: i64::MIN,
            t_delta: 0,
            sum: XorState::new(0),
            last: None,
            last_stale: false,
            scratch: Vec::new(),
        }
    }

    pub fn encoding(&self) -> Encoding {
        match self.values {
            Values::Int(_) => Encoding::Histogram,
            Values::Float(_) => Encoding::FloatHistogram,
        }
    }

    fn header(&self) -> u8 {
        self.w.buf[2]
    }

    /// Whether `h` can be appended to this chunk (see the module docs); a new chunk takes any
    /// valid histogram, an integer chunk only integer counts.
    pub fn fits(&self, h: &Histogram) -> bool {
        if self.num == u16::MAX {
            return false;
        }
        if matches!(self.values, Values::Int(_)) && !is_stale(h) && !is_integer_histogram(h) {
            return false;
        }
        if self.num == 0 || is_stale(h) {
            return true;
        }
        if self.last_stale {
            return false;
        }
        let gauge = self.header() == HEADER_GAUGE;
        if gauge != (h.counter_reset_hint == CounterResetHint::Gauge)
            || h.counter_reset_hint == CounterResetHint::CounterReset
        {
            return false;
        }
        let Some(last) = &self.last else {
            return false;
        };
        if !last.same_layout(h) {
            return false;
        }
        let went_down = |a: &[f64], b: &[f64]| a.iter().zip(b).any(|(x, y)| y < x);
        gauge
            || !(h.count < last.count
                || h.zero_count < last.zero_count
                || went_down(&last.positive_buckets, &h.positive_buckets)
                || went_down(&last.negative_buckets, &h.negative_buckets))
    }

    /// Appends `h` at `t` (newer than the previous sample). Fails if `h` does not [`fits`] or its
    /// bucket counts disagree with its spans.
    ///
    /// [`fits`]: PromHistogramAppender::fits
    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::ChunkFull);
        }
        if !self.fits(h) {
            return Err(ChunkError::Unappendable(
                "histogram needs a new chunk (layout, counter reset, gauge or integer counts)",
            ));
        }
        let stale = is_stale(h);
        if !stale
            && (span_buckets(&h.positive_spans) != h.positive_buckets.len()
                || span_buckets(&h.negative_spans) != h.negative_buckets.len())
        {
            return Err(ChunkError::Unappendable(
                "histogram bucket counts disagree with its spans",
            ));
        }
        let stale_marker;
        let h = if stale {
            stale_marker = Histogram {
                sum: h.sum,
                ..Histogram::default()
            };
            &stale_marker
        } else {
            h
        };
        if self.num == 0 {
            self.w.buf[2] = match h.counter_reset_hint {
                CounterResetHint::Unknown => HEADER_UNKNOWN,
                CounterResetHint::CounterReset => HEADER_COUNTER_RESET,
                CounterResetHint::NotCounterReset => HEADER_NOT_COUNTER_RESET,
                CounterResetHint::Gauge => HEADER_GAUGE,
            };
            self.write_first(t, h);
            self.min_t = t;
        } else {
            self.write_next(t, h, stale);
        }
        self.t = t;
        self.num += 1;
        self.w.buf[..2].copy_from_slice(&self.num.to_be_bytes());
        self.last_stale = stale;
        if !stale {
            self.last = Some(h.clone());
        }
        Ok(())
    }

    fn write_first(&mut self, t: i64, h: &Histogram) {
        let w = &mut self.w;
        write_layout(w, h);
        write_varbit_int(w, t);
        self.sum = XorState::new(h.sum.to_bits());
        match &mut self.values {
            Values::Int(s) => {
                // `fits` checked the counts are integers.
                let (cnt, zcnt) = (h.count as u64, h.zero_count as u64);
                write_varbit_uint(w, cnt);
                write_varbit_uint(w, zcnt);
                w.write_bits(h.sum.to_bits(), 64);
                *s = IntState {
                    cnt,
                    zcnt,
                    ..IntState::default()
                };
                for (buckets, state) in [
                    (&h.positive_buckets, &mut s.pos),
                    (&h.negative_buckets, &mut s.neg),
                ] {
                    bucket_deltas(buckets, &mut self.scratch);
                    for &d in &self.scratch {
                        write_varbit_int(w, d);
                        state.push((d, 0));
                    }
                }
            }
            Values::Float(s) => {
                for v in [h.count, h.zero_count, h.sum] {
                    w.write_bits(v.to_bits(), 64);
                }
                s.cnt = XorState::new(h.count.to_bits());
                s.zcnt = XorState::new(h.zero_count.to_bits());
                for (buckets, state) in [
                    (&h.positive_buckets, &mut s.pos),
                    (&h.negative_buckets, &mut s.neg),
                ] {
                    state.clear();
                    for &b in buckets {
                        w.write_bits(b.to_bits(), 64);
                        state.push(XorState::new(b.to_bits()));
                    }
                }
            }
        }
    }

    fn write_next(&mut self, t: i64, h: &Histogram, stale: bool) {
        let w = &mut self.w;
        let t_delta = t.wrapping_sub(self.t);
        write_varbit_int(w, t_delta.wrapping_sub(self.t_delta));
        self.t_delta = t_delta;
        match &mut self.values {
            Values::Int(s) => {
                let (cnt, zcnt) = (h.count as u64, h.zero_count as u64);
                let cnt_delta = (cnt as i64).wrapping_sub(s.cnt as i64);
                let zcnt_delta = (zcnt as i64).wrapping_sub(s.zcnt as i64);
                // Prometheus writes zero deltas-of-deltas for a stale marker's counts.
                let (cnt_dod, zcnt_dod) = match stale {
                    true => (0, 0),
                    false => (
                        cnt_delta.wrapping_sub(s.cnt_delta),
                        zcnt_delta.wrapping_sub(s.zcnt_delta),
                    ),
                };
                write_varbit_int(w, cnt_dod);
                write_varbit_int(w, zcnt_dod);
                write_xor(w, &mut self.sum, h.sum.to_bits());
                (s.cnt, s.zcnt, s.cnt_delta, s.zcnt_delta) = (cnt, zcnt, cnt_delta, zcnt_delta);
                if stale {
                    return;
                }
                for (buckets, state) in [
                    (&h.positive_buckets, &mut s.pos),
                    (&h.negative_buckets, &mut s.neg),
                ] {
                    bucket_deltas(buckets, &mut self.scratch);
                    for (&d, (prev, prev_delta)) in self.scratch.iter().zip(state.iter_mut()) {
                        let delta = d.wrapping_sub(*prev);
                        write_varbit_int(w, delta.wrapping_sub(*prev_delta));
                        (*prev, *prev_delta) = (d, delta);
                    }
                }
            }
            Values::Float(s) => {
                write_xor(w, &mut s.cnt, h.count.to_bits());
                write_xor(w, &mut s.zcnt, h.zero_count.to_bits());
                write_xor(w, &mut self.sum, h.sum.to_bits());
                if stale {
                    return;
                }
                for (buckets, state) in [
                    (&h.positive_buckets, &mut s.pos),
                    (&h.negative_buckets, &mut s.neg),
                ] {
                    for (&b, st) in buckets.iter().zip(state.iter_mut()) {
                        write_xor(w, st, b.to_bits());
                    }
                }
            }
        }
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

    /// The chunk encoded so far, in Prometheus' format.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf[..self.w.bit_len.div_ceil(8)]
    }

    pub fn into_bytes(mut self) -> Vec<u8> {
        self.w.buf.truncate(self.w.bit_len.div_ceil(8));
        self.w.buf
    }
}

fn write_layout(w: &mut BitWriter, h: &Histogram) {
    write_zero_threshold(w, h.zero_threshold);
    write_varbit_int(w, i64::from(h.schema));
    for spans in [&h.positive_spans, &h.negative_spans] {
        write_varbit_uint(w, spans.len() as u64);
        for s in spans {
            write_varbit_uint(w, u64::from(s.length));
            write_varbit_int(w, i64::from(s.offset));
        }
    }
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        write_varbit_uint(w, h.custom_values.len() as u64);
        for &v in &h.custom_values {
            write_custom_bound(w, v);
        }
    }
}

/// 0 as one zero byte, a power of two in 2^-243..=2^10 as one byte (exponent + 243), anything
/// else as 0xff and the f64.
fn write_zero_threshold(w: &mut BitWriter, v: f64) {
    if v == 0.0 {
        w.write_bits(0, 8);
        return;
    }
    match frexp_power_of_two(v) {
        Some(exp) if (-242..=11).contains(&exp) => w.write_bits((exp + 243) as u64, 8),
        _ => {
            w.write_bits(0xff, 8);
            w.write_bits(v.to_bits(), 64);
        }
    }
}

/// For `v = 0.5 * 2^exp` (a positive normal power of two), `exp` as Go's `math.Frexp` gives it.
fn frexp_power_of_two(v: f64) -> Option<i32> {
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let is_power = bits >> 63 == 0 && bits & ((1 << 52) - 1) == 0 && biased != 0 && biased != 0x7ff;
    is_power.then_some(biased - 1022)
}

/// Bounds that are whole multiples of 0.001 in 0..=33554.43 as varbit `v * 1000 + 1`; others as a
/// zero bit and the f64.
fn write_custom_bound(w: &mut BitWriter, v: f64) {
    let scaled = v * 1000.0;
    let whole = (scaled.round() / 1000.0) == v;
    if (0.0..=33_554_430.0).contains(&scaled) && whole {
        write_varbit_uint(w, scaled.round() as u64 + 1);
    } else {
        w.write_bits(0, 1);
        w.write_bits(v.to_bits(), 64);
    }
}

/// Iterates `(timestamp, histogram)` over a Prometheus histogram or float histogram chunk.
/// Bucket counts are absolute. A stale marker comes back as a histogram with only its sum set.
/// Decoding stops at the first malformed bit; [`PromHistogramIter::err`] then reports it.
pub struct PromHistogramIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    header: u8,
    layout: Histogram,
    t: i64,
    t_delta: i64,
    sum: XorState,
    values: Values,
    err: Option<ChunkError>,
}

const TRUNCATED: &str = "truncated or malformed bit stream";

impl<'a> PromHistogramIter<'a> {
    /// Starts decoding a chunk of `encoding` ([`Encoding::Histogram`] or
    /// [`Encoding::FloatHistogram`]).
    pub fn new(encoding: Encoding, data: &'a [u8]) -> Result<Self, ChunkError> {
        let values = match encoding {
            Encoding::Histogram => PromHistogramAppender::integer().values,
            Encoding::FloatHistogram => PromHistogramAppender::float().values,
            Encoding::Xor => {
                return Err(ChunkError::corrupt(
                    "histogram chunk",
                    "an XOR chunk is not a histogram chunk",
                ))
            }
        };
        let [a, b, header, ..] = *data else {
            return Err(ChunkError::corrupt(
                "histogram chunk",
                "shorter than its header",
            ));
        };
        Ok(Self {
            r: BitReader::new(&data[HEADER_LEN..]),
            total: u16::from_be_bytes([a, b]),
            read: 0,
            header: header & HEADER_GAUGE,
            layout: Histogram::default(),
            t: 0,
            t_delta: 0,
            sum: XorState::new(0),
            values,
            err: None,
        })
    }

    /// Number of samples the chunk header announces.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    /// The error that ended iteration early, if any.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    fn hint(&self) -> CounterResetHint {
        match (self.header, self.read) {
            (HEADER_GAUGE, _) => CounterResetHint::Gauge,
            (_, 1..) => CounterResetHint::NotCounterReset,
            (HEADER_COUNTER_RESET, 0) => CounterResetHint::CounterReset,
            _ => CounterResetHint::Unknown,
        }
    }

    fn read_layout(&mut self) -> Result<(), &'static str> {
        let r = &mut self.r;
        let zero_threshold = match r.read_bits(8).ok_or(TRUNCATED)? {
            0 => 0.0,
            0xff => f64::from_bits(r.read_bits_wide(64).ok_or(TRUNCATED)?),
            // 2^(byte - 244), built from its exponent bits (always a normal number).
            e => f64::from_bits((e + 1023 - 244) << 52),
        };
        let schema = read_varbit_int(r).ok_or(TRUNCATED)?;
        let schema = i32::try_from(schema).map_err(|_| "schema out of range")?;
        if !(-4..=8).contains(&schema) && schema != CUSTOM_BUCKETS_SCHEMA {
            return Err("unknown histogram schema");
        }
        let mut spans = [Vec::new(), Vec::new()];
        for s in &mut spans {
            let n = read_varbit_uint(r).ok_or(TRUNCATED)?;
            if n > MAX_BUCKETS as u64 {
                return Err("too many spans");
            }
            for _ in 0..n {
                let length = read_varbit_uint(r).ok_or(TRUNCATED)?;
                let offset = read_varbit_int(r).ok_or(TRUNCATED)?;
                s.push(Span {
                    length: u32::try_from(length).map_err(|_| "span length out of range")?,
                    offset: i32::try_from(offset).map_err(|_| "span offset out of range")?,
                });
            }
            if span_buckets(s) > MAX_BUCKETS {
                return Err("too many buckets");
            }
        }
        let mut custom_values = Vec::new();
        if schema == CUSTOM_BUCKETS_SCHEMA {
            let n = read_varbit_uint(r).ok_or(TRUNCATED)?;
            if n > MAX_BUCKETS as u64 {
                return Err("too many custom bounds");
            }
            for _ in 0..n {
                let v = match read_varbit_uint(r).ok_or(TRUNCATED)? {
                    0 => f64::from_bits(r.read_bits_wide(64).ok_or(TRUNCATED)?),
                    v => (v - 1) as f64 / 1000.0,
                };
                custom_values.push(v);
            }
        }
        let [positive_spans, negative_spans] = spans;
        self.layout = Histogram {
            schema,
            zero_threshold,
            positive_spans,
            negative_spans,
            custom_values,
            ..Histogram::default()
        };
        Ok(())
    }

    fn read_first(&mut self) -> Option<()> {
        let np = span_buckets(&self.layout.positive_spans);
        let nn = span_buckets(&self.layout.negative_spans);
        let r = &mut self.r;
        self.t = read_varbit_int(r)?;
        match &mut self.values {
            Values::Float(s) => {
                let mut raw = || r.read_bits_wide(64).map(XorState::new);
                s.cnt = raw()?;
                s.zcnt = raw()?;
                self.sum = raw()?;
                // A stale marker first in its chunk has an empty layout: no buckets follow.
                s.pos = (0..np).map(|_| raw()).collect::<Option<_>>()?;
                s.neg = (0..nn).map(|_| raw()).collect::<Option<_>>()?;
            }
            Values::Int(s) => {
                s.cnt = read_varbit_uint(r)?;
                s.zcnt = read_varbit_uint(r)?;
                self.sum = XorState::new(r.read_bits_wide(64)?);
                let mut deltas = |n: usize| {
                    (0..n)
                        .map(|_| read_varbit_int(r).map(|d| (d, 0)))
                        .collect::<Option<Vec<_>>>()
                };
                s.pos = deltas(np)?;
                s.neg = deltas(nn)?;
            }
        }
        Some(())
    }

    fn read_next(&mut self) -> Option<()> {
        let r = &mut self.r;
        let dod = read_varbit_int(r)?;
        self.t_delta = self.t_delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.t_delta);
        match &mut self.values {
            Values::Float(s) => {
                read_xor(r, &mut s.cnt)?;
                read_xor(r, &mut s.zcnt)?;
                read_xor(r, &mut self.sum)?;
                if self.sum.bits != STALE_NAN_BITS {
                    for st in s.pos.iter_mut().chain(s.neg.iter_mut()) {
                        read_xor(r, st)?;
                    }
                }
            }
            Values::Int(s) => {
                s.cnt_delta = s.cnt_delta.wrapping_add(read_varbit_int(r)?);
                s.cnt = (s.cnt as i64).wrapping_add(s.cnt_delta) as u64;
                s.zcnt_delta = s.zcnt_delta.wrapping_add(read_varbit_int(r)?);
                s.zcnt = (s.zcnt as i64).wrapping_add(s.zcnt_delta) as u64;
                read_xor(r, &mut self.sum)?;
                if self.sum.bits != STALE_NAN_BITS {
                    for (d, dd) in s.pos.iter_mut().chain(s.neg.iter_mut()) {
                        *dd = dd.wrapping_add(read_varbit_int(r)?);
                        *d = d.wrapping_add(*dd);
                    }
                }
            }
        }
        Some(())
    }

    fn step(&mut self) -> Result<(i64, Histogram), &'static str> {
        if self.read == 0 {
            self.read_layout()?;
            self.read_first().ok_or(TRUNCATED)?;
        } else {
            self.read_next().ok_or(TRUNCATED)?;
        }
        let sum = f64::from_bits(self.sum.bits);
        if self.sum.bits == STALE_NAN_BITS {
            let stale = Histogram {
                sum,
                ..Histogram::default()
            };
            return Ok((self.t, stale));
        }
        let mut h = self.layout.clone();
        h.counter_reset_hint = self.hint();
        h.sum = sum;
        match &self.values {
            Values::Float(s) => {
                h.count = f64::from_bits(s.cnt.bits);
                h.zero_count = f64::from_bits(s.zcnt.bits);
                h.positive_buckets = s.pos.iter().map(|x| f64::from_bits(x.bits)).collect();
                h.negative_buckets = s.neg.iter().map(|x| f64::from_bits(x.bits)).collect();
            }
            Values::Int(s) => {
                h.count = s.cnt as f64;
                h.zero_count = s.zcnt as f64;
                h.positive_buckets = absolute(&s.pos);
                h.negative_buckets = absolute(&s.neg);
            }
        }
        Ok((self.t, h))
    }
}

/// Integer bucket deltas → absolute counts.
fn absolute(deltas: &[(i64, i64)]) -> Vec<f64> {
    let mut acc = 0i64;
    deltas
        .iter()
        .map(|(d, _)| {
            acc = acc.wrapping_add(*d);
            acc as f64
        })
        .collect()
}

impl Iterator for PromHistogramIter<'_> {
    type Item = (i64, Histogram);

    fn next(&mut self) -> Option<Self::Item> {
        if self.read == self.total || self.err.is_some() {
            return None;
        }
        match self.step() {
            Ok(x) => {
                self.read += 1;
                Some(x)
            }
            Err(e) => {
                self.err = Some(ChunkError::corrupt("histogram chunk", e));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(i: u32, hint: CounterResetHint) -> Histogram {
        let f = f64::from(i);
        Histogram {
            counter_reset_hint: hint,
            schema: 3,
            zero_threshold: 2f64.powi(-128),
            zero_count: f,
            count: 20.0 * f + 7.0,
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
            positive_buckets: vec![f, 2.0 * f, f + 1.0, 3.0 * f, 5.0 * f],
            negative_buckets: vec![7.0 * f],
            custom_values: vec![],
        }
    }

    fn round_trip(mut a: PromHistogramAppender, samples: &[(i64, Histogram)]) -> Vec<u8> {
        for (t, h) in samples {
            assert!(a.fits(h), "{t}");
            a.append(*t, h).unwrap();
        }
        let enc = a.encoding();
        let bytes = a.into_bytes();
        let mut it = PromHistogramIter::new(enc, &bytes).unwrap();
        let got: Vec<_> = it.by_ref().collect();
        assert!(it.err().is_none(), "{:?}", it.err());
        assert_eq!(got.len(), samples.len());
        for (i, ((gt, gh), (wt, wh))) in got.iter().zip(samples).enumerate() {
            assert_eq!(gt, wt);
            let mut want = wh.clone();
            if is_stale(wh) {
                want = Histogram {
                    sum: wh.sum,
                    ..Histogram::default()
                };
            } else if i > 0 && want.counter_reset_hint != CounterResetHint::Gauge {
                want.counter_reset_hint = CounterResetHint::NotCounterReset;
            }
            assert!(gh.same_bits(&want), "{gt}: {gh:?} != {want:?}");
        }
        bytes
    }

    fn stale() -> Histogram {
        Histogram {
            sum: f64::from_bits(STALE_NAN_BITS),
            ..hist(0, CounterResetHint::Unknown)
        }
    }

    #[test]
    fn integer_chunk_round_trip_with_stale_end() {
        let mut samples: Vec<_> = (0..100u32)
            .map(|i| {
                let t = 1_000_000 + i64::from(i) * 15_000 + i64::from(i % 3);
                (t, hist(i * i, CounterResetHint::CounterReset))
            })
            .collect();
        samples[0].1.counter_reset_hint = CounterResetHint::CounterReset;
        samples.push((3_000_000, stale()));
        samples.push((3_015_000, stale()));
        let bytes = round_trip(PromHistogramAppender::integer(), &samples[..1]);
        assert_eq!(bytes[2], HEADER_COUNTER_RESET);
        for s in &mut samples[1..] {
            s.1.counter_reset_hint = CounterResetHint::NotCounterReset;
        }
        let bytes = round_trip(PromHistogramAppender::integer(), &samples);
        // A growing counter histogram costs a few bytes per sample.
        assert!(bytes.len() < samples.len() * 16, "{} bytes", bytes.len());
    }

    #[test]
    fn float_and_gauge_chunks_round_trip() {
        let mut samples: Vec<_> = (0..50u32)
            .map(|i| {
                let mut h = hist(i, CounterResetHint::Gauge);
                h.count = 0.25 * f64::from(i);
                h.positive_buckets[1] = f64::from(50 - i) / 3.0;
                (i64::from(i) * 1000 - 5_000, h)
            })
            .collect();
        samples.push((1_000_000, stale()));
        let bytes = round_trip(PromHistogramAppender::float(), &samples);
        assert_eq!(bytes[2], HEADER_GAUGE);
        // Integer gauges may go down.
        let ints: Vec<_> = (0..20u32)
            .map(|i| (i64::from(i), hist(20 - i, CounterResetHint::Gauge)))
            .collect();
        round_trip(PromHistogramAppender::integer(), &ints);
    }

    #[test]
    fn custom_buckets_and_zero_thresholds() {
        // Zero and powers of two in 2^-243..=2^10 take one byte.
        let thresholds = [
            (0.0, true),
            (2f64.powi(-243), true),
            (2f64.powi(-244), false),
            (0.001, false),
            (1024.0, true),
            (2048.0, false),
            (0.5, true),
            (3.0, false),
        ];
        for (zt, one_byte) in thresholds {
            let mut h = hist(3, CounterResetHint::Unknown);
            h.zero_threshold = zt;
            let bytes = round_trip(PromHistogramAppender::integer(), &[(7, h)]);
            assert_eq!(bytes[3] != 0xff, one_byte, "{zt}");
        }
        let mut h = hist(5, CounterResetHint::Unknown);
        h.schema = CUSTOM_BUCKETS_SCHEMA;
        h.negative_spans.clear();
        h.negative_buckets.clear();
        h.custom_values = vec![0.005, 0.1, 2.5, 33_554.43, 40_000.0, -1.0, 0.1234567];
        round_trip(PromHistogramAppender::float(), &[(1, h.clone()), (2, h)]);
    }

    #[test]
    fn fits_cuts_where_prometheus_does() {
        let mut a = PromHistogramAppender::integer();
        let h = hist(10, CounterResetHint::Unknown);
        a.append(1, &h).unwrap();
        let mut fewer = hist(9, CounterResetHint::Unknown);
        assert!(!a.fits(&fewer), "counter reset");
        fewer.count = 10_000.0;
        assert!(!a.fits(&fewer), "a bucket went down");
        let mut layout = hist(11, CounterResetHint::Unknown);
        layout.schema = 2;
        assert!(!a.fits(&layout));
        assert!(!a.fits(&hist(11, CounterResetHint::Gauge)));
        assert!(!a.fits(&hist(11, CounterResetHint::CounterReset)));
        let mut fractional = hist(11, CounterResetHint::Unknown);
        fractional.sum = 0.5;
        assert!(a.fits(&fractional), "the sum is a float in integer chunks");
        fractional.count += 0.5;
        assert!(!a.fits(&fractional));
        assert!(PromHistogramAppender::float().fits(&fractional));
        assert!(matches!(
            a.append(2, &fractional),
            Err(ChunkError::Unappendable(_))
        ));
        let mut wrong = hist(12, CounterResetHint::Unknown);
        wrong.positive_buckets.pop();
        assert!(PromHistogramAppender::integer().append(1, &wrong).is_err());
        a.append(2, &stale()).unwrap();
        assert!(
            !a.fits(&hist(12, CounterResetHint::Unknown)),
            "after a stale marker"
        );
        assert!(a.fits(&stale()));
    }

    #[test]
    fn malformed_chunks_are_errors_not_panics() {
        let samples: Vec<_> = (0..30u32)
            .map(|i| (i64::from(i) * 15_000, hist(i, CounterResetHint::Unknown)))
            .collect();
        for float in [false, true] {
            let mut a = match float {
                true => PromHistogramAppender::float(),
                false => PromHistogramAppender::integer(),
            };
            for (t, h) in &samples {
                a.append(*t, h).unwrap();
            }
            let enc = a.encoding();
            let bytes = a.into_bytes();
            assert!(PromHistogramIter::new(enc, &bytes[..2]).is_err());
            for cut in 3..bytes.len() - 1 {
                let mut it = PromHistogramIter::new(enc, &bytes[..cut]).unwrap();
                assert!(it.by_ref().count() < samples.len());
                assert!(it.err().is_some(), "cut at {cut}");
            }
            for i in 0..bytes.len() * 8 {
                let mut b = bytes.clone();
                b[i / 8] ^= 1 << (i % 8);
                let mut it = PromHistogramIter::new(enc, &b).unwrap();
                let _ = it.by_ref().count();
            }
        }
        assert!(PromHistogramIter::new(Encoding::Xor, &[0, 0, 0]).is_err());
    }
}
