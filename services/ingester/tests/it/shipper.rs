//! The block shipper: closed ranges reach the bucket as blocks promtool and hestia-block read back
//! sample for sample, shipped ranges leave RocksDB after the retention, older appends are
//! refused, crashes never make two blocks of a range, and an unreachable object store delays
//! shipping without losing anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hestia_block::{BlockReader, LocalDir};
use hestia_bucket::{Bucket, BucketIndex};
use hestia_config::{BlocksConfig, IngesterConfig, S3StorageConfig, StorageBackend, StorageConfig};
use hestia_ingester::{ShipReport, Shipper};
use hestia_limits::{Limits, Overrides};
use hestia_model::{Labels, Matcher, Sample, TenantId};
use hestia_storage::{
    ChunkEncoding, CounterResetHint, Histogram, HistogramIter, RejectReason, SeriesAppend, Span,
    Tsdb, XorIter,
};
use hestia_testing::S3Server;

pub(crate) const HOUR: i64 = 3_600_000;
const RANGE: i64 = 2 * HOUR;
pub(crate) const STEP: i64 = 30_000;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What was appended to one series.
pub(crate) struct Written {
    pub(crate) labels: Labels,
    pub(crate) floats: Vec<(i64, f64)>,
    pub(crate) histograms: Vec<(i64, Histogram)>,
}

fn histogram(i: i64) -> Histogram {
    let n = i as f64;
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 1,
        zero_threshold: 1e-128,
        zero_count: n,
        count: n * 4.0,
        sum: n * 1.5,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        positive_buckets: vec![n, n, n],
        ..Histogram::default()
    }
}

/// A data directory with an open database.
pub(crate) struct Node {
    pub(crate) data: tempfile::TempDir,
    pub(crate) db: Arc<Tsdb>,
}

impl Node {
    pub(crate) fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let db = hestia_ingester::open_tsdb(data.path(), &IngesterConfig::default()).unwrap();
        Self { data, db }
    }

    /// Simulates a crash and restart: the database is dropped without closing (no final
    /// checkpoint) and opened again from disk.
    pub(crate) fn restart(self) -> Self {
        let Node { data, db } = self;
        assert_eq!(Arc::strong_count(&db), 1, "the database is still in use");
        drop(db);
        let db = hestia_ingester::open_tsdb(data.path(), &IngesterConfig::default()).unwrap();
        Node { data, db }
    }

    pub(crate) fn shipper(&self, bucket: Bucket, cfg: BlocksConfig, ooo: Duration) -> Shipper {
        let limits = Limits {
            out_of_order_time_window: ooo,
            ..Limits::default()
        };
        Shipper::new(
            self.db.clone(),
            bucket,
            cfg,
            "ingester-a1".into(),
            Arc::new(Overrides::fixed(limits)),
            self.data.path(),
        )
    }

    pub(crate) fn fs_bucket(&self) -> Bucket {
        Bucket::open(&StorageConfig::default(), self.data.path()).unwrap()
    }

    fn bucket_dir(&self, tenant: &TenantId) -> PathBuf {
        self.data.path().join("blocks").join(tenant.as_str())
    }

    /// Appends `series` float series and `hists` histogram series, every STEP over
    /// `[from, to)`, plus out-of-order floats in each float series; returns what was stored.
    pub(crate) fn write(
        &self,
        tenant: &TenantId,
        series: usize,
        hists: usize,
        from: i64,
        to: i64,
    ) -> Vec<Written> {
        let mut out = Vec::new();
        for i in 0..series + hists {
            let labels = Labels::from_pairs([
                (
                    "__name__",
                    (if i < series {
                        "node_cpu"
                    } else {
                        "rpc_seconds"
                    })
                    .to_string(),
                ),
                ("instance", format!("10.0.0.{i}:9100")),
                ("job", "node".to_string()),
            ]);
            let mut w = Written {
                labels,
                floats: Vec::new(),
                histograms: Vec::new(),
            };
            let mut t = from + i as i64 * 7;
            let mut k = 0;
            while t < to {
                if i < series {
                    w.floats.push((t, (k * (i as i64 + 1)) as f64 * 0.25));
                } else {
                    w.histograms.push((t, histogram(k)));
                }
                t += STEP;
                k += 1;
            }
            out.push(w);
        }
        for w in &out {
            let sa = SeriesAppend {
                labels: w.labels.clone(),
                samples: w.floats.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
                histograms: w.histograms.clone(),
                ..SeriesAppend::default()
            };
            let r = self.db.append(tenant, &[sa]).unwrap();
            assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        }
        out
    }
}

fn blocks_cfg() -> BlocksConfig {
    BlocksConfig {
        retain_after_upload: Duration::from_secs(3600),
        ..BlocksConfig::default()
    }
}

/// (ULID, minTime, maxTime) of every complete block of the tenant, by time; no partial block.
async fn bucket_blocks(bucket: &Bucket, tenant: &TenantId) -> Vec<(String, i64, i64)> {
    let (index, report) = BucketIndex::build(&bucket.tenant(tenant)).await.unwrap();
    assert!(
        report.partial_blocks.is_empty(),
        "{:?}",
        report.partial_blocks
    );
    index
        .blocks
        .iter()
        .map(|b| (b.block_id.to_string(), b.min_time, b.max_time))
        .collect()
}

/// Closed ranges `[s, s + RANGE)` overlapping `[from, to)` for a shipper without OOO window.
fn closed_ranges(from: i64, to: i64, now: i64) -> Vec<(i64, i64)> {
    let mut s = from.div_euclid(RANGE) * RANGE;
    let mut out = Vec::new();
    while s < to && s + RANGE <= now - RANGE / 2 {
        out.push((s, s + RANGE));
        s += RANGE;
    }
    out
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is installed (make deps)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn go_labels(l: &Labels) -> String {
    let pairs: Vec<String> = l
        .iter()
        .map(|l| format!("{}=\"{}\"", l.name, l.value))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_ranges_are_shipped_and_read_back_by_promtool() {
    let node = Node::new();
    let t = TenantId::parse("ws-ship").unwrap();
    let now = now_ms();
    let (from, to) = (now - 12 * HOUR, now - 3 * HOUR);
    let written = node.write(&t, 200, 10, from, to);
    // Out of order, within a 10 min window: every float series gets points between its own.
    let limits = hestia_storage::AppendLimits {
        out_of_order_window_ms: 600_000,
        ..Default::default()
    };
    let mut written = written;
    for w in written.iter_mut().take(200) {
        let newest = w.floats.last().unwrap().0;
        let ooo: Vec<(i64, f64)> = (1..10)
            .map(|k| (newest - k * STEP + 1000, k as f64))
            .collect();
        let sa = SeriesAppend::floats(
            w.labels.clone(),
            ooo.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        );
        let r = node.db.append_limited(&t, &[sa], &limits).unwrap();
        assert_eq!(r.samples_out_of_order, 9);
        w.floats.extend(ooo);
        w.floats.sort_by_key(|x| x.0);
    }
    node.db.checkpoint().unwrap();
    let samples: usize = written
        .iter()
        .map(|w| w.floats.len() + w.histograms.len())
        .sum();

    let bucket = node.fs_bucket();
    let shipper = node.shipper(bucket.clone(), blocks_cfg(), Duration::from_secs(600));
    let started = Instant::now();
    let report = shipper.ship_once().await;
    let elapsed = started.elapsed();
    let ranges = closed_ranges(from, to, now - 600_000);
    assert_eq!(
        report,
        ShipReport {
            blocks_shipped: ranges.len(),
            ..ShipReport::default()
        }
    );
    let blocks = bucket_blocks(&bucket, &t).await;
    assert_eq!(
        blocks.iter().map(|b| (b.1, b.2)).collect::<Vec<_>>(),
        ranges
    );
    // Nothing left locally; a second pass ships nothing new.
    assert_eq!(
        std::fs::read_dir(shipper.blocks_dir().join("ws-ship"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(shipper.ship_once().await, ShipReport::default());
    assert_eq!(bucket_blocks(&bucket, &t).await, blocks);

    // promtool analyzes every block and dumps exactly the appended floats.
    let dir = node.bucket_dir(&t);
    let parent = dir.to_str().unwrap();
    let mut bytes = 0u64;
    for (ulid, _, _) in &blocks {
        let analysis = promtool(&["tsdb", "analyze", parent, ulid]);
        assert!(
            analysis.contains(&format!("Block ID: {ulid}")),
            "{analysis}"
        );
        for f in walk(&dir.join(ulid)) {
            bytes += std::fs::metadata(f).unwrap().len();
        }
    }
    std::fs::create_dir(dir.join("wal")).unwrap();
    let (mint, maxt) = (ranges[0].0, ranges.last().unwrap().1 - 1);
    let out = promtool(&[
        "tsdb",
        "dump",
        &format!("--min-time={mint}"),
        &format!("--max-time={maxt}"),
        parent,
    ]);
    let mut got: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in out.lines() {
        let (rest, ts) = line.rsplit_once(' ').unwrap();
        let (labels, v) = rest.rsplit_once(' ').unwrap();
        got.entry(labels.to_string())
            .or_default()
            .push((ts.parse().unwrap(), v.parse().unwrap()));
    }
    let mut compared = 0;
    for w in written.iter().filter(|w| !w.floats.is_empty()) {
        let want: Vec<(i64, f64)> = w
            .floats
            .iter()
            .copied()
            .filter(|x| x.0 >= mint && x.0 <= maxt)
            .collect();
        let mut g = got.remove(&go_labels(&w.labels)).unwrap_or_default();
        g.sort_by_key(|x| x.0);
        assert_eq!(g, want, "{}", w.labels);
        compared += want.len();
    }
    assert!(got.is_empty(), "unexpected series {:?}", got.keys().next());

    // Histograms through hestia-block's reader.
    let mut hist_compared = 0;
    for w in written.iter().filter(|w| !w.histograms.is_empty()) {
        let matchers: Vec<Matcher> = w
            .labels
            .iter()
            .map(|l| Matcher::equal(&l.name, &l.value))
            .collect();
        let mut got = Vec::new();
        for (ulid, _, _) in &blocks {
            let r = BlockReader::open(LocalDir::new(dir.join(ulid)))
                .await
                .unwrap();
            for s in r.select(&matchers, i64::MIN, i64::MAX).await.unwrap() {
                got.extend(s.samples(i64::MIN, i64::MAX).unwrap().histograms);
            }
        }
        let want: Vec<&(i64, Histogram)> = w
            .histograms
            .iter()
            .filter(|x| x.0 >= mint && x.0 <= maxt)
            .collect();
        assert_eq!(got.len(), want.len(), "{}", w.labels);
        for (a, b) in got.iter().zip(want) {
            assert_eq!(a.0, b.0);
            assert_eq!(
                (a.1.count, a.1.sum, &a.1.positive_buckets),
                (b.1.count, b.1.sum, &b.1.positive_buckets)
            );
        }
        hist_compared += got.len();
    }
    assert!(
        compared > 100_000 && hist_compared > 500,
        "{compared} {hist_compared}"
    );
    let shipped: usize = written
        .iter()
        .map(|w| {
            w.floats
                .iter()
                .filter(|x| x.0 >= mint && x.0 <= maxt)
                .count()
                + w.histograms
                    .iter()
                    .filter(|x| x.0 >= mint && x.0 <= maxt)
                    .count()
        })
        .sum();
    eprintln!(
        "shipped {} blocks, {shipped} of {samples} samples ({} series) in {elapsed:?}: {bytes} bytes, {:.2} bytes/sample",
        blocks.len(),
        written.len(),
        bytes as f64 / shipped as f64
    );
    let exposition = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap();
    for name in [
        "hestia_ingester_shipper_blocks_shipped_total",
        "hestia_ingester_shipper_pending_blocks",
        "hestia_ingester_shipper_last_success_timestamp_seconds",
    ] {
        assert!(exposition.contains(name), "{name}");
    }
}

/// Samples of the tenant with timestamps in `[mint, maxt]`, decoded from `select`'s chunks.
pub(crate) fn samples_in(db: &Tsdb, t: &TenantId, mint: i64, maxt: i64) -> usize {
    let mut n = 0;
    for s in db.select(t, &[], mint, maxt).unwrap() {
        for c in &s.chunks {
            let ts: Vec<i64> = match c.encoding {
                ChunkEncoding::Xor => XorIter::new(&c.data).unwrap().map(|x| x.0).collect(),
                ChunkEncoding::Histogram => {
                    HistogramIter::new(&c.data).unwrap().map(|x| x.0).collect()
                }
            };
            n += ts.iter().filter(|&&x| x >= mint && x <= maxt).count();
        }
    }
    n
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_ranges_leave_rocksdb_after_retention_and_older_appends_are_refused() {
    let node = Node::new();
    let t = TenantId::parse("ws-retain").unwrap();
    let now = now_ms();
    let old = node.write(&t, 20, 2, now - 9 * HOUR, now - 4 * HOUR);
    let recent = node.write(&t, 20, 2, now - 20 * 60_000, now);
    let cfg = BlocksConfig {
        retain_after_upload: Duration::from_secs(1),
        ..BlocksConfig::default()
    };
    let shipper = node.shipper(node.fs_bucket(), cfg, Duration::ZERO);
    let first = shipper.ship_once().await;
    assert!(
        first.blocks_shipped >= 2 && first.chunks_dropped == 0,
        "{first:?}"
    );
    let through = node.db.ship_state(&t).unwrap().shipped_through.unwrap();

    // Still all there until the retention passes.
    let count = |mint: i64, maxt: i64| samples_in(&node.db, &t, mint, maxt);
    let old_samples: usize = old
        .iter()
        .map(|w| w.floats.len() + w.histograms.len())
        .sum();
    assert_eq!(count(i64::MIN, through - 1), old_samples);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = shipper.ship_once().await;
    assert!(second.chunks_dropped > 0, "{second:?}");
    assert_eq!(second.blocks_shipped, 0);
    assert!(node.db.ship_state(&t).unwrap().blocks.is_empty());
    // What is left before the shipped end is at most the chunks that cross it (< 120 samples
    // per series); the recent data is whole.
    let left = count(i64::MIN, through - 1);
    assert!(left < 22 * 120, "{left} samples left before {through}");
    let recent_samples: usize = recent
        .iter()
        .map(|w| w.floats.len() + w.histograms.len())
        .sum();
    assert_eq!(count(now - 20 * 60_000, now), recent_samples);

    // A sample older than a shipped range is refused, out of bounds.
    let sa = SeriesAppend::floats(old[0].labels.clone(), vec![Sample::new(through - 1, 1.0)]);
    let r = node.db.append(&t, &[sa]).unwrap();
    assert_eq!(r.rejected[0].reason, RejectReason::OutOfBounds);
}

/// An S3 bucket at `127.0.0.1:port` (nothing may listen there), failing fast.
fn s3_bucket(node: &Node, port: u16) -> Bucket {
    let cfg = StorageConfig {
        backend: StorageBackend::S3,
        s3: S3StorageConfig {
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "hestia".into(),
            region: "us-east-1".into(),
            access_key_id: S3Server::ACCESS_KEY.into(),
            secret_access_key: S3Server::SECRET_KEY.into(),
            allow_http: true,
            max_retries: 0,
            retry_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            ..S3StorageConfig::default()
        },
        ..StorageConfig::default()
    };
    Bucket::open(&cfg, node.data.path()).unwrap()
}

fn local_blocks(shipper: &Shipper, tenant: &TenantId) -> Vec<String> {
    let dir = shipper.blocks_dir().join(tenant.as_str());
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_between_cut_upload_and_record_leave_one_block_per_range() {
    let node = Node::new();
    let t = TenantId::parse("ws-crash").unwrap();
    let now = now_ms();
    let (from, to) = (now - 10 * HOUR, now - 3 * HOUR);
    node.write(&t, 20, 1, from, to);
    let ranges = closed_ranges(from, to, now);

    // The object store is down: the first range is cut, its upload fails, the rest waits.
    let shipper = node.shipper(
        s3_bucket(&node, hestia_testing::free_port()),
        blocks_cfg(),
        Duration::ZERO,
    );
    let r = shipper.ship_once().await;
    assert_eq!(
        (r.blocks_shipped, r.upload_failures, r.pending_blocks),
        (0, 1, 1),
        "{r:?}"
    );
    let cut = local_blocks(&shipper, &t);
    assert_eq!(cut.len(), 1);
    let local_dir = shipper.blocks_dir().join(t.as_str());
    drop(shipper);

    // Crash. A half-written block of a later attempt lies beside the complete one, and the
    // complete one reached the bucket before the crash but was not recorded.
    let node = node.restart();
    let tmp = local_dir.join(format!("{}.tmp-for-creation", ulid::Ulid::new()));
    std::fs::create_dir_all(tmp.join("chunks")).unwrap();
    let bucket = node.fs_bucket();
    bucket
        .tenant(&t)
        .upload_block(&local_dir.join(&cut[0]))
        .await
        .unwrap();

    let shipper = node.shipper(bucket.clone(), blocks_cfg(), Duration::ZERO);
    let r = shipper.ship_once().await;
    assert_eq!(r.blocks_shipped, ranges.len(), "{r:?}");
    assert_eq!(r.pending_blocks, 0);
    let blocks = bucket_blocks(&bucket, &t).await;
    assert_eq!(
        blocks.iter().map(|b| (b.1, b.2)).collect::<Vec<_>>(),
        ranges
    );
    assert_eq!(
        blocks[0].0, cut[0],
        "the first range keeps the block cut before the crash"
    );
    assert!(local_blocks(&shipper, &t).is_empty());

    // Crash after the record, before the local copy was removed: the copy is removed, not
    // shipped again.
    copy_dir(
        &node.bucket_dir(&t).join(&blocks[1].0),
        &local_dir.join(&blocks[1].0),
    );
    let r = shipper.ship_once().await;
    assert_eq!(r, ShipReport::default());
    assert!(local_blocks(&shipper, &t).is_empty());
    assert_eq!(bucket_blocks(&bucket, &t).await, blocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_object_store_keeps_data_and_ships_once_it_is_back() {
    let node = Node::new();
    let t = TenantId::parse("ws-s3").unwrap();
    let now = now_ms();
    let (from, to) = (now - 8 * HOUR, now - 3 * HOUR);
    let written = node.write(&t, 30, 2, from, to);
    let samples: usize = written
        .iter()
        .map(|w| w.floats.len() + w.histograms.len())
        .sum();
    let ranges = closed_ranges(from, to, now);
    let port = hestia_testing::free_port();
    let bucket = s3_bucket(&node, port);
    let cfg = BlocksConfig {
        ship_interval: Duration::from_millis(100),
        ship_max_backoff: Duration::from_millis(400),
        ..blocks_cfg()
    };
    let shipper = node.shipper(bucket.clone(), cfg, Duration::ZERO);
    let local = shipper.blocks_dir().join(t.as_str());
    let failures = || {
        hestia_ingester::metrics::SHIPPER_FAILURES
            .with_label_values(&["upload"])
            .get()
    };
    let before = failures();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shipper.run(async move {
        let _ = stopped.await;
    }));

    let deadline = Instant::now() + Duration::from_secs(30);
    while failures() < before + 3 {
        assert!(Instant::now() < deadline, "no upload failures counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Down: one block waits locally, every sample is still in the ingester.
    assert_eq!(std::fs::read_dir(&local).unwrap().count(), 1);
    let stored = samples_in(&node.db, &t, i64::MIN, i64::MAX);
    assert_eq!(stored, samples);

    // Back: everything is shipped within a few backoff periods.
    let s3_dir = tempfile::tempdir().unwrap();
    let _server = S3Server::start(port, s3_dir.path(), "hestia");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shipped = match BucketIndex::build(&bucket.tenant(&t)).await {
            Ok((index, report)) if report.partial_blocks.is_empty() => index.blocks.len(),
            _ => 0,
        };
        if shipped == ranges.len() && std::fs::read_dir(&local).unwrap().count() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{shipped} of {} blocks shipped",
            ranges.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blocks = bucket_blocks(&bucket, &t).await;
    assert_eq!(
        blocks.iter().map(|b| (b.1, b.2)).collect::<Vec<_>>(),
        ranges
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
