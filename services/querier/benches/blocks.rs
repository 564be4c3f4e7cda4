//! `make bench-storage`: Hestia's long-term storage next to Debian's Prometheus 2.42, in one run.
//!
//! The data: 2,000 series (10 jobs × 20 instances × 6 request counters and 4 gauges) scraped
//! every 5 min (each instance at its own offset, with a few ms of jitter) for 30 days
//! (17,280,000 samples), from a seeded generator, cut in 360 ranges of 2 h.
//!
//! 1. **Bytes per sample.** Each range is written as Hestia's ingester ships it (`BlockWriter`,
//!    `xor_chunks` of 120 samples) and by `promtool tsdb create-blocks-from openmetrics` from an
//!    OpenMetrics file of the same samples (one file per range: promtool re-reads its whole
//!    input for every 2 h block it cuts). Then a Prometheus server compacts promtool's blocks.
//! 2. **30-day range queries from blocks.** promtool's blocks are uploaded for a tenant as
//!    `hestia admin backfill` does and read by the querier in-process (its HTTP router, default
//!    configuration, filesystem bucket, no ingesters); a Prometheus server holds copies of the
//!    same blocks (compaction off, so both read the same 2 h blocks). Each query's first run
//!    on both (the querier's very first one opens the blocks) is timed and its answers are
//!    checked equal; then one warm-up and `RUNS` timed runs, alternating the two. The peak RSS
//!    growth of the bench process (the querier) during each query is printed next to
//!    Prometheus'.
//! 3. **Compacted.** Hestia's blocks as an RF=3 cluster ships them (three replica blocks of each
//!    2 h range, from `ingester-1` to `-3`) go through the compactor itself
//!    (`hestia_compactor::Compactor`: vertical merge of the replicas, then 2 h → 12 h → 24 h,
//!    sources deleted), and a Prometheus server compacts copies of promtool's blocks. Printed:
//!    the object store's bytes per acknowledged (unique) sample of both (goal: Hestia ≤ 1.05 ×
//!    Prometheus), the compaction's time and peak RSS growth, and the same queries on both
//!    compacted sets (a second querier reads the compactor's bucket through its index).

// The allocator the querier binary ships with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, VecDeque};
use std::f64::consts::TAU;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use bytes::Bytes;
use hestia_block::{
    symbols_of, xor_chunks, BlockMeta, BlockOptions, BlockSource, BlockWriter,
    DEFAULT_CHUNK_SAMPLES, META_FILENAME, TENANT_LABEL,
};
use hestia_bucket::{Bucket, BucketIndex};
use hestia_compactor::{Compactor, Retentions};
use hestia_config::Config;
use hestia_model::{Labels, TenantId};
use hestia_querier::{BlockStore, Querier};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use ulid::Ulid;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const DAYS: i64 = 30;
const BLOCK: i64 = 2 * HOUR;
const INTERVAL: i64 = 300_000;
const JOBS: [&str; 10] = [
    "api", "auth", "billing", "cart", "catalog", "checkout", "frontend", "payments", "search",
    "shipping",
];
const INSTANCES: usize = 20;
/// Request counters per instance: status code (share of the traffic) × method (share).
const CODES: [(&str, f64); 3] = [("200", 0.95), ("404", 0.04), ("500", 0.01)];
const METHODS: [(&str, f64); 2] = [("GET", 0.8), ("POST", 0.2)];
const TENANT: &str = "bench";
const RUNS: usize = 5;
/// promtool processes running at once.
const PROMTOOL_JOBS: usize = 2;
/// Replicas of every range, as ingesters ship them at RF=3.
const REPLICAS: usize = 3;

/// `(name, query, step in seconds)`, each over the whole 30 days.
const QUERIES: &[(&str, &str, u32)] = &[
    (
        "sum by job rate, step 1h",
        "sum by (job) (rate(bench_http_requests_total[1h]))",
        3600,
    ),
    (
        "sum by job rate, step 15m",
        "sum by (job) (rate(bench_http_requests_total[1h]))",
        900,
    ),
    (
        "one instance's rates, step 1h",
        "rate(bench_http_requests_total{instance=\"10.0.3.7:9100\"}[1h])",
        3600,
    ),
    (
        "max memory by job, step 1h",
        "max by (job) (max_over_time(bench_memory_bytes[1h]))",
        3600,
    ),
];

/// SplitMix64: a fixed sequence whatever the `rand` version.
struct Rng(u64);

impl Rng {
    /// Uniform in `[0, 1)`.
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

enum Kind {
    /// A request counter with this mean rate per second, following the day, reset now and then.
    Requests(f64),
    /// Resident bytes, a random walk in whole pages.
    Memory,
    /// A ratio in (0, 1), full-precision floats.
    Cpu,
    /// Small integers.
    Queue,
    /// Tenths of a degree.
    Temperature,
}

struct Series {
    labels: Labels,
    kind: Kind,
    /// Index of its scrape target.
    target: usize,
    value: f64,
    /// Offset of the daily cycle, in days.
    phase: f64,
    rng: Rng,
}

impl Series {
    fn sample(&mut self, t: i64) -> f64 {
        let u = self.rng.next();
        match self.kind {
            Kind::Requests(per_s) => {
                // About one restart per series and month.
                if u < 1.0 / 8000.0 {
                    self.value = 0.0;
                }
                let day = (t as f64 / DAY as f64 + self.phase) * TAU;
                let jitter = 0.8 + 0.4 * self.rng.next();
                let mean = per_s * (INTERVAL / 1000) as f64 * (1.0 + 0.6 * day.sin());
                self.value += (mean * jitter).round();
                self.value
            }
            Kind::Memory => {
                self.value = (self.value + (u - 0.5) * 16e6).clamp(2.5e8, 4e9);
                (self.value / 4096.0).round() * 4096.0
            }
            Kind::Cpu => {
                self.value = (self.value + (u - 0.5) * 0.1).clamp(0.02, 0.98);
                self.value
            }
            Kind::Queue => {
                self.value = (self.value + ((u - 0.5) * 8.0).round()).max(0.0);
                self.value
            }
            Kind::Temperature => {
                self.value = (self.value + (u - 0.5) * 0.8).clamp(35.0, 85.0);
                (self.value * 10.0).round() / 10.0
            }
        }
    }
}

/// One instance, scraped every `INTERVAL` at its own offset with a few ms of jitter, as
/// Prometheus spreads and times its scrapes. No scrape falls on a whole second of the
/// interval, so none sits exactly on the edge of a query window, where Prometheus 2.42's
/// windows (closed) and Hestia's (left-open, as in Prometheus 3) differ.
struct Target {
    offset: i64,
    rng: Rng,
}

impl Target {
    /// Scrape times in `[start, start + BLOCK)`.
    fn times(&mut self, start: i64) -> Vec<i64> {
        (start..start + BLOCK)
            .step_by(INTERVAL as usize)
            .map(|t| t + self.offset + (self.rng.next() * 5.0) as i64 - 2)
            .collect()
    }
}

/// The scrape targets and the 2,000 series in label order (which groups them by metric name).
fn all_series() -> (Vec<Target>, Vec<Series>) {
    let mut rng = Rng(21);
    let mut targets = Vec::new();
    let mut out = Vec::new();
    for (j, &job) in JOBS.iter().enumerate() {
        let traffic = 2.0 + 40.0 * rng.next();
        for i in 0..INSTANCES {
            let target = targets.len();
            targets.push(Target {
                offset: 1000 + (rng.next() * (INTERVAL - 2000) as f64) as i64,
                rng: Rng(target as u64 + 1),
            });
            let instance = format!("10.0.{j}.{i}:9100");
            let phase = rng.next() * 0.1;
            let labels = |name: &str, extra: &[(&str, &str)]| {
                let mut pairs = vec![("__name__", name), ("job", job), ("instance", &instance)];
                pairs.extend_from_slice(extra);
                Labels::from_pairs(pairs)
            };
            let mut add = |labels: Labels, kind: Kind, value: f64| {
                let seed = out.len() as u64 * 7919 + 1;
                out.push(Series {
                    labels,
                    kind,
                    target,
                    value,
                    phase,
                    rng: Rng(seed),
                });
            };
            for (code, code_share) in CODES {
                for (method, method_share) in METHODS {
                    let l = labels(
                        "bench_http_requests_total",
                        &[("code", code), ("method", method)],
                    );
                    let rate = traffic * code_share * method_share;
                    add(l, Kind::Requests(rate), (rng.next() * 1e6).round());
                }
            }
            add(labels("bench_memory_bytes", &[]), Kind::Memory, 1e9);
            add(labels("bench_cpu_utilization", &[]), Kind::Cpu, 0.3);
            add(labels("bench_queue_length", &[]), Kind::Queue, 3.0);
            add(
                labels("bench_temperature_celsius", &[]),
                Kind::Temperature,
                55.0,
            );
        }
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    (targets, out)
}

/// The samples of the 2 h range from `start`, one `Vec` per series of `series`.
fn samples(targets: &mut [Target], series: &mut [Series], start: i64) -> Vec<Vec<(i64, f64)>> {
    let times: Vec<Vec<i64>> = targets.iter_mut().map(|t| t.times(start)).collect();
    series
        .iter_mut()
        .map(|s| times[s.target].iter().map(|&t| (t, s.sample(t))).collect())
        .collect()
}

/// The same samples as OpenMetrics text, each family under its `# TYPE`.
fn openmetrics(series: &[Series], samples: &[Vec<(i64, f64)>]) -> String {
    let mut out = String::new();
    let mut family = "";
    for (s, points) in series.iter().zip(samples) {
        let name = s.labels.metric_name().expect("named series");
        if name != family {
            family = name;
            match name.strip_suffix("_total") {
                Some(counter) => writeln!(out, "# TYPE {counter} counter"),
                None => writeln!(out, "# TYPE {name} gauge"),
            }
            .expect("string");
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        let labels = labels.join(",");
        for (t, v) in points {
            // Values: the shortest decimal that parses back to the same f64. Times: seconds
            // with milliseconds, which promtool's `int64(s * 1000)` reads back exactly here.
            writeln!(out, "{name}{{{labels}}} {v} {}.{:03}", t / 1000, t % 1000).expect("string");
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A child process, killed if still running when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for one promtool run and moves its block into `into`.
fn finish_promtool(mut p: Proc, out: &Path, input: &Path, into: &Path) {
    let status = p.0.wait().expect("promtool");
    assert!(status.success(), "promtool failed on {}", input.display());
    for e in std::fs::read_dir(out).expect("promtool output") {
        let e = e.expect("entry");
        std::fs::rename(e.path(), into.join(e.file_name())).expect("move block");
    }
    std::fs::remove_dir(out).expect("promtool output");
    std::fs::remove_file(input).expect("input");
}

/// Writes every 2 h range of `[start, end)` as Hestia's ingesters do at RF=3 (replica `r`
/// under `hestia[r]`, from `ingester-<r + 1>`) and through promtool (under `promtool`); the
/// numbers of series and samples.
fn write_blocks(
    work: &Path,
    hestia: &[PathBuf; REPLICAS],
    promtool: &Path,
    start: i64,
    end: i64,
) -> (usize, u64) {
    let (mut targets, mut series) = all_series();
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let symbols = symbols_of(series.iter().map(|s| &s.labels));
    let mut running: VecDeque<(Proc, PathBuf, PathBuf)> = VecDeque::new();
    let mut total = 0;
    for (i, s) in (start..end).step_by(BLOCK as usize).enumerate() {
        let points = samples(&mut targets, &mut series, s);
        total += points.iter().map(|p| p.len() as u64).sum::<u64>();

        let chunks: Vec<_> = points
            .iter()
            .map(|p| xor_chunks(p, DEFAULT_CHUNK_SAMPLES).expect("chunks"))
            .collect();
        for (r, dir) in hestia.iter().enumerate() {
            let opts = BlockOptions {
                tenant: tenant.clone(),
                ingester: Some(format!("ingester-{}", r + 1)),
                source: BlockSource::Ingester,
                time_range: Some((s, s + BLOCK)),
            };
            let mut w = BlockWriter::new(dir, opts, symbols.clone()).expect("block writer");
            for (s, c) in series.iter().zip(&chunks) {
                w.add_series(&s.labels, c).expect("add series");
            }
            w.finish().expect("finish block");
        }

        if running.len() == PROMTOOL_JOBS {
            let (p, out, input) = running.pop_front().expect("running");
            finish_promtool(p, &out, &input, promtool);
        }
        let input = work.join(format!("range-{i}.om"));
        let out = work.join(format!("range-{i}"));
        std::fs::write(&input, openmetrics(&series, &points)).expect("openmetrics file");
        let child = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
            .arg(&input)
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("Debian's promtool must be installed (make deps)");
        running.push_back((Proc(child), out, input));
    }
    for (p, out, input) in running {
        finish_promtool(p, &out, &input, promtool);
    }
    (series.len(), total)
}

/// On-disk size of the blocks in a directory.
#[derive(Debug, Default)]
struct Footprint {
    blocks: usize,
    index: u64,
    chunks: u64,
    /// meta.json and tombstones.
    other: u64,
    samples: u64,
}

impl Footprint {
    fn total(&self) -> u64 {
        self.index + self.chunks + self.other
    }

    fn per_sample(&self, bytes: u64) -> f64 {
        bytes as f64 / self.samples as f64
    }
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat").len()
}

/// The block directories (ULID names holding a meta.json) directly under `dir`, sorted.
fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            Ulid::from_string(name).is_ok() && p.join(META_FILENAME).is_file()
        })
        .collect();
    out.sort();
    out
}

fn footprint(dir: &Path) -> Footprint {
    let mut f = Footprint::default();
    for block in block_dirs(dir) {
        f.blocks += 1;
        f.samples += BlockMeta::read_from_dir(&block)
            .expect("meta.json")
            .stats
            .num_samples;
        for e in std::fs::read_dir(&block).expect("block") {
            let p = e.expect("entry").path();
            match p.file_name().and_then(|n| n.to_str()) {
                Some("index") => f.index += file_size(&p),
                Some("chunks") => {
                    for c in std::fs::read_dir(&p).expect("chunks") {
                        f.chunks += file_size(&c.expect("entry").path());
                    }
                }
                _ => f.other += file_size(&p),
            }
        }
    }
    f
}

/// Copies a block directory (its files and `chunks/`).
fn copy_block(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("chunks")).expect("block dir");
    for sub in [Path::new(""), Path::new("chunks")] {
        for e in std::fs::read_dir(from.join(sub)).expect("block") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_file() {
                let dest = to.join(sub).join(e.file_name());
                std::fs::copy(e.path(), dest).expect("copy");
            }
        }
    }
}

/// Uploads the blocks under `dir` for `tenant` as `hestia admin backfill` does
/// (services/hestia/src/backfill.rs, without its validation pass; that staging belongs in a
/// shared crate): meta.json names the tenant and the backfill source, then the bucket index.
async fn backfill(bucket: &Bucket, tenant: &TenantId, dir: &Path, staging: &Path) {
    let tb = bucket.tenant(tenant);
    for block in block_dirs(dir) {
        let mut meta = BlockMeta::read_from_dir(&block).expect("meta.json");
        let staged = staging.join(meta.ulid.to_string());
        copy_block(&block, &staged);
        meta.thanos.labels = BTreeMap::from([(TENANT_LABEL.to_string(), tenant.to_string())]);
        meta.thanos.source = BlockSource::Backfill.as_str().to_string();
        meta.write_to_dir(&staged).expect("meta.json");
        tb.upload_block(&staged).await.expect("upload");
        std::fs::remove_dir_all(&staged).expect("staging");
    }
    let (index, _) = BucketIndex::build(&tb).await.expect("bucket index");
    index.write(&tb).await.expect("bucket index");
}

/// What Hestia's compactor made of the replica blocks.
struct Compaction {
    /// The compactor's configuration; its bucket holds the result.
    cfg: Config,
    /// The blocks left: one copy of every sample.
    blocks: Footprint,
    /// Bytes of every object under the tenant's prefix (blocks, bucket index, marks).
    objects: u64,
    passes: usize,
    compactions: usize,
    wall: Duration,
    /// CPU seconds of the whole process meanwhile.
    cpu: f64,
    /// Peak RSS growth of the process meanwhile, MiB.
    peak_mib: f64,
}

/// Uploads every replica block into a bucket of its own (as the ingesters of an RF=3 cluster
/// ship them) and runs Hestia's compactor on it until a pass compacts nothing, then its cleaner
/// (`deletion_delay` 0: the sources go at once).
async fn compact_hestia(root: &Path, tenant: &TenantId, replicas: &[PathBuf]) -> Compaction {
    let mut cfg = Config::default();
    cfg.server.data_dir = root.join("hestia-compacted");
    cfg.compactor.first_level_wait = Duration::ZERO;
    cfg.compactor.deletion_delay = Duration::ZERO;
    cfg.compactor.ring.wait_stability = Duration::ZERO;
    cfg.validate().expect("config");
    let bucket = Bucket::open(&cfg.storage, &cfg.server.data_dir).expect("bucket");
    let tb = bucket.tenant(tenant);
    for dir in replicas {
        for block in block_dirs(dir) {
            tb.upload_block(&block).await.expect("upload");
        }
        std::fs::remove_dir_all(dir).expect("replica blocks");
    }
    let kv: Arc<dyn hestia_ring::Kv> = Arc::new(hestia_ring::MemoryKv::default());
    let compactor = Compactor::start(&cfg, bucket, kv, Retentions::new())
        .await
        .expect("compactor");
    reset_peak("self");
    let before = memory("self");
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let (mut passes, mut compactions) = (0, 0);
    loop {
        let report = compactor.run_once().await;
        assert!(!report.failed(), "{report:?}");
        passes += 1;
        let n = report.tenant(TENANT).map_or(0, |t| t.compactions);
        compactions += n;
        if n == 0 {
            break;
        }
        assert!(passes < 10, "still compacting after {passes} passes");
    }
    let report = compactor.cleanup_once().await;
    assert!(!report.failed(), "{report:?}");
    let (wall, cpu) = (t0.elapsed(), cpu_seconds() - cpu0);
    let peak_mib = memory("self").peak - before.rss;
    compactor.stop().await.expect("stop");
    let tenant_dir = cfg
        .storage
        .filesystem_dir(&cfg.server.data_dir)
        .join(tenant.as_str());
    let index = BucketIndex::read(&bucket_of(&cfg).tenant(tenant))
        .await
        .expect("bucket index")
        .expect("the compactor wrote the index");
    assert!(index.block_deletion_marks.is_empty(), "{index:?}");
    Compaction {
        blocks: footprint(&tenant_dir),
        objects: dir_bytes(&tenant_dir),
        cfg,
        passes,
        compactions,
        wall,
        cpu,
        peak_mib,
    }
}

fn bucket_of(cfg: &Config) -> Bucket {
    Bucket::open(&cfg.storage, &cfg.server.data_dir).expect("bucket")
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        let p = e.path();
        total += match e.file_type().expect("type").is_dir() {
            true => dir_bytes(&p),
            false => file_size(&p),
        };
    }
    total
}

/// CPU seconds (user and system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let after = stat.rsplit_once(')').map(|p| p.1).unwrap_or_default();
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime, in clock ticks of 1/100 s.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Resident memory of a process, MiB.
#[derive(Debug, Clone, Copy)]
struct Mem {
    /// VmHWM: the peak since the process started or [`reset_peak`].
    peak: f64,
    rss: f64,
    /// The anonymous part of `rss` (the rest is mapped files).
    anon: f64,
}

fn memory(pid: &str) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .expect("status field")
            / 1024.0
    };
    Mem {
        peak: field("VmHWM:"),
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
    }
}

/// Sets a process' VmHWM back to its current RSS.
fn reset_peak(pid: &str) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// Debian's Prometheus 2.42 over a copy of some blocks, killed when dropped.
struct Prometheus {
    proc: Proc,
    addr: SocketAddr,
    data: PathBuf,
}

impl Prometheus {
    /// Starts it with `blocks` in its data directory and waits until it is ready. Retention
    /// is long: the data is 30 days old. `compact: false` keeps the 2 h blocks as they are.
    async fn start(client: &reqwest::Client, dir: &Path, blocks: &Path, compact: bool) -> Self {
        let data = dir.join("data");
        for b in block_dirs(blocks) {
            copy_block(&b, &data.join(b.file_name().expect("name")));
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("config");
        let addr = hestia_testing::free_addr();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=3650d");
        if !compact {
            cmd.args([
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
            ]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus must be installed (make deps)");
        let p = Self {
            proc: Proc(child),
            addr,
            data,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = client.get(p.url("/-/ready")).send().await {
                if r.status().is_success() {
                    return p;
                }
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn pid(&self) -> String {
        self.proc.0.id().to_string()
    }

    async fn metric(&self, client: &reqwest::Client, name: &str) -> f64 {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in Prometheus' metrics"))
    }

    /// Waits until Prometheus has compacted (its first compaction starts a minute after it
    /// started) and neither its block count nor its compaction count moved for 15 s.
    async fn wait_compacted(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut last = (f64::NAN, f64::NAN);
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = (
                self.metric(client, "prometheus_tsdb_blocks_loaded").await,
                self.metric(client, "prometheus_tsdb_compactions_total")
                    .await,
            );
            if now != last {
                (last, since) = (now, Instant::now());
            } else if now.1 > 0.0 && since.elapsed() >= Duration::from_secs(15) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not finish compacting"
            );
        }
    }

    async fn query(
        &self,
        client: &reqwest::Client,
        params: &[(&str, String)],
    ) -> (Duration, Bytes) {
        let t = Instant::now();
        let r = client
            .get(self.url("/api/v1/query_range"))
            .query(params)
            .send()
            .await
            .expect("prometheus query");
        let status = r.status();
        let body = r.bytes().await.expect("prometheus body");
        let took = t.elapsed();
        assert!(
            status.is_success(),
            "prometheus: {status} {}",
            String::from_utf8_lossy(&body)
        );
        (took, body)
    }
}

/// A range query through the querier's router, as the query frontend sends it.
async fn hestia_query(app: &Router, params: &[(&str, String)]) -> (Duration, Bytes) {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let req = Request::get(format!("/api/v1/query_range?{query}"))
        .header(hestia_querier::TENANT_HEADER, TENANT)
        .body(Body::empty())
        .expect("request");
    let t = Instant::now();
    let resp = app.clone().oneshot(req).await.expect("querier");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let took = t.elapsed();
    assert!(
        status.is_success(),
        "hestia: {status} {}",
        String::from_utf8_lossy(&body)
    );
    (took, body)
}

type Matrix = BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>>;

fn matrix(body: &[u8]) -> Matrix {
    let v: Value = serde_json::from_slice(body).expect("json");
    let result = v["data"]["result"].as_array().expect("a matrix");
    result
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .expect("metric")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("label").to_string()))
                .collect();
            let points = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    let t = p[0].as_f64().expect("time");
                    let v = p[1].as_str().expect("value").parse().expect("float");
                    (t, v)
                })
                .collect();
            (labels, points)
        })
        .collect()
}

/// Panics unless both answers hold the same series, times and values (within 1e-9 relative).
fn check_agree(name: &str, ours: &Matrix, theirs: &Matrix) {
    assert!(!theirs.is_empty(), "{name}: Prometheus answered no series");
    let keys = |m: &Matrix| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(ours), keys(theirs), "{name}: different series");
    for (labels, a) in ours {
        let b = &theirs[labels];
        assert_eq!(a.len(), b.len(), "{name} {labels:?}: point counts differ");
        for (x, y) in a.iter().zip(b) {
            let close = x.1 == y.1 || (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(y.1.abs());
            assert!(
                x.0 == y.0 && close,
                "{name} {labels:?}: Hestia {x:?}, Prometheus {y:?}"
            );
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / 1048576.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let began = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let [work, promtool_blocks, staging] = ["work", "promtool-blocks", "staging"].map(|d| {
        let p = root.join(d);
        std::fs::create_dir_all(&p).expect("dir");
        p
    });
    let replicas: [PathBuf; REPLICAS] = std::array::from_fn(|r| {
        let p = root.join(format!("hestia-replica-{}", r + 1));
        std::fs::create_dir_all(&p).expect("dir");
        p
    });
    // 30 days of 2 h ranges ending a day ago: older than `query_ingesters_within`.
    let end = (now_ms() - DAY) / BLOCK * BLOCK;
    let start = end - DAYS * DAY;

    let (series, samples) = write_blocks(&work, &replicas, &promtool_blocks, start, end);
    let ours = footprint(&replicas[0]);
    let promtool = footprint(&promtool_blocks);
    assert_eq!((ours.samples, promtool.samples), (samples, samples));
    println!(
        "wrote {series} series × {DAYS} days at {} s = {samples} samples, {} blocks of 2 h each by Hestia's writer ({REPLICAS} replicas) and by promtool, in {:.0} s",
        INTERVAL / 1000,
        promtool.blocks,
        began.elapsed().as_secs_f64()
    );

    // The querier's defaults, but for the data directory: `[storage] backend = "filesystem"`
    // under it, block cache 256 MiB, index headers under it, 512 MiB of open headers.
    let mut cfg = Config::default();
    cfg.server.data_dir = root.join("querier");
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let bucket = Bucket::open(&cfg.storage, &cfg.server.data_dir).expect("bucket");
    backfill(&bucket, &tenant, &promtool_blocks, &staging).await;

    let client = reqwest::Client::new();
    let prom = Prometheus::start(&client, &root.join("prometheus"), &promtool_blocks, false).await;
    let prom_before = memory(&prom.pid());
    // What the bench process holds from here on is the querier's.
    let ours_before = memory("self");
    let blocks = BlockStore::open(&cfg).expect("block store");
    let kv: Arc<dyn hestia_ring::Kv> = Arc::new(hestia_ring::MemoryKv::default());
    let ring = Arc::new(
        hestia_ring::RingClient::start(kv, &cfg.ring)
            .await
            .expect("ring"),
    );
    let pool = Arc::new(hestia_proto::IngesterPool::default());
    let querier = Querier::with_blocks(cfg.querier.clone(), ring, pool, blocks.clone());
    let app = hestia_querier::router(Arc::new(querier));
    println!(
        "uploaded promtool's blocks for tenant {TENANT} (filesystem bucket); the querier \
         in-process with its default configuration; Prometheus on copies, compaction off"
    );

    let (qstart, qend) = ((start + HOUR) / 1000, end / 1000);
    let queries: Vec<(&str, Vec<(&str, String)>)> = QUERIES
        .iter()
        .map(|(name, q, step)| {
            let params = vec![
                ("query", q.to_string()),
                ("start", qstart.to_string()),
                ("end", qend.to_string()),
                ("step", step.to_string()),
            ];
            (*name, params)
        })
        .collect();
    println!();
    println!(
        "30-day range queries, both on the same 2 h blocks: first run, median of {RUNS} after \
         one warm-up (ms); peak RSS growth while the query ran (MiB)"
    );
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>8} {:>6} {:>7} {:>7}",
        "query", "h.first", "p.first", "hestia", "prom", "ratio", "h.peak", "p.peak"
    );
    let mut answers = Vec::new();
    let mut medians = Vec::new();
    for (name, params) in &queries {
        reset_peak("self");
        reset_peak(&prom.pid());
        let (h_first, ours_body) = hestia_query(&app, params).await;
        let (p_first, theirs_body) = prom.query(&client, params).await;
        let answer = matrix(&ours_body);
        check_agree(name, &answer, &matrix(&theirs_body));
        answers.push(answer);
        hestia_query(&app, params).await;
        prom.query(&client, params).await;
        // Alternate the two so that background load hits both alike.
        let (mut h, mut p) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            h.push(hestia_query(&app, params).await.0);
            p.push(prom.query(&client, params).await.0);
        }
        let (h, p) = (median(h), median(p));
        medians.push(h);
        println!(
            "{name:<30} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>6.2} {:>7.0} {:>7.0}",
            ms(h_first),
            ms(p_first),
            ms(h),
            ms(p),
            ms(h) / ms(p),
            memory("self").peak - ours_before.rss,
            memory(&prom.pid()).peak - prom_before.rss,
        );
    }
    let ours_after = memory("self");
    let prom_after = memory(&prom.pid());
    let stats = blocks.stats();
    drop(prom);
    println!(
        "RSS (anonymous part), MiB: hestia querier (bench process) {:.0} ({:.0}) before, {:.0} ({:.0}) after; \
         prometheus {:.0} ({:.0}) before, {:.0} ({:.0}) after",
        ours_before.rss, ours_before.anon, ours_after.rss, ours_after.anon,
        prom_before.rss, prom_before.anon, prom_after.rss, prom_after.anon,
    );
    println!(
        "hestia block store: {} open blocks, {:.1} MiB of index headers, {:.1} MiB of cached pages; \
         {:.1} MiB fetched from the bucket in {} reads",
        stats.open_blocks,
        mib(stats.open_header_bytes),
        mib(stats.pages.cached_bytes),
        mib(stats.pages.fetched_bytes as usize),
        stats.pages.fetches
    );

    let hc = compact_hestia(root, &tenant, &replicas).await;
    assert_eq!(hc.blocks.samples, samples, "one copy of every sample");
    println!();
    println!(
        "hestia's compactor: {} blocks ({REPLICAS} replicas of {} ranges) → {} blocks in {} passes \
         ({} compactions), wall {:.1} s, CPU {:.1} s, peak RSS +{:.0} MiB",
        REPLICAS * ours.blocks,
        ours.blocks,
        hc.blocks.blocks,
        hc.passes,
        hc.compactions,
        hc.wall.as_secs_f64(),
        hc.cpu,
        hc.peak_mib
    );
    // A second querier over the compactor's bucket, reading the index the compactor wrote.
    let blocks2 = BlockStore::open(&hc.cfg).expect("block store");
    let kv: Arc<dyn hestia_ring::Kv> = Arc::new(hestia_ring::MemoryKv::default());
    let ring = Arc::new(
        hestia_ring::RingClient::start(kv, &hc.cfg.ring)
            .await
            .expect("ring"),
    );
    let pool = Arc::new(hestia_proto::IngesterPool::default());
    let querier2 = Querier::with_blocks(hc.cfg.querier.clone(), ring, pool, blocks2);
    let app2 = hestia_querier::router(Arc::new(querier2));

    let compacting = Instant::now();
    let prom = Prometheus::start(&client, &root.join("compacted"), &promtool_blocks, true).await;
    prom.wait_compacted(&client).await;
    let compacted = footprint(&prom.data);
    assert_eq!(compacted.samples, samples);
    println!();
    println!(
        "the same queries on compacted blocks: Hestia's compactor's {} and Prometheus' {} ({:.0} s); \
         median of {RUNS} after one warm-up (ms), Hestia on 2 h blocks from above",
        hc.blocks.blocks,
        compacted.blocks,
        compacting.elapsed().as_secs_f64()
    );
    println!(
        "{:<30} {:>8} {:>9} {:>8} {:>6} {:>6}",
        "query", "h.2h", "h.compact", "p.compact", "ratio", "2h/c"
    );
    for ((name, params), (ours, h)) in queries.iter().zip(answers.iter().zip(&medians)) {
        let (_, body) = prom.query(&client, params).await;
        check_agree(name, ours, &matrix(&body));
        let (_, body) = hestia_query(&app2, params).await;
        check_agree(name, &matrix(&body), ours);
        hestia_query(&app2, params).await;
        let (mut hc_runs, mut p_runs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            hc_runs.push(hestia_query(&app2, params).await.0);
            p_runs.push(prom.query(&client, params).await.0);
        }
        let (c, p) = (median(hc_runs), median(p_runs));
        println!(
            "{name:<30} {:>8.1} {:>9.1} {:>8.1} {:>6.2} {:>6.2}",
            ms(*h),
            ms(c),
            ms(p),
            ms(c) / ms(p),
            ms(*h) / ms(c)
        );
    }
    let compacted_mem = memory(&prom.pid());
    drop(prom);
    println!(
        "prometheus RSS {:.0} MiB ({:.0} anonymous), peak {:.0}",
        compacted_mem.rss, compacted_mem.anon, compacted_mem.peak
    );

    println!();
    println!("bytes per sample: all files of the blocks (index, chunks, meta.json, tombstones)");
    println!(
        "{:<34} {:>6} {:>11} {:>7} {:>7} {:>7}",
        "", "blocks", "bytes", "index", "chunks", "total"
    );
    for (name, f) in [
        ("hestia (ingester's 2 h blocks)", &ours),
        ("hestia (compactor, 3 replicas → 1)", &hc.blocks),
        ("prometheus (promtool's 2 h blocks)", &promtool),
        ("prometheus (compacted)", &compacted),
    ] {
        println!(
            "{name:<34} {:>6} {:>11} {:>7.3} {:>7.3} {:>7.3}",
            f.blocks,
            f.total(),
            f.per_sample(f.index),
            f.per_sample(f.chunks),
            f.per_sample(f.total())
        );
    }
    let ratio = |f: &Footprint| ours.total() as f64 / f.total() as f64;
    println!(
        "ratio hestia/promtool {:.3}, hestia/compacted {:.3}",
        ratio(&promtool),
        ratio(&compacted)
    );
    let stored = hc.objects as f64 / samples as f64;
    println!(
        "object store per acknowledged sample at RF=3: {:.3} B shipped ({REPLICAS} replicas), \
         {stored:.3} B after Hestia's compactor (every object of the tenant: blocks, bucket \
         index); Prometheus' compacted blocks {:.3} B; ratio {:.3} (goal ≤ 1.05), blocks alone {:.3}",
        REPLICAS as f64 * ours.per_sample(ours.total()),
        compacted.per_sample(compacted.total()),
        stored / compacted.per_sample(compacted.total()),
        hc.blocks.total() as f64 / compacted.total() as f64,
    );
    println!("total {:.0} s", began.elapsed().as_secs_f64());
}
