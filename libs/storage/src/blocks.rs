//! What the block shipper needs from the TSDB: tenants and their time bounds, every series'
//! samples of a range, the min valid time that closes a range to appends, the shipper's
//! persisted state and the deletion of shipped chunks. Keys of the `blocks` column family are
//! described in `keys.rs`.
//!
//! Order of a range's life (enforced by the shipper, relied on here): raise the min valid time
//! to the range's end ([`Tsdb::set_min_valid_time`]), read the range ([`Tsdb::read_range`]),
//! record it shipped ([`Tsdb::record_shipped`]), and after the retention period drop it
//! ([`Tsdb::drop_before`]) and forget its record ([`Tsdb::forget_shipped`]).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hestia_model::{Labels, TenantId};
use rocksdb::DBRawIterator;

use crate::commit::{cf, Cf, Op};
use crate::db::{Inner, Selected, Tenant, CHECKPOINT_SLICE};
use crate::histogram::{Histogram, HistogramIter};
use crate::xor::XorIter;
use crate::{idle, keys};
use crate::{ChunkEncoding, RangeSeries, ShipState, ShippedBlock, StorageError, Tsdb};

/// Chunk keys examined per append-lock hold while dropping.
const DROP_SLICE: usize = 16_384;

impl Tsdb {
    /// Every tenant with data or shipper state, sorted.
    pub fn tenants(&self) -> Vec<TenantId> {
        let mut v: Vec<TenantId> = self.inner.tenants.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// The oldest and newest sample times of the tenant's series (in memory or idle), from their
    /// time ranges; `None` without samples. After [`Tsdb::drop_before`]`(t)` the oldest is at
    /// least `t`.
    pub fn time_bounds(&self, tenant: &TenantId) -> Result<Option<(i64, i64)>, StorageError> {
        let Some(t) = self.inner.tenant(tenant) else {
            return Ok(None);
        };
        let mut bounds: Option<(i64, i64)> = None;
        let mut widen = |min: i64, max: i64| {
            if min <= max {
                bounds = Some(bounds.map_or((min, max), |(a, b)| (a.min(min), b.max(max))));
            }
        };
        for s in t.index.read().all_series() {
            widen(s.min_time(), s.max_time());
        }
        if t.idle_series.load(Ordering::Acquire) > 0 {
            if let Some((min, max)) = idle::time_bounds(&self.inner.db, &t.prefix)? {
                widen(min, max);
            }
        }
        Ok(bounds)
    }

    /// The tenant's shipper state.
    pub fn ship_state(&self, tenant: &TenantId) -> Result<ShipState, StorageError> {
        let db = &self.inner.db;
        let prefix = keys::tenant_prefix(tenant);
        let min_valid_time = self
            .inner
            .tenant(tenant)
            .map_or(i64::MIN, |t| t.min_valid_time.load(Ordering::Acquire));
        let through_key = keys::blocks_key(&prefix, keys::BLOCKS_SHIPPED_THROUGH);
        let shipped_through = match db.get_pinned_cf(cf(db, Cf::Blocks)?, &through_key)? {
            Some(v) => Some(
                keys::read_u64(&v)
                    .ok_or_else(|| StorageError::corrupt("shipped-through time", "too short"))?
                    as i64,
            ),
            None => None,
        };
        let from = keys::blocks_key(&prefix, keys::BLOCKS_SHIPPED);
        let mut blocks = Vec::new();
        let mut it = db.raw_iterator_cf(cf(db, Cf::Blocks)?);
        it.seek(&from);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&from) {
                break;
            }
            blocks.push(keys::decode_shipped_block(&k[from.len()..], v)?);
            it.next();
        }
        it.status()?;
        Ok(ShipState {
            min_valid_time,
            shipped_through,
            blocks,
        })
    }

    /// Refuses, from now on, the tenant's samples older than `t` ([`crate::RejectReason::OutOfBounds`]);
    /// never lowers it. Set under the tenant's append lock, so every sample appended before is
    /// in memory when this returns, and durable: every write queued before it is on disk too,
    /// and it survives restarts.
    pub fn set_min_valid_time(&self, tenant: &TenantId, t: i64) -> Result<(), StorageError> {
        let inner = &self.inner;
        inner.check_writable()?;
        let tn = inner.tenant_or_create(tenant);
        let guard = tn.append_lock.lock();
        if tn.min_valid_time.load(Ordering::Acquire) >= t {
            return Ok(());
        }
        tn.min_valid_time.store(t, Ordering::Release);
        let seq = inner.commit.enqueue(|_| {
            vec![Op::Put(
                Cf::Blocks,
                keys::blocks_key(&tn.prefix, keys::BLOCKS_MIN_VALID),
                t.to_be_bytes().to_vec(),
            )]
        })?;
        drop(guard);
        inner.commit.wait(&inner.db, seq)
    }

    /// Records, durably and at once, that every range below `through` is done and, if given,
    /// the block that was shipped for the last one.
    pub fn record_shipped(
        &self,
        tenant: &TenantId,
        through: i64,
        block: Option<&ShippedBlock>,
    ) -> Result<(), StorageError> {
        let prefix = keys::tenant_prefix(tenant);
        let mut ops = vec![Op::Put(
            Cf::Blocks,
            keys::blocks_key(&prefix, keys::BLOCKS_SHIPPED_THROUGH),
            through.to_be_bytes().to_vec(),
        )];
        if let Some(b) = block {
            ops.push(Op::Put(
                Cf::Blocks,
                keys::shipped_block_key(&prefix, b.min_t),
                keys::encode_shipped_block(b),
            ));
        }
        self.write_synced(ops)
    }

    /// Deletes the record of the shipped block starting at `min_t` (its chunks were dropped).
    pub fn forget_shipped(&self, tenant: &TenantId, min_t: i64) -> Result<(), StorageError> {
        let prefix = keys::tenant_prefix(tenant);
        self.write_synced(vec![Op::Delete(
            Cf::Blocks,
            keys::shipped_block_key(&prefix, min_t),
        )])
    }

    fn write_synced(&self, ops: Vec<Op>) -> Result<(), StorageError> {
        self.inner.check_writable()?;
        let seq = self.inner.commit.enqueue(|_| ops)?;
        self.inner.commit.wait(&self.inner.db, seq)
    }

    /// Reads the tenant's series with samples in `[mint, maxt)`, sorted by labels: every label
    /// set is known up front ([`RangeRead::labels`]), samples are decoded one series at a time
    /// ([`RangeRead::next_series`]). Call after [`Tsdb::set_min_valid_time`]`(maxt)` for a read
    /// no later append can change.
    pub fn read_range(
        &self,
        tenant: &TenantId,
        mint: i64,
        maxt: i64,
    ) -> Result<RangeRead<'_>, StorageError> {
        let inner = &*self.inner;
        let (tenant, mut series, iters) = match inner.tenant(tenant) {
            Some(t) if mint < maxt => {
                let series = t.select_series(&inner.db, &[], mint, maxt - 1)?;
                let iters = (
                    inner.db.raw_iterator_cf(cf(&inner.db, Cf::Chunks)?),
                    inner.db.raw_iterator_cf(cf(&inner.db, Cf::OooChunks)?),
                );
                (Some(t), series, Some(iters))
            }
            _ => (None, Vec::new(), None),
        };
        series.sort_unstable_by(|a, b| a.labels().cmp(b.labels()));
        Ok(RangeRead {
            inner,
            tenant,
            series,
            next: 0,
            mint,
            maxt,
            iters,
        })
    }

    /// Deletes the tenant's chunks whose samples are all before `t`, in-order and out-of-order,
    /// from disk and memory, and raises the min valid time to `t`; returns how many chunk rows
    /// were deleted. Chunks reaching `t` stay whole. Series rows, idle postings and metadata
    /// stay: a series without chunks is found by label queries but has no samples.
    pub fn drop_before(&self, tenant: &TenantId, t: i64) -> Result<usize, StorageError> {
        let inner = &*self.inner;
        let Some(tn) = inner.tenant(tenant) else {
            return Ok(0);
        };
        self.set_min_valid_time(tenant, t)?;
        // The WAL is cut first, so replaying it after a crash cannot bring dropped samples back.
        inner.checkpoint()?;
        // No checkpoint or eviction writes chunks of the tenant while it runs.
        let _one = inner.checkpoint_lock.lock();
        drop_chunks(inner, &tn, t)
    }
}

/// The chunks part of [`Tsdb::drop_before`], once the min valid time is `t` and the WAL was
/// cut; the caller holds `checkpoint_lock`.
pub(crate) fn drop_chunks(inner: &Inner, tn: &Tenant, t: i64) -> Result<usize, StorageError> {
    let all = tn.index.read().all_series();
    for slice in all.chunks(CHECKPOINT_SLICE) {
        let _guard = tn.append_lock.lock();
        for s in slice {
            s.drop_before(t);
        }
    }
    Ok(drop_rows(inner, tn, Cf::Chunks, t)? + drop_rows(inner, tn, Cf::OooChunks, t)?)
}

/// Deletes the rows of `family` (`chunks` or `ooo_chunks`) of the tenant whose chunks end before
/// `t`, except those memory holds a newer copy of. Each slice is read under the tenant's append
/// lock after every queued write reached disk, and its deletes are queued before the lock is
/// released, so no newer write of a row can land before its delete.
fn drop_rows(inner: &Inner, tn: &Tenant, family: Cf, t: i64) -> Result<usize, StorageError> {
    let db = &inner.db;
    let prefix = &tn.prefix;
    let mut resume = prefix.clone();
    let mut deleted = 0;
    loop {
        let guard = tn.append_lock.lock();
        let flushed = inner.commit.enqueue(|_| Vec::new())?;
        inner.commit.wait(db, flushed)?;
        let mut it = db.raw_iterator_cf(cf(db, family)?);
        it.seek(&resume);
        let mut ops = Vec::new();
        let mut scanned = 0;
        let mut more = false;
        // (series id, its in-memory chunk keys) of the series being scanned.
        let mut memory: Option<(u64, Vec<i64>, Vec<u32>)> = None;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(prefix) {
                break;
            }
            if scanned == DROP_SLICE {
                resume = k.to_vec();
                more = true;
                break;
            }
            scanned += 1;
            let rest = &k[prefix.len()..];
            let (ended, in_memory) = if family == Cf::Chunks {
                let (sid, min_t) = keys::parse_chunk_key_rest(rest)?;
                if min_t >= t {
                    // Rows are by min time: no later chunk of the series ends before `t`.
                    match sid.checked_add(1) {
                        Some(next) => {
                            it.seek(keys::series_prefix(prefix, next));
                            continue;
                        }
                        None => break,
                    }
                }
                let (_, max_t, _) = keys::decode_chunk_value(v)?;
                let mem = memory_keys(tn, &mut memory, sid);
                (max_t < t, mem.0.contains(&min_t))
            } else {
                let (sid, no) = keys::parse_ooo_chunk_key_rest(rest)?;
                let (_, max_t, _) = keys::decode_ooo_chunk_value(v)?;
                let mem = memory_keys(tn, &mut memory, sid);
                (max_t < t, mem.1.contains(&no))
            };
            if ended && !in_memory {
                ops.push(Op::Delete(family, k.to_vec()));
            }
            it.next();
        }
        it.status()?;
        drop(it);
        deleted += ops.len();
        let seq = inner.commit.enqueue(|_| ops)?;
        drop(guard);
        inner.commit.wait(db, seq)?;
        if !more {
            return Ok(deleted);
        }
    }
}

/// The in-memory chunk keys of series `sid`, looked up once per series.
fn memory_keys<'m>(
    tn: &Tenant,
    cache: &'m mut Option<(u64, Vec<i64>, Vec<u32>)>,
    sid: u64,
) -> (&'m [i64], &'m [u32]) {
    if cache.as_ref().is_none_or(|c| c.0 != sid) {
        let (a, b) = tn
            .index
            .read()
            .by_id(sid)
            .map(|s| s.memory_chunk_keys())
            .unwrap_or_default();
        *cache = Some((sid, a, b));
    }
    match cache {
        Some((_, a, b)) => (a, b),
        None => (&[], &[]),
    }
}

/// Loads every tenant's min valid time at recovery.
pub(crate) fn recover_min_valid_times(inner: &Inner) -> Result<(), StorageError> {
    let db = &inner.db;
    let mut it = db.raw_iterator_cf(cf(db, Cf::Blocks)?);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (tenant, rest) = keys::split_tenant(k)?;
        if rest == [keys::BLOCKS_MIN_VALID] {
            let t = keys::read_u64(v)
                .ok_or_else(|| StorageError::corrupt("min valid time", "too short"))?;
            inner
                .tenant_or_create(&tenant)
                .min_valid_time
                .store(t as i64, Ordering::Release);
        }
        it.next();
    }
    it.status()?;
    Ok(())
}

/// A range being read by [`Tsdb::read_range`].
pub struct RangeRead<'a> {
    inner: &'a Inner,
    tenant: Option<Arc<Tenant>>,
    /// Sorted by labels.
    series: Vec<Selected>,
    next: usize,
    mint: i64,
    maxt: i64,
    iters: Option<(DBRawIterator<'a>, DBRawIterator<'a>)>,
}

impl RangeRead<'_> {
    /// The label sets of the series that may have samples in the range, sorted (a superset of
    /// what [`RangeRead::next_series`] returns).
    pub fn labels(&self) -> impl Iterator<Item = &Labels> {
        self.series.iter().map(Selected::labels)
    }

    /// The next series with samples in the range, by labels; `None` at the end.
    pub fn next_series(&mut self) -> Result<Option<RangeSeries>, StorageError> {
        let (Some(t), Some((it, ooo_it))) = (&self.tenant, &mut self.iters) else {
            return Ok(None);
        };
        let (mint, maxt) = (self.mint, self.maxt);
        let inside = |ts: i64| ts >= mint && ts < maxt;
        while let Some(s) = self.series.get(self.next) {
            self.next += 1;
            let chunks = self.inner.series_chunks(t, s, mint, maxt - 1, it, ooo_it)?;
            let mut floats: Vec<(i64, f64)> = Vec::new();
            let mut histograms: Vec<(i64, Histogram)> = Vec::new();
            for c in &chunks {
                match c.encoding {
                    ChunkEncoding::Xor => {
                        let mut xs = XorIter::new(&c.data)?;
                        floats.extend(xs.by_ref().filter(|x| inside(x.0)));
                        if let Some(e) = xs.err() {
                            return Err(e.into());
                        }
                    }
                    ChunkEncoding::Histogram => {
                        let mut hs = HistogramIter::new(&c.data)?;
                        histograms.extend(hs.by_ref().filter(|x| inside(x.0)));
                        if let Some(e) = hs.err() {
                            return Err(e.clone().into());
                        }
                    }
                }
            }
            // Out-of-order chunks overlap in-order ones, and a crash may store an out-of-order
            // sample twice: keep one sample per timestamp, a histogram over a float.
            floats.sort_by_key(|x| x.0);
            floats.dedup_by_key(|x| x.0);
            histograms.sort_by_key(|x| x.0);
            histograms.dedup_by_key(|x| x.0);
            if !histograms.is_empty() {
                let ht: HashSet<i64> = histograms.iter().map(|x| x.0).collect();
                floats.retain(|x| !ht.contains(&x.0));
            }
            if floats.is_empty() && histograms.is_empty() {
                continue;
            }
            return Ok(Some(RangeSeries {
                labels: s.labels().clone(),
                floats,
                histograms,
            }));
        }
        Ok(None)
    }
}
