//! Tsdb append cost per sample: 1000 series × 1 sample per call. `tsdb_append` includes the fsync
//! of every call; `tsdb_append_nosync` isolates the CPU cost.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hestia_model::{Labels, Sample, TenantId};
use hestia_storage::{SeriesAppend, Tsdb, TsdbOptions};

const SERIES: usize = 1000;

fn bench_append(c: &mut Criterion, name: &str, sync_writes: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = TsdbOptions {
        checkpoint_interval: None,
        sync_writes,
        ..TsdbOptions::default()
    };
    let db = Tsdb::open(dir.path(), opts).expect("open");
    let tenant = TenantId::parse("bench").expect("tenant");
    let mut batch: Vec<SeriesAppend> = (0..SERIES)
        .map(|i| {
            SeriesAppend::floats(
                Labels::from_pairs([
                    ("__name__", "http_requests_total".to_string()),
                    ("job", "api".to_string()),
                    ("instance", format!("10.0.{}.{}:9100", i / 250, i % 250)),
                    ("code", "200".to_string()),
                ]),
                vec![Sample::new(0, 0.0)],
            )
        })
        .collect();
    let mut t = 0i64;
    let mut g = c.benchmark_group("tsdb");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            t += 15_000;
            for (i, s) in batch.iter_mut().enumerate() {
                s.samples[0] = Sample::new(t, (t / 1000 + i as i64) as f64);
            }
            let r = db.append(&tenant, &batch).expect("append");
            assert_eq!(r.samples_appended, SERIES);
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    bench_append(c, "tsdb_append", true);
    bench_append(c, "tsdb_append_nosync", false);
}

criterion_group!(benches, bench);
criterion_main!(benches);
