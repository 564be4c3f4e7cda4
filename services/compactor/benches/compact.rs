//! `cargo bench -p hestia-compactor --bench compact`: compaction throughput of one tenant.
//!
//! 1,000 node-like series (counters and gauges) sampled every 15 s, shipped as 3 replica blocks
//! per 2 h range (RF=3) into a filesystem bucket. Three passes are timed, each on a fresh
//! bucket: one range of identical replicas (one vertical merge: 3 blocks → 1, equal chunks are
//! copied), the same with each replica missing a different 1% of the samples (as after an
//! ingester restart: chunks differ and are decoded, merged and encoded again), and 12 h of
//! identical replicas (six vertical merges, then the six 2 h blocks into one 12 h block); then
//! one range of a tenant of 1,000,000 series sampled every 60 s (360 M samples in the three
//! replicas), for the peak RSS of a large tenant.
//! Printed per pass: wall and CPU time (the whole process, merge threads included), samples
//! read per CPU second, bytes downloaded and uploaded, bytes per unique sample in the bucket
//! before (all replicas) and after (the one block left), the RSS before the pass and the growth
//! of the peak RSS during it. The blocks are written and uploaded by a child process (this
//! bench run again with `WRITE_ENV` set), so the compacting process holds nothing else.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hestia_block::{symbols_of, xor_chunks, BlockOptions, BlockSource, BlockWriter};
use hestia_bucket::Bucket;
use hestia_compactor::{Compactor, Retentions};
use hestia_config::Config;
use hestia_model::{Labels, TenantId};
use hestia_ring::MemoryKv;
use object_store::local::LocalFileSystem;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HOUR: i64 = 3_600_000;
const STEP: i64 = 15_000;
/// Series per tenant; `HESTIA_BENCH_SERIES` overrides it (one range of identical replicas
/// is then compacted, the passes' other cases skipped).
const SERIES: usize = 1000;
/// The large tenant: series and sample interval.
const LARGE_SERIES: usize = 1_000_000;
const LARGE_STEP: i64 = 60_000;
/// Set in the child process that writes a case's blocks: `<bucket dir>|<series>|<ranges>|<gaps>|<step ms>`.
const WRITE_ENV: &str = "HESTIA_BENCH_WRITE";
const TENANT: &str = "123456789012_ws-bench";
const REPLICAS: usize = 3;
/// A day-aligned start long past, so every window is closed.
const BASE: i64 = 1_700_000_000_000 / (24 * HOUR) * (24 * HOUR);

/// The series' labels, sorted, with their index in [`samples`].
fn labels(n: usize) -> Vec<(Labels, usize)> {
    let mut out: Vec<(Labels, usize)> = (0..n)
        .map(|i| {
            let name = if i.is_multiple_of(3) {
                "node_network_receive_bytes_total"
            } else {
                "node_memory_active_bytes"
            };
            let labels = Labels::from_pairs([
                ("__name__", name),
                ("device", &format!("dev{}", i % 10)),
                ("instance", &format!("host-{}:9100", i / 10)),
                ("job", "node"),
            ]);
            (labels, i)
        })
        .collect();
    out.sort();
    out
}

/// Series `i`'s samples in `[min, max)`: a third counters (rates varying per series), the rest
/// gauges (random walks), values rounded as exporters report them; made one series at a time,
/// so the data never sits in memory.
fn samples(i: usize, min: i64, max: i64, step: i64) -> Vec<(i64, f64)> {
    let mut rng = StdRng::seed_from_u64(i as u64 ^ (min as u64));
    let counter = i.is_multiple_of(3);
    let mut v: f64 = rng.random_range(1e6..1e9_f64).round();
    (min..max)
        .step_by(step as usize)
        .map(|t| {
            v = if counter {
                v + rng.random_range(0.0..50_000.0_f64).round()
            } else {
                (v + rng.random_range(-4096.0..4096.0_f64).round()).max(0.0)
            };
            (t, v)
        })
        .collect()
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|p| p.1).unwrap_or_default();
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime, in clock ticks of 1/100 s.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

/// Peak RSS (kB) since the last reset.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Whether replica `replica` lacks the sample at step `k` of series `i` (`gaps`: 1 in 100).
fn missing(gaps: bool, replica: usize, i: usize, k: i64) -> bool {
    gaps && (k as usize + 37 * i + 31 * replica).is_multiple_of(100)
}

fn bucket_at(root: &Path) -> Bucket {
    let store = Arc::new(
        LocalFileSystem::new_with_prefix(root)
            .expect("store")
            .with_automatic_cleanup(true),
    );
    Bucket::new(store)
}

/// The child process: writes and uploads the replica blocks of the case `spec` describes.
async fn write_case(spec: &str) {
    let f: Vec<&str> = spec.split('|').collect();
    let root = PathBuf::from(f[0]);
    let (n, ranges): (usize, i64) = (f[1].parse().expect("n"), f[2].parse().expect("ranges"));
    let (gaps, step): (bool, i64) = (f[3].parse().expect("gaps"), f[4].parse().expect("step"));
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let tb = bucket_at(&root).tenant(&tenant);
    let local = root.with_file_name("local");
    for r in 0..ranges {
        let (min, max) = (BASE + r * 2 * HOUR, BASE + (r + 1) * 2 * HOUR);
        let series = labels(n);
        for replica in 0..REPLICAS {
            let opts = BlockOptions {
                tenant: tenant.clone(),
                ingester: Some(format!("ingester-{replica}")),
                source: BlockSource::Ingester,
                time_range: Some((min, max)),
            };
            let mut w = BlockWriter::new(&local, opts, symbols_of(series.iter().map(|s| &s.0)))
                .expect("writer");
            for (labels, i) in &series {
                let kept: Vec<(i64, f64)> = samples(*i, min, max, step)
                    .into_iter()
                    .enumerate()
                    .filter(|(k, _)| !missing(gaps, replica, *i, *k as i64))
                    .map(|(_, s)| s)
                    .collect();
                w.add_series(labels, &xor_chunks(&kept, 120).expect("chunks"))
                    .expect("series");
            }
            let meta = w.finish().expect("block");
            let block = local.join(meta.ulid.to_string());
            tb.upload_block(&block).await.expect("upload");
            std::fs::remove_dir_all(&block).expect("remove");
        }
    }
}

async fn run(n: usize, ranges: i64, gaps: bool, step: i64) {
    let writing = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(&root).expect("bucket dir");
    let status = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .env(
            WRITE_ENV,
            format!("{}|{n}|{ranges}|{gaps}|{step}", root.display()),
        )
        .status()
        .expect("writer process");
    assert!(status.success(), "writer process: {status}");
    let written = writing.elapsed().as_secs_f64();
    let bucket = bucket_at(&root);
    let tenant = TenantId::parse(TENANT).expect("tenant");
    let tb = bucket.tenant(&tenant);
    let unique = (n as u64) * ((2 * HOUR / step) as u64) * ranges as u64;

    let before: u64 = {
        let (_, listing) = hestia_bucket::BucketIndex::build(&tb).await.expect("index");
        listing.block_bytes.values().sum()
    };
    let mut cfg = Config::default();
    cfg.server.data_dir = dir.path().join("data");
    cfg.compactor.first_level_wait = Duration::ZERO;
    cfg.compactor.deletion_delay = Duration::ZERO;
    cfg.compactor.ring.wait_stability = Duration::ZERO;
    cfg.validate().expect("config");
    let c = Compactor::start(
        &cfg,
        bucket,
        Arc::new(MemoryKv::default()),
        Retentions::new(),
    )
    .await
    .expect("compactor");
    // Resets the peak RSS to the current RSS (Linux: "5" to clear_refs).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (rss0, cpu0, wall0) = (rss_kb(), cpu_seconds(), Instant::now());
    let report = c.run_once().await;
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    let peak = peak_rss_kb().saturating_sub(rss0);
    assert!(!report.failed(), "{report:?}");
    let t = &report.tenants[0];
    let (index, listing) = hestia_bucket::BucketIndex::build(&tb).await.expect("index");
    let live: Vec<_> = index
        .blocks
        .iter()
        .filter(|b| index.deletion_mark(b.block_id).is_none())
        .collect();
    assert_eq!(live.len(), 1, "{index:?}");
    let meta = tb.read_meta(live[0].block_id).await.expect("meta");
    assert_eq!(meta.stats.num_samples, unique, "{t:?}");
    let stored = listing.block_bytes[&live[0].block_id];
    let kind = if gaps {
        "replicas 1% apart"
    } else {
        "identical replicas"
    };
    println!(
        "{ranges} × 2 h, {n} series every {} s, RF={REPLICAS}, {kind} (written and uploaded in \
         {written:.0} s): {} compactions, {} blocks \
         in, {} samples read, {} written ({} duplicates), {unique} unique; wall {wall:.2} s, \
         CPU {cpu:.2} s, {:.2} M samples read/CPU s; {} bytes downloaded, {} uploaded; \
         {:.3} bytes per unique sample before, {:.3} after; RSS {:.1} MiB before, peak +{:.1} MiB",
        step / 1000,
        t.compactions,
        t.blocks_in,
        t.samples_in,
        t.samples_out,
        t.duplicates,
        t.samples_in as f64 / cpu / 1e6,
        t.bytes_in,
        t.bytes_out,
        before as f64 / unique as f64,
        stored as f64 / unique as f64,
        rss0 as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    c.stop().await.expect("stop");
}

fn main() {
    if let Ok(spec) = std::env::var(WRITE_ENV) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(write_case(&spec));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match std::env::var("HESTIA_BENCH_SERIES")
            .ok()
            .and_then(|n| n.parse().ok())
        {
            Some(n) => run(n, 1, false, STEP).await,
            None => {
                run(SERIES, 1, false, STEP).await;
                run(SERIES, 1, true, STEP).await;
                run(SERIES, 6, false, STEP).await;
                run(LARGE_SERIES, 1, false, LARGE_STEP).await;
            }
        }
    });
}
