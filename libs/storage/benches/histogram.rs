//! Native histogram chunk codec and Tsdb append cost per sample: a 20-bucket exponential histogram
//! scraped every 15 s whose buckets grow like a busy request-latency counter.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hestia_model::{Labels, TenantId};
use hestia_storage::{
    CounterResetHint, Histogram, HistogramAppender, HistogramIter, SeriesAppend, Span, Tsdb,
    TsdbOptions,
};
use std::hint::black_box;

const SAMPLES: usize = 120;
const BUCKETS: usize = 20;
const SERIES: usize = 100;

fn samples() -> Vec<(i64, Histogram)> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut t = 1_700_000_000_000i64;
    let mut buckets = vec![0.0; BUCKETS];
    (0..SAMPLES)
        .map(|_| {
            t += 15_000;
            for b in buckets.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b += (x % 50) as f64;
            }
            let count: f64 = buckets.iter().sum();
            let h = Histogram {
                counter_reset_hint: CounterResetHint::NotCounterReset,
                schema: 3,
                zero_threshold: 1e-128,
                count,
                sum: count * 0.137,
                positive_spans: vec![Span {
                    offset: -5,
                    length: BUCKETS as u32,
                }],
                positive_buckets: buckets.clone(),
                ..Histogram::default()
            };
            (t, h)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let s = samples();
    let mut g = c.benchmark_group("histogram");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    g.bench_function("histogram_append", |b| {
        b.iter(|| {
            let mut a = HistogramAppender::new();
            for (t, h) in &s {
                let _ = a.append(*t, h);
            }
            black_box(a.num_samples())
        })
    });
    let mut a = HistogramAppender::new();
    for (t, h) in &s {
        let _ = a.append(*t, h);
    }
    println!(
        "histogram chunk: {SAMPLES} samples of {BUCKETS} buckets in {} bytes ({:.1} bytes/sample)",
        a.bytes().len(),
        a.bytes().len() as f64 / SAMPLES as f64
    );
    let chunk = a.into_bytes();
    g.bench_function("histogram_iterate", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for (_, h) in HistogramIter::new(black_box(&chunk)).into_iter().flatten() {
                sum += h.count;
            }
            black_box(sum)
        })
    });
    g.finish();

    let dir = tempfile::tempdir().expect("tempdir");
    let opts = TsdbOptions {
        checkpoint_interval: None,
        sync_writes: false,
        ..TsdbOptions::default()
    };
    let db = Tsdb::open(dir.path(), opts).expect("open");
    let tenant = TenantId::parse("bench").expect("tenant");
    let mut batch: Vec<SeriesAppend> = (0..SERIES)
        .map(|i| SeriesAppend {
            labels: Labels::from_pairs([
                ("__name__", "rpc_duration_seconds".to_string()),
                ("instance", format!("10.0.0.{i}:9100")),
            ]),
            histograms: vec![s[0].clone()],
            ..SeriesAppend::default()
        })
        .collect();
    let mut t = 0i64;
    let mut n = 0usize;
    let mut g = c.benchmark_group("tsdb");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("tsdb_append_histogram_nosync", |b| {
        b.iter(|| {
            t += 15_000;
            n = (n + 1) % SAMPLES;
            for sa in batch.iter_mut() {
                sa.histograms[0] = (t, s[n].1.clone());
            }
            let r = db.append(&tenant, &batch).expect("append");
            assert_eq!(r.samples_appended, SERIES);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
