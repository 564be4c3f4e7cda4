//! The compactor: the long-term half of a tenant's life in the object store.
//!
//! Ingesters ship one block per range and replica, so each range of a tenant arrives RF times.
//! Each pass, for every tenant this compactor owns (`ring.rs`), in `tenant.rs`:
//!
//! 1. a tenant with a deletion mark older than `deletion_delay` loses every block, then its
//!    bucket index, then the mark (a younger mark: the tenant is left alone);
//! 2. the bucket index is brought up to date from one listing;
//! 3. blocks wholly older than the workspace's retention are marked for deletion
//!    (`retention.rs`);
//! 4. (compaction passes) the planner (`plan.rs`) marks superseded blocks and merges
//!    overlapping blocks, then windows of the longer `block_ranges`. A merge downloads its
//!    sources under `data_dir`, merges them with [`hestia_block::compact`] (streaming, one batch
//!    of series per source in memory), uploads the result (`meta.json` last), marks every
//!    source, and writes the bucket index, so queriers switch to the new block;
//! 5. the cleaner deletes blocks marked more than `deletion_delay` ago and partial blocks
//!    (abandoned uploads) older than that, and writes the index.
//!
//! A compactor killed at any point leaves a correct bucket: a partial upload has no `meta.json`
//! and no reader sees it (the cleaner removes it later); an output uploaded before its sources
//! were marked supersedes them, and the next pass marks them; local leftovers are removed at
//! start. Queriers read overlapping blocks merged and deduplicated by timestamp, and keep
//! reading marked blocks until they are deleted, so no sample is missing or doubled meanwhile.

mod error;
mod http;
pub mod metrics;
mod plan;
mod report;
mod retention;
mod ring;
pub mod role;
mod tenant;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hestia_block::BlockMeta;
use hestia_bucket::{Bucket, BucketError, BucketIndex, TenantBucket};
use hestia_config::{CompactorConfig, Config};
use hestia_model::TenantId;
use hestia_ring::{InstanceConfig, Kv};
use parking_lot::Mutex;
use ulid::Ulid;

pub use error::{CompactorError, ErrorBody};
pub use http::router;
pub use report::{BlockRow, PartialRow, PassReport, TenantBlocks, TenantReport};
pub use retention::{Retentions, DEFAULT_RETENTION_DAYS};

use crate::plan::Planner;
use crate::ring::Ownership;

/// `meta.json`s read at once.
const META_CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PassKind {
    /// Cleaner and compaction.
    Compaction,
    /// Index, retention and deletions only.
    Cleanup,
}

impl PassKind {
    fn label(self) -> &'static str {
        match self {
            PassKind::Compaction => "compaction",
            PassKind::Cleanup => "cleanup",
        }
    }
}

/// A running compactor; clones share it.
#[derive(Clone)]
pub struct Compactor {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    cfg: CompactorConfig,
    planner: Planner,
    cleanup_interval: Duration,
    deletion_delay_s: i64,
    data_dir: PathBuf,
    bucket: Bucket,
    ring: Ownership,
    retentions: Retentions,
    metas: MetaCache,
    /// One pass at a time in this process.
    pass: tokio::sync::Mutex<()>,
}

impl Compactor {
    /// Empties the working directory (`compactor.data_dir`, leftovers of a killed process),
    /// joins the compactors' ring in `kv` (`compactor.ring.key`, `[ring]`'s heartbeats) as
    /// `compactor.ring.instance_id` at `compactor.ring.advertise_addr` (else `http_listen`), and compacts `bucket` with the
    /// retentions `retentions` holds. `cfg` must be valid ([`Config::validate`]).
    pub async fn start(
        cfg: &Config,
        bucket: Bucket,
        kv: Arc<dyn Kv>,
        retentions: Retentions,
    ) -> Result<Self, CompactorError> {
        let c = &cfg.compactor;
        let data_dir = c.data_dir(&cfg.server.data_dir);
        empty_dir(&data_dir)?;
        let instance = InstanceConfig {
            id: c
                .ring
                .instance_id
                .clone()
                .unwrap_or_else(|| format!("compactor-{}", c.http_listen.port())),
            addr: c
                .ring
                .advertise_addr
                .clone()
                .unwrap_or_else(|| c.http_listen.to_string()),
            zone: String::new(),
            tokens_file: None,
        };
        let ring = Ownership::start(
            kv,
            &c.ring_config(&cfg.ring),
            instance,
            c.ring.wait_stability,
        )
        .await?;
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        tracing::info!(
            instance = ring.instance_id(),
            data_dir = %data_dir.display(),
            "compactor started"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                planner: Planner {
                    ranges: c.block_ranges_ms(cfg.blocks.block_range),
                    first_level_wait_ms: ms(c.first_level_wait),
                },
                cleanup_interval: c.cleanup_interval(cfg.blocks.bucket_index_update_interval),
                deletion_delay_s: i64::try_from(c.deletion_delay.as_secs()).unwrap_or(i64::MAX),
                cfg: c.clone(),
                data_dir,
                bucket,
                ring,
                retentions,
                metas: MetaCache::default(),
                pass: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// This compactor's id in the ring.
    pub fn instance_id(&self) -> &str {
        self.inner.ring.instance_id()
    }

    /// One compaction pass over the tenants this compactor owns (waits for a running pass).
    pub async fn run_once(&self) -> PassReport {
        self.inner.pass(PassKind::Compaction, None).await
    }

    /// One compaction pass over `tenant` alone, if this compactor owns it (waits for a running
    /// pass); the report lists no tenant otherwise.
    pub async fn run_once_for(&self, tenant: &TenantId) -> PassReport {
        self.inner.pass(PassKind::Compaction, Some(tenant)).await
    }

    /// One cleaner pass: index, retention and deletions, no compaction.
    pub async fn cleanup_once(&self) -> PassReport {
        self.inner.pass(PassKind::Cleanup, None).await
    }

    /// A compaction pass at once and then every `compaction_interval`, cleaner passes every
    /// `cleanup_interval` in between, until `shutdown` resolves. A failed compaction pass (or
    /// one that found the ring changing) is retried after `cleanup_interval`, doubling up to
    /// `compaction_interval`. Stopping mid-pass is safe (see the crate documentation).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let inner = &self.inner;
        let mut failures = 0u32;
        let mut next_compaction = Instant::now();
        loop {
            let kind = match Instant::now() >= next_compaction {
                true => PassKind::Compaction,
                false => PassKind::Cleanup,
            };
            let report = tokio::select! {
                r = inner.pass(kind, None) => r,
                _ = &mut shutdown => return,
            };
            if kind == PassKind::Compaction {
                let retry = report.failed() || !report.ring_stable;
                failures = if retry { failures.saturating_add(1) } else { 0 };
                let delay = next_delay(
                    inner.cleanup_interval,
                    inner.cfg.compaction_interval,
                    failures,
                );
                if retry {
                    tracing::warn!(
                        ring_stable = report.ring_stable,
                        retry_in_s = delay.as_secs_f64(),
                        "compaction pass incomplete"
                    );
                }
                next_compaction = Instant::now() + delay;
            }
            let wake = next_compaction.min(Instant::now() + inner.cleanup_interval);
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// Leaves the ring, so the other compactors take this one's tenants at once. Call it after
    /// [`Compactor::run`] has returned.
    pub async fn stop(&self) -> Result<(), CompactorError> {
        Ok(self.inner.ring.stop().await?)
    }

    /// The tenant's blocks as the bucket holds them now (one listing; nothing is written).
    pub async fn tenant_blocks(&self, tenant: &TenantId) -> Result<TenantBlocks, CompactorError> {
        let bucket = self.inner.bucket.tenant(tenant);
        let mark = bucket.tenant_deletion_mark().await?;
        let previous = read_index(&bucket).await?;
        let (index, listing) = BucketIndex::update(&bucket, previous.as_ref()).await?;
        let ids: Vec<Ulid> = index.blocks.iter().map(|b| b.block_id).collect();
        let metas = self.inner.metas.get(&bucket, &ids).await?;
        let size = |id: &Ulid| listing.block_bytes.get(id).copied().unwrap_or(0);
        let blocks = index
            .blocks
            .iter()
            .filter_map(|b| {
                let m = metas.get(&b.block_id)?;
                Some(BlockRow {
                    id: b.block_id,
                    min_time: b.min_time,
                    max_time: b.max_time,
                    level: m.compaction.level,
                    source: m.thanos.source.clone(),
                    sources: m.compaction.sources.clone(),
                    num_series: m.stats.num_series,
                    num_samples: m.stats.num_samples,
                    size_bytes: size(&b.block_id),
                    uploaded_at: b.uploaded_at,
                    deletion_time: index.deletion_mark(b.block_id).map(|d| d.deletion_time),
                })
            })
            .collect();
        let partial = listing
            .partial_blocks
            .iter()
            .map(|p| PartialRow {
                id: p.id,
                last_modified: p.last_modified,
                size_bytes: size(&p.id),
                reason: match &p.reason {
                    hestia_bucket::PartialReason::MissingMeta => "no meta.json".to_string(),
                    hestia_bucket::PartialReason::CorruptMeta(r) => {
                        format!("corrupt meta.json: {r}")
                    }
                },
            })
            .collect();
        Ok(TenantBlocks {
            tenant: tenant.to_string(),
            tenant_deletion_time: mark.map(|m| m.deletion_time),
            blocks,
            partial,
        })
    }
}

impl Inner {
    /// A pass over every tenant of the bucket this compactor owns, or over `only` among them.
    async fn pass(&self, kind: PassKind, only: Option<&TenantId>) -> PassReport {
        let _one_at_a_time = self.pass.lock().await;
        let started = Instant::now();
        let mut report = PassReport {
            instance: self.ring.instance_id().to_string(),
            started_at_ms: unix_ms(),
            ring_stable: true,
            ..PassReport::default()
        };
        match self.bucket.tenants().await {
            Ok(tenants) => {
                // At most `max_concurrent_tenants` at once.
                let mut running = FuturesUnordered::new();
                let mut outcomes = Vec::with_capacity(tenants.len());
                for tenant in tenants {
                    if only.is_some_and(|o| *o != tenant) {
                        continue;
                    }
                    if running.len() >= self.cfg.max_concurrent_tenants {
                        outcomes.extend(running.next().await);
                    }
                    running.push(self.owned_tenant_pass(tenant, kind));
                }
                while let Some(o) = running.next().await {
                    outcomes.push(o);
                }
                report.ring_stable = self.ring.stable();
                for o in outcomes {
                    match o {
                        Some(t) => report.tenants.push(t),
                        None => report.tenants_skipped += 1,
                    }
                }
                report.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
                if only.is_none() {
                    metrics::OWNED_TENANTS.set(report.tenants.len() as i64);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing the bucket's tenants");
                report.errors.push(format!("listing tenants: {e}"));
            }
        }
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let outcome = if report.failed() {
            "failure"
        } else {
            "success"
        };
        metrics::PASSES
            .with_label_values(&[kind.label(), outcome])
            .inc();
        report
    }
}

impl Inner {
    /// The tenant's pass if this compactor may start it now: the ring may have changed since
    /// the pass began.
    async fn owned_tenant_pass(&self, tenant: TenantId, kind: PassKind) -> Option<TenantReport> {
        if !self.ring.stable() || !self.ring.owns(&tenant) {
            return None;
        }
        Some(self.tenant_pass(&tenant, kind).await)
    }
}

/// The wait before the next compaction pass: `interval` after a clean pass, else `retry`
/// doubled per failure in a row, at most `interval`.
fn next_delay(retry: Duration, interval: Duration, failures: u32) -> Duration {
    match failures {
        0 => interval,
        n => retry.saturating_mul(1 << (n - 1).min(20)).min(interval),
    }
}

/// The tenant's stored bucket index; an unreadable one is rebuilt.
pub(crate) async fn read_index(
    bucket: &TenantBucket,
) -> Result<Option<BucketIndex>, CompactorError> {
    match BucketIndex::read(bucket).await {
        Ok(index) => Ok(index),
        Err(BucketError::Corrupt { path, reason }) => {
            tracing::warn!(%path, %reason, "unreadable bucket index, rebuilding it");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Block metas by tenant: a `meta.json` never changes, so each is read once.
#[derive(Default)]
pub(crate) struct MetaCache {
    by_tenant: Mutex<HashMap<TenantId, HashMap<Ulid, Arc<BlockMeta>>>>,
}

impl MetaCache {
    /// The metas of `ids` (those deleted meanwhile are left out); the tenant's other cached
    /// metas are forgotten.
    pub async fn get(
        &self,
        bucket: &TenantBucket,
        ids: &[Ulid],
    ) -> Result<HashMap<Ulid, Arc<BlockMeta>>, BucketError> {
        let missing: Vec<Ulid> = {
            let cache = self.by_tenant.lock();
            let known = cache.get(bucket.tenant());
            ids.iter()
                .filter(|id| known.is_none_or(|k| !k.contains_key(id)))
                .copied()
                .collect()
        };
        let fetched: Vec<(Ulid, Result<BlockMeta, BucketError>)> = futures::stream::iter(missing)
            .map(|id| async move { (id, bucket.read_meta(id).await) })
            .buffer_unordered(META_CONCURRENCY)
            .collect()
            .await;
        let mut cache = self.by_tenant.lock();
        let known = cache.entry(bucket.tenant().clone()).or_default();
        for (id, meta) in fetched {
            match meta {
                Ok(m) => {
                    known.insert(id, Arc::new(m));
                }
                Err(BucketError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let wanted: std::collections::HashSet<&Ulid> = ids.iter().collect();
        known.retain(|id, _| wanted.contains(id));
        Ok(known.iter().map(|(id, m)| (*id, m.clone())).collect())
    }
}

/// Removes everything under `dir` and creates it empty.
pub(crate) fn empty_dir(dir: &Path) -> Result<(), CompactorError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CompactorError::io(dir, e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| CompactorError::io(dir, e))
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_passes_are_retried_sooner_backing_off() {
        let (retry, interval) = (Duration::from_secs(300), Duration::from_secs(3600));
        let waits: Vec<u64> = (0..6)
            .map(|n| next_delay(retry, interval, n).as_secs())
            .collect();
        assert_eq!(waits, [3600, 300, 600, 1200, 2400, 3600]);
    }
}
