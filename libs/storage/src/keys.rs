//! RocksDB key and value encodings.
//!
//! Every tenant-owned key starts with the tenant prefix `len: u8 | tenant bytes`, so tenants occupy
//! disjoint key ranges and no key of one tenant is a prefix of another's.
//!
//! | column family | key                                   | value                                |
//! |---------------|---------------------------------------|--------------------------------------|
//! | `wal`         | tenant, seq `u64` BE                  | see [`decode_wal_record`]            |
//! | `series`      | tenant, series id `u64` BE            | [`encode_labels`]                    |
//! | `chunks`      | tenant, series id BE, min time (sortable BE) | `1u8`, max time `i64` BE, XOR chunk |
//! | `metadata`    | tenant, uvarint name len, name, type `u8` | uvarint-prefixed help and unit   |
//! | `meta`        | ASCII names                           | see `db.rs`                          |

use hestia_model::{Label, Labels, Sample, TenantId};

use crate::StorageError;

/// Version byte of chunk values (the only encoding so far is XOR).
pub(crate) const CHUNK_XOR: u8 = 1;
/// Version byte of WAL records.
pub(crate) const WAL_V1: u8 = 1;

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

pub(crate) fn encode_chunk_value(max_t: i64, chunk: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + chunk.len());
    v.push(CHUNK_XOR);
    v.extend_from_slice(&max_t.to_be_bytes());
    v.extend_from_slice(chunk);
    v
}

/// Returns (max time, chunk bytes) of a chunks-CF value.
pub(crate) fn decode_chunk_value(v: &[u8]) -> Result<(i64, &[u8]), StorageError> {
    match v.split_first() {
        Some((&CHUNK_XOR, rest)) if rest.len() >= 8 + 2 => {
            let max_t = read_u64(rest).map(|u| u as i64).unwrap_or(i64::MIN);
            Ok((max_t, &rest[8..]))
        }
        _ => Err(StorageError::corrupt(
            "chunk value",
            "unknown version or too short",
        )),
    }
}

pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push(x as u8 | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
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

    pub(crate) fn varint(&mut self) -> Result<i64, StorageError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
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

/// Appends one series' samples to a WAL record body.
pub(crate) fn put_wal_series(buf: &mut Vec<u8>, series_id: u64, samples: &[Sample]) {
    put_uvarint(buf, series_id);
    put_uvarint(buf, samples.len() as u64);
    let mut prev = 0i64;
    for s in samples {
        put_varint(buf, s.t.wrapping_sub(prev));
        buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
        prev = s.t;
    }
}

/// Builds a whole WAL record (appends build theirs incrementally with `put_wal_series`).
#[cfg(test)]
pub(crate) fn encode_wal_record(entries: &[(u64, Vec<Sample>)]) -> Vec<u8> {
    let mut buf =
        Vec::with_capacity(8 + entries.iter().map(|(_, s)| 4 + s.len() * 12).sum::<usize>());
    buf.push(WAL_V1);
    put_uvarint(&mut buf, entries.len() as u64);
    for (id, samples) in entries {
        put_wal_series(&mut buf, *id, samples);
    }
    buf
}

/// Calls `f(series id, samples)` for each entry of a WAL record: `WAL_V1`, uvarint series count,
/// then per series: uvarint id, uvarint sample count, samples as (zigzag varint timestamp delta,
/// value bits `u64` LE).
pub(crate) fn decode_wal_record(
    b: &[u8],
    mut f: impl FnMut(u64, &[Sample]),
) -> Result<(), StorageError> {
    let mut d = Decoder::new(b, "wal record");
    if d.u8()? != WAL_V1 {
        return Err(StorageError::corrupt("wal record", "unknown version"));
    }
    let n = d.uvarint()?;
    let mut samples = Vec::new();
    for _ in 0..n {
        let id = d.uvarint()?;
        let count = d.uvarint()?;
        samples.clear();
        let mut prev = 0i64;
        for _ in 0..count {
            let t = prev.wrapping_add(d.varint()?);
            let v = f64::from_bits(d.u64_le()?);
            samples.push(Sample { t, v });
            prev = t;
        }
        f(id, &samples);
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
        let entries = vec![
            (
                1u64,
                vec![Sample::new(-5, f64::NAN), Sample::new(i64::MAX, 1.0)],
            ),
            (u64::MAX, vec![]),
            (3, vec![Sample::new(i64::MIN, -0.0)]),
        ];
        let rec = encode_wal_record(&entries);
        let mut got = Vec::new();
        decode_wal_record(&rec, |id, s| got.push((id, s.to_vec()))).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1[1].t, i64::MAX);
        assert!(got[0].1[0].v.is_nan());
        assert_eq!(got[2].1[0].v.to_bits(), (-0.0f64).to_bits());
        assert!(decode_wal_record(&rec[..rec.len() - 1], |_, _| {}).is_err());
    }
}
