//! Retention for an ingester that keeps its data (`blocks.ship = false`): each tenant's data
//! wholly older than its cutoff leaves the database.
//!
//! For each `(tenant, t)` of one [`Tsdb::expire`] call, in this order:
//!
//! 1. the tenant's min valid time is raised to `t` (appends below it are refused from then on,
//!    `err-mimir-sample-out-of-bounds`), so no later WAL record holds a sample before `t`;
//! 2. one checkpoint for every tenant cuts the WAL, so a replay after a crash cannot bring
//!    deleted samples back;
//! 3. chunks whose samples are all before `t` are deleted, in memory and on disk, as
//!    [`Tsdb::drop_before`] does (a chunk reaching `t` stays whole);
//! 4. idle series whose newest sample is before `t` (they have no chunk left) are deleted: labels
//!    row and idle keys in one batch. Each slice is checked and deleted under the tenant's index
//!    write lock, held until the batch is written: an append resolving the same labels either
//!    ran before (the series is in memory again, and kept) or runs after and creates a new
//!    series. Series in memory are never deleted: they had a sample within
//!    `series_idle_timeout`.
//!
//! Metadata (per metric family) and exemplars (a bounded ring) stay.

use std::sync::atomic::Ordering;

use hestia_model::TenantId;

use crate::blocks::drop_chunks;
use crate::commit::{Cf, Op};
use crate::db::{Inner, Tenant};
use crate::{idle, keys, StorageError, Tsdb};

/// Idle series checked and deleted per hold of a tenant's index write lock.
const SERIES_SLICE: usize = 1024;

/// What [`Tsdb::expire`] deleted of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Chunk rows, in-order and out-of-order, whose samples were all before the cutoff.
    pub chunks: usize,
    /// Idle series whose newest sample was before the cutoff.
    pub series: usize,
}

impl Tsdb {
    /// Deletes, for each `(tenant, t)`, the tenant's data wholly older than `t` (see the module
    /// documentation); one entry per pair, zero for a tenant without data. Blocks the calling
    /// thread (one checkpoint, then a scan of each tenant's chunk rows).
    pub fn expire(&self, cutoffs: &[(TenantId, i64)]) -> Result<Vec<Expired>, StorageError> {
        let inner = &*self.inner;
        let mut out = vec![Expired::default(); cutoffs.len()];
        let mut todo = Vec::new();
        for (i, (id, t)) in cutoffs.iter().enumerate() {
            if let Some(tn) = inner.tenant(id) {
                self.set_min_valid_time(id, *t)?;
                todo.push((i, tn, *t));
            }
        }
        if todo.is_empty() {
            return Ok(out);
        }
        inner.checkpoint()?;
        // No checkpoint, eviction or tenant deletion while it runs.
        let _one = inner.checkpoint_lock.lock();
        for (i, tn, t) in todo {
            out[i].chunks = drop_chunks(inner, &tn, t)?;
            out[i].series = expire_idle_series(inner, &tn, t)?;
        }
        Ok(out)
    }
}

/// Deletes the tenant's idle series whose newest sample is before `t`; how many.
fn expire_idle_series(inner: &Inner, tn: &Tenant, t: i64) -> Result<usize, StorageError> {
    if tn.idle_series.load(Ordering::Acquire) == 0 {
        return Ok(0);
    }
    let db = &inner.db;
    let prefix = &tn.prefix;
    let ended = idle::ended_before(db, prefix, t)?;
    let mut deleted = 0;
    for slice in ended.chunks(SERIES_SLICE) {
        let idx = tn.index.write();
        let mut ops = Vec::new();
        let mut n = 0;
        for &(sid, day) in slice {
            // Brought back into memory by an append, or no longer idle under this day.
            if idx.by_id(sid).is_some() || idle::idle_day(db, prefix, sid)? != Some(day) {
                continue;
            }
            let Some(labels) = idle::read_labels(db, prefix, sid)? else {
                continue;
            };
            ops.extend(idle::revive_ops(prefix, sid, labels.hash64(), &labels, day));
            let (from, to) = (keys::series_prefix(prefix, sid), sid.checked_add(1));
            if let Some(next) = to {
                // Normally none left: every chunk of the series ended before `t`.
                let to = keys::series_prefix(prefix, next);
                ops.push(Op::DeleteRange(Cf::Chunks, from.clone(), to.clone()));
                ops.push(Op::DeleteRange(Cf::OooChunks, from.clone(), to));
            }
            ops.push(Op::Delete(Cf::Series, from));
            n += 1;
        }
        if n > 0 {
            let seq = inner.commit.enqueue(|_| ops)?;
            inner.commit.wait(db, seq)?;
            tn.idle_series.fetch_sub(n, Ordering::AcqRel);
            deleted += n;
        }
        drop(idx);
    }
    Ok(deleted)
}
