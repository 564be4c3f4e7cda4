//! One tenant's pass: tenant deletion, retention, compaction, cleaner (see the crate
//! documentation for the order and why it is crash-safe).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use hestia_block::{compact, BlockMeta, BlockReader, CompactOptions, LocalDir};
use hestia_bucket::{BucketIndex, TenantBucket, TenantDeletionMark};
use hestia_model::TenantId;
use tracing::Instrument;
use ulid::Ulid;

use crate::plan::{Job, PlanBlock};
use crate::{
    empty_dir, metrics, read_index, unix_ms, CompactorError, Inner, PassKind, TenantReport,
};

/// Sources downloaded at once.
const DOWNLOAD_CONCURRENCY: usize = 4;

impl Inner {
    pub(crate) async fn tenant_pass(&self, tenant: &TenantId, kind: PassKind) -> TenantReport {
        let mut r = TenantReport {
            tenant: tenant.to_string(),
            ..TenantReport::default()
        };
        let span = tracing::info_span!("compactor", %tenant, pass = kind.label());
        match self
            .tenant_work(tenant, kind, &mut r)
            .instrument(span.clone())
            .await
        {
            Ok(()) if kind == PassKind::Compaction && !r.tenant_deleted => {
                metrics::LAST_SUCCESS
                    .with_label_values(&[tenant.as_str()])
                    .set(unix_ms() / 1000);
            }
            Ok(()) => {}
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "tenant pass failed"));
                metrics::FAILURES.with_label_values(&[e.reason()]).inc();
                r.errors.push(e.to_string());
            }
        }
        r
    }

    async fn tenant_work(
        &self,
        tenant: &TenantId,
        kind: PassKind,
        r: &mut TenantReport,
    ) -> Result<(), CompactorError> {
        let bucket = self.bucket.tenant(tenant);
        if let Some(mark) = bucket.tenant_deletion_mark().await? {
            return self.delete_tenant(&bucket, mark, r).await;
        }
        let previous = read_index(&bucket).await?;
        let (mut index, mut listing) = BucketIndex::update(&bucket, previous.as_ref()).await?;
        let mut changed = self.apply_retention(&bucket, &index, r).await?;
        if kind == PassKind::Compaction {
            changed |= self.compact_tenant(&bucket, &mut index, r).await?;
        }
        if changed {
            (index, listing) = BucketIndex::update(&bucket, Some(&index)).await?;
        }

        // The cleaner.
        let now = unix_ms() / 1000;
        let delay = self.deletion_delay_s;
        let old_enough = move |t: i64| now.saturating_sub(t) >= delay;
        let mut deleted = HashSet::new();
        for m in &index.block_deletion_marks {
            if old_enough(m.deletion_time) {
                bucket.delete_block(m.block_id).await?;
                deleted.insert(m.block_id);
                r.blocks_deleted += 1;
                metrics::BLOCKS_DELETED.with_label_values(&["marked"]).inc();
                tracing::info!(block = %m.block_id, marked_at = m.deletion_time, "deleted a marked block");
            }
        }
        for p in &listing.partial_blocks {
            if deleted.contains(&p.id) || !old_enough(p.last_modified) {
                continue;
            }
            // Completed since the listing (an ingester re-uploading after a long outage).
            if bucket.size(p.id, hestia_block::META_FILENAME).await.is_ok() {
                continue;
            }
            bucket.delete_block(p.id).await?;
            deleted.insert(p.id);
            r.partial_deleted += 1;
            metrics::BLOCKS_DELETED
                .with_label_values(&["partial"])
                .inc();
            tracing::info!(block = %p.id, last_modified = p.last_modified, reason = ?p.reason, "deleted a partial block");
        }
        index.blocks.retain(|b| !deleted.contains(&b.block_id));
        index
            .block_deletion_marks
            .retain(|m| !deleted.contains(&m.block_id));
        index.write(&bucket).await?;
        Ok(())
    }

    /// Marks the blocks wholly older than the tenant's retention; true if it marked any.
    async fn apply_retention(
        &self,
        bucket: &TenantBucket,
        index: &BucketIndex,
        r: &mut TenantReport,
    ) -> Result<bool, CompactorError> {
        let Some(cutoff) = self.retentions.cutoff_ms(bucket.tenant(), unix_ms()) else {
            return Ok(false);
        };
        let mut marked = false;
        for b in &index.blocks {
            if b.max_time <= cutoff && index.deletion_mark(b.block_id).is_none() {
                bucket.mark_for_deletion(b.block_id).await?;
                r.retention_marked += 1;
                r.blocks_marked += 1;
                metrics::BLOCKS_MARKED
                    .with_label_values(&["retention"])
                    .inc();
                tracing::info!(block = %b.block_id, max_time = b.max_time, retention_cutoff = cutoff, "block past retention marked for deletion");
                marked = true;
            }
        }
        Ok(marked)
    }

    /// Plans and runs compactions until nothing is left to do (or a round limit is reached);
    /// `index` follows every change. True if anything changed.
    async fn compact_tenant(
        &self,
        bucket: &TenantBucket,
        index: &mut BucketIndex,
        r: &mut TenantReport,
    ) -> Result<bool, CompactorError> {
        // Each round merges overlaps or one level; more is left for the next pass.
        let rounds = 2 * self.planner.ranges.len() + 2;
        let mut changed = false;
        for _ in 0..rounds {
            let live: Vec<Ulid> = index
                .blocks
                .iter()
                .filter(|b| index.deletion_mark(b.block_id).is_none())
                .map(|b| b.block_id)
                .collect();
            let metas = self.metas.get(bucket, &live).await?;
            let blocks: Vec<PlanBlock> = index
                .blocks
                .iter()
                .filter_map(|b| {
                    let m = metas.get(&b.block_id)?;
                    let mut sources = m.compaction.sources.clone();
                    if sources.is_empty() {
                        sources.push(b.block_id);
                    }
                    sources.sort();
                    sources.dedup();
                    Some(PlanBlock {
                        id: b.block_id,
                        min_time: b.min_time,
                        max_time: b.max_time,
                        level: m.compaction.level,
                        sources,
                        uploaded_at_ms: b.uploaded_at.saturating_mul(1000),
                    })
                })
                .collect();
            let plan = self.planner.plan(&blocks, unix_ms());
            if plan.is_empty() {
                break;
            }
            changed = true;
            for id in &plan.superseded {
                bucket.mark_for_deletion(*id).await?;
                r.superseded += 1;
                r.blocks_marked += 1;
                metrics::BLOCKS_MARKED
                    .with_label_values(&["superseded"])
                    .inc();
                tracing::info!(block = %id, "block already compacted into another, marked for deletion");
            }
            if !plan.superseded.is_empty() {
                refresh_index(bucket, index).await?;
            }
            for job in &plan.jobs {
                self.run_job(bucket, job, &metas, r).await?;
                refresh_index(bucket, index).await?;
            }
        }
        Ok(changed)
    }

    /// Downloads the job's sources, merges them, uploads the result and marks the sources.
    async fn run_job(
        &self,
        bucket: &TenantBucket,
        job: &Job,
        metas: &HashMap<Ulid, Arc<BlockMeta>>,
        r: &mut TenantReport,
    ) -> Result<(), CompactorError> {
        let tenant = bucket.tenant();
        let started = Instant::now();
        let work = self.data_dir.join(tenant.as_str());
        empty_dir(&work)?;
        let downloaded: Vec<(std::path::PathBuf, u64)> = futures::stream::iter(job.blocks.clone())
            .map(|id| {
                let dir = work.join("sources").join(id.to_string());
                async move {
                    let (_, bytes) = bucket.download_block(id, &dir).await?;
                    Ok::<_, CompactorError>((dir, bytes))
                }
            })
            .buffered(DOWNLOAD_CONCURRENCY)
            .try_collect()
            .await?;
        let bytes_in: u64 = downloaded.iter().map(|d| d.1).sum();
        let mut sources = Vec::with_capacity(downloaded.len());
        for (dir, _) in &downloaded {
            sources.push(BlockReader::open(LocalDir::new(dir)).await?);
        }
        let opts = CompactOptions {
            tenant: tenant.clone(),
            time_range: None,
            batch_series: self.cfg.merge_batch_series,
        };
        let out = work.join("out");
        // The merge is CPU-bound: it runs on a blocking thread, off the async workers.
        let runtime = tokio::runtime::Handle::current();
        let out_parent = out.clone();
        let merged = tokio::task::spawn_blocking(move || {
            runtime.block_on(compact(&sources, &out_parent, &opts))
        })
        .await
        .map_err(|e| CompactorError::io(&out, std::io::Error::other(e)))??;

        let Some((meta, stats)) = merged else {
            tracing::info!(sources = job.blocks.len(), "no sample left in the sources");
            self.mark_sources(bucket, job, r).await?;
            empty_dir(&work)?;
            return Ok(());
        };
        check_covers(&meta, job, metas)?;
        if !self.ring.owns(tenant) {
            empty_dir(&work)?;
            return Err(CompactorError::NotOwner(tenant.clone()));
        }
        let dir = out.join(meta.ulid.to_string());
        let bytes_out = dir_size(&dir)?;
        bucket.upload_block(&dir).await?;
        self.mark_sources(bucket, job, r).await?;
        empty_dir(&work)?;

        r.compactions += 1;
        r.blocks_in += job.blocks.len();
        r.blocks_out += 1;
        r.series_out += stats.series;
        r.samples_in += stats.samples_in;
        r.samples_out += stats.samples_out;
        r.duplicates += stats.duplicates;
        r.conflicts += stats.conflicts;
        r.bytes_in += bytes_in;
        r.bytes_out += bytes_out;
        metrics::COMPACTIONS
            .with_label_values(&[job.kind.label()])
            .inc();
        metrics::BLOCKS_COMPACTED.inc_by(job.blocks.len() as u64);
        metrics::BYTES.with_label_values(&["in"]).inc_by(bytes_in);
        metrics::BYTES.with_label_values(&["out"]).inc_by(bytes_out);
        metrics::SAMPLES
            .with_label_values(&["in"])
            .inc_by(stats.samples_in);
        metrics::SAMPLES
            .with_label_values(&["out"])
            .inc_by(stats.samples_out);
        metrics::DUPLICATES.inc_by(stats.duplicates);
        metrics::CONFLICTS.inc_by(stats.conflicts);
        tracing::info!(
            block = %meta.ulid, kind = job.kind.label(), level = meta.compaction.level,
            min_time = meta.min_time, max_time = meta.max_time, sources = job.blocks.len(),
            series = stats.series, samples_in = stats.samples_in, samples_out = stats.samples_out,
            duplicates = stats.duplicates, conflicts = stats.conflicts, bytes_in, bytes_out,
            elapsed_ms = started.elapsed().as_millis() as u64, "compacted"
        );
        Ok(())
    }

    async fn mark_sources(
        &self,
        bucket: &TenantBucket,
        job: &Job,
        r: &mut TenantReport,
    ) -> Result<(), CompactorError> {
        for id in &job.blocks {
            bucket.mark_for_deletion(*id).await?;
            r.blocks_marked += 1;
            metrics::BLOCKS_MARKED
                .with_label_values(&["compacted"])
                .inc();
        }
        Ok(())
    }

    /// Deletes every block of a tenant whose deletion mark is old enough, then its index, then
    /// the mark.
    async fn delete_tenant(
        &self,
        bucket: &TenantBucket,
        mark: TenantDeletionMark,
        r: &mut TenantReport,
    ) -> Result<(), CompactorError> {
        if (unix_ms() / 1000).saturating_sub(mark.deletion_time) < self.deletion_delay_s {
            r.tenant_deletion_pending = true;
            return Ok(());
        }
        let (index, listing) = BucketIndex::build(bucket).await?;
        let ids: BTreeSet<Ulid> = index
            .blocks
            .iter()
            .map(|b| b.block_id)
            .chain(index.block_deletion_marks.iter().map(|m| m.block_id))
            .chain(listing.partial_blocks.iter().map(|p| p.id))
            .collect();
        for id in &ids {
            bucket.delete_block(*id).await?;
            r.blocks_deleted += 1;
            metrics::BLOCKS_DELETED.with_label_values(&["tenant"]).inc();
        }
        bucket.delete_index().await?;
        bucket.delete_tenant_deletion_mark().await?;
        r.tenant_deleted = true;
        metrics::TENANTS_DELETED.inc();
        let _ = metrics::LAST_SUCCESS.remove_label_values(&[bucket.tenant().as_str()]);
        tracing::info!(
            blocks = ids.len(),
            marked_at = mark.deletion_time,
            "deleted tenant: every block, the bucket index and the tenant deletion mark"
        );
        Ok(())
    }
}

/// Brings `index` up to date with the bucket and writes it, so queriers see the change.
async fn refresh_index(
    bucket: &TenantBucket,
    index: &mut BucketIndex,
) -> Result<(), CompactorError> {
    *index = BucketIndex::update(bucket, Some(index)).await?.0;
    index.write(bucket).await?;
    Ok(())
}

/// The output must hold every source of its inputs: the planner recognises merged blocks by it.
fn check_covers(
    out: &BlockMeta,
    job: &Job,
    metas: &HashMap<Ulid, Arc<BlockMeta>>,
) -> Result<(), CompactorError> {
    let have: HashSet<&Ulid> = out.compaction.sources.iter().collect();
    for id in &job.blocks {
        let own = [*id];
        let sources = match metas.get(id) {
            Some(m) if !m.compaction.sources.is_empty() => &m.compaction.sources[..],
            _ => &own[..],
        };
        if let Some(missing) = sources.iter().find(|s| !have.contains(s)) {
            return Err(CompactorError::BadOutput {
                id: out.ulid,
                reason: format!("compaction.sources lacks {missing} of {id}"),
            });
        }
    }
    Ok(())
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> Result<u64, CompactorError> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| CompactorError::io(dir, e))? {
        let entry = entry.map_err(|e| CompactorError::io(dir, e))?;
        let meta = entry
            .metadata()
            .map_err(|e| CompactorError::io(entry.path(), e))?;
        total += match meta.is_dir() {
            true => dir_size(&entry.path())?,
            false => meta.len(),
        };
    }
    Ok(total)
}
