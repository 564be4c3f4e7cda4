//! `make bench-query`: dashboard-style PromQL over 10,010 series × 2 h at 15 s, on `hestia all`
//! and on Debian's Prometheus 2.42 loaded with the same data, measured side by side in one run.
//! Prints the median latency of each query on both and the Hestia/Prometheus ratio.
#[path = "../tests/it/common/mod.rs"]
mod common;

// The allocator the `hestia` binary ships with (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use common::dataset::{Dataset, Spec, SERIES_PER_INSTANCE};
use common::prometheus::Prometheus;
use common::*;

const RUNS: usize = 7;

const QUERIES: &[(&str, &str)] = &[
    ("rate", "rate(hd_requests_total[5m])"),
    ("sum by rate", "sum by (job) (rate(hd_requests_total[5m]))"),
    (
        "p99 histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(hd_latency_seconds_bucket[5m])))",
    ),
    (
        "p90 by job",
        "histogram_quantile(0.9, sum by (job, le) (rate(hd_latency_seconds_bucket[5m])))",
    ),
    ("topk rate", "topk(5, rate(hd_requests_total[5m]))"),
    (
        "subquery max rate",
        "max_over_time(sum by (job) (rate(hd_requests_total[5m]))[30m:1m])",
    ),
    ("avg gauge by job", "avg by (job) (hd_gauge)"),
    ("count up", "count(up == 1)"),
    (
        "error ratio",
        "sum by (job) (rate(hd_requests_total{code=\"500\"}[5m])) / sum by (job) (rate(hd_requests_total[5m]))",
    ),
    (
        "latency mean",
        "sum(rate(hd_latency_seconds_sum[5m])) / sum(rate(hd_latency_seconds_count[5m]))",
    ),
    ("increase 1h", "sum(increase(hd_requests_total[1h]))"),
    ("avg_over_time", "avg(avg_over_time(hd_gauge[10m]))"),
];

async fn timed(client: &reqwest::Client, url: &str, params: &[(&str, String)]) -> Duration {
    let start = Instant::now();
    let r = client.get(url).query(params).send().await.expect("send");
    let status = r.status();
    let body = r.bytes().await.expect("body");
    let elapsed = start.elapsed();
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Unauthenticated like Prometheus' API (tests/common turns authentication off).
    let hestia = start_in_process_with(&dir.path().join("hestia"), |cfg| {
        // The data set spans 2 h; AMP's default refuses samples older than 1 h.
        cfg.limits.reject_old_samples_max_age = Duration::from_secs(3 * 3600);
        // Loading 2 h of data as fast as possible is far above AMP's 70,000 samples/s quota.
        cfg.limits.ingestion_rate = 1e9;
    })
    .await;
    let base = format!("http://{}", hestia.addr);
    let prom = Prometheus::start(
        &dir.path().join("prometheus"),
        "global:\n  scrape_interval: 15s\n",
        &[],
    )
    .await;
    // As the `hestia` binary does; after Prometheus started, which would inherit it.
    hestia_telemetry::disable_transparent_huge_pages();

    let scrapes = 480;
    let end_s = now_ms() / 1000 - 30;
    let start_ms = (end_s - scrapes as i64 * 15) * 1000;
    let data = Dataset::generate(&Spec {
        jobs: 5,
        instances_per_job: 143,
        churn_series: 0,
        start_ms,
        interval_ms: 15_000,
        scrapes,
        seed: 7,
    });
    assert_eq!(data.num_series(), 5 * 143 * SERIES_PER_INSTANCE);
    let client = reqwest::Client::new();
    let load = Instant::now();
    for k in 0..data.timestamps.len() {
        let body = data.request(k);
        let (status, text) = remote_write(&client, &base, WS, body.clone()).await;
        assert!(status < 300, "hestia write: {status} {text}");
        prom.remote_write(&client, body).await;
    }
    println!(
        "loaded {} series, {} samples into both in {:.1} s",
        data.num_series(),
        data.num_samples(),
        load.elapsed().as_secs_f64()
    );

    let ours_r = format!("{base}/workspaces/{WS}/api/v1/query_range");
    let ours_q = format!("{base}/workspaces/{WS}/api/v1/query");
    let theirs_r = format!("{}/api/v1/query_range", prom.base());
    let theirs_q = format!("{}/api/v1/query", prom.base());
    let (start, end) = (start_ms / 1000 + 600, end_s);
    println!(
        "{:<26} {:>12} {:>12} {:>8}   {:>12} {:>12} {:>8}",
        "query", "range hestia", "prometheus", "ratio", "instant h.", "prometheus", "ratio"
    );
    let mut worst: f64 = 0.0;
    for (name, q) in QUERIES {
        let range = [
            ("query", q.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", "60".to_string()),
        ];
        let instant = [("query", q.to_string()), ("time", end.to_string())];
        let (mut hr, mut pr, mut hi, mut pi) = (vec![], vec![], vec![], vec![]);
        // Alternate the two servers so background noise hits both alike; the first run warms up.
        for run in 0..=RUNS {
            let a = timed(&client, &ours_r, &range).await;
            let b = timed(&client, &theirs_r, &range).await;
            let c = timed(&client, &ours_q, &instant).await;
            let d = timed(&client, &theirs_q, &instant).await;
            if run > 0 {
                hr.push(a);
                pr.push(b);
                hi.push(c);
                pi.push(d);
            }
        }
        let (hr, pr, hi, pi) = (median(hr), median(pr), median(hi), median(pi));
        let (rr, ri) = (ms(hr) / ms(pr), ms(hi) / ms(pi));
        worst = worst.max(rr).max(ri);
        println!(
            "{name:<26} {:>10.2}ms {:>10.2}ms {rr:>8.2}   {:>10.2}ms {:>10.2}ms {ri:>8.2}",
            ms(hr),
            ms(pr),
            ms(hi),
            ms(pi)
        );
    }
    println!("worst Hestia/Prometheus latency ratio: {worst:.2} (goal ≤ 1.0)");
    hestia.shutdown().await.expect("shutdown");
}
