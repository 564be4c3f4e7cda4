//! Differential test: the same generated data set is remote-written to Debian's Prometheus 2.42 and
//! to `hestia all`, then a few hundred instant and range queries must give equal answers (values
//! within 1e-6 relative, NaN = NaN, the same label sets). Sample timestamps sit 123 ms past a
//! whole second and every query time, range and step is whole seconds, so no sample lies on a range
//! boundary (where 2.42's closed and 3.x's left-open ranges differ). Other 2.42/3.x differences
//! are kept out of the data and the query list: `rate` extrapolation next to a counter's zero
//! point (see `dataset.rs`), `atan2` keeping the metric name in 2.42, and tie order in `topk`.

use std::collections::BTreeMap;

use crate::common::dataset::{Dataset, Spec};
use crate::common::prometheus::Prometheus;
use crate::common::*;
use serde_json::Value;

pub(crate) const QUERIES: &[&str] = &[
    "hd_gauge",
    "hd_requests_total",
    "up",
    "rate(hd_requests_total[5m])",
    "irate(hd_requests_total[2m])",
    "increase(hd_requests_total[10m])",
    "sum by (job) (rate(hd_requests_total[5m]))",
    "sum without (instance) (rate(hd_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (job, le) (rate(hd_latency_seconds_bucket[5m])))",
    "histogram_quantile(0.5, rate(hd_latency_seconds_bucket[10m]))",
    "rate(hd_latency_seconds_sum[5m]) / rate(hd_latency_seconds_count[5m])",
    "increase(hd_latency_seconds_count[15m])",
    "topk(3, hd_gauge)",
    "bottomk(2, hd_gauge)",
    "avg by (job) (hd_gauge)",
    "min by (job) (hd_gauge)",
    "max by (job) (hd_gauge)",
    "stddev by (job) (hd_gauge)",
    "stdvar(hd_gauge)",
    "quantile(0.75, hd_gauge)",
    "count by (code) (hd_requests_total)",
    "group by (job) (hd_gauge)",
    "count_values(\"v\", up)",
    "max_over_time(hd_gauge[10m]) - min_over_time(hd_gauge[10m])",
    "avg_over_time(hd_gauge[5m])",
    "sum_over_time(hd_gauge[3m])",
    "quantile_over_time(0.9, hd_gauge[10m])",
    "stddev_over_time(hd_gauge[10m])",
    "count_over_time(hd_churn[10m])",
    "last_over_time(hd_churn[10m])",
    "present_over_time(hd_churn[5m])",
    "delta(hd_gauge[10m])",
    "idelta(hd_gauge[5m])",
    "deriv(hd_gauge[10m])",
    "predict_linear(hd_gauge[10m], 600)",
    "changes(hd_gauge[10m])",
    "resets(hd_requests_total[30m])",
    "hd_gauge > 20",
    "hd_gauge > bool 20",
    "up == 0",
    "sum by (job) (up)",
    "hd_requests_total{code=\"500\"} / ignoring (code) hd_requests_total{code=\"200\"}",
    "rate(hd_requests_total[5m]) * on (job, instance) group_left up",
    "hd_churn",
    "count(hd_churn)",
    "rate(hd_churn[5m])",
    "sum by (job) (rate(hd_churn[2m]))",
    "absent(hd_churn{pod=\"nope\"})",
    "absent_over_time(hd_churn{pod=\"pod3\"}[5m])",
    "max_over_time(rate(hd_requests_total[5m])[20m:1m])",
    "avg_over_time(sum by (job) (hd_gauge)[15m:30s])",
    "hd_gauge offset 5m",
    "rate(hd_requests_total[5m] offset 10m)",
    "abs(hd_gauge)",
    "clamp(hd_gauge, -5, 5)",
    "round(hd_gauge, 0.5)",
    "ceil(hd_gauge) + floor(hd_gauge)",
    "sqrt(abs(hd_gauge))",
    "ln(hd_gauge)",
    "exp(hd_gauge / 100)",
    "-hd_gauge",
    "hd_gauge ^ 2",
    "hd_gauge % 7",
    "label_replace(hd_gauge, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_join(up, \"ji\", \"-\", \"job\", \"instance\")",
    "timestamp(hd_gauge)",
    "sort_desc(sum by (job) (hd_gauge))",
    "vector(1)",
    "scalar(sum(up))",
    "time()",
    "hd_gauge and hd_gauge > 0",
    "hd_gauge unless hd_gauge > 30",
    "sum(hd_gauge) or vector(0)",
    "hd_gauge @ end()",
    "rate(hd_requests_total[5m] @ start())",
];

/// A query result reduced to comparable parts: label set → points (time in ms, value).
type Reduced = BTreeMap<String, Vec<(i64, f64)>>;

fn point(p: &Value) -> (i64, f64) {
    let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
    let s = p[1].as_str().expect("value string");
    let v = match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().expect("float"),
    };
    (t, v)
}

fn reduce(body: &Value) -> (String, Reduced) {
    assert_eq!(body["status"], "success", "{body}");
    let data = &body["data"];
    let kind = data["resultType"].as_str().unwrap_or("").to_string();
    let mut out = Reduced::new();
    match kind.as_str() {
        "scalar" | "string" => {
            out.insert(String::new(), vec![point(&data["result"])]);
        }
        _ => {
            for s in data["result"].as_array().expect("result array") {
                let key = s["metric"].to_string();
                let points = match s.get("values") {
                    Some(vs) => vs.as_array().expect("values").iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                out.insert(key, points);
            }
        }
    }
    (kind, out)
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    diff <= 1e-6 * a.abs().max(b.abs()) || diff < 1e-9
}

pub(crate) fn compare(q: &str, theirs: &Value, ours: &Value) -> Result<(), String> {
    let (tk, t) = reduce(theirs);
    let (ok_, o) = reduce(ours);
    if tk != ok_ {
        return Err(format!("{q}: result type {ok_} vs Prometheus {tk}"));
    }
    let tkeys: Vec<&String> = t.keys().collect();
    let okeys: Vec<&String> = o.keys().collect();
    if tkeys != okeys {
        return Err(format!(
            "{q}: label sets differ\n  prometheus: {tkeys:?}\n  hestia:     {okeys:?}"
        ));
    }
    for (k, tp) in &t {
        let op = &o[k];
        if tp.len() != op.len() {
            return Err(format!(
                "{q} {k}: {} points vs Prometheus {}",
                op.len(),
                tp.len()
            ));
        }
        for (a, b) in tp.iter().zip(op) {
            if a.0 != b.0 || !close(a.1, b.1) {
                return Err(format!("{q} {k}: hestia {b:?} vs Prometheus {a:?}"));
            }
        }
    }
    Ok(())
}

pub(crate) async fn get(client: &reqwest::Client, url: &str, params: &[(&str, String)]) -> Value {
    let r = client.get(url).query(params).send().await.expect("send");
    r.json().await.expect("json body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hestia = start_in_process(&dir.path().join("hestia")).await;
    let base = format!("http://{}", hestia.addr);
    let prom = Prometheus::start(
        &dir.path().join("prometheus"),
        "global:\n  scrape_interval: 15s\n",
        &[],
    )
    .await;

    // 50 minutes of 15 s scrapes ending a minute ago (Hestia refuses samples older than 1 h).
    let interval_ms = 15_000;
    let scrapes = 200;
    let end_s = now_ms() / 1000 - 60;
    let start_ms = (end_s - (scrapes as i64) * 15) * 1000;
    let data = Dataset::generate(&Spec {
        jobs: 3,
        instances_per_job: 4,
        churn_series: 24,
        start_ms,
        interval_ms,
        scrapes,
        seed: 42,
    });
    let client = reqwest::Client::new();
    for k in 0..data.timestamps.len() {
        let body = data.request(k);
        let (status, text) = remote_write(&client, &base, WS, body.clone()).await;
        assert!(status < 300, "hestia write {k}: {status} {text}");
        prom.remote_write(&client, body).await;
    }
    println!(
        "wrote {} series, {} samples to both",
        data.num_series(),
        data.num_samples()
    );

    // Every query time is 17 s past a whole minute and range steps are 60 s and 45 s, so the
    // outer boundary of the whole-minute subquery ranges never falls on a subquery step.
    let at17 = |t: i64| t - t.rem_euclid(60) + 17;
    let first_s = at17(start_ms / 1000 + 60);
    let last_s = at17(end_s - 60);
    let instants = [
        last_s,
        last_s - 7 * 60,
        last_s - 21 * 60,
        first_s + 25 * 60,
        first_s + 6 * 60,
    ];
    let ranges = [
        (first_s + 5 * 60, last_s, 60),
        (first_s + 12 * 60, last_s - 3 * 60, 45),
    ];
    let ours_q = format!("{base}/workspaces/{WS}/api/v1/query");
    let ours_r = format!("{base}/workspaces/{WS}/api/v1/query_range");
    let theirs_q = format!("{}/api/v1/query", prom.base());
    let theirs_r = format!("{}/api/v1/query_range", prom.base());
    let mut compared = 0;
    let mut failures = Vec::new();
    for q in QUERIES {
        for t in instants {
            let p = [("query", q.to_string()), ("time", t.to_string())];
            let theirs = get(&client, &theirs_q, &p).await;
            let ours = get(&client, &ours_q, &p).await;
            compared += 1;
            if let Err(e) = compare(q, &theirs, &ours) {
                failures.push(format!("instant @{t}: {e}"));
            }
        }
        for (start, end, step) in ranges {
            let p = [
                ("query", q.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step.to_string()),
            ];
            let theirs = get(&client, &theirs_r, &p).await;
            let ours = get(&client, &ours_r, &p).await;
            compared += 1;
            if let Err(e) = compare(q, &theirs, &ours) {
                failures.push(format!("range {start}..{end} step {step}: {e}"));
            }
        }
    }
    println!(
        "differential: {compared} queries compared with Prometheus 2.42, {} differ",
        failures.len()
    );
    for f in &failures {
        println!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} queries differ",
        failures.len()
    );
    hestia.shutdown().await.expect("shutdown");
}
