//! A filesystem bucket in a temp dir, blocks written with `hestia-block`'s writer as ingesters
//! ship them, compactors over an in-memory ring, and promtool to read the results.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hestia_block::{
    symbols_of, xor_chunks, BlockMeta, BlockOptions, BlockSource, BlockWriter,
    DEFAULT_CHUNK_SAMPLES,
};
use hestia_bucket::{Bucket, BucketIndex, TenantBucket};
use hestia_compactor::{Compactor, Retentions};
use hestia_config::Config;
use hestia_model::{Labels, TenantId};
use hestia_ring::{Kv, MemoryKv};
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use ulid::Ulid;

pub const MINUTE: i64 = 60_000;
/// The shipped range of these tests.
pub const RANGE: i64 = 2 * MINUTE;
/// A start aligned on every level (12 minutes) in Nov 2023.
pub const BASE: i64 = 1_700_000_000_000 / (12 * MINUTE) * (12 * MINUTE);
/// Samples every 15 s.
pub const STEP: i64 = 15_000;

/// One series' samples.
pub type Series = (Labels, Vec<(i64, f64)>);

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Arc<dyn ObjectStore>,
    pub bucket: Bucket,
    pub kv: Arc<dyn Kv>,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("bucket");
        std::fs::create_dir_all(&root).expect("bucket dir");
        let store: Arc<dyn ObjectStore> = Arc::new(
            LocalFileSystem::new_with_prefix(&root)
                .expect("local store")
                .with_automatic_cleanup(true),
        );
        Self {
            bucket: Bucket::new(store.clone()),
            store,
            kv: Arc::new(MemoryKv::default()),
            dir,
        }
    }

    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join("bucket")
    }

    /// Levels of 2m, 6m and 12m, nothing waits, marked blocks go at once; `name` keeps the
    /// compactors' ids and directories apart.
    pub fn config(&self, name: &str) -> Config {
        let mut cfg = Config::default();
        cfg.server.data_dir = self.dir.path().join(name);
        cfg.blocks.block_range = Duration::from_millis(RANGE as u64);
        cfg.blocks.bucket_index_update_interval = Duration::from_secs(1);
        cfg.querier.query_ingesters_within = Duration::from_secs(600);
        cfg.querier.query_store_after = Duration::from_secs(60);
        let c = &mut cfg.compactor;
        c.block_ranges = [RANGE, 3 * RANGE, 6 * RANGE]
            .iter()
            .map(|ms| Duration::from_millis(*ms as u64))
            .collect();
        c.first_level_wait = Duration::ZERO;
        c.deletion_delay = Duration::ZERO;
        c.compaction_interval = Duration::from_secs(1);
        c.ring.instance_id = Some(name.to_string());
        c.ring.wait_stability = Duration::ZERO;
        cfg.ring.heartbeat_period = Duration::from_millis(100);
        cfg.ring.heartbeat_timeout = Duration::from_secs(2);
        cfg.ring.forget_after = Duration::from_secs(4);
        cfg.validate().expect("valid test config");
        cfg
    }

    pub async fn compactor(&self, cfg: &Config) -> Compactor {
        self.compactor_with(cfg, Retentions::new()).await
    }

    pub async fn compactor_with(&self, cfg: &Config, retentions: Retentions) -> Compactor {
        Compactor::start(cfg, self.bucket.clone(), self.kv.clone(), retentions)
            .await
            .expect("compactor starts")
    }

    pub fn tenant(&self, name: &str) -> TenantBucket {
        self.bucket.tenant(&tenant(name))
    }

    /// Writes and uploads a block of `series` for `[min, max)` as ingester `ingester` ships it.
    pub async fn ship(
        &self,
        tenant: &TenantBucket,
        ingester: &str,
        min: i64,
        max: i64,
        series: &[Series],
    ) -> BlockMeta {
        let local = self.dir.path().join("local");
        let meta = write_block(&local, tenant.tenant(), Some(ingester), min, max, series);
        let dir = local.join(meta.ulid.to_string());
        tenant.upload_block(&dir).await.expect("upload");
        std::fs::remove_dir_all(&dir).expect("remove local block");
        meta
    }

    /// `replicas` copies of every range `[BASE + i·RANGE, …)` for `i` in `ranges`, as RF
    /// ingesters ship them; returns the unique samples.
    pub async fn ship_replicas(
        &self,
        tenant: &TenantBucket,
        replicas: usize,
        ranges: std::ops::Range<i64>,
        series: usize,
    ) -> Samples {
        let mut all = Samples::new();
        for i in ranges {
            let (min, max) = (BASE + i * RANGE, BASE + (i + 1) * RANGE);
            let data = series_data(series, min, max);
            for r in 0..replicas {
                self.ship(tenant, &format!("ingester-{r}"), min, max, &data)
                    .await;
            }
            add(&mut all, &data);
        }
        all
    }
}

/// Samples by label set (Go's rendering, as promtool prints it) and timestamp.
pub type Samples = BTreeMap<String, BTreeMap<i64, f64>>;

pub fn add(all: &mut Samples, series: &[Series]) {
    for (labels, samples) in series {
        let s = all.entry(go_labels(labels)).or_default();
        for (t, v) in samples {
            s.insert(*t, *v);
        }
    }
}

pub fn count(s: &Samples) -> usize {
    s.values().map(BTreeMap::len).sum()
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(&format!("123456789012_ws-{name}")).expect("tenant id")
}

/// `n` series sampled every 15 s in `[min, max)`; values depend on series and time only, so
/// replicas are identical.
pub fn series_data(n: usize, min: i64, max: i64) -> Vec<Series> {
    let mut out: Vec<Series> = (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", &format!("{}", i % 8)),
                ("instance", &format!("host-{}", i / 8)),
                ("job", "node"),
            ]);
            let samples = (min..max)
                .step_by(STEP as usize)
                .map(|t| (t, (i as f64) * 1000.0 + ((t - BASE) / STEP) as f64 * 0.25))
                .collect();
            (labels, samples)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn write_block(
    parent: &Path,
    tenant: &TenantId,
    ingester: Option<&str>,
    min: i64,
    max: i64,
    series: &[Series],
) -> BlockMeta {
    let opts = BlockOptions {
        tenant: tenant.clone(),
        ingester: ingester.map(str::to_string),
        source: match ingester {
            Some(_) => BlockSource::Ingester,
            None => BlockSource::Backfill,
        },
        time_range: Some((min, max)),
    };
    let mut w = BlockWriter::new(parent, opts, symbols_of(series.iter().map(|s| &s.0)))
        .expect("block writer");
    for (labels, samples) in series {
        let chunks = xor_chunks(samples, DEFAULT_CHUNK_SAMPLES).expect("chunks");
        w.add_series(labels, &chunks).expect("series");
    }
    w.finish().expect("finish block")
}

/// The tenant's index as the bucket holds it now, without writing it.
pub async fn index(tenant: &TenantBucket) -> BucketIndex {
    BucketIndex::build(tenant).await.expect("index").0
}

/// Ids of the tenant's complete blocks without a deletion mark.
pub async fn live_blocks(tenant: &TenantBucket) -> Vec<(Ulid, i64, i64)> {
    let index = index(tenant).await;
    index
        .blocks
        .iter()
        .filter(|b| index.deletion_mark(b.block_id).is_none())
        .map(|b| (b.block_id, b.min_time, b.max_time))
        .collect()
}

/// Every sample of the tenant's live blocks, as `promtool tsdb dump` (2.42) prints them from a
/// copy of those blocks, and the number of dumped lines.
pub async fn dump_live(fx: &Fixture, tenant: &TenantBucket) -> (Samples, usize) {
    let dir = tempfile::tempdir_in(fx.dir.path()).expect("dump dir");
    for (id, _, _) in live_blocks(tenant).await {
        tenant
            .download_block(id, &dir.path().join(id.to_string()))
            .await
            .expect("download");
    }
    // promtool 2.42's dump opens the directory as a database and needs its WAL directory.
    std::fs::create_dir(dir.path().join("wal")).expect("wal dir");
    let out = promtool(&["tsdb", "dump", dir.path().to_str().expect("utf-8 path")]);
    let mut got = Samples::new();
    let mut lines = 0;
    for line in out.lines() {
        let (rest, t) = line.rsplit_once(' ').expect("timestamp");
        let (labels, v) = rest.rsplit_once(' ').expect("value");
        got.entry(labels.to_string())
            .or_default()
            .insert(t.parse().expect("timestamp"), v.parse().expect("value"));
        lines += 1;
    }
    (got, lines)
}

/// Runs promtool; panics with its output unless it succeeds.
pub fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is installed (make deps installs package prometheus)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A label set as Go's `labels.Labels.String()` prints it (the test labels need no escaping).
pub fn go_labels(l: &Labels) -> String {
    let pairs: Vec<String> = l
        .iter()
        .map(|l| format!("{}=\"{}\"", l.name, l.value))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Files under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.insert(rel.display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}
