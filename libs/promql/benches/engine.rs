//! Dashboard-style PromQL queries over [`MemoryStorage`] holding 10,000 series × 2 h at 15 s:
//! 2,000 counters, 2,000 gauges, 500 `up` series and 500 classic histograms of 11 `le` buckets,
//! spread over 25 jobs. Each query runs as a range query over the 2 h at step 60 s and as an
//! instant query at the end.

use criterion::{criterion_group, criterion_main, Criterion};
use hestia_model::Labels;
use hestia_promql::{Engine, EngineOptions, MemoryStorage};

const SCRAPE_MS: i64 = 15_000;
const SPAN_MS: i64 = 2 * 3_600_000;
const START: i64 = 1_700_000_000_000;
const END: i64 = START + SPAN_MS;
const JOBS: usize = 25;
const BOUNDS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];

fn labels(name: &str, job: usize, inst: usize, extra: Option<(&str, &str)>) -> Labels {
    let job = format!("job-{job}");
    let inst = format!("10.0.{}.{}:9100", inst / 250, inst % 250);
    let mut pairs = vec![("__name__", name), ("job", &job), ("instance", &inst)];
    if let Some(e) = extra {
        pairs.push(e);
    }
    Labels::from_pairs(pairs)
}

fn storage() -> MemoryStorage {
    let mut st = MemoryStorage::new();
    let steps = SPAN_MS / SCRAPE_MS + 1;
    // A cheap deterministic pseudo-random sequence keeps the data irregular.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    for inst in 0..2000 {
        let (c, g) = (
            labels("http_requests_total", inst % JOBS, inst, None),
            labels("memory_bytes", inst % JOBS, inst, None),
        );
        let mut v = 0.0;
        for k in 0..steps {
            let t = START + k * SCRAPE_MS;
            v += rnd() * 10.0;
            st.add_float(&c, t, v);
            st.add_float(&g, t, 1e6 + rnd() * 1e5);
        }
    }
    for inst in 0..500 {
        let up = labels("up", inst % JOBS, inst, None);
        let mut counts = [0.0f64; 11];
        let buckets: Vec<Labels> = BOUNDS
            .iter()
            .map(|le| {
                labels(
                    "latency_seconds_bucket",
                    inst % JOBS,
                    inst,
                    Some(("le", le)),
                )
            })
            .collect();
        for k in 0..steps {
            let t = START + k * SCRAPE_MS;
            st.add_float(&up, t, 1.0);
            let obs = (rnd() * 20.0) as usize;
            for _ in 0..obs {
                let b = (rnd() * 11.0) as usize;
                counts[b..].iter_mut().for_each(|c| *c += 1.0);
            }
            for (l, c) in buckets.iter().zip(counts) {
                st.add_float(l, t, c);
            }
        }
    }
    st
}

const QUERIES: &[(&str, &str)] = &[
    ("rate", "rate(http_requests_total[5m])"),
    (
        "sum_by_rate",
        "sum by (job) (rate(http_requests_total[5m]))",
    ),
    (
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(latency_seconds_bucket[5m])))",
    ),
    ("topk_rate", "topk(5, rate(http_requests_total[5m]))"),
    (
        "max_over_time_subquery",
        "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    ),
    ("avg_by_gauge", "avg by (job) (memory_bytes)"),
    ("count_up", "count(up)"),
    (
        "ratio",
        "sum by (job) (rate(http_requests_total[5m])) / on (job) count by (job) (up)",
    ),
];

fn bench(c: &mut Criterion) {
    let st = storage();
    let engine = Engine::new(EngineOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let mut g = c.benchmark_group("promql");
    g.sample_size(10);
    for (name, q) in QUERIES {
        g.bench_function(format!("range/{name}"), |b| {
            b.iter(|| {
                rt.block_on(engine.range_query(&st, q, START, END, 60_000))
                    .expect("query")
            })
        });
        g.bench_function(format!("instant/{name}"), |b| {
            b.iter(|| {
                rt.block_on(engine.instant_query(&st, q, END))
                    .expect("query")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
