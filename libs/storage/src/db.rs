//! The multi-tenant TSDB: in-memory head over one RocksDB instance.
//!
//! Durability protocol:
//! * `append` applies samples to the in-memory head under the tenant's append lock, enqueues one
//!   operation list (WAL record, rows of series not yet durable, newly sealed chunks, new
//!   exemplars and the deletion of evicted ones) with the group committer, releases the lock and
//!   waits for the synced group write. Sequence numbers are taken under the append lock, so per
//!   tenant the WAL order is the order samples entered memory, and the committer writes entries
//!   in sequence order.
//! * `checkpoint` reads the next sequence number `cp`, then, under each tenant's append lock, queues
//!   the dirty open chunks, then deletes the tenant's WAL records below `cp` behind them. Every
//!   record below `cp` was applied to memory before the snapshot, so its samples are in a queued
//!   chunk or in a sealed chunk queued earlier.
//! * Exemplars are not in the WAL: each is its own row in the `exemplars` column family, written in
//!   the same batch as the samples, and the family holds exactly each tenant's bounded ring.
//! * `open` loads series and exemplars, resumes each series' last persisted chunk (XOR or
//!   histogram) if it is not full, replays the WAL skipping samples at or before a series' newest
//!   persisted timestamp, persists what it rebuilt and checkpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hestia_model::{hash_label_key, Labels, Matcher, Sample, TenantId};
use parking_lot::{Condvar, Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode, Options,
    DB,
};

use crate::commit::{cf, write_batch, Cf, Committer, Op};
use crate::head::{HeadChunk, Index, Last, MemoryChunks, Outcome, Sealed, Series, Value};
use crate::histogram::{Histogram, HistogramAppender};
use crate::idle::{self, IdleSeries};
use crate::keys;
use crate::types::{
    AppendLimits, AppendResult, ChunkData, ChunkEncoding, Exemplar, HeadStats, MetricMetadata,
    MetricType, RejectReason, Rejection, SeriesAppend, SeriesChunks, SeriesExemplars, SeriesLabels,
    TenantStats,
};
use crate::xor::XorAppender;
use crate::StorageError;

const META_FORMAT: &[u8] = b"format";
const META_WAL_FLOOR: &[u8] = b"wal_seq_floor";
const FORMAT_VERSION: u64 = 1;
/// Series handled per append-lock hold during a checkpoint.
pub(crate) const CHECKPOINT_SLICE: usize = 4096;

/// Tuning of a [`Tsdb`].
#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// Samples per chunk before it is sealed (Prometheus: 120); chunks are also sealed at 1 KiB.
    pub chunk_max_samples: u16,
    /// Background checkpoint period; `None` disables the periodic trigger.
    pub checkpoint_interval: Option<Duration>,
    /// Background checkpoint once this many WAL bytes were written since the last one; `None`
    /// disables the size trigger.
    pub checkpoint_wal_bytes: Option<u64>,
    /// fsync every acknowledged write. Only tests and benchmarks should turn this off.
    pub sync_writes: bool,
    /// RocksDB block cache shared by all column families.
    pub block_cache_bytes: usize,
    /// RocksDB's own log size that forces memtable flushes.
    pub max_total_wal_size: u64,
    /// Memtable size per column family.
    pub write_buffer_bytes: usize,
    /// RocksDB flush and compaction threads.
    pub background_jobs: i32,
    /// A series is active while its newest sample is at most this old (wall clock).
    pub active_series_window: Duration,
    /// Exemplars kept per tenant, oldest evicted first (Prometheus' circular exemplar storage);
    /// 0 disables exemplar storage.
    pub max_exemplars_per_tenant: usize,
    /// A series whose newest sample is older than this (wall clock) leaves memory after the next
    /// checkpoint; its data stays queryable from disk and a new sample brings it back. `None`
    /// keeps every series in memory.
    pub series_idle_timeout: Option<Duration>,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        Self {
            chunk_max_samples: 120,
            checkpoint_interval: Some(Duration::from_secs(300)),
            checkpoint_wal_bytes: Some(256 << 20),
            sync_writes: true,
            block_cache_bytes: 256 << 20,
            max_total_wal_size: 1 << 30,
            write_buffer_bytes: 64 << 20,
            background_jobs: 2,
            active_series_window: Duration::from_secs(300),
            max_exemplars_per_tenant: 100_000,
            series_idle_timeout: None,
        }
    }
}

impl TsdbOptions {
    fn validate(&self) -> Result<(), StorageError> {
        if self.chunk_max_samples == 0 {
            return Err(StorageError::InvalidOptions(
                "chunk_max_samples must be at least 1".into(),
            ));
        }
        if self.checkpoint_interval == Some(Duration::ZERO) {
            return Err(StorageError::InvalidOptions(
                "checkpoint_interval must be positive".into(),
            ));
        }
        if self
            .series_idle_timeout
            .is_some_and(|t| t < self.active_series_window)
        {
            return Err(StorageError::InvalidOptions(
                "series_idle_timeout must not be shorter than active_series_window".into(),
            ));
        }
        if self.background_jobs < 1 {
            return Err(StorageError::InvalidOptions(
                "background_jobs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

pub(crate) struct Tenant {
    pub(crate) id: TenantId,
    pub(crate) prefix: Vec<u8>,
    /// Serialises in-memory appends (and checkpoint snapshots) of this tenant; never held
    /// across a disk write.
    pub(crate) append_lock: Mutex<()>,
    pub(crate) index: RwLock<Index>,
    /// (metric family, type) → (help, unit).
    metadata: Mutex<BTreeMap<(String, MetricType), (String, String)>>,
    samples_appended: AtomicU64,
    samples_duplicate: AtomicU64,
    samples_out_of_order: AtomicU64,
    samples_out_of_order_appended: AtomicU64,
    samples_duplicate_timestamp: AtomicU64,
    exemplars: Mutex<ExemplarRing>,
    active: Mutex<ActiveCounts>,
    /// Series on disk only (see `idle.rs`).
    pub(crate) idle_series: AtomicUsize,
    /// Appends below it are refused (`blocks.rs`); raised only under `append_lock`.
    pub(crate) min_valid_time: AtomicI64,
}

/// Active series of one tenant for [`AppendLimits`]: recounted from the index at most every
/// [`ACTIVE_RECOUNT`], incremented for every series created in between (so series that went
/// idle free their slot within one recount).
#[derive(Default)]
struct ActiveCounts {
    total: usize,
    per_metric: HashMap<String, usize>,
    counted_at: Option<Instant>,
}

const ACTIVE_RECOUNT: Duration = Duration::from_secs(10);

impl ActiveCounts {
    fn refresh(&mut self, idx: &Index, active_since: i64) {
        if self
            .counted_at
            .is_some_and(|t| t.elapsed() < ACTIVE_RECOUNT)
        {
            return;
        }
        self.total = 0;
        self.per_metric.clear();
        for s in idx.all_series() {
            if s.max_time() >= active_since {
                self.total += 1;
                let name = s.labels.metric_name().unwrap_or_default();
                *self.per_metric.entry(name.to_string()).or_default() += 1;
            }
        }
        self.counted_at = Some(Instant::now());
    }

    /// Takes a slot for a new series of metric `name`, or says which limit is full.
    fn admit(&mut self, name: &str, limits: &AppendLimits) -> Result<(), RejectReason> {
        if limits.max_series > 0 && self.total >= limits.max_series {
            return Err(RejectReason::SeriesLimit);
        }
        let n = self.per_metric.get(name).copied().unwrap_or(0);
        if limits.max_series_per_metric > 0 && n >= limits.max_series_per_metric {
            return Err(RejectReason::MetricSeriesLimit);
        }
        self.total += 1;
        *self.per_metric.entry(name.to_string()).or_default() += 1;
        Ok(())
    }
}

/// A tenant's exemplars, oldest first, each under its sequence number in the exemplars column
/// family (which holds exactly the ring: evictions delete the keys below the oldest kept one).
#[derive(Default)]
struct ExemplarRing {
    /// (sequence number, series id, exemplar).
    items: VecDeque<(u64, u64, Exemplar)>,
    next_seq: u64,
}

impl Tenant {
    fn new(id: TenantId) -> Self {
        Self {
            prefix: keys::tenant_prefix(&id),
            id,
            append_lock: Mutex::new(()),
            index: RwLock::new(Index::default()),
            metadata: Mutex::new(BTreeMap::new()),
            samples_appended: AtomicU64::new(0),
            samples_duplicate: AtomicU64::new(0),
            samples_out_of_order: AtomicU64::new(0),
            samples_out_of_order_appended: AtomicU64::new(0),
            samples_duplicate_timestamp: AtomicU64::new(0),
            exemplars: Mutex::new(ExemplarRing::default()),
            active: Mutex::new(ActiveCounts::default()),
            idle_series: AtomicUsize::new(0),
            min_valid_time: AtomicI64::new(i64::MIN),
        }
    }

    /// Series selected by `matchers` whose samples overlap `[mint, maxt]`, in memory or idle.
    pub(crate) fn select_series(
        &self,
        db: &DB,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Selected>, StorageError> {
        // Memory first: a series leaving memory after this look-up was in it; one that left
        // before is counted in `idle_series` and has its idle postings written.
        let idx = self.index.read();
        let ids = idx.postings_for_matchers(matchers);
        let mut resident = idx.resolve(&ids);
        drop(idx);
        resident.retain(|s| s.overlaps(mint, maxt));
        let mut out: Vec<Selected> = resident.into_iter().map(Selected::Resident).collect();
        if self.idle_series.load(Ordering::Acquire) > 0 {
            let skip: HashSet<u64> = ids.into_iter().collect();
            let idle = idle::select(db, &self.prefix, matchers, mint, maxt, &skip)?;
            out.extend(idle.into_iter().map(Selected::Idle));
        }
        Ok(out)
    }
}

/// A series a query found: in memory, or idle (on disk only).
pub(crate) enum Selected {
    Resident(Arc<Series>),
    Idle(IdleSeries),
}

impl Selected {
    pub(crate) fn id(&self) -> u64 {
        match self {
            Selected::Resident(s) => s.id,
            Selected::Idle(s) => s.id,
        }
    }

    pub(crate) fn labels(&self) -> &Labels {
        match self {
            Selected::Resident(s) => &s.labels,
            Selected::Idle(s) => &s.labels,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) db: DB,
    opts: TsdbOptions,
    pub(crate) tenants: RwLock<HashMap<TenantId, Arc<Tenant>>>,
    pub(crate) commit: Committer,
    next_series_id: AtomicU64,
    wal_bytes: AtomicU64,
    checkpoints: AtomicU64,
    pub(crate) checkpoint_lock: Mutex<()>,
    closed: AtomicBool,
    bg_stop: Mutex<bool>,
    bg_cv: Condvar,
}

/// The ingester's time-series database. Cheap to share (`Send + Sync`); all methods block, so
/// async callers use `spawn_blocking`.
pub struct Tsdb {
    pub(crate) inner: Arc<Inner>,
    bg: Mutex<Option<JoinHandle<()>>>,
}

impl Tsdb {
    /// Opens (or creates) the database at `path` and recovers the head from it.
    pub fn open(path: impl AsRef<Path>, opts: TsdbOptions) -> Result<Self, StorageError> {
        opts.validate()?;
        let started = Instant::now();
        std::fs::create_dir_all(path.as_ref())?;
        let db = open_rocksdb(path.as_ref(), &opts)?;
        let meta = cf(&db, Cf::Meta)?;
        match db.get_cf(meta, META_FORMAT)? {
            None => db.put_cf(meta, META_FORMAT, FORMAT_VERSION.to_be_bytes())?,
            Some(v) if v.as_slice() == FORMAT_VERSION.to_be_bytes() => {}
            Some(_) => {
                return Err(StorageError::corrupt(
                    "database",
                    "unsupported format version",
                ));
            }
        }
        let wal_floor = db
            .get_cf(meta, META_WAL_FLOOR)?
            .and_then(|v| keys::read_u64(&v))
            .unwrap_or(0);
        let inner = Inner {
            commit: Committer::new(0, opts.sync_writes),
            db,
            opts,
            tenants: RwLock::new(HashMap::new()),
            next_series_id: AtomicU64::new(1),
            wal_bytes: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            checkpoint_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            bg_stop: Mutex::new(false),
            bg_cv: Condvar::new(),
        };
        let inner = Arc::new(recover(inner, wal_floor)?);
        let series: usize = inner
            .tenants
            .read()
            .values()
            .map(|t| t.index.read().len())
            .sum();
        tracing::info!(
            series,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tsdb opened"
        );
        let bg = if inner.opts.checkpoint_interval.is_some()
            || inner.opts.checkpoint_wal_bytes.is_some()
        {
            let bg_inner = inner.clone();
            Some(
                std::thread::Builder::new()
                    .name("tsdb-checkpoint".into())
                    .spawn(move || bg_inner.background())?,
            )
        } else {
            None
        };
        Ok(Self {
            inner,
            bg: Mutex::new(bg),
        })
    }

    /// Appends samples; returns once every accepted sample is durable.
    ///
    /// Series are created as needed. Per series, samples must be newer than the newest stored
    /// one: older samples are rejected as out of order, a repeat of the newest sample is accepted
    /// as a duplicate, and a different value at the newest timestamp is rejected. Rejections do
    /// not affect other samples of the call.
    pub fn append<L: SeriesLabels>(
        &self,
        tenant: &TenantId,
        batch: &[SeriesAppend<L>],
    ) -> Result<AppendResult, StorageError> {
        self.inner.append(tenant, batch, &AppendLimits::default())
    }

    /// [`Tsdb::append`] with caps on new series: a new series over `limits` is refused with all
    /// its samples (one [`Rejection`] per series, reason [`RejectReason::SeriesLimit`] or
    /// [`RejectReason::MetricSeriesLimit`]); the rest of the batch is appended.
    pub fn append_limited<L: SeriesLabels>(
        &self,
        tenant: &TenantId,
        batch: &[SeriesAppend<L>],
        limits: &AppendLimits,
    ) -> Result<AppendResult, StorageError> {
        self.inner.append(tenant, batch, limits)
    }

    /// Removes every trace of `tenant` (series, chunks, WAL, metadata, exemplars) from memory
    /// and, durably, from disk. Idempotent; true if the tenant had anything in memory. Writes for
    /// the tenant must have stopped (a deleted workspace is refused upstream first).
    pub fn delete_tenant(&self, tenant: &TenantId) -> Result<bool, StorageError> {
        self.inner.delete_tenant(tenant)
    }

    /// Persists every open chunk that has unpersisted samples, then drops the WAL behind it.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.inner.checkpoint()
    }

    /// Takes the series idle for `TsdbOptions::series_idle_timeout` out of memory (they stay
    /// queryable from disk, and a new sample brings one back); returns how many left. The
    /// background thread runs it after each checkpoint.
    pub fn evict_idle(&self) -> Result<usize, StorageError> {
        self.inner.evict_idle()
    }

    /// Chunks of the matching series overlapping `[mint, maxt]`, series sorted by labels.
    pub fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesChunks>, StorageError> {
        self.inner.select(tenant, matchers, mint, maxt, false)
    }

    /// Like [`Tsdb::select`] for readers of each series' newest sample at or before `maxt` only
    /// (instant selectors): a series whose newest sample is a float in `[mint, maxt]` comes as
    /// that one sample, any other with its chunks overlapping the range.
    pub fn select_latest(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesChunks>, StorageError> {
        self.inner.select(tenant, matchers, mint, maxt, true)
    }

    /// Exemplars of the matching series with timestamps in `[mint, maxt]`, series sorted by
    /// labels, exemplars in time order.
    pub fn exemplars(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesExemplars>, StorageError> {
        let Some(t) = self.inner.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let selected = t.select_series(&self.inner.db, matchers, i64::MIN, i64::MAX)?;
        let series: HashMap<u64, &Labels> = selected.iter().map(|s| (s.id(), s.labels())).collect();
        let mut by_series: BTreeMap<u64, Vec<Exemplar>> = BTreeMap::new();
        for (_, sid, e) in t.exemplars.lock().items.iter() {
            if e.t >= mint && e.t <= maxt && series.contains_key(sid) {
                by_series.entry(*sid).or_default().push(e.clone());
            }
        }
        let mut out: Vec<SeriesExemplars> = by_series
            .into_iter()
            .filter_map(|(sid, exemplars)| {
                series.get(&sid).map(|labels| SeriesExemplars {
                    labels: (*labels).clone(),
                    exemplars,
                })
            })
            .collect();
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Label sets of the matching series with samples in `[mint, maxt]`, sorted.
    pub fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let Some(t) = self.inner.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Labels> = t
            .select_series(&self.inner.db, matchers, mint, maxt)?
            .iter()
            .map(|s| s.labels().clone())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Sorted label names of the matching series (all series when `matchers` is empty) with
    /// samples in `[mint, maxt]`.
    pub fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let Some(t) = self.inner.tenant(tenant) else {
            return Ok(Vec::new());
        };
        if matchers.is_empty() && t.idle_series.load(Ordering::Acquire) == 0 {
            let idx = t.index.read();
            let mut names: Vec<String> = idx
                .label_names()
                .filter(|(_, values)| {
                    values
                        .values()
                        .flatten()
                        .any(|id| idx.by_id(*id).is_some_and(|s| s.overlaps(mint, maxt)))
                })
                .map(|(n, _)| n.clone())
                .collect();
            names.sort_unstable();
            return Ok(names);
        }
        let mut names = BTreeSet::new();
        for s in t.select_series(&self.inner.db, matchers, mint, maxt)? {
            for l in s.labels() {
                if !names.contains(&l.name) {
                    names.insert(l.name.clone());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Sorted values of label `name` among the matching series (all series when `matchers` is
    /// empty) with samples in `[mint, maxt]`.
    pub fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let Some(t) = self.inner.tenant(tenant) else {
            return Ok(Vec::new());
        };
        if matchers.is_empty() {
            let idx = t.index.read();
            let mut values: HashSet<String> = idx
                .values(name)
                .into_iter()
                .flatten()
                .filter(|(_, ids)| {
                    ids.iter()
                        .any(|id| idx.by_id(*id).is_some_and(|s| s.overlaps(mint, maxt)))
                })
                .map(|(v, _)| v.clone())
                .collect();
            drop(idx);
            if t.idle_series.load(Ordering::Acquire) > 0 {
                let prefix = &t.prefix;
                values.extend(idle::label_values(
                    &self.inner.db,
                    prefix,
                    name,
                    mint,
                    maxt,
                )?);
            }
            let mut values: Vec<String> = values.into_iter().collect();
            values.sort_unstable();
            return Ok(values);
        }
        let mut values = BTreeSet::new();
        for s in t.select_series(&self.inner.db, matchers, mint, maxt)? {
            if let Some(v) = s.labels().get(name) {
                if !values.contains(v) {
                    values.insert(v.to_string());
                }
            }
        }
        Ok(values.into_iter().collect())
    }

    /// Stores metric metadata, keeping the latest help and unit per metric family and type.
    /// Metadata is written without fsync: it survives a process crash, not a power loss.
    pub fn put_metadata(
        &self,
        tenant: &TenantId,
        metadata: &[MetricMetadata],
    ) -> Result<(), StorageError> {
        self.inner.put_metadata(tenant, metadata, 0).map(|_| ())
    }

    /// [`Tsdb::put_metadata`] keeping at most `max_metrics` metric families with metadata per
    /// tenant (0: no limit); entries of new families beyond it are refused. Returns how many.
    pub fn put_metadata_limited(
        &self,
        tenant: &TenantId,
        metadata: &[MetricMetadata],
        max_metrics: usize,
    ) -> Result<usize, StorageError> {
        self.inner.put_metadata(tenant, metadata, max_metrics)
    }

    /// Metadata sorted by metric family name, optionally of one metric, with at most `limit`
    /// metric families and `limit_per_metric` entries per family.
    pub fn metadata(
        &self,
        tenant: &TenantId,
        metric: Option<&str>,
        limit: Option<usize>,
        limit_per_metric: Option<usize>,
    ) -> Result<Vec<MetricMetadata>, StorageError> {
        let Some(t) = self.inner.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let md = t.metadata.lock();
        let mut out = Vec::new();
        let mut families = 0usize;
        let mut current: Option<&str> = None;
        let mut in_family = 0usize;
        let range = match metric {
            Some(m) => (
                Bound::Included((m.to_string(), MetricType::Counter)),
                Bound::Included((m.to_string(), MetricType::Unknown)),
            ),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        for ((name, kind), (help, unit)) in md.range(range) {
            if current != Some(name.as_str()) {
                if limit.is_some_and(|l| families >= l) {
                    break;
                }
                families += 1;
                in_family = 0;
                current = Some(name.as_str());
            }
            if limit_per_metric.is_some_and(|l| in_family >= l) {
                continue;
            }
            in_family += 1;
            out.push(MetricMetadata {
                metric_family_name: name.clone(),
                kind: *kind,
                help: help.clone(),
                unit: unit.clone(),
            });
        }
        Ok(out)
    }

    /// Statistics of one tenant, if it has data.
    pub fn tenant_stats(&self, tenant: &TenantId) -> Option<TenantStats> {
        let since = active_since(self.inner.opts.active_series_window);
        self.inner.tenant(tenant).map(|t| stats_of(&t, since))
    }

    /// Statistics of every tenant, sorted by tenant.
    pub fn head_stats(&self) -> HeadStats {
        let tenants: Vec<Arc<Tenant>> = self.inner.tenants.read().values().cloned().collect();
        let since = active_since(self.inner.opts.active_series_window);
        let mut tenants: Vec<TenantStats> = tenants.iter().map(|t| stats_of(t, since)).collect();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        HeadStats {
            series: tenants.iter().map(|t| t.series).sum(),
            samples_appended: tenants.iter().map(|t| t.samples_appended).sum(),
            tenants,
            wal_bytes: self.inner.wal_bytes.load(Ordering::Relaxed),
            checkpoints: self.inner.checkpoints.load(Ordering::Relaxed),
        }
    }

    /// Refuses further appends, checkpoints, stops the background thread and flushes RocksDB.
    /// Reads keep working until the `Tsdb` is dropped.
    pub fn close(&self) -> Result<(), StorageError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.stop_background();
        self.inner.checkpoint()?;
        for c in Cf::ALL {
            self.inner.db.flush_cf(cf(&self.inner.db, c)?)?;
        }
        Ok(())
    }

    fn stop_background(&self) {
        *self.inner.bg_stop.lock() = true;
        self.inner.bg_cv.notify_all();
        if let Some(h) = self.bg.lock().take() {
            if h.join().is_err() {
                tracing::error!("tsdb checkpoint thread panicked");
            }
        }
    }
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        self.stop_background();
    }
}

/// The oldest newest-sample timestamp (ms) of an active series.
type MetadataMap = BTreeMap<(String, MetricType), (String, String)>;

fn has_family(md: &MetadataMap, name: &str) -> bool {
    md.range((name.to_string(), MetricType::Counter)..=(name.to_string(), MetricType::Unknown))
        .next()
        .is_some()
}

fn count_families(md: &MetadataMap) -> usize {
    let mut n = 0;
    let mut last: Option<&str> = None;
    for (name, _) in md.keys() {
        if last != Some(name.as_str()) {
            n += 1;
            last = Some(name.as_str());
        }
    }
    n
}

fn active_since(window: Duration) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    now.saturating_sub(window.as_millis() as i64)
}

fn stats_of(t: &Tenant, active_since: i64) -> TenantStats {
    let idx = t.index.read();
    TenantStats {
        tenant: t.id.clone(),
        series: idx.len(),
        idle_series: t.idle_series.load(Ordering::Relaxed),
        active_series: idx.count_where(|s| s.max_time() >= active_since),
        samples_appended: t.samples_appended.load(Ordering::Relaxed),
        samples_duplicate: t.samples_duplicate.load(Ordering::Relaxed),
        samples_out_of_order: t.samples_out_of_order.load(Ordering::Relaxed),
        samples_out_of_order_appended: t.samples_out_of_order_appended.load(Ordering::Relaxed),
        samples_duplicate_timestamp: t.samples_duplicate_timestamp.load(Ordering::Relaxed),
    }
}

fn open_rocksdb(path: &Path, opts: &TsdbOptions) -> Result<DB, StorageError> {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_total_wal_size(opts.max_total_wal_size);
    db_opts.set_max_background_jobs(opts.background_jobs);
    db_opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    db_opts.set_bytes_per_sync(1 << 20);
    db_opts.set_keep_log_file_num(4);
    let cache = Cache::new_lru_cache(opts.block_cache_bytes);
    let cf_opts = |compression: DBCompressionType| {
        let mut bb = BlockBasedOptions::default();
        bb.set_block_cache(&cache);
        bb.set_cache_index_and_filter_blocks(true);
        let mut o = Options::default();
        o.set_block_based_table_factory(&bb);
        o.set_compression_type(compression);
        o.set_write_buffer_size(opts.write_buffer_bytes);
        o.set_level_compaction_dynamic_level_bytes(true);
        o
    };
    let descriptors = Cf::ALL.iter().map(|c| {
        // Chunks and float-heavy WAL records barely compress; labels and help text do.
        let compression = match c {
            Cf::Chunks | Cf::OooChunks | Cf::Wal => DBCompressionType::None,
            Cf::Series | Cf::Metadata | Cf::Meta | Cf::Exemplars | Cf::Idle | Cf::Blocks => {
                DBCompressionType::Lz4
            }
        };
        ColumnFamilyDescriptor::new(c.name(), cf_opts(compression))
    });
    Ok(DB::open_cf_descriptors(&db_opts, path, descriptors)?)
}

/// Restores a series' time range, newest value and open chunk from its persisted in-order
/// chunks (at recovery, and when an idle series comes back).
fn load_chunks(
    it: &mut rocksdb::DBRawIterator<'_>,
    prefix: &[u8],
    s: &Series,
    max: u16,
) -> Result<(), StorageError> {
    let sp = keys::series_prefix(prefix, s.id);
    it.seek(keys::chunk_key(prefix, s.id, i64::MIN));
    let first_min = match it.key() {
        Some(k) if k.starts_with(&sp) => keys::parse_chunk_key_rest(&k[prefix.len()..])?.1,
        _ => return Ok(()),
    };
    it.seek_for_prev(keys::chunk_key(prefix, s.id, i64::MAX));
    let (Some(k), Some(v)) = (it.key(), it.value()) else {
        return Ok(());
    };
    if !k.starts_with(&sp) {
        return Ok(());
    }
    let (encoding, max_t, data) = keys::decode_chunk_value(v)?;
    let mut st = s.state.lock();
    let resumed = match encoding {
        ChunkEncoding::Xor => {
            XorAppender::resume(data).map(|a| (Last::Float(a.last_value_bits()), HeadChunk::Xor(a)))
        }
        ChunkEncoding::Histogram => HistogramAppender::resume(data).map(|a| {
            let last = Last::Histogram(Box::new(a.last().cloned().unwrap_or_default()));
            (last, HeadChunk::Histogram(a))
        }),
    };
    match resumed {
        Ok((last, head)) => {
            s.set_recovered(&mut st, first_min, max_t, last);
            if !head.is_empty() && !head.is_full(max) {
                st.head_persisted = head.num_samples();
                st.head = Some(head);
            }
        }
        Err(e) => {
            // Keep the series usable: new samples start a new chunk after max_t.
            tracing::error!(series = s.id, error = %e, "corrupt last chunk; not resuming it");
            s.set_recovered(&mut st, first_min, max_t, Last::Float(f64::NAN.to_bits()));
        }
    }
    it.status()?;
    Ok(())
}

/// Restores a series' out-of-order chunk numbers and open out-of-order chunk from disk.
fn load_ooo_chunks(db: &DB, prefix: &[u8], s: &Series) -> Result<(), StorageError> {
    let sp = keys::series_prefix(prefix, s.id);
    let mut it = db.raw_iterator_cf(cf(db, Cf::OooChunks)?);
    it.seek(&sp);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(&sp) {
            break;
        }
        let (_, no) = keys::parse_ooo_chunk_key_rest(&k[prefix.len()..])?;
        let (min_t, _, data) = keys::decode_ooo_chunk_value(v)?;
        s.recover_out_of_order(no, min_t, data);
        it.next();
    }
    it.status()?;
    Ok(())
}

/// Brings idle series `sid` back into memory during recovery; returns the deletes of its idle
/// keys, or `None` if its row is missing.
fn revive_at_recovery(
    db: &DB,
    t: &Tenant,
    sid: u64,
    max: u16,
) -> Result<Option<Vec<Op>>, StorageError> {
    let Some(row) = db.get_pinned_cf(cf(db, Cf::Series)?, keys::series_prefix(&t.prefix, sid))?
    else {
        return Ok(None);
    };
    let labels = keys::decode_labels(&row)?;
    let hash = labels.hash64();
    let day = idle::day_of(db, &t.prefix, sid)?;
    let s = Arc::new(Series::new(sid, labels, true));
    load_chunks(
        &mut db.raw_iterator_cf(cf(db, Cf::Chunks)?),
        &t.prefix,
        &s,
        max,
    )?;
    load_ooo_chunks(db, &t.prefix, &s)?;
    let ops = idle::revive_ops(&t.prefix, sid, hash, &s.labels, day);
    t.index.write().insert(hash, s);
    t.idle_series.fetch_sub(1, Ordering::Relaxed);
    Ok(Some(ops))
}

/// Rebuilds the head from the series, chunks and WAL column families.
fn recover(mut inner: Inner, wal_floor: u64) -> Result<Inner, StorageError> {
    let db = &inner.db;
    let max = inner.opts.chunk_max_samples;

    // Series and postings; idle series stay on disk.
    let idle = idle::all(db)?;
    let mut max_sid = 0u64;
    let mut it = db.raw_iterator_cf(cf(db, Cf::Series)?);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (tenant, rest) = keys::split_tenant(k)?;
        let sid =
            keys::read_u64(rest).ok_or_else(|| StorageError::corrupt("series key", "too short"))?;
        max_sid = max_sid.max(sid);
        let t = inner.tenant_or_create(&tenant);
        if idle.get(&t.prefix).is_some_and(|ids| ids.contains(&sid)) {
            t.idle_series.fetch_add(1, Ordering::Relaxed);
            it.next();
            continue;
        }
        let labels = keys::decode_labels(v)?;
        let hash = labels.hash64();
        t.index
            .write()
            .insert(hash, Arc::new(Series::new(sid, labels, true)));
        it.next();
    }
    it.status()?;
    drop(it);
    inner.next_series_id = AtomicU64::new(max_sid + 1);

    // Time ranges and open chunks.
    let tenants: Vec<Arc<Tenant>> = inner.tenants.read().values().cloned().collect();
    let mut it = db.raw_iterator_cf(cf(db, Cf::Chunks)?);
    for t in &tenants {
        let all = t.index.read().all_series();
        for s in all {
            load_chunks(&mut it, &t.prefix, &s, max)?;
        }
    }
    it.status()?;
    drop(it);

    // Out-of-order chunks: each series' next chunk number; its last chunk reopens if not full.
    let mut it = db.raw_iterator_cf(cf(db, Cf::OooChunks)?);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (tenant, rest) = keys::split_tenant(k)?;
        let (sid, no) = keys::parse_ooo_chunk_key_rest(rest)?;
        let (min_t, _, data) = keys::decode_ooo_chunk_value(v)?;
        if let Some(s) = inner
            .tenant(&tenant)
            .and_then(|t| t.index.read().by_id(sid).cloned())
        {
            s.recover_out_of_order(no, min_t, data);
        }
        it.next();
    }
    it.status()?;
    drop(it);

    // Metadata.
    let mut it = db.raw_iterator_cf(cf(db, Cf::Metadata)?);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (tenant, rest) = keys::split_tenant(k)?;
        let mut d = keys::Decoder::new(rest, "metadata key");
        let name = d.string()?;
        let kind = MetricType::from_u8(d.u8()?)
            .ok_or_else(|| StorageError::corrupt("metadata key", "unknown metric type"))?;
        let mut d = keys::Decoder::new(v, "metadata value");
        let (help, unit) = (d.string()?, d.string()?);
        inner
            .tenant_or_create(&tenant)
            .metadata
            .lock()
            .insert((name, kind), (help, unit));
        it.next();
    }
    it.status()?;
    drop(it);

    // The block shipper's min valid times.
    crate::blocks::recover_min_valid_times(&inner)?;

    // Exemplars, oldest first; a smaller limit than before drops the oldest.
    let mut it = db.raw_iterator_cf(cf(db, Cf::Exemplars)?);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (tenant, rest) = keys::split_tenant(k)?;
        let seq = keys::read_u64(rest)
            .ok_or_else(|| StorageError::corrupt("exemplar key", "too short"))?;
        let (sid, e) = keys::decode_exemplar(v)?;
        let t = inner.tenant_or_create(&tenant);
        if let Some(s) = t.index.read().by_id(sid) {
            let mut st = s.state.lock();
            st.last_exemplar_t = st.last_exemplar_t.max(e.t);
        }
        let mut ring = t.exemplars.lock();
        ring.next_seq = seq + 1;
        ring.items.push_back((seq, sid, e));
        while ring.items.len() > inner.opts.max_exemplars_per_tenant {
            ring.items.pop_front();
        }
        it.next();
    }
    it.status()?;
    drop(it);

    // WAL replay.
    let mut max_seq = None;
    let mut replayed = 0u64;
    let mut sealed_ops = Vec::new();
    let mut sealed = Sealed::default();
    let mut it = db.raw_iterator_cf(cf(db, Cf::Wal)?);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (tenant, rest) = keys::split_tenant(k)?;
        let seq =
            keys::read_u64(rest).ok_or_else(|| StorageError::corrupt("wal key", "too short"))?;
        max_seq = max_seq.max(Some(seq));
        let t = inner.tenant_or_create(&tenant);
        // A series that went idle after this record was written (its samples are in chunks)
        // comes back: the record may hold samples that arrived while it was leaving memory.
        let mut back = Vec::new();
        keys::decode_wal_record(v, |(sid, ..)| {
            let is_idle = idle.get(&t.prefix).is_some_and(|ids| ids.contains(&sid));
            if is_idle && t.index.read().by_id(sid).is_none() {
                back.push(sid);
            }
        })?;
        for sid in back {
            if let Some(ops) = revive_at_recovery(db, &t, sid, max)? {
                sealed_ops.extend(ops);
            }
        }
        let idx = t.index.read();
        let mut err = None;
        keys::decode_wal_record(v, |(sid, samples, hists, ooo)| {
            let Some(s) = idx.by_id(sid) else {
                tracing::warn!(tenant = %tenant, series = sid, "WAL references unknown series");
                return;
            };
            let mut st = s.state.lock();
            let values = samples
                .iter()
                .map(|x| (x.t, Value::Float(x.v)))
                .chain(hists.iter().map(|(t, h)| (*t, Value::Histogram(h))));
            for (ts, v) in values {
                match s.append(&mut st, ts, v, max, 0, &mut sealed) {
                    Ok(Outcome::Appended) => replayed += 1,
                    Ok(_) => {}
                    Err(e) => err = Some(e),
                }
            }
            // Accepted out of order once, so re-applied whatever the window is now.
            for x in ooo {
                if s.append_out_of_order(&mut st, x.t, x.v, &mut sealed)
                    == Outcome::AppendedOutOfOrder
                {
                    replayed += 1;
                }
            }
            sealed_ops.extend(sealed_chunk_ops(&t.prefix, sid, &mut sealed));
            st.sealed.clear();
            st.ooo_sealed.clear();
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        drop(idx);
        it.next();
    }
    it.status()?;
    drop(it);
    let next_seq = wal_floor.max(max_seq.map_or(0, |s| s + 1));
    inner.commit = Committer::new(next_seq, inner.opts.sync_writes);
    if !sealed_ops.is_empty() {
        write_batch(&inner.db, &sealed_ops, false)?;
    }
    tracing::info!(
        samples = replayed,
        chunks_sealed = sealed_ops.len(),
        "WAL replayed"
    );
    // Persist the rebuilt heads and drop the replayed WAL.
    inner.checkpoint()?;
    Ok(inner)
}

impl Inner {
    pub(crate) fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.tenants.read().get(id).cloned()
    }

    pub(crate) fn tenant_or_create(&self, id: &TenantId) -> Arc<Tenant> {
        if let Some(t) = self.tenant(id) {
            return t;
        }
        self.tenants
            .write()
            .entry(id.clone())
            .or_insert_with(|| Arc::new(Tenant::new(id.clone())))
            .clone()
    }

    fn delete_tenant(&self, id: &TenantId) -> Result<bool, StorageError> {
        self.check_writable()?;
        // No checkpoint may persist chunks of the tenant behind the delete.
        let _checkpoint = self.checkpoint_lock.lock();
        let removed = self.tenants.write().remove(id);
        let _append = removed.as_ref().map(|t| t.append_lock.lock());
        let from = keys::tenant_prefix(id);
        let mut to = from.clone();
        // The prefix is a length byte and ASCII: bumping the last byte bounds exactly its keys.
        if let Some(last) = to.last_mut() {
            *last += 1;
        }
        let seq = self.commit.enqueue(|_| {
            [
                Cf::Wal,
                Cf::Series,
                Cf::Chunks,
                Cf::OooChunks,
                Cf::Metadata,
                Cf::Exemplars,
                Cf::Idle,
                Cf::Blocks,
            ]
            .into_iter()
            .map(|c| Op::DeleteRange(c, from.clone(), to.clone()))
            .collect()
        })?;
        self.commit.wait(&self.db, seq)?;
        Ok(removed.is_some())
    }

    pub(crate) fn check_writable(&self) -> Result<(), StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        if let Some(e) = self.commit.failure() {
            return Err(e);
        }
        Ok(())
    }

    fn append<L: SeriesLabels>(
        &self,
        tenant: &TenantId,
        batch: &[SeriesAppend<L>],
        limits: &AppendLimits,
    ) -> Result<AppendResult, StorageError> {
        self.check_writable()?;
        let mut result = AppendResult::default();
        if !batch.iter().any(SeriesAppend::has_data) {
            return Ok(result);
        }
        let t = self.tenant_or_create(tenant);

        // Resolve series by label key; create missing ones under the index write lock.
        let mut key_bytes = Vec::with_capacity(batch.len() * 128);
        let mut key_ends = Vec::with_capacity(batch.len());
        for sa in batch {
            sa.labels.write_key(&mut key_bytes);
            key_ends.push(key_bytes.len());
        }
        let key = |i: usize| &key_bytes[i.checked_sub(1).map_or(0, |p| key_ends[p])..key_ends[i]];
        let hashes: Vec<u64> = (0..batch.len()).map(|i| hash_label_key(key(i))).collect();
        let mut refs: Vec<Option<Arc<Series>>> = {
            let idx = t.index.read();
            batch
                .iter()
                .zip(&hashes)
                .enumerate()
                .map(|(i, (sa, h))| {
                    if sa.has_data() {
                        idx.get(*h, key(i)).cloned()
                    } else {
                        None
                    }
                })
                .collect()
        };
        // Deletes of the idle keys of series this call brings back into memory, and the series
        // whose row is written (or, for those, found) by it.
        let mut revive: Vec<Op> = Vec::new();
        let mut rows: Vec<Arc<Series>> = Vec::new();
        if refs
            .iter()
            .zip(batch)
            .any(|(r, sa)| r.is_none() && sa.has_data())
        {
            let mut chunk_it = None;
            let mut idx = t.index.write();
            let mut active = limits.caps_series().then(|| {
                let mut a = t.active.lock();
                a.refresh(&idx, active_since(self.opts.active_series_window));
                a
            });
            for (i, ((r, sa), h)) in refs.iter_mut().zip(batch).zip(&hashes).enumerate() {
                if r.is_some() || !sa.has_data() {
                    continue;
                }
                if let Some(s) = idx.get(*h, key(i)) {
                    *r = Some(s.clone());
                    continue;
                }
                if let Some(a) = active.as_mut() {
                    let name = sa.labels.metric_name().unwrap_or_default();
                    if let Err(reason) = a.admit(name, limits) {
                        let first = sa.samples.iter().map(|x| x.t);
                        let first = first.chain(sa.histograms.iter().map(|(t, _)| *t)).min();
                        result.rejected.push(Rejection {
                            series_index: i,
                            reason,
                            count: sa.samples.len() + sa.histograms.len(),
                            first_timestamp: first.unwrap_or_default(),
                        });
                        continue;
                    }
                }
                let idle = if t.idle_series.load(Ordering::Acquire) > 0 {
                    idle::find(&self.db, &t.prefix, *h, key(i))?
                } else {
                    None
                };
                let s = match idle {
                    Some((id, day)) => {
                        // Not evictable (row_durable false) until the deletes below are written.
                        let s = Arc::new(Series::new(id, sa.labels.to_labels(), false));
                        let it = match &mut chunk_it {
                            Some(it) => it,
                            None => {
                                chunk_it.insert(self.db.raw_iterator_cf(cf(&self.db, Cf::Chunks)?))
                            }
                        };
                        load_chunks(it, &t.prefix, &s, self.opts.chunk_max_samples)?;
                        load_ooo_chunks(&self.db, &t.prefix, &s)?;
                        revive.extend(idle::revive_ops(&t.prefix, id, *h, &s.labels, day));
                        t.idle_series.fetch_sub(1, Ordering::AcqRel);
                        rows.push(s.clone());
                        s
                    }
                    None => {
                        let id = self.next_series_id.fetch_add(1, Ordering::Relaxed);
                        result.series_created += 1;
                        Arc::new(Series::new(id, sa.labels.to_labels(), false))
                    }
                };
                idx.insert(*h, s.clone());
                *r = Some(s);
            }
        }

        // Apply in memory and queue the write, under the append lock.
        let max = self.opts.chunk_max_samples;
        let max_exemplars = self.opts.max_exemplars_per_tenant;
        let mut ops: Vec<Op> = revive;
        let mut body = Vec::with_capacity(batch.len() * 16);
        let mut entries = 0u64;
        let ooo_window = limits.out_of_order_window_ms;
        let mut accepted: Vec<Sample> = Vec::new();
        let mut accepted_h: Vec<(i64, &Histogram)> = Vec::new();
        let mut accepted_ooo: Vec<Sample> = Vec::new();
        let mut new_chunks = Sealed::default();
        // Series with chunks sealed by this call, pending in memory until the write completes.
        let mut sealed: Vec<(Arc<Series>, Vec<i64>, Vec<u32>)> = Vec::new();
        let (mut dup, mut ooo, mut dup_ts, mut ooo_appended) = (0u64, 0u64, 0u64, 0u64);
        // An append error cannot happen with valid options, but if it did, what was applied so far
        // must still be written, so it is reported only after the commit.
        let mut failure: Option<StorageError> = None;
        let guard = t.append_lock.lock();
        // Raised only under the append lock: no sample below it enters memory after it was set.
        let min_valid = t.min_valid_time.load(Ordering::Acquire);
        let mut ring = t.exemplars.lock();
        for (i, (sa, r)) in batch.iter().zip(&refs).enumerate() {
            let Some(s) = r else { continue };
            accepted.clear();
            accepted_h.clear();
            accepted_ooo.clear();
            let mut st = s.state.lock();
            let mut rejected: [Option<Rejection>; 4] = [None, None, None, None];
            let values = sa
                .samples
                .iter()
                .map(|x| (x.t, Value::Float(x.v)))
                .chain(sa.histograms.iter().map(|(t, h)| (*t, Value::Histogram(h))));
            for (ts, v) in values {
                if ts < min_valid {
                    match &mut rejected[3] {
                        Some(r) => r.count += 1,
                        slot => {
                            *slot = Some(Rejection {
                                series_index: i,
                                reason: RejectReason::OutOfBounds,
                                count: 1,
                                first_timestamp: ts,
                            })
                        }
                    }
                    continue;
                }
                let outcome = match s.append(&mut st, ts, v, max, ooo_window, &mut new_chunks) {
                    Ok(o) => o,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                let reason = match outcome {
                    Outcome::Appended => {
                        match v {
                            Value::Float(f) => accepted.push(Sample::new(ts, f)),
                            Value::Histogram(h) => accepted_h.push((ts, h)),
                        }
                        continue;
                    }
                    Outcome::AppendedOutOfOrder => {
                        if let Value::Float(f) = v {
                            accepted_ooo.push(Sample::new(ts, f));
                        }
                        continue;
                    }
                    Outcome::Duplicate => {
                        dup += 1;
                        continue;
                    }
                    Outcome::OutOfOrder => {
                        ooo += 1;
                        (0, RejectReason::OutOfOrder)
                    }
                    Outcome::TooOld => {
                        ooo += 1;
                        (1, RejectReason::TooOld)
                    }
                    Outcome::DuplicateTimestamp => {
                        dup_ts += 1;
                        (2, RejectReason::DuplicateTimestamp)
                    }
                };
                match &mut rejected[reason.0] {
                    Some(r) => r.count += 1,
                    slot => {
                        *slot = Some(Rejection {
                            series_index: i,
                            reason: reason.1,
                            count: 1,
                            first_timestamp: ts,
                        })
                    }
                }
            }
            if !(new_chunks.in_order.is_empty() && new_chunks.out_of_order.is_empty()) {
                let in_order = new_chunks.in_order.iter().map(|c| c.min_t).collect();
                let out_of_order = new_chunks.out_of_order.iter().map(|c| c.0).collect();
                sealed.push((s.clone(), in_order, out_of_order));
                ops.extend(sealed_chunk_ops(&t.prefix, s.id, &mut new_chunks));
            }
            let mut exemplars = 0usize;
            for e in sa.exemplars.iter().filter(|_| max_exemplars > 0) {
                if e.t <= st.last_exemplar_t {
                    // An exact re-send is not an error; anything else older is out of order.
                    if e.t < st.last_exemplar_t {
                        result.exemplars_out_of_order += 1;
                    }
                    continue;
                }
                st.last_exemplar_t = e.t;
                let seq = ring.next_seq;
                ring.next_seq += 1;
                ops.push(Op::Put(
                    Cf::Exemplars,
                    keys::with_u64(&t.prefix, seq),
                    keys::encode_exemplar(s.id, e),
                ));
                ring.items.push_back((seq, s.id, e.clone()));
                exemplars += 1;
            }
            result.exemplars_appended += exemplars;
            drop(st);
            result.rejected.extend(rejected.into_iter().flatten());
            let stored = !(accepted.is_empty() && accepted_h.is_empty() && accepted_ooo.is_empty());
            if stored {
                result.samples_appended += accepted.len() + accepted_h.len() + accepted_ooo.len();
                ooo_appended += accepted_ooo.len() as u64;
                keys::put_wal_series(&mut body, s.id, &accepted, &accepted_h, &accepted_ooo);
                entries += 1;
            }
            if (stored || exemplars > 0) && !s.row_durable.load(Ordering::Acquire) {
                ops.push(Op::Put(
                    Cf::Series,
                    keys::series_prefix(&t.prefix, s.id),
                    keys::encode_labels(&s.labels),
                ));
                rows.push(s.clone());
            }
            if failure.is_some() {
                break;
            }
        }
        let excess = ring.items.len().saturating_sub(max_exemplars);
        if excess > 0 {
            ring.items.drain(..excess);
            let keep = ring.items.front().map_or(ring.next_seq, |e| e.0);
            ops.push(Op::DeleteRange(
                Cf::Exemplars,
                keys::with_u64(&t.prefix, 0),
                keys::with_u64(&t.prefix, keep),
            ));
        }
        drop(ring);
        result.samples_duplicate = dup as usize;
        result.samples_out_of_order = ooo_appended as usize;
        let mut wal_len = 0;
        let seq = if entries > 0 {
            let mut record = Vec::with_capacity(body.len() + 11);
            record.push(keys::WAL_V3);
            keys::put_uvarint(&mut record, entries);
            record.extend_from_slice(&body);
            wal_len = record.len();
            let prefix = &t.prefix;
            Some(self.commit.enqueue(|seq| {
                ops.push(Op::Put(Cf::Wal, keys::with_u64(prefix, seq), record));
                ops
            })?)
        } else if !ops.is_empty() {
            Some(self.commit.enqueue(|_| ops)?)
        } else {
            None
        };
        drop(guard);

        if let Some(seq) = seq {
            self.commit.wait(&self.db, seq)?;
            for s in rows {
                s.row_durable.store(true, Ordering::Release);
            }
            for (s, in_order, out_of_order) in sealed {
                let mut guard = s.state.lock();
                let st = &mut *guard;
                // Without a head, the chunk holding the newest sample stays readable here.
                let (head_open, max_t) = (st.head.is_some(), st.max_t);
                st.sealed.retain(|c| {
                    let written = in_order.contains(&c.min_t);
                    if written && !head_open && c.max_t == max_t {
                        st.last_sealed = Some(c.clone());
                    }
                    !written
                });
                st.ooo_sealed.retain(|c| !out_of_order.contains(&c.0));
            }
            let total =
                self.wal_bytes.fetch_add(wal_len as u64, Ordering::Relaxed) + wal_len as u64;
            if self
                .opts
                .checkpoint_wal_bytes
                .is_some_and(|limit| total >= limit)
            {
                self.bg_cv.notify_all();
            }
        }
        t.samples_appended
            .fetch_add(result.samples_appended as u64, Ordering::Relaxed);
        t.samples_duplicate.fetch_add(dup, Ordering::Relaxed);
        t.samples_out_of_order.fetch_add(ooo, Ordering::Relaxed);
        t.samples_out_of_order_appended
            .fetch_add(ooo_appended, Ordering::Relaxed);
        t.samples_duplicate_timestamp
            .fetch_add(dup_ts, Ordering::Relaxed);
        match failure {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }

    fn evict_idle(&self) -> Result<usize, StorageError> {
        let Some(timeout) = self.opts.series_idle_timeout else {
            return Ok(0);
        };
        self.check_writable()?;
        // No checkpoint or tenant deletion in between.
        let _one = self.checkpoint_lock.lock();
        let cutoff = active_since(timeout);
        let tenants: Vec<Arc<Tenant>> = self.tenants.read().values().cloned().collect();
        let mut evicted = 0;
        for t in &tenants {
            let candidates: Vec<Arc<Series>> = t
                .index
                .read()
                .all_series()
                .into_iter()
                .filter(|s| s.max_time() < cutoff && s.row_durable.load(Ordering::Acquire))
                .collect();
            for slice in candidates.chunks(CHECKPOINT_SLICE) {
                // Write the idle keys of the series with nothing left to persist...
                let guard = t.append_lock.lock();
                let mut ops = Vec::new();
                let mut picked = Vec::new();
                for s in slice {
                    let st = s.state.lock();
                    if !Series::fully_persisted(&st) {
                        continue;
                    }
                    let (min_t, max_t) = (s.min_time(), s.max_time());
                    let hash = s.labels.hash64();
                    ops.extend(idle::evict_ops(
                        &t.prefix, s.id, hash, &s.labels, min_t, max_t,
                    ));
                    picked.push((s.clone(), hash, max_t));
                }
                if picked.is_empty() {
                    continue;
                }
                let seq = self.commit.enqueue(|_| ops)?;
                drop(guard);
                self.commit.wait(&self.db, seq)?;
                // ...then drop those that took no sample meanwhile; the others keep memory and
                // lose their idle keys again (recovery revives a series whose WAL records follow
                // its idle keys, so a crash in between loses nothing).
                let guard = t.append_lock.lock();
                let mut idx = t.index.write();
                let mut undo = Vec::new();
                for (s, hash, max_t) in picked {
                    let unchanged = idx.by_id(s.id).is_some_and(|r| Arc::ptr_eq(r, &s))
                        && s.max_time() == max_t
                        && Series::fully_persisted(&s.state.lock());
                    if unchanged {
                        idx.remove(hash, &s);
                        t.idle_series.fetch_add(1, Ordering::AcqRel);
                        evicted += 1;
                    } else {
                        let day = idle::day(max_t);
                        undo.extend(idle::revive_ops(&t.prefix, s.id, hash, &s.labels, day));
                    }
                }
                drop(idx);
                if !undo.is_empty() {
                    let seq = self.commit.enqueue(|_| undo)?;
                    drop(guard);
                    self.commit.wait(&self.db, seq)?;
                }
            }
        }
        if evicted > 0 {
            tracing::debug!(series = evicted, "idle series left memory");
        }
        Ok(evicted)
    }

    pub(crate) fn checkpoint(&self) -> Result<(), StorageError> {
        let _one = self.checkpoint_lock.lock();
        if let Some(e) = self.commit.failure() {
            return Err(e);
        }
        let started = Instant::now();
        let wal_bytes = self.wal_bytes.load(Ordering::Relaxed);
        // Every WAL record below `cp` was applied in memory before the snapshots below.
        let cp = self.commit.next_seq();
        let tenants: Vec<Arc<Tenant>> = self.tenants.read().values().cloned().collect();
        let mut chunks = 0usize;
        for t in &tenants {
            let all = t.index.read().all_series();
            for slice in all.chunks(CHECKPOINT_SLICE) {
                let guard = t.append_lock.lock();
                let mut ops = Vec::new();
                for s in slice {
                    let mut st = s.state.lock();
                    let dirty = st
                        .head
                        .as_ref()
                        .filter(|h| h.num_samples() > st.head_persisted);
                    if let Some(h) = dirty {
                        let n = h.num_samples();
                        ops.push(Op::Put(
                            Cf::Chunks,
                            keys::chunk_key(&t.prefix, s.id, h.min_time()),
                            keys::encode_chunk_value(h.encoding(), h.max_time(), h.bytes()),
                        ));
                        st.head_persisted = n;
                    }
                    if let Some(h) = st.ooo.as_mut().filter(|h| h.samples.len() > h.persisted) {
                        ops.push(Op::Put(
                            Cf::OooChunks,
                            keys::ooo_chunk_key(&t.prefix, s.id, h.no),
                            keys::encode_ooo_chunk_value(&h.to_chunk_data()),
                        ));
                        h.persisted = h.samples.len();
                    }
                }
                if !ops.is_empty() {
                    chunks += ops.len();
                    self.commit.enqueue(|_| ops)?;
                }
                drop(guard);
            }
        }
        // WAL deletions queue behind the chunks; the final synced write makes all of it durable.
        let last = self.commit.enqueue(|_| {
            let mut ops: Vec<Op> = tenants
                .iter()
                .map(|t| {
                    Op::DeleteRange(
                        Cf::Wal,
                        keys::with_u64(&t.prefix, 0),
                        keys::with_u64(&t.prefix, cp),
                    )
                })
                .collect();
            ops.push(Op::Put(
                Cf::Meta,
                META_WAL_FLOOR.to_vec(),
                cp.to_be_bytes().to_vec(),
            ));
            ops
        })?;
        self.commit.wait(&self.db, last)?;
        self.wal_bytes.fetch_sub(wal_bytes, Ordering::Relaxed);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            chunks,
            wal_seq = cp,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint done"
        );
        Ok(())
    }

    fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        latest_only: bool,
    ) -> Result<Vec<SeriesChunks>, StorageError> {
        let Some(t) = self.tenant(tenant) else {
            return Ok(Vec::new());
        };
        let mut series = t.select_series(&self.db, matchers, mint, maxt)?;
        series.sort_unstable_by(|a, b| a.labels().cmp(b.labels()));
        let mut out = Vec::with_capacity(series.len());
        let mut it = self.db.raw_iterator_cf(cf(&self.db, Cf::Chunks)?);
        let mut ooo_it = self.db.raw_iterator_cf(cf(&self.db, Cf::OooChunks)?);
        for s in series {
            if let (true, Selected::Resident(r)) = (latest_only, &s) {
                if let Some(c) = r.newest_float_chunk(mint, maxt) {
                    out.push(SeriesChunks {
                        labels: r.labels.clone(),
                        chunks: vec![c],
                    });
                    continue;
                }
            }
            let chunks = self.series_chunks(&t, &s, mint, maxt, &mut it, &mut ooo_it)?;
            if chunks.is_empty() {
                continue;
            }
            out.push(SeriesChunks {
                labels: s.labels().clone(),
                chunks,
            });
        }
        Ok(out)
    }

    /// Chunks of series `s` overlapping `[mint, maxt]`, from memory and disk, by min time.
    pub(crate) fn series_chunks(
        &self,
        t: &Tenant,
        s: &Selected,
        mint: i64,
        maxt: i64,
        it: &mut rocksdb::DBRawIterator<'_>,
        ooo_it: &mut rocksdb::DBRawIterator<'_>,
    ) -> Result<Vec<ChunkData>, StorageError> {
        // Memory first: a chunk sealed after this snapshot is either in it or on disk below.
        let mem = match &s {
            Selected::Resident(s) => s.memory_chunks(mint, maxt),
            Selected::Idle(_) => MemoryChunks {
                chunks: Vec::new(),
                in_order_from: None,
                ooo_on_disk: true,
                ooo_in_memory: Vec::new(),
            },
        };
        let mut chunks = mem.chunks;
        let in_memory: Vec<i64> = chunks.iter().map(|c| c.min_t).collect();
        let sp = keys::series_prefix(&t.prefix, s.id());
        // Recent ranges (instant queries, dashboards' last minutes) are all in memory.
        if mem.in_order_from.is_none_or(|from| from > mint) {
            it.seek_for_prev(keys::chunk_key(&t.prefix, s.id(), mint));
            if !it.key().is_some_and(|k| k.starts_with(&sp)) {
                it.seek(&sp);
            }
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !k.starts_with(&sp) {
                    break;
                }
                let (_, min_t) = keys::parse_chunk_key_rest(&k[t.prefix.len()..])?;
                if min_t > maxt {
                    break;
                }
                let (encoding, max_t, data) = keys::decode_chunk_value(v)?;
                // The open chunk supersedes a partial copy written by a checkpoint.
                if max_t >= mint && !in_memory.contains(&min_t) {
                    chunks.push(ChunkData {
                        encoding,
                        min_t,
                        max_t,
                        data: Bytes::copy_from_slice(data),
                        seeks: None,
                    });
                }
                it.next();
            }
            it.status()?;
        }
        if mem.ooo_on_disk {
            ooo_it.seek(&sp);
            while let (Some(k), Some(v)) = (ooo_it.key(), ooo_it.value()) {
                if !k.starts_with(&sp) {
                    break;
                }
                let (_, no) = keys::parse_ooo_chunk_key_rest(&k[t.prefix.len()..])?;
                let (min_t, max_t, data) = keys::decode_ooo_chunk_value(v)?;
                if min_t <= maxt && max_t >= mint && !mem.ooo_in_memory.contains(&no) {
                    chunks.push(ChunkData {
                        encoding: ChunkEncoding::Xor,
                        min_t,
                        max_t,
                        data: Bytes::copy_from_slice(data),
                        seeks: None,
                    });
                }
                ooo_it.next();
            }
            ooo_it.status()?;
        }
        chunks.sort_unstable_by_key(|c| c.min_t);
        Ok(chunks)
    }

    fn put_metadata(
        &self,
        tenant: &TenantId,
        metadata: &[MetricMetadata],
        max_metrics: usize,
    ) -> Result<usize, StorageError> {
        self.check_writable()?;
        if metadata.is_empty() {
            return Ok(0);
        }
        let t = self.tenant_or_create(tenant);
        let mut md = t.metadata.lock();
        let mut ops = Vec::new();
        // Metric families with metadata, counted once per call and only under a limit.
        let mut families = None;
        let mut refused = 0;
        for m in metadata {
            let key = (m.metric_family_name.clone(), m.kind);
            if md
                .get(&key)
                .is_some_and(|(h, u)| *h == m.help && *u == m.unit)
            {
                continue;
            }
            if max_metrics > 0 && !has_family(&md, &m.metric_family_name) {
                let n = families.get_or_insert_with(|| count_families(&md));
                if *n >= max_metrics {
                    refused += 1;
                    continue;
                }
                *n += 1;
            }
            ops.push(Op::Put(
                Cf::Metadata,
                metadata_key(&t.prefix, &m.metric_family_name, m.kind),
                metadata_value(&m.help, &m.unit),
            ));
            md.insert(key, (m.help.clone(), m.unit.clone()));
        }
        if !ops.is_empty() {
            // Under the lock, so concurrent updates of one key reach disk in memory order.
            write_batch(&self.db, &ops, false)?;
        }
        Ok(refused)
    }

    fn background(&self) {
        let mut last = Instant::now();
        let tick = self
            .opts
            .checkpoint_interval
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        loop {
            {
                let mut stop = self.bg_stop.lock();
                if *stop {
                    return;
                }
                self.bg_cv.wait_for(&mut stop, tick);
                if *stop {
                    return;
                }
            }
            let due_time = self
                .opts
                .checkpoint_interval
                .is_some_and(|i| last.elapsed() >= i);
            let due_size = self
                .opts
                .checkpoint_wal_bytes
                .is_some_and(|b| self.wal_bytes.load(Ordering::Relaxed) >= b);
            if !(due_time || due_size) {
                continue;
            }
            last = Instant::now();
            if let Err(e) = self.checkpoint() {
                tracing::error!(error = %e, "background checkpoint failed");
                continue;
            }
            if let Err(e) = self.evict_idle() {
                tracing::error!(error = %e, "evicting idle series failed");
            }
        }
    }
}

/// Puts of the chunks `sealed` holds (which it is emptied of).
fn sealed_chunk_ops(prefix: &[u8], sid: u64, sealed: &mut Sealed) -> impl Iterator<Item = Op> {
    let in_order = sealed.in_order.drain(..).map(move |c| {
        Op::Put(
            Cf::Chunks,
            keys::chunk_key(prefix, sid, c.min_t),
            keys::encode_chunk_value(c.encoding, c.max_t, &c.data),
        )
    });
    let ooo = sealed.out_of_order.drain(..).map(move |(no, c)| {
        Op::Put(
            Cf::OooChunks,
            keys::ooo_chunk_key(prefix, sid, no),
            keys::encode_ooo_chunk_value(&c),
        )
    });
    in_order.chain(ooo).collect::<Vec<_>>().into_iter()
}

fn metadata_key(prefix: &[u8], name: &str, kind: MetricType) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + name.len() + 4);
    k.extend_from_slice(prefix);
    keys::put_bytes(&mut k, name.as_bytes());
    k.push(kind.to_u8());
    k
}

fn metadata_value(help: &str, unit: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(help.len() + unit.len() + 4);
    keys::put_bytes(&mut v, help.as_bytes());
    keys::put_bytes(&mut v, unit.as_bytes());
    v
}
