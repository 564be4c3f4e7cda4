//! What the compactor answers: a pass's report (`POST /compactor/compact`) and a tenant's
//! blocks (`GET /compactor/tenants/{tenant}/blocks`).

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// One pass over the bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassReport {
    /// The compactor that ran it.
    pub instance: String,
    /// Unix ms.
    pub started_at_ms: i64,
    pub duration_ms: u64,
    /// `false`: the compactors' ring changed within `wait_stability`, no tenant was started.
    pub ring_stable: bool,
    /// Tenants of the bucket left to another compactor, or not started while the ring was
    /// changing.
    pub tenants_skipped: usize,
    /// Every tenant this compactor worked on.
    pub tenants: Vec<TenantReport>,
    /// Failures outside any tenant (listing the bucket).
    pub errors: Vec<String>,
}

impl PassReport {
    pub fn failed(&self) -> bool {
        !self.errors.is_empty() || self.tenants.iter().any(|t| !t.errors.is_empty())
    }

    /// The tenant's report, if this pass worked on it.
    pub fn tenant(&self, tenant: &str) -> Option<&TenantReport> {
        self.tenants.iter().find(|t| t.tenant == tenant)
    }
}

/// What a pass did for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantReport {
    pub tenant: String,
    /// Compacted blocks written (each from two or more sources).
    pub compactions: usize,
    /// Source blocks merged.
    pub blocks_in: usize,
    /// Compacted blocks uploaded.
    pub blocks_out: usize,
    pub series_out: u64,
    pub samples_in: u64,
    pub samples_out: u64,
    /// Samples equal to another copy's (same timestamp and value), removed.
    pub duplicates: u64,
    /// Samples with another copy's timestamp and a different value, removed.
    pub conflicts: u64,
    /// Bytes downloaded and uploaded.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Deletion marks written: compacted sources, superseded blocks, expired blocks.
    pub blocks_marked: usize,
    pub superseded: usize,
    pub retention_marked: usize,
    /// Marked blocks deleted after `deletion_delay`.
    pub blocks_deleted: usize,
    /// Abandoned partial blocks deleted.
    pub partial_deleted: usize,
    /// The tenant had a deletion mark older than `deletion_delay`: everything was deleted.
    pub tenant_deleted: bool,
    /// The tenant has a younger deletion mark: left alone until it is old enough.
    pub tenant_deletion_pending: bool,
    pub errors: Vec<String>,
}

/// A tenant's blocks as the bucket holds them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantBlocks {
    pub tenant: String,
    /// When the tenant was marked for deletion (unix seconds), if it was.
    pub tenant_deletion_time: Option<i64>,
    /// Complete blocks, by start time.
    pub blocks: Vec<BlockRow>,
    /// Prefixes without a readable `meta.json`: uploads in progress or abandoned, deletions
    /// in progress.
    pub partial: Vec<PartialRow>,
}

/// One complete block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRow {
    pub id: Ulid,
    /// Inclusive start and exclusive end (ms).
    pub min_time: i64,
    pub max_time: i64,
    /// 1 as shipped, +1 per compaction.
    pub level: u32,
    /// What wrote it: `ingester`, `backfill`, `compactor`.
    pub source: String,
    /// The level-1 blocks whose data it holds.
    pub sources: Vec<Ulid>,
    pub num_series: u64,
    pub num_samples: u64,
    /// Bytes of every object of the block.
    pub size_bytes: u64,
    /// When its upload finished (unix seconds).
    pub uploaded_at: i64,
    /// When it was marked for deletion (unix seconds), if it was.
    pub deletion_time: Option<i64>,
}

/// A block prefix without a readable `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRow {
    pub id: Ulid,
    /// The newest object of the prefix (unix seconds).
    pub last_modified: i64,
    pub size_bytes: u64,
    pub reason: String,
}
