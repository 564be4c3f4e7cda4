//! RocksDB key and value encodings.
//!
//! Every tenant-owned key starts with the tenant prefix `len: u8 | tenant bytes`, so tenants occupy
//! disjoint key ranges and no key of one tenant is a prefix of another's.
//!
//! | column family | key                                   | value                                |
//! |---------------|---------------------------------------|--------------------------------------|
//! | `wal`         | tenant, seq `u64` BE                  | see [`decode_wal_record`]            |
//! | `series`      | tenant, series id `u64` BE            | [`encode_labels`]                    |
//! | `chunks`      | tenant, series id BE, min time (sortable BE) | encoding `u8` (1 XOR, 2 histogram), max time `i64` BE, chunk |
//! | `ooo_chunks`  | tenant, series id BE, chunk no `u32` BE | min time `i64` BE, then as `chunks` |
//! | `metadata`    | tenant, uvarint name len, name, type `u8` | uvarint-prefixed help and unit   |
//! | `exemplars`   | tenant, exemplar seq `u64` BE         | see [`encode_exemplar`]              |
//! | `idle`        | tenant, kind, ...                     | see `idle.rs`                        |
//! | `blocks`      | tenant, `m`                           | min valid time `i64` BE              |
//! | `blocks`      | tenant, `t`                           | shipped-through time `i64` BE        |
//! | `blocks`      | tenant, `b`, min time (sortable BE)   | max time `i64` BE, block ULID `u128` BE, upload time (ms) `i64` BE |
//! | `meta`        | ASCII names                           | see `db.rs`                          |
//!
//! The `blocks` family is the block shipper's state (see `blocks.rs`): appends below a tenant's
//! *min valid time* are refused (its ranges are being cut into blocks or were); every range
//! below *shipped-through* was shipped as a block or had no samples; each `b` row is a shipped
//! block whose range still has its chunks in RocksDB (deleted when they are dropped).

use hestia_chunkenc::varint::{read_uvarint, unzigzag};
use hestia_model::{Label, Labels, Sample, TenantId};

use crate::histogram::{decode_histogram, encode_histogram, Histogram};
use crate::{ChunkEncoding, Exemplar, StorageError};

pub(crate) use hestia_chunkenc::varint::{put_uvarint, put_varint};

/// Encoding bytes of chunk values.
const CHUNK_XOR: u8 = 1;
const CHUNK_HISTOGRAM: u8 = 2;
/// Version byte of WAL records with float samples only (still read, no longer written).
#[cfg(test)]
const WAL_V1: u8 = 1;
/// Version byte of WAL records with floats and native histograms (still read, no longer written).
const WAL_V2: u8 = 2;
/// Version byte of WAL records with floats, native histograms and out-of-order floats.
pub(crate) const WAL_V3: u8 = 3;

pub(crate) fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
    let t = tenant.as_str().as_bytes();
    let mut k = Vec::with_capacity(1 + t.len() + 16);
    // TenantId guarantees 1..=150 bytes.
    k.push(t.len() as u8);
    k.extend_from_slice(t);
    k
}

/// Splits a key into (tenant, rest).
pub(crate) fn split_tenant(key: &[u8]) -> Result<(TenantId, &[u8]), StorageError> {
    let (&len, rest) = key
        .split_first()
        .ok_or_else(|| StorageError::corrupt("key", "empty"))?;
    let len = len as usize;
    if rest.len() < len {
        return Err(StorageError::corrupt(
            "key",
            "tenant prefix longer than key",
        ));
    }
    let name = std::str::from_utf8(&rest[..len])
        .map_err(|_| StorageError::corrupt("key", "tenant is not UTF-8"))?;
    let tenant = TenantId::parse(name).map_err(|e| StorageError::corrupt("key", e.to_string()))?;
    Ok((tenant, &rest[len..]))
}

pub(crate) fn with_u64(prefix: &[u8], x: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&x.to_be_bytes());
    k
}

/// Maps i64 to u64 so that big-endian byte order equals numeric order.
#[inline]
pub(crate) fn sortable_i64(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

#[inline]
fn unsortable_i64(u: u64) -> i64 {
    (u ^ (1 << 63)) as i64
}

pub(crate) fn series_prefix(tenant_prefix: &[u8], series_id: u64) -> Vec<u8> {
    with_u64(tenant_prefix, series_id)
}

pub(crate) fn chunk_key(tenant_prefix: &[u8], series_id: u64, min_t: i64) -> Vec<u8> {
    let mut k = with_u64(tenant_prefix, series_id);
    k.extend_from_slice(&sortable_i64(min_t).to_be_bytes());
    k
}

/// Key of out-of-order chunk `no` of a series: tenant, series id BE, `no` BE.
pub(crate) fn ooo_chunk_key(tenant_prefix: &[u8], series_id: u64, no: u32) -> Vec<u8> {
    let mut k = with_u64(tenant_prefix, series_id);
    k.extend_from_slice(&no.to_be_bytes());
    k
}

/// Parses the part of an `ooo_chunks` key after the tenant prefix: (series id, chunk number).
pub(crate) fn parse_ooo_chunk_key_rest(rest: &[u8]) -> Result<(u64, u32), StorageError> {
    match (
        read_u64(rest),
        rest.get(8..).and_then(|b| <[u8; 4]>::try_from(b).ok()),
    ) {
        (Some(sid), Some(no)) => Ok((sid, u32::from_be_bytes(no))),
        _ => Err(StorageError::corrupt(
            "out-of-order chunk key",
            "bad length",
        )),
    }
}

/// An `ooo_chunks` value: min time BE, then a chunks-family value (XOR only).
pub(crate) fn encode_ooo_chunk_value(c: &crate::ChunkData) -> Vec<u8> {
    let mut v = c.min_t.to_be_bytes().to_vec();
    v.extend_from_slice(&encode_chunk_value(c.encoding, c.max_t, &c.data));
    v
}

/// Returns (min time, max time, chunk bytes) of an `ooo_chunks` value.
pub(crate) fn decode_ooo_chunk_value(v: &[u8]) -> Result<(i64, i64, &[u8]), StorageError> {
    let min_t = read_u64(v)
        .ok_or_else(|| StorageError::corrupt("out-of-order chunk value", "too short"))?
        as i64;
    match decode_chunk_value(&v[8..])? {
        (ChunkEncoding::Xor, max_t, data) => Ok((min_t, max_t, data)),
        _ => Err(StorageError::corrupt(
            "out-of-order chunk value",
            "not an XOR chunk",
        )),
    }
}

/// `blocks` key kinds after the tenant prefix.
pub(crate) const BLOCKS_MIN_VALID: u8 = b'm';
pub(crate) const BLOCKS_SHIPPED_THROUGH: u8 = b't';
pub(crate) const BLOCKS_SHIPPED: u8 = b'b';

pub(crate) fn blocks_key(tenant_prefix: &[u8], kind: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant_prefix.len() + 9);
    k.extend_from_slice(tenant_prefix);
    k.push(kind);
    k
}

/// Key of the shipped block of `[min_t, ...)`.
pub(crate) fn shipped_block_key(tenant_prefix: &[u8], min_t: i64) -> Vec<u8> {
    let mut k = blocks_key(tenant_prefix, BLOCKS_SHIPPED);
    k.extend_from_slice(&sortable_i64(min_t).to_be_bytes());
    k
}

pub(crate) fn encode_shipped_block(b: &crate::ShippedBlock) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    v.extend_from_slice(&b.max_t.to_be_bytes());
    v.extend_from_slice(&b.block.to_be_bytes());
    v.extend_from_slice(&b.uploaded_at_ms.to_be_bytes());
    v
}

/// Decodes a shipped block row from the part of its key after the kind byte and its value.
pub(crate) fn decode_shipped_block(
    key_rest: &[u8],
    v: &[u8],
) -> Result<crate::ShippedBlock, StorageError> {
    let bad = || StorageError::corrupt("shipped block", "bad length");
    if key_rest.len() != 8 || v.len() != 32 {
        return Err(bad());
    }
    let block = u128::from_be_bytes(v[8..24].try_into().map_err(|_| bad())?);
    Ok(crate::ShippedBlock {
        min_t: unsortable_i64(read_u64(key_rest).ok_or_else(bad)?),
        max_t: read_u64(v).ok_or_else(bad)? as i64,
        block,
        uploaded_at_ms: read_u64(&v[24..]).ok_or_else(bad)? as i64,
    })
}

pub(crate) fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

pub(crate) fn read_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Parses the part of a chunks-CF key after the tenant prefix: (series id, min time).
pub(crate) fn parse_chunk_key_rest(rest: &[u8]) -> Result<(u64, i64), StorageError> {
    if rest.len() != 16 {
        return Err(StorageError::corrupt("chunk key", "bad length"));
    }
    let sid = read_u64(rest).ok_or_else(|| StorageError::corrupt("chunk key", "bad length"))?;
    let t = read_u64(&rest[8..]).ok_or_else(|| StorageError::corrupt("chunk key", "bad length"))?;
    Ok((sid, unsortable_i64(t)))
}

pub(crate) fn encode_chunk_value(encoding: ChunkEncoding, max_t: i64, chunk: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + chunk.len());
    v.push(match encoding {
        ChunkEncoding::Xor => CHUNK_XOR,
        ChunkEncoding::Histogram => CHUNK_HISTOGRAM,
    });
    v.extend_from_slice(&max_t.to_be_bytes());
    v.extend_from_slice(chunk);
    v
}

/// Returns (encoding, max time, chunk bytes) of a chunks-CF value.
pub(crate) fn decode_chunk_value(v: &[u8]) -> Result<(ChunkEncoding, i64, &[u8]), StorageError> {
    let encoding = match v.first() {
        Some(&CHUNK_XOR) => ChunkEncoding::Xor,
        Some(&CHUNK_HISTOGRAM) => ChunkEncoding::Histogram,
        _ => {
            return Err(StorageError::corrupt(
                "chunk value",
                "unknown chunk encoding",
            ))
        }
    };
    match read_u64(&v[1..]) {
        Some(max_t) if v.len() >= 1 + 8 + 2 => Ok((encoding, max_t as i64, &v[9..])),
        _ => Err(StorageError::corrupt("chunk value", "too short")),
    }
}

/// An exemplars-CF value: uvarint series id, zigzag varint timestamp, value `f64` LE, labels.
pub(crate) fn encode_exemplar(series_id: u64, e: &Exemplar) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    put_uvarint(&mut v, series_id);
    put_varint(&mut v, e.t);
    v.extend_from_slice(&e.v.to_bits().to_le_bytes());
    v.extend_from_slice(&encode_labels(&e.labels));
    v
}

pub(crate) fn decode_exemplar(b: &[u8]) -> Result<(u64, Exemplar), StorageError> {
    let mut d = Decoder::new(b, "exemplar");
    let sid = d.uvarint()?;
    let t = d.varint()?;
    let v = f64::from_bits(d.u64_le()?);
    let labels = decode_labels(d.take(d.buf.len())?)?;
    Ok((sid, Exemplar { labels, t, v }))
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// A cursor over an encoded value.
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn err(&self, detail: &str) -> StorageError {
        StorageError::corrupt(self.what, detail)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, StorageError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.err("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, StorageError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, StorageError> {
        let (x, n) = read_uvarint(self.buf).map_err(|e| self.err(e))?;
        self.buf = &self.buf[n..];
        Ok(x)
    }

    pub(crate) fn varint(&mut self) -> Result<i64, StorageError> {
        self.uvarint().map(unzigzag)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StorageError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| self.err("length overflow"))?;
        self.take(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, StorageError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }
}

pub(crate) fn encode_labels(labels: &Labels) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        1 + labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 2)
            .sum::<usize>(),
    );
    put_uvarint(&mut v, labels.len() as u64);
    for l in labels {
        put_bytes(&mut v, l.name.as_bytes());
        put_bytes(&mut v, l.value.as_bytes());
    }
    v
}

pub(crate) fn decode_labels(b: &[u8]) -> Result<Labels, StorageError> {
    let mut d = Decoder::new(b, "series labels");
    let n = d.uvarint()?;
    let mut v: Vec<Label> = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let name = d.string()?;
        let value = d.string()?;
        v.push(Label { name, value });
    }
    if !d.is_empty() || !v.windows(2).all(|w| w[0].name < w[1].name) {
        return Err(StorageError::corrupt(
            "series labels",
            "unsorted or trailing bytes",
        ));
    }
    Ok(Labels::from_sorted_unchecked(v))
}

fn put_floats(buf: &mut Vec<u8>, samples: &[Sample]) {
    put_uvarint(buf, samples.len() as u64);
    let mut prev = 0i64;
    for s in samples {
        put_varint(buf, s.t.wrapping_sub(prev));
        buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        prev = s.t;
    }
}

fn get_floats(d: &mut Decoder<'_>, out: &mut Vec<Sample>) -> Result<(), StorageError> {
    out.clear();
    let count = d.uvarint()?;
    let mut prev = 0i64;
    for _ in 0..count {
        let t = prev.wrapping_add(d.varint()?);
        let v = f64::from_bits(d.u64_le()?);
        out.push(Sample { t, v });
        prev = t;
    }
    Ok(())
}

/// Appends one series' in-order floats, histograms and out-of-order floats to a WAL record body.
pub(crate) fn put_wal_series(
    buf: &mut Vec<u8>,
    series_id: u64,
    samples: &[Sample],
    histograms: &[(i64, &Histogram)],
    out_of_order: &[Sample],
) {
    put_uvarint(buf, series_id);
    put_floats(buf, samples);
    put_uvarint(buf, histograms.len() as u64);
    let mut prev = 0i64;
    for (t, h) in histograms {
        put_varint(buf, t.wrapping_sub(prev));
        encode_histogram(buf, h);
        prev = *t;
    }
    put_floats(buf, out_of_order);
}

/// One series' entry of a WAL record: id, in-order floats, histograms, out-of-order floats.
pub(crate) type WalEntry<'a> = (u64, &'a [Sample], &'a [(i64, Histogram)], &'a [Sample]);

/// Builds a whole WAL record (appends build theirs incrementally with `put_wal_series`).
#[cfg(test)]
pub(crate) fn encode_wal_record(entries: &[WalEntry<'_>]) -> Vec<u8> {
    let mut buf = vec![WAL_V3];
    put_uvarint(&mut buf, entries.len() as u64);
    for (id, samples, hists, ooo) in entries {
        let hs: Vec<(i64, &Histogram)> = hists.iter().map(|(t, h)| (*t, h)).collect();
        put_wal_series(&mut buf, *id, samples, &hs, ooo);
    }
    buf
}

/// Calls `f(entry)` for each entry of a WAL record: version byte, uvarint series count, then per
/// series: uvarint id, uvarint float count, floats as (zigzag varint timestamp delta, value bits
/// `u64` LE); from `WAL_V2` a uvarint histogram count with histograms as (zigzag varint
/// timestamp delta, self-contained histogram encoding); in `WAL_V3` then the out-of-order floats
/// encoded as the in-order ones.
pub(crate) fn decode_wal_record(
    b: &[u8],
    mut f: impl FnMut(WalEntry<'_>),
) -> Result<(), StorageError> {
    let mut d = Decoder::new(b, "wal record");
    let version = d.u8()?;
    if !(1..=WAL_V3).contains(&version) {
        return Err(StorageError::corrupt("wal record", "unknown version"));
    }
    let n = d.uvarint()?;
    let mut samples = Vec::new();
    let mut hists = Vec::new();
    let mut ooo = Vec::new();
    for _ in 0..n {
        let id = d.uvarint()?;
        get_floats(&mut d, &mut samples)?;
        hists.clear();
        if version >= WAL_V2 {
            let count = d.uvarint()?;
            let mut prev = 0i64;
            for _ in 0..count {
                let t = prev.wrapping_add(d.varint()?);
                let (h, n) = decode_histogram(d.buf)?;
                d.take(n)?;
                hists.push((t, h));
                prev = t;
            }
        }
        ooo.clear();
        if version >= WAL_V3 {
            get_floats(&mut d, &mut ooo)?;
        }
        f((id, &samples, &hists, &ooo));
    }
    if !d.is_empty() {
        return Err(StorageError::corrupt("wal record", "trailing bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_times() {
        let ts = [i64::MIN, -1_000, -1, 0, 1, 1_000, i64::MAX];
        for w in ts.windows(2) {
            assert!(sortable_i64(w[0]).to_be_bytes() < sortable_i64(w[1]).to_be_bytes());
        }
        for t in ts {
            assert_eq!(unsortable_i64(sortable_i64(t)), t);
        }
    }

    #[test]
    fn tenant_prefixes_are_disjoint() {
        let a = tenant_prefix(&TenantId::parse("a").unwrap());
        let ab = tenant_prefix(&TenantId::parse("ab").unwrap());
        assert!(!ab.starts_with(&a));
        let k = chunk_key(&ab, 7, -5);
        let (t, rest) = split_tenant(&k).unwrap();
        assert_eq!(t.as_str(), "ab");
        assert_eq!(parse_chunk_key_rest(rest).unwrap(), (7, -5));
        assert!(split_tenant(&[200, b'a']).is_err());
    }

    #[test]
    fn labels_round_trip() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\u{ff}b"), ("x", "")]);
        assert_eq!(decode_labels(&encode_labels(&l)).unwrap(), l);
        assert!(decode_labels(&[2, 1, b'b', 0, 1, b'a', 0]).is_err());
    }

    #[test]
    fn wal_round_trip() {
        let h = Histogram {
            schema: -53,
            count: 3.0,
            sum: f64::NAN,
            custom_values: vec![1.0],
            ..Histogram::default()
        };
        let s1 = vec![Sample::new(-5, f64::NAN), Sample::new(i64::MAX, 1.0)];
        let s3 = vec![Sample::new(i64::MIN, -0.0)];
        let h3 = vec![(7, h.clone()), (9, h.clone())];
        let none: &[(i64, Histogram)] = &[];
        let ooo = vec![Sample::new(-7, 1.5), Sample::new(-9, 2.5)];
        let entries: Vec<WalEntry<'_>> = vec![
            (1, s1.as_slice(), none, &[][..]),
            (u64::MAX, &[][..], none, ooo.as_slice()),
            (3, s3.as_slice(), h3.as_slice(), &[][..]),
        ];
        let rec = encode_wal_record(&entries);
        let mut got = Vec::new();
        decode_wal_record(&rec, |(id, s, h, o)| {
            got.push((id, s.to_vec(), h.to_vec(), o.to_vec()))
        })
        .unwrap();
        assert_eq!(got[1].3, ooo);
        assert!(got[0].3.is_empty() && got[2].3.is_empty());
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1[1].t, i64::MAX);
        assert!(got[0].1[0].v.is_nan());
        assert_eq!(got[2].1[0].v.to_bits(), (-0.0f64).to_bits());
        assert_eq!(got[2].2.len(), 2);
        assert_eq!(got[2].2[1].0, 9);
        assert!(got[2].2[1].1.same_bits(&h));
        assert!(decode_wal_record(&rec[..rec.len() - 1], |_| {}).is_err());

        // Records written before histograms existed.
        let mut v1 = vec![WAL_V1, 1, 5, 1, 2];
        v1.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
        let mut got = Vec::new();
        decode_wal_record(&v1, |(id, s, h, o)| {
            got.push((id, s.to_vec(), h.len() + o.len()))
        })
        .unwrap();
        assert_eq!(got, vec![(5, vec![Sample::new(1, 2.5)], 0)]);
    }

    #[test]
    fn exemplar_and_chunk_values() {
        let e = Exemplar {
            labels: Labels::from_pairs([("trace_id", "abc")]),
            t: -3,
            v: 1.5,
        };
        assert_eq!(decode_exemplar(&encode_exemplar(9, &e)).unwrap(), (9, e));
        let v = encode_chunk_value(ChunkEncoding::Histogram, 42, &[0, 1, 2]);
        assert_eq!(
            decode_chunk_value(&v).unwrap(),
            (ChunkEncoding::Histogram, 42, &[0u8, 1, 2][..])
        );
        assert!(decode_chunk_value(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
