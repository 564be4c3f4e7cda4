//! XOR chunk codec cost per sample.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hestia_chunkenc::{XorAppender, XorIter};
use std::hint::black_box;

const SAMPLES: usize = 120;

/// A realistic scrape: 15 s interval with jitter, a slowly growing counter.
fn samples() -> Vec<(i64, f64)> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut t = 1_700_000_000_000i64;
    let mut v = 1000.0;
    (0..SAMPLES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += 15_000 + (x % 7) as i64 - 3;
            v += (x % 100) as f64;
            (t, v)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let s = samples();
    let mut g = c.benchmark_group("xor");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    g.bench_function("xor_append", |b| {
        b.iter(|| {
            let mut a = XorAppender::with_capacity(256);
            for &(t, v) in &s {
                let _ = a.append(t, v);
            }
            black_box(a.num_samples())
        })
    });
    let mut a = XorAppender::new();
    for &(t, v) in &s {
        let _ = a.append(t, v);
    }
    let chunk = a.into_chunk();
    g.bench_function("xor_iterate", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let mut last = 0;
            for (t, v) in XorIter::new(black_box(chunk.bytes())).into_iter().flatten() {
                sum += v;
                last = t;
            }
            black_box((sum, last))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
