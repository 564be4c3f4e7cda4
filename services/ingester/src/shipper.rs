//! Ships closed time ranges of every tenant to the object store as Prometheus TSDB blocks, then
//! drops them from RocksDB once `blocks.retain_after_upload` has passed.
//!
//! Ranges are `[s, s + block_range)` aligned on the Unix epoch; a range is closed when its end
//! plus the tenant's out-of-order window plus half a block range (Mimir's head compacts at 1.5
//! ranges) is in the past. Each tenant's ranges are shipped in order, one at a time:
//!
//! 1. raise the tenant's min valid time to the range's end (later appends below it are refused,
//!    `err-mimir-sample-out-of-bounds`), durably, so the range cannot change once read;
//! 2. cut the block into `<data_dir>/ingester/blocks/<tenant>/` (the writer's
//!    `<ulid>.tmp-for-creation`, renamed to `<ulid>` when complete); a range without samples
//!    makes no block;
//! 3. upload it (files first, `meta.json` last);
//! 4. record the range as shipped with the block's ULID and upload time (one synced write);
//! 5. delete the local copy.
//!
//! A crash at any step resumes the same range: a complete local block for it is uploaded again
//! (same ULID, the upload is idempotent), an incomplete one is removed and the range cut anew
//! (it was never uploaded), a local block of a range already recorded is removed. So one
//! (ingester, tenant, range) never has two different blocks in the bucket. A failed upload keeps
//! the block and the tenant's later ranges wait; passes are retried from `ship_interval`,
//! doubling up to `ship_max_backoff`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hestia_block::{
    histogram_chunks, symbols_of, xor_chunks, BlockMeta, BlockOptions, BlockSource, BlockWriter,
    ChunkMeta, DEFAULT_CHUNK_SAMPLES,
};
use hestia_bucket::Bucket;
use hestia_config::BlocksConfig;
use hestia_limits::Overrides;
use hestia_model::TenantId;
use hestia_storage::{RangeSeries, ShippedBlock, Tsdb};
use ulid::Ulid;

use crate::metrics;
use crate::IngesterError;

/// Suffix of a block directory [`BlockWriter`] has not finished.
const TMP_SUFFIX: &str = ".tmp-for-creation";

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipReport {
    pub blocks_shipped: usize,
    /// Closed ranges without samples (no block).
    pub empty_ranges: usize,
    pub upload_failures: usize,
    /// Other failures (cutting, recording, dropping); logged.
    pub other_failures: usize,
    /// Complete local blocks not uploaded yet, after the pass.
    pub pending_blocks: usize,
    /// Chunk rows deleted for shipped ranges past their retention.
    pub chunks_dropped: usize,
}

impl ShipReport {
    fn failed(&self) -> bool {
        self.upload_failures + self.other_failures > 0
    }
}

/// The block shipper of one ingester.
pub struct Shipper {
    db: Arc<Tsdb>,
    bucket: Bucket,
    cfg: BlocksConfig,
    ingester_id: String,
    overrides: Arc<Overrides>,
    /// `<data_dir>/ingester/blocks`.
    dir: PathBuf,
}

impl Shipper {
    /// A shipper for the database opened by [`crate::open_tsdb`] under `data_dir`, writing blocks
    /// with `__ingester_id__ = ingester_id`; tenants' out-of-order windows come from `overrides`.
    pub fn new(
        db: Arc<Tsdb>,
        bucket: Bucket,
        cfg: BlocksConfig,
        ingester_id: String,
        overrides: Arc<Overrides>,
        data_dir: &Path,
    ) -> Self {
        Self {
            db,
            bucket,
            cfg,
            ingester_id,
            overrides,
            dir: data_dir.join("ingester").join("blocks"),
        }
    }

    /// Where blocks are cut, one directory per tenant.
    pub fn blocks_dir(&self) -> &Path {
        &self.dir
    }

    /// Ships every `ship_interval` (backing off after failures) until `shutdown` resolves; the
    /// first pass starts at once. Stopping mid-pass is safe (see the module documentation).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut delay = self.cfg.ship_interval;
        loop {
            let report = tokio::select! {
                r = self.ship_once() => r,
                _ = &mut shutdown => return,
            };
            delay = next_delay(&self.cfg, delay, report.failed());
            if report.failed() {
                tracing::warn!(
                    upload_failures = report.upload_failures,
                    other_failures = report.other_failures,
                    pending_blocks = report.pending_blocks,
                    retry_in_s = delay.as_secs_f64(),
                    "block shipping failed; data stays in the ingester"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// One pass over every tenant: drop what was shipped long enough ago, ship closed ranges.
    pub async fn ship_once(&self) -> ShipReport {
        let mut report = ShipReport::default();
        let db = self.db.clone();
        let tenants = tokio::task::spawn_blocking(move || db.tenants())
            .await
            .unwrap_or_default();
        for tenant in tenants {
            if let Err(e) = self.ship_tenant(&tenant, &mut report).await {
                tracing::warn!(%tenant, error = %e, "shipping blocks");
                match e {
                    IngesterError::Bucket(_) => report.upload_failures += 1,
                    _ => report.other_failures += 1,
                }
            }
        }
        report.pending_blocks = count_local_blocks(&self.dir);
        metrics::SHIPPER_PENDING_BLOCKS.set(report.pending_blocks as i64);
        report
    }

    async fn ship_tenant(
        &self,
        tenant: &TenantId,
        report: &mut ShipReport,
    ) -> Result<(), IngesterError> {
        let state = self
            .blocking({
                let tenant = tenant.clone();
                move |db| db.ship_state(&tenant)
            })
            .await?;
        let now = now_ms();
        let retain = duration_ms(self.cfg.retain_after_upload);
        for b in state
            .blocks
            .iter()
            .filter(|b| now - b.uploaded_at_ms >= retain)
        {
            let (tenant, b) = (tenant.clone(), *b);
            let dropped = self
                .blocking(move |db| {
                    let n = db.drop_before(&tenant, b.max_t)?;
                    db.forget_shipped(&tenant, b.min_t)?;
                    Ok(n)
                })
                .await
                .inspect_err(|_| metrics::SHIPPER_FAILURES.with_label_values(&["drop"]).inc())?;
            report.chunks_dropped += dropped;
            metrics::SHIPPER_CHUNKS_DROPPED.inc_by(dropped as u64);
        }

        let tenant_dir = self.dir.join(tenant.as_str());
        let local = local_blocks(&tenant_dir, state.shipped_through)?;
        let range = self.cfg.block_range_ms();
        let start = match (state.shipped_through, local.first()) {
            (Some(t), _) => t,
            // A block cut before the first range was recorded.
            (None, Some(b)) => b.1,
            (None, None) => {
                let tenant = tenant.clone();
                match self.blocking(move |db| db.time_bounds(&tenant)).await? {
                    Some((min, _)) => min.div_euclid(range) * range,
                    None => return Ok(()),
                }
            }
        };
        let ooo = duration_ms(self.overrides.get(tenant.as_str()).out_of_order_time_window);
        let horizon = now.saturating_sub(ooo).saturating_sub(range / 2);
        let mut s = start;
        while s.saturating_add(range) <= horizon {
            let e = s + range;
            let found = local
                .iter()
                .find(|b| b.1 == s && b.2 == e)
                .map(|b| b.0.clone());
            self.ship_range(tenant, &tenant_dir, s, e, found, report)
                .await?;
            s = e;
        }
        Ok(())
    }

    /// Ships `[s, e)`: the complete local block `found` from an earlier attempt, or a new cut.
    async fn ship_range(
        &self,
        tenant: &TenantId,
        tenant_dir: &Path,
        s: i64,
        e: i64,
        found: Option<PathBuf>,
        report: &mut ShipReport,
    ) -> Result<(), IngesterError> {
        let dir = match found {
            Some(dir) => dir,
            None => {
                let started = Instant::now();
                let (t, tdir, id) = (
                    tenant.clone(),
                    tenant_dir.to_path_buf(),
                    self.ingester_id.clone(),
                );
                let cut = self
                    .blocking_any(move |db| cut_block(db, &tdir, &t, s, e, id))
                    .await
                    .inspect_err(|_| metrics::SHIPPER_FAILURES.with_label_values(&["cut"]).inc())?;
                let Some(meta) = cut else {
                    let t = tenant.clone();
                    self.blocking(move |db| db.record_shipped(&t, e, None))
                        .await?;
                    report.empty_ranges += 1;
                    return Ok(());
                };
                tracing::info!(
                    %tenant, block = %meta.ulid, min_time = s, max_time = e,
                    series = meta.stats.num_series, samples = meta.stats.num_samples,
                    elapsed_ms = started.elapsed().as_millis() as u64, "block cut"
                );
                metrics::SHIPPER_SAMPLES.inc_by(meta.stats.num_samples);
                tenant_dir.join(meta.ulid.to_string())
            }
        };
        let meta = match self.bucket.tenant(tenant).upload_block(&dir).await {
            Ok(meta) => meta,
            Err(err) => {
                metrics::SHIPPER_FAILURES
                    .with_label_values(&["upload"])
                    .inc();
                return Err(err.into());
            }
        };
        let shipped = ShippedBlock {
            min_t: s,
            max_t: e,
            block: u128::from(meta.ulid),
            uploaded_at_ms: now_ms(),
        };
        let t = tenant.clone();
        self.blocking(move |db| db.record_shipped(&t, e, Some(&shipped)))
            .await?;
        remove_dir(&dir)?;
        report.blocks_shipped += 1;
        metrics::SHIPPER_BLOCKS_SHIPPED.inc();
        metrics::SHIPPER_LAST_SUCCESS.set(now_ms() / 1000);
        tracing::info!(%tenant, block = %meta.ulid, min_time = s, max_time = e, "block shipped");
        Ok(())
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, IngesterError>
    where
        T: Send + 'static,
        F: FnOnce(&Tsdb) -> Result<T, hestia_storage::StorageError> + Send + 'static,
    {
        self.blocking_any(move |db| Ok(f(db)?)).await
    }

    async fn blocking_any<T, F>(&self, f: F) -> Result<T, IngesterError>
    where
        T: Send + 'static,
        F: FnOnce(&Tsdb) -> Result<T, IngesterError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await?
    }
}

/// The wait before the next pass: `ship_interval` after a clean pass, else the previous wait
/// doubled, at most `ship_max_backoff`.
fn next_delay(cfg: &BlocksConfig, prev: Duration, failed: bool) -> Duration {
    match failed {
        true => (prev * 2).min(cfg.ship_max_backoff),
        false => cfg.ship_interval,
    }
}

/// Closes `[s, e)` to appends and writes its block under `tenant_dir`; `None` if it has no samples.
fn cut_block(
    db: &Tsdb,
    tenant_dir: &Path,
    tenant: &TenantId,
    s: i64,
    e: i64,
    ingester_id: String,
) -> Result<Option<BlockMeta>, IngesterError> {
    db.set_min_valid_time(tenant, e)?;
    let mut read = db.read_range(tenant, s, e)?;
    if read.labels().next().is_none() {
        return Ok(None);
    }
    std::fs::create_dir_all(tenant_dir).map_err(|e| IngesterError::io(tenant_dir, e))?;
    let opts = BlockOptions {
        tenant: tenant.clone(),
        ingester: Some(ingester_id),
        source: BlockSource::Ingester,
        time_range: Some((s, e)),
    };
    let mut w = BlockWriter::new(tenant_dir, opts, symbols_of(read.labels()))?;
    let mut series = 0;
    while let Some(rs) = read.next_series()? {
        w.add_series(&rs.labels, &chunks_of(&rs)?)?;
        series += 1;
    }
    // A writer dropped unfinished removes its directory.
    Ok(match series {
        0 => None,
        _ => Some(w.finish()?),
    })
}

/// Prometheus chunks of a series: each run of floats or histograms cut on its own, so chunks of
/// the two kinds never overlap.
fn chunks_of(s: &RangeSeries) -> Result<Vec<ChunkMeta>, IngesterError> {
    let (f, h) = (&s.floats, &s.histograms);
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < f.len() || j < h.len() {
        if j == h.len() || (i < f.len() && f[i].0 < h[j].0) {
            let from = i;
            while i < f.len() && (j == h.len() || f[i].0 < h[j].0) {
                i += 1;
            }
            out.extend(xor_chunks(&f[from..i], DEFAULT_CHUNK_SAMPLES)?);
        } else {
            let from = j;
            while j < h.len() && (i == f.len() || h[j].0 < f[i].0) {
                j += 1;
            }
            out.extend(histogram_chunks(&h[from..j], DEFAULT_CHUNK_SAMPLES)?);
        }
    }
    Ok(out)
}

/// Complete local blocks of a tenant as (dir, min time, max time), by time. Unfinished ones, and
/// those of ranges below `shipped_through` (recorded, local copy not yet removed), are removed.
fn local_blocks(
    tenant_dir: &Path,
    shipped_through: Option<i64>,
) -> Result<Vec<(PathBuf, i64, i64)>, IngesterError> {
    let entries = match std::fs::read_dir(tenant_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IngesterError::io(tenant_dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| IngesterError::io(tenant_dir, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(TMP_SUFFIX) {
            tracing::info!(dir = %path.display(), "removing an unfinished block");
            remove_dir(&path)?;
            continue;
        }
        if Ulid::from_string(name).is_err() {
            continue;
        }
        match BlockMeta::read_from_dir(&path) {
            Ok(m) if shipped_through.is_some_and(|t| m.max_time <= t) => remove_dir(&path)?,
            Ok(m) => out.push((path, m.min_time, m.max_time)),
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "removing an unreadable local block");
                remove_dir(&path)?;
            }
        }
    }
    out.sort_by_key(|b| b.1);
    Ok(out)
}

fn count_local_blocks(dir: &Path) -> usize {
    let Ok(tenants) = std::fs::read_dir(dir) else {
        return 0;
    };
    tenants
        .flatten()
        .filter_map(|t| std::fs::read_dir(t.path()).ok())
        .flat_map(|blocks| blocks.flatten())
        .filter(|b| {
            b.file_name()
                .to_str()
                .is_some_and(|n| Ulid::from_string(n).is_ok())
        })
        .count()
}

fn remove_dir(dir: &Path) -> Result<(), IngesterError> {
    std::fs::remove_dir_all(dir).map_err(|e| IngesterError::io(dir, e))
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_model::Labels;
    use hestia_storage::Histogram;

    #[test]
    fn failures_back_off_up_to_the_maximum() {
        let cfg = BlocksConfig {
            ship_interval: Duration::from_secs(60),
            ship_max_backoff: Duration::from_secs(300),
            ..BlocksConfig::default()
        };
        let mut d = cfg.ship_interval;
        let mut waits = Vec::new();
        for _ in 0..4 {
            d = next_delay(&cfg, d, true);
            waits.push(d.as_secs());
        }
        assert_eq!(waits, [120, 240, 300, 300]);
        assert_eq!(next_delay(&cfg, d, false), cfg.ship_interval);
    }

    #[test]
    fn runs_of_floats_and_histograms_make_disjoint_chunks() {
        let h = Histogram {
            count: 1.0,
            zero_count: 1.0,
            ..Histogram::default()
        };
        let s = RangeSeries {
            labels: Labels::from_pairs([("__name__", "x")]),
            floats: (0..130)
                .map(|t| (t, t as f64))
                .chain([(200, 1.0)])
                .collect(),
            histograms: vec![(150, h.clone()), (151, h.clone()), (300, h)],
        };
        let chunks = chunks_of(&s).unwrap();
        let ranges: Vec<(i64, i64)> = chunks.iter().map(|c| (c.min_t, c.max_t)).collect();
        assert_eq!(
            ranges,
            vec![(0, 119), (120, 129), (150, 151), (200, 200), (300, 300)]
        );
    }
}
