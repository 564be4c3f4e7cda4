//! Series that left memory ("idle"): no sample for `TsdbOptions::series_idle_timeout`, every
//! sample in the chunk families. The `idle` column family holds what finds them again; after the
//! tenant prefix its keys are:
//!
//! | kind | key                                          | value                  | used by           |
//! |------|----------------------------------------------|------------------------|-------------------|
//! | `h`  | label hash BE, series id BE                  | empty                  | appends (revival) |
//! | `s`  | series id BE                                 | day `u32` BE           | recovery, revival |
//! | `p`  | day `u32` BE, name, value, series id BE      | min, max time `i64` BE | queries           |
//!
//! Names and values are uvarint-length-prefixed. Postings are grouped by the UTC day of the
//! series' newest sample, so a query skips the days before its start. Reviving a series deletes
//! its keys in the batch of the append that revived it.

use std::collections::{HashMap, HashSet};

use hestia_model::{Labels, MatchOp, Matcher};
use rocksdb::DB;

use crate::commit::{cf, Cf, Op};
use crate::keys::{self, Decoder};
use crate::StorageError;

const DAY_MS: i64 = 86_400_000;
const HASH: u8 = b'h';
const SERIES: u8 = b's';
const POSTING: u8 = b'p';

/// The day bucket of a timestamp (times before 1970 share day 0).
pub(crate) fn day(t: i64) -> u32 {
    u32::try_from(t.max(0) / DAY_MS).unwrap_or(u32::MAX)
}

fn key(prefix: &[u8], kind: u8, capacity: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 1 + capacity);
    k.extend_from_slice(prefix);
    k.push(kind);
    k
}

fn hash_prefix(prefix: &[u8], hash: u64) -> Vec<u8> {
    let mut k = key(prefix, HASH, 16);
    k.extend_from_slice(&hash.to_be_bytes());
    k
}

fn series_key(prefix: &[u8], sid: u64) -> Vec<u8> {
    let mut k = key(prefix, SERIES, 8);
    k.extend_from_slice(&sid.to_be_bytes());
    k
}

/// `p | day | name` (and `| value` when given).
fn postings_prefix(prefix: &[u8], day: u32, name: &str, value: Option<&str>) -> Vec<u8> {
    let mut k = key(
        prefix,
        POSTING,
        4 + name.len() + value.map_or(0, str::len) + 4,
    );
    k.extend_from_slice(&day.to_be_bytes());
    keys::put_bytes(&mut k, name.as_bytes());
    if let Some(v) = value {
        keys::put_bytes(&mut k, v.as_bytes());
    }
    k
}

/// The smallest key greater than every key starting with `k`.
fn successor(mut k: Vec<u8>) -> Vec<u8> {
    while let Some(last) = k.pop() {
        if last < u8::MAX {
            k.push(last + 1);
            return k;
        }
    }
    k
}

/// The smallest min time and largest max time of the tenant's idle series.
pub(crate) fn time_bounds(db: &DB, prefix: &[u8]) -> Result<Option<(i64, i64)>, StorageError> {
    let from = key(prefix, POSTING, 0);
    let mut it = db.raw_iterator_cf(cf(db, Cf::Idle)?);
    it.seek(&from);
    let mut bounds: Option<(i64, i64)> = None;
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(&from) {
            break;
        }
        let (min, max) = match (keys::read_u64(v), v.get(8..).and_then(keys::read_u64)) {
            (Some(a), Some(b)) => (a as i64, b as i64),
            _ => return Err(StorageError::corrupt("idle posting", "bad value")),
        };
        bounds = Some(bounds.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
        it.next();
    }
    it.status()?;
    Ok(bounds)
}

/// Idle series whose newest sample is before `t`, from their `__name__` postings (every series
/// has one) on the days up to `t`'s: (series id, day of its postings).
pub(crate) fn ended_before(
    db: &DB,
    prefix: &[u8],
    t: i64,
) -> Result<Vec<(u64, u32)>, StorageError> {
    let kind = key(prefix, POSTING, 0);
    let last_day = day(t.saturating_sub(1));
    let mut out = Vec::new();
    let mut it = db.raw_iterator_cf(cf(db, Cf::Idle)?);
    let mut d = 0u32;
    while d <= last_day {
        let p = postings_prefix(prefix, d, "__name__", None);
        it.seek(&p);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&p) {
                break;
            }
            let sid = k
                .len()
                .checked_sub(8)
                .and_then(|at| keys::read_u64(&k[at..]))
                .ok_or_else(|| StorageError::corrupt("idle posting", "too short"))?;
            let max_t = v
                .get(8..)
                .and_then(keys::read_u64)
                .ok_or_else(|| StorageError::corrupt("idle posting", "bad value"))?
                as i64;
            if max_t < t {
                out.push((sid, d));
            }
            it.next();
        }
        it.status()?;
        // The next day that has postings at all.
        let Some(next) = d.checked_add(1) else { break };
        let mut k = kind.clone();
        k.extend_from_slice(&next.to_be_bytes());
        it.seek(&k);
        it.status()?;
        match it.key().filter(|k| k.starts_with(&kind)) {
            Some(k) => {
                d = keys::read_u32(&k[kind.len()..])
                    .ok_or_else(|| StorageError::corrupt("idle posting", "too short"))?;
            }
            None => break,
        }
    }
    Ok(out)
}

/// The day under which idle series `sid`'s postings are written; `None` when it is not idle.
pub(crate) fn idle_day(db: &DB, prefix: &[u8], sid: u64) -> Result<Option<u32>, StorageError> {
    match db.get_pinned_cf(cf(db, Cf::Idle)?, series_key(prefix, sid))? {
        Some(v) => {
            Ok(Some(keys::read_u32(&v).ok_or_else(|| {
                StorageError::corrupt("idle series", "bad day")
            })?))
        }
        None => Ok(None),
    }
}

/// Writes that make a series idle: its hash and series keys and one posting per label.
pub(crate) fn evict_ops(
    prefix: &[u8],
    sid: u64,
    hash: u64,
    labels: &Labels,
    min_t: i64,
    max_t: i64,
) -> Vec<Op> {
    let d = day(max_t);
    let mut range = min_t.to_be_bytes().to_vec();
    range.extend_from_slice(&max_t.to_be_bytes());
    let mut hk = hash_prefix(prefix, hash);
    hk.extend_from_slice(&sid.to_be_bytes());
    let mut ops = vec![
        Op::Put(Cf::Idle, hk, Vec::new()),
        Op::Put(Cf::Idle, series_key(prefix, sid), d.to_be_bytes().to_vec()),
    ];
    for l in labels {
        let mut k = postings_prefix(prefix, d, &l.name, Some(&l.value));
        k.extend_from_slice(&sid.to_be_bytes());
        ops.push(Op::Put(Cf::Idle, k, range.clone()));
    }
    ops
}

/// Deletes of every key [`evict_ops`] wrote for the series.
pub(crate) fn revive_ops(prefix: &[u8], sid: u64, hash: u64, labels: &Labels, day: u32) -> Vec<Op> {
    let mut hk = hash_prefix(prefix, hash);
    hk.extend_from_slice(&sid.to_be_bytes());
    let mut ops = vec![
        Op::Delete(Cf::Idle, hk),
        Op::Delete(Cf::Idle, series_key(prefix, sid)),
    ];
    for l in labels {
        let mut k = postings_prefix(prefix, day, &l.name, Some(&l.value));
        k.extend_from_slice(&sid.to_be_bytes());
        ops.push(Op::Delete(Cf::Idle, k));
    }
    ops
}

pub(crate) fn read_labels(
    db: &DB,
    prefix: &[u8],
    sid: u64,
) -> Result<Option<Labels>, StorageError> {
    match db.get_pinned_cf(cf(db, Cf::Series)?, keys::series_prefix(prefix, sid))? {
        Some(v) => Ok(Some(keys::decode_labels(&v)?)),
        None => Ok(None),
    }
}

/// The idle series with label key `key` (`Labels::write_key`), if any: (series id, day of its
/// postings).
pub(crate) fn find(
    db: &DB,
    prefix: &[u8],
    hash: u64,
    key: &[u8],
) -> Result<Option<(u64, u32)>, StorageError> {
    let hp = hash_prefix(prefix, hash);
    let mut it = db.raw_iterator_cf(cf(db, Cf::Idle)?);
    it.seek(&hp);
    let mut sids = Vec::new();
    while let Some(k) = it.key() {
        if !k.starts_with(&hp) {
            break;
        }
        sids.extend(keys::read_u64(&k[hp.len()..]));
        it.next();
    }
    it.status()?;
    for sid in sids {
        let stored = read_labels(db, prefix, sid)?;
        if stored.is_some_and(|l| {
            let mut k = Vec::with_capacity(key.len());
            l.write_key(&mut k);
            k == key
        }) {
            return Ok(Some((sid, day_of(db, prefix, sid)?)));
        }
    }
    Ok(None)
}

/// The day under which idle series `sid`'s postings are written.
pub(crate) fn day_of(db: &DB, prefix: &[u8], sid: u64) -> Result<u32, StorageError> {
    db.get_pinned_cf(cf(db, Cf::Idle)?, series_key(prefix, sid))?
        .and_then(|v| keys::read_u32(&v))
        .ok_or_else(|| StorageError::corrupt("idle series", "missing day"))
}

/// Every idle series id, by tenant prefix.
pub(crate) fn all(db: &DB) -> Result<HashMap<Vec<u8>, HashSet<u64>>, StorageError> {
    let mut out: HashMap<Vec<u8>, HashSet<u64>> = HashMap::new();
    let mut it = db.raw_iterator_cf(cf(db, Cf::Idle)?);
    it.seek_to_first();
    while let Some(k) = it.key() {
        let tlen = usize::from(k[0]) + 1;
        match k.get(tlen) {
            Some(&SERIES) => {
                let sid = keys::read_u64(&k[tlen + 1..])
                    .ok_or_else(|| StorageError::corrupt("idle key", "too short"))?;
                match out.get_mut(&k[..tlen]) {
                    Some(ids) => {
                        ids.insert(sid);
                    }
                    None => {
                        out.insert(k[..tlen].to_vec(), HashSet::from([sid]));
                    }
                }
                it.next();
            }
            // Skip this tenant's postings and hashes: jump to its series keys or the next tenant.
            Some(&kind) if kind < SERIES => {
                let mut to = k[..tlen].to_vec();
                to.push(SERIES);
                it.seek(&to);
            }
            _ => {
                let next = successor(k[..tlen].to_vec());
                if next.is_empty() {
                    break;
                }
                it.seek(&next);
            }
        }
    }
    it.status()?;
    Ok(out)
}

/// An idle series found by a query.
pub(crate) struct IdleSeries {
    pub id: u64,
    pub labels: Labels,
}

/// Scans postings of label `name` (values `pred` accepts, or exactly `value`) on every day from
/// `day(mint)` on, calling `f(value, sid)` for those whose time range overlaps `[mint, maxt]`.
fn scan(
    db: &DB,
    prefix: &[u8],
    name: &str,
    value: Option<&str>,
    mint: i64,
    maxt: i64,
    mut f: impl FnMut(&str, u64) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let kinds_end = successor(key(prefix, POSTING, 0));
    let mut it = db.raw_iterator_cf(cf(db, Cf::Idle)?);
    let mut d = day(mint);
    loop {
        let p = postings_prefix(prefix, d, name, value);
        it.seek(&p);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&p) {
                break;
            }
            let mut dec = Decoder::new(&k[prefix.len() + 5..], "idle posting");
            let _name = dec.bytes()?;
            let val = std::str::from_utf8(dec.bytes()?)
                .map_err(|_| StorageError::corrupt("idle posting", "value is not UTF-8"))?;
            let sid = keys::read_u64(dec.take(8)?)
                .ok_or_else(|| StorageError::corrupt("idle posting", "too short"))?;
            let min_t = keys::read_u64(v).map(|x| x as i64);
            let max_t = v.get(8..).and_then(keys::read_u64).map(|x| x as i64);
            if let (Some(lo), Some(hi)) = (min_t, max_t) {
                if lo <= maxt && hi >= mint {
                    f(val, sid)?;
                }
            }
            it.next();
        }
        it.status()?;
        // The next day that has postings at all.
        let Some(k) = it.key().filter(|k| *k < kinds_end.as_slice()) else {
            return Ok(());
        };
        let next = keys::read_u32(&k[prefix.len() + 1..])
            .ok_or_else(|| StorageError::corrupt("idle posting", "too short"))?;
        d = if next > d {
            next
        } else if d == u32::MAX {
            return Ok(());
        } else {
            d + 1
        };
    }
}

/// The matcher whose postings are scanned: an equality first (`__name__` best), then any other
/// matcher that rejects the empty value; `None` when every matcher accepts "" (scan all series).
fn scan_matcher(matchers: &[Matcher]) -> Option<&Matcher> {
    let narrowing = matchers.iter().filter(|m| !m.matches_empty());
    narrowing.min_by_key(|m| match (m.op, m.name.as_str()) {
        (MatchOp::Equal, "__name__") => 0,
        (MatchOp::Equal, _) => 1,
        _ => 2,
    })
}

/// Idle series of the tenant matching `matchers` with samples in `[mint, maxt]`, except the ids
/// in `skip` (series the caller already found in memory).
pub(crate) fn select(
    db: &DB,
    prefix: &[u8],
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
    skip: &HashSet<u64>,
) -> Result<Vec<IdleSeries>, StorageError> {
    let mut ids: Vec<u64> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |sid: u64| {
        if !skip.contains(&sid) && seen.insert(sid) {
            ids.push(sid);
        }
    };
    match scan_matcher(matchers) {
        Some(m) if m.op == MatchOp::Equal => {
            scan(db, prefix, &m.name, Some(&m.value), mint, maxt, |_, sid| {
                add(sid);
                Ok(())
            })?
        }
        Some(m) => scan(db, prefix, &m.name, None, mint, maxt, |v, sid| {
            if m.matches(v) {
                add(sid);
            }
            Ok(())
        })?,
        // Every series has a metric name (validation requires one).
        None => scan(db, prefix, "__name__", None, mint, maxt, |_, sid| {
            add(sid);
            Ok(())
        })?,
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(labels) = read_labels(db, prefix, id)? else {
            continue;
        };
        if matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
        {
            out.push(IdleSeries { id, labels });
        }
    }
    Ok(out)
}

/// Values of label `name` among idle series with samples in `[mint, maxt]`.
pub(crate) fn label_values(
    db: &DB,
    prefix: &[u8],
    name: &str,
    mint: i64,
    maxt: i64,
) -> Result<HashSet<String>, StorageError> {
    let mut out = HashSet::new();
    scan(db, prefix, name, None, mint, maxt, |v, _| {
        if !out.contains(v) {
            out.insert(v.to_string());
        }
        Ok(())
    })?;
    Ok(out)
}
