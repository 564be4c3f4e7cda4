//! Blocks in the object store, read by the querier itself (no store-gateway): the long-term part
//! of every tenant's data, which ingesters ship as TSDB blocks (`hestia-block`) to
//! `<tenant>/<ulid>/` (`hestia-bucket`).
//!
//! - **Which blocks.** A tenant's blocks come from its bucket index (`bucket-index.json.gz`),
//!   read on the tenant's first query and then refreshed in the background every
//!   `blocks.bucket_index_update_interval`; the query path never lists the bucket. A query opens
//!   only the blocks of its tenant's index overlapping its time range, through that tenant's
//!   prefix.
//! - **Blocks marked for deletion.** The compactor marks the sources of a block it wrote (and
//!   blocks past retention) and deletes them `compactor.deletion_delay` after the mark. A marked
//!   block is still read while its mark is younger than
//!   [`BlockStoreOptions::ignore_deletion_marks_delay`] (`deletion_delay / 2`), so that a query
//!   never misses a sample while the index that names the new block reaches every querier; the
//!   new block and its sources overlap meanwhile and are deduplicated by timestamp. After that
//!   the block is skipped, so no querier opens a block the compactor is about to delete: the
//!   other half of the delay covers queriers whose index lags (at most
//!   `bucket_index_update_interval` behind) and queries already running. This is Thanos'
//!   rule (`--ignore-deletion-marks-delay` recommended at `delete-delay / 2`; its compactor
//!   ignores marked blocks after `delete-delay / 2` too); Mimir's queriers and store-gateways
//!   use a fixed `ignore_deletion_mark_delay`, 1h by default against the compactor's 12h.
//! - **Keeping the index current.** The compactor writes every tenant's index (at most every
//!   `compactor.cleanup_interval`), so queriers only read it. With `compactor.enabled = false`
//!   nothing else would, and queriers rebuild every tenant's index at each refresh instead
//!   ([`BlockStoreOptions::update_bucket_index`]). Several queriers doing so is safe: each
//!   writes an index made from its own listing, whole, with one PUT; a write from an older
//!   listing may hide a new block until the next refresh.
//! - **Reads.** Opening a block reads its index header (TOC, symbols, postings offset table),
//!   which is then saved under `querier.index_header_dir` (`header.rs`) so that reopening it
//!   after an eviction or a restart fetches nothing. Open blocks are kept in memory up to
//!   [`BlockStoreOptions::open_header_bytes`] of headers. Postings, series and chunks are read as
//!   byte ranges through a page cache of `querier.block_cache_bytes` (`cache.rs`). Concurrent
//!   queries share both, and a block opened by several at once is opened once.
//! - **Failures.** A block that cannot be read fails the query: no partial answer.

mod cache;
mod files;
mod header;
mod lru;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt, TryStreamExt};
use hestia_block::{BlockError, BlockReader, SeriesChunks, TENANT_LABEL};
use hestia_bucket::{Bucket, BucketError, BucketIndex, IndexBlock};
use hestia_config::Config;
use hestia_model::{Labels, Matcher, TenantId};
use tokio::sync::OnceCell;
use ulid::Ulid;

pub use cache::CacheStats;

use self::cache::PageCache;
use self::files::{BlockFiles, Files};
use self::header::{header_path, Header};
use self::lru::Lru;
use crate::metrics;
use crate::store::{ChunkBudget, StoreError};

/// Index headers kept open in memory by default; closed ones reopen from local disk.
pub const DEFAULT_OPEN_HEADER_BYTES: usize = 512 << 20;
/// Blocks one query reads at once.
const BLOCK_CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct BlockStoreOptions {
    /// Where opened blocks' index headers are saved.
    pub index_header_dir: PathBuf,
    /// Memory for cached pages of postings, series and chunks.
    pub cache_bytes: usize,
    /// Raw index header bytes of the blocks kept open; the least recently used close first.
    pub open_header_bytes: usize,
    /// How often the bucket indexes are refreshed (and updated, see below).
    pub sync_interval: Duration,
    /// Rebuild every tenant's bucket index from a listing at each refresh: only when no
    /// compactor runs (`compactor.enabled = false`), since the compactor writes them otherwise.
    pub update_bucket_index: bool,
    /// Blocks whose deletion mark is older than this are not read: the compactor deletes them
    /// `compactor.deletion_delay` after the mark. `None`: marked blocks are read until they
    /// leave the index.
    pub ignore_deletion_marks_delay: Option<Duration>,
}

impl BlockStoreOptions {
    /// `querier.block_cache_bytes`, `querier.index_header_dir` (empty:
    /// `<server.data_dir>/querier/index-headers`), `blocks.bucket_index_update_interval`; the
    /// indexes are updated here only with `compactor.enabled = false`, and blocks marked for
    /// deletion more than `compactor.deletion_delay / 2` ago are skipped.
    pub fn from_config(cfg: &Config) -> Self {
        let dir = &cfg.querier.index_header_dir;
        Self {
            index_header_dir: if dir.as_os_str().is_empty() {
                cfg.server.data_dir.join("querier").join("index-headers")
            } else {
                dir.clone()
            },
            cache_bytes: cfg.querier.block_cache_bytes,
            open_header_bytes: DEFAULT_OPEN_HEADER_BYTES,
            sync_interval: cfg.blocks.bucket_index_update_interval,
            update_bucket_index: !cfg.compactor.enabled,
            ignore_deletion_marks_delay: Some(Self::ignore_marks_after(
                cfg.compactor.deletion_delay,
            )),
        }
    }

    /// How long after its deletion mark a block is still read: half the compactor's
    /// `deletion_delay` (see the module documentation).
    pub fn ignore_marks_after(deletion_delay: Duration) -> Duration {
        deletion_delay / 2
    }
}

/// What the store holds in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStoreStats {
    pub pages: CacheStats,
    pub open_blocks: usize,
    pub open_header_bytes: usize,
}

type BlockKey = (TenantId, Ulid);
type OpenBlock = Arc<BlockReader<Files>>;
/// A block being opened: the block and its header bytes, once open.
type Opening = Arc<OnceCell<(OpenBlock, usize)>>;

struct Inner {
    bucket: Bucket,
    opts: BlockStoreOptions,
    cache: Arc<PageCache>,
    /// Each loaded tenant's blocks, from its bucket index.
    indexes: RwLock<HashMap<TenantId, Arc<TenantIndex>>>,
    /// Open blocks, weighted by their index header bytes.
    open: Mutex<Lru<BlockKey, OpenBlock>>,
    /// Blocks being opened: concurrent queries wait for the same opening.
    opening: Mutex<HashMap<BlockKey, Opening>>,
}

/// A tenant's blocks and deletion marks, from its bucket index.
struct TenantIndex {
    blocks: Vec<IndexBlock>,
    /// When each marked block was marked (unix seconds).
    marks: HashMap<Ulid, i64>,
}

impl TenantIndex {
    fn new(index: Option<BucketIndex>) -> Self {
        let Some(index) = index else {
            return Self {
                blocks: Vec::new(),
                marks: HashMap::new(),
            };
        };
        Self {
            marks: index
                .block_deletion_marks
                .iter()
                .map(|m| (m.block_id, m.deletion_time))
                .collect(),
            blocks: index.blocks,
        }
    }

    /// Whether block `id` is read at `now_s` (unix seconds): unmarked, or marked less than
    /// `ignore_after` ago.
    fn readable(&self, id: Ulid, now_s: i64, ignore_after: Option<Duration>) -> bool {
        match (self.marks.get(&id), ignore_after) {
            (Some(&marked), Some(after)) => {
                let after = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
                now_s.saturating_sub(marked) < after
            }
            _ => true,
        }
    }
}

fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the value whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every tenant's blocks in the object store. Clones share the caches.
#[derive(Clone)]
pub struct BlockStore {
    inner: Arc<Inner>,
}

impl BlockStore {
    /// The blocks of `cfg.storage`, with the caches and refresh interval `cfg` configures
    /// ([`BlockStoreOptions::from_config`]); see [`BlockStore::start`].
    pub fn open(cfg: &Config) -> Result<Self, StoreError> {
        let bucket =
            Bucket::open(&cfg.storage, &cfg.server.data_dir).map_err(StoreError::Bucket)?;
        Ok(Self::start(bucket, BlockStoreOptions::from_config(cfg)))
    }

    /// Starts the background refresh of the bucket indexes (the first one at once); it stops
    /// when the last clone of the store is dropped. Needs a Tokio runtime.
    pub fn start(bucket: Bucket, opts: BlockStoreOptions) -> Self {
        let inner = Arc::new(Inner {
            bucket,
            cache: Arc::new(PageCache::new(opts.cache_bytes)),
            open: Mutex::new(Lru::new(opts.open_header_bytes)),
            opts,
            indexes: RwLock::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
        });
        tokio::spawn(sync_loop(Arc::downgrade(&inner)));
        Self { inner }
    }

    pub fn stats(&self) -> BlockStoreStats {
        let open = lock(&self.inner.open);
        BlockStoreStats {
            pages: self.inner.cache.stats(),
            open_blocks: open.len(),
            open_header_bytes: open.weight(),
        }
    }

    /// The series of `tenant`'s blocks matching `matchers`, with their chunks overlapping
    /// `[mint, maxt]`; one entry per block holding the series. Every chunk is charged to
    /// `chunks`.
    pub(crate) async fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        chunks: &ChunkBudget,
    ) -> Result<Vec<(Ulid, SeriesChunks)>, StoreError> {
        let per_block = self
            .each_block(tenant, mint, maxt, |id, block| async move {
                let series = block
                    .select(matchers, mint, maxt)
                    .await
                    .map_err(|e| StoreError::block(id, e))?;
                chunks.charge_chunks(series.iter().map(|s| s.chunks.len()).sum())?;
                Ok(series.into_iter().map(|s| (id, s)).collect::<Vec<_>>())
            })
            .await?;
        Ok(per_block.into_iter().flatten().collect())
    }

    /// Label sets of the series matching `matchers` in the blocks overlapping `[mint, maxt]`.
    pub(crate) async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        let per_block = self
            .each_block(tenant, mint, maxt, |id, block| async move {
                block
                    .series_labels(matchers)
                    .await
                    .map_err(|e| StoreError::block(id, e))
            })
            .await?;
        let mut out: Vec<Labels> = per_block.into_iter().flatten().collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Label names of the series matching `matchers` (all of a block's without matchers).
    pub(crate) async fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        let per_block = self
            .each_block(tenant, mint, maxt, |id, block| async move {
                if matchers.is_empty() {
                    return Ok(block.label_names().into_iter().map(String::from).collect());
                }
                let series = block
                    .series_labels(matchers)
                    .await
                    .map_err(|e| StoreError::block(id, e))?;
                Ok(series
                    .iter()
                    .flat_map(|l| l.iter().map(|l| l.name.clone()))
                    .collect::<Vec<_>>())
            })
            .await?;
        Ok(sorted_unique(per_block))
    }

    /// Values of label `name` in the series matching `matchers`.
    pub(crate) async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        let per_block = self
            .each_block(tenant, mint, maxt, |id, block| async move {
                if matchers.is_empty() {
                    return Ok(block
                        .label_values(name)
                        .into_iter()
                        .map(String::from)
                        .collect());
                }
                let series = block
                    .series_labels(matchers)
                    .await
                    .map_err(|e| StoreError::block(id, e))?;
                Ok(series
                    .iter()
                    .filter_map(|l| l.get(name).map(str::to_string))
                    .collect::<Vec<_>>())
            })
            .await?;
        Ok(sorted_unique(per_block))
    }

    /// Runs `f` on every block of `tenant` overlapping `[mint, maxt]`, a few at a time.
    async fn each_block<T, F, Fut>(
        &self,
        tenant: &TenantId,
        mint: i64,
        maxt: i64,
        f: F,
    ) -> Result<Vec<T>, StoreError>
    where
        F: Fn(Ulid, OpenBlock) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let index = self.inner.blocks(tenant).await?;
        let (now_s, ignore) = (unix_now_s(), self.inner.opts.ignore_deletion_marks_delay);
        let ids: Vec<Ulid> = index
            .blocks
            .iter()
            .filter(|b| b.min_time <= maxt && b.max_time > mint)
            .filter(|b| index.readable(b.block_id, now_s, ignore))
            .map(|b| b.block_id)
            .collect();
        stream::iter(ids)
            .map(|id| {
                let f = &f;
                async move { f(id, self.inner.block(tenant, id).await?).await }
            })
            .buffer_unordered(BLOCK_CONCURRENCY)
            .try_collect()
            .await
    }
}

fn sorted_unique(lists: Vec<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = lists.into_iter().flatten().collect();
    out.sort();
    out.dedup();
    out
}

impl Inner {
    /// `tenant`'s blocks, reading its bucket index on its first query.
    async fn blocks(&self, tenant: &TenantId) -> Result<Arc<TenantIndex>, StoreError> {
        let known = self
            .indexes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned();
        match known {
            Some(b) => Ok(b),
            None => self.load_index(tenant).await,
        }
    }

    /// Reads `tenant`'s bucket index (no index yet: no blocks), and forgets the open blocks and
    /// saved headers of blocks that left it or are no longer read (marked for deletion long
    /// enough ago).
    async fn load_index(&self, tenant: &TenantId) -> Result<Arc<TenantIndex>, StoreError> {
        let read = BucketIndex::read(&self.bucket.tenant(tenant)).await;
        let outcome = if read.is_ok() { "success" } else { "error" };
        metrics::BUCKET_INDEX_SYNCS
            .with_label_values(&["load", outcome])
            .inc();
        let index = Arc::new(TenantIndex::new(read.map_err(StoreError::Bucket)?));
        self.indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.clone(), Arc::clone(&index));
        let (now_s, ignore) = (unix_now_s(), self.opts.ignore_deletion_marks_delay);
        let live: HashSet<Ulid> = index
            .blocks
            .iter()
            .map(|b| b.block_id)
            .filter(|id| index.readable(*id, now_s, ignore))
            .collect();
        {
            let mut open = lock(&self.open);
            open.retain(|(t, id)| t != tenant || live.contains(id));
            metrics::OPEN_BLOCK_HEADER_BYTES.set(open.weight() as i64);
        }
        self.remove_headers(tenant, &live).await;
        Ok(index)
    }

    /// Deletes the saved headers of `tenant`'s blocks not in `live`.
    async fn remove_headers(&self, tenant: &TenantId, live: &HashSet<Ulid>) {
        let dir = self.opts.index_header_dir.join(tenant.as_str());
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return;
        };
        while let Ok(Some(e)) = entries.next_entry().await {
            let name = e.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.split_once('.'))
                .and_then(|(id, _)| Ulid::from_string(id).ok());
            if id.is_none_or(|id| !live.contains(&id)) {
                if let Err(err) = tokio::fs::remove_file(e.path()).await {
                    tracing::warn!(path = %e.path().display(), error = %err, "removing an index header");
                }
            }
        }
    }

    /// The open block, opening it (once, however many queries ask at the same time).
    async fn block(&self, tenant: &TenantId, id: Ulid) -> Result<OpenBlock, StoreError> {
        let key = (tenant.clone(), id);
        if let Some(b) = lock(&self.open).get(&key) {
            return Ok(b);
        }
        let cell = Arc::clone(lock(&self.opening).entry(key.clone()).or_default());
        let opened = cell
            .get_or_try_init(|| self.open_block(tenant, id))
            .await
            .map(|(b, weight)| (Arc::clone(b), *weight));
        if let Ok((b, weight)) = &opened {
            let mut open = lock(&self.open);
            open.insert(key.clone(), Arc::clone(b), *weight);
            metrics::OPEN_BLOCK_HEADER_BYTES.set(open.weight() as i64);
        }
        lock(&self.opening).remove(&key);
        opened.map(|(b, _)| b)
    }

    /// Opens a block from its saved header if there is one, saving the header otherwise; the
    /// block and its header bytes.
    async fn open_block(
        &self,
        tenant: &TenantId,
        id: Ulid,
    ) -> Result<(OpenBlock, usize), StoreError> {
        let path = header_path(&self.opts.index_header_dir, tenant.as_str(), id);
        let saved = Header::load(&path).await;
        let files = BlockFiles::new(
            self.bucket.tenant(tenant),
            id,
            Arc::clone(&self.cache),
            saved,
        );
        let reader = BlockReader::open(Files(Arc::clone(&files)))
            .await
            .map_err(|e| StoreError::block(id, e))?;
        let (header, fetched) = files.finish_open();
        let meta = reader.meta();
        let owner = meta.thanos.labels.get(TENANT_LABEL);
        if meta.ulid != id || owner.is_some_and(|o| o != tenant.as_str()) {
            return Err(StoreError::block(
                id,
                BlockError::Invalid(format!(
                    "meta.json names block {} of tenant {owner:?}, found in {tenant}'s prefix",
                    meta.ulid
                )),
            ));
        }
        if fetched {
            if let Err(e) = header.save(&path).await {
                tracing::warn!(path = %path.display(), error = %e, "saving an index header");
            }
        }
        metrics::BLOCK_OPENS
            .with_label_values(&[if fetched { "bucket" } else { "disk" }])
            .inc();
        Ok((Arc::new(reader), header.bytes()))
    }

    /// Updates the bucket indexes (when this querier keeps them) and reloads the loaded ones.
    async fn sync(&self) {
        if self.opts.update_bucket_index {
            self.update_indexes().await;
        }
        let loaded: Vec<TenantId> = self
            .indexes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for tenant in loaded {
            if let Err(e) = self.load_index(&tenant).await {
                tracing::warn!(%tenant, error = %e, "refreshing the bucket index; keeping the previous one");
            }
        }
    }

    /// Rebuilds every tenant's bucket index from a listing of its prefix (reading only the
    /// `meta.json`s the previous index lacks) and writes it.
    async fn update_indexes(&self) {
        let tenants = match self.bucket.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "listing the bucket's tenants");
                return;
            }
        };
        for tenant in tenants {
            let bucket = self.bucket.tenant(&tenant);
            let updated = async {
                let previous = match BucketIndex::read(&bucket).await {
                    Ok(p) => p,
                    Err(BucketError::Corrupt { .. }) => None,
                    Err(e) => return Err(e),
                };
                let (index, report) = BucketIndex::update(&bucket, previous.as_ref()).await?;
                index.write(&bucket).await?;
                Ok(report)
            }
            .await;
            let outcome = match updated {
                Ok(report) => {
                    if !report.partial_blocks.is_empty() {
                        tracing::debug!(%tenant, partial = report.partial_blocks.len(), "blocks without meta.json");
                    }
                    "success"
                }
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "updating the bucket index");
                    "error"
                }
            };
            metrics::BUCKET_INDEX_SYNCS
                .with_label_values(&["update", outcome])
                .inc();
        }
    }
}

async fn sync_loop(inner: Weak<Inner>) {
    let Some(interval) = inner.upgrade().map(|i| i.opts.sync_interval) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.sync().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_bucket::IndexDeletionMark;

    #[test]
    fn queriers_update_the_index_only_without_a_compactor() {
        let mut cfg = Config::default();
        assert!(cfg.compactor.enabled);
        let opts = BlockStoreOptions::from_config(&cfg);
        assert!(!opts.update_bucket_index);
        assert_eq!(
            opts.ignore_deletion_marks_delay,
            Some(Duration::from_secs(6 * 3600)),
            "half of the compactor's 12h"
        );
        cfg.compactor.enabled = false;
        cfg.compactor.deletion_delay = Duration::from_secs(3600);
        let opts = BlockStoreOptions::from_config(&cfg);
        assert!(opts.update_bucket_index);
        assert_eq!(
            opts.ignore_deletion_marks_delay,
            Some(Duration::from_secs(1800))
        );
    }

    #[test]
    fn marked_blocks_are_read_until_half_the_deletion_delay() {
        let (kept, marked) = (Ulid::from_parts(1, 1), Ulid::from_parts(2, 2));
        let block = |id| IndexBlock {
            block_id: id,
            min_time: 0,
            max_time: 7_200_000,
            segments_format: String::new(),
            segments_num: 0,
            uploaded_at: 0,
            source: String::new(),
            compaction_level: 1,
        };
        let index = TenantIndex::new(Some(BucketIndex {
            version: hestia_bucket::INDEX_VERSION,
            blocks: vec![block(kept), block(marked)],
            block_deletion_marks: vec![IndexDeletionMark {
                block_id: marked,
                deletion_time: 1_000_000,
            }],
            updated_at: 1_000_000,
        }));
        let after = Some(Duration::from_secs(100));
        for now in [1_000_000, 1_000_099] {
            assert!(index.readable(marked, now, after));
        }
        for now in [1_000_100, 2_000_000] {
            assert!(!index.readable(marked, now, after));
            assert!(index.readable(kept, now, after));
        }
        assert!(index.readable(marked, 2_000_000, None));
    }
}
