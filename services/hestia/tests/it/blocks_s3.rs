//! Long-term storage on a real S3 server (s3s-fs), through the `hestia` binary: two workspaces
//! write over remote write, `hestia all` ships their closed ranges while it is killed with
//! SIGKILL mid-shipping and while the object store is down, and afterwards every acknowledged
//! sample is answered from blocks, each range is in the bucket exactly once, and neither
//! workspace sees the other's data. Backfill goes to the same S3 bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hestia_testing::S3Server;
use serde_json::Value;

use crate::common::prometheus::create_blocks_from_openmetrics;
use crate::common::*;

const BUCKET: &str = "hestia";
const RANGE_MS: i64 = 5 * 60_000;
const STEP_MS: i64 = 15_000;
const SERIES: usize = 30;

fn config(s3: &S3Server) -> String {
    format!(
        r#"
[limits]
reject_old_samples_max_age = "1h"

[storage]
backend = "s3"

[storage.s3]
endpoint = "{endpoint}"
bucket = "{BUCKET}"
region = "{region}"
access_key_id = "{ak}"
secret_access_key = "{sk}"
allow_http = true
max_retries = 1
retry_timeout = "1s"
request_timeout = "5s"

[blocks]
block_range = "5m"
retain_after_upload = "2s"
ship_interval = "200ms"
ship_max_backoff = "1s"
bucket_index_update_interval = "1s"

[querier]
query_ingesters_within = "6m"
query_store_after = "1s"
"#,
        endpoint = s3.endpoint(),
        region = S3Server::REGION,
        ak = S3Server::ACCESS_KEY,
        sk = S3Server::SECRET_KEY,
    )
}

/// `<account>_<workspace>`, the tenant of a workspace, from its ARN.
async fn tenant_of(client: &reqwest::Client, base: &str, ws: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        // DescribeWorkspace is rate limited as in AMP; the workspace polls above used it up.
        match get_json(client, &format!("{base}/workspaces/{ws}")).await {
            (200, v) => break v,
            (429, _) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            (status, v) => panic!("DescribeWorkspace {status}: {v}"),
        }
    };
    let arn = v["workspace"]["arn"].as_str().expect("arn").to_string();
    format!("{}_{ws}", arn.split(':').nth(4).expect("account"))
}

/// The `(minTime, maxTime)` of every complete block of `tenant` in the bucket (s3s-fs keeps
/// objects as files), one entry per block.
fn bucket_blocks(s3_dir: &Path, tenant: &str) -> Vec<(i64, i64)> {
    let dir = s3_dir.join(BUCKET).join(tenant);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let meta = e.expect("dir entry").path().join("meta.json");
        if let Ok(bytes) = std::fs::read(&meta) {
            let m: Value = serde_json::from_slice(&bytes).expect("meta.json parses");
            out.push((
                m["minTime"].as_i64().expect("minTime"),
                m["maxTime"].as_i64().expect("maxTime"),
            ));
        }
    }
    out.sort_unstable();
    out
}

/// Writes `SERIES` series of `shipped_total` over `[from, to)` at 15 s, `sign` telling the two
/// workspaces' values apart; returns what was acknowledged, by series.
async fn write(
    client: &reqwest::Client,
    base: &str,
    ws: &str,
    from: i64,
    to: i64,
    sign: f64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut acked: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let times: Vec<i64> = (from..to).step_by(STEP_MS as usize).collect();
    for batch in times.chunks(40) {
        let mut ts = Vec::new();
        let mut sent = Vec::new();
        for i in 0..SERIES {
            let id = format!("{i:02}");
            let samples: Vec<(i64, f64)> = batch
                .iter()
                .map(|&t| (t, sign * (i as f64 * 1e6 + (t - from) as f64 / 1000.0)))
                .collect();
            ts.push(series(
                &[("__name__", "shipped_total"), ("series", &id)],
                &samples,
            ));
            sent.push((id, samples));
        }
        let (status, body) = remote_write(client, base, ws, encode(ts)).await;
        assert!(
            status == 200 || status == 204,
            "remote write {status}: {body}"
        );
        for (id, samples) in sent {
            acked.entry(id).or_default().extend(samples);
        }
    }
    acked
}

/// `shipped_total[window]` at `time_s`: every raw sample by series.
async fn read_back(
    client: &reqwest::Client,
    base: &str,
    ws: &str,
    window_s: i64,
    time_s: f64,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let v = instant_query(
        client,
        base,
        ws,
        &format!("shipped_total[{window_s}s]"),
        time_s,
    )
    .await;
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().expect("matrix") {
        let id = r["metric"]["series"]
            .as_str()
            .expect("series label")
            .to_string();
        let samples = r["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().expect("value").parse().expect("float");
                (t, v)
            })
            .collect();
        out.insert(id, samples);
    }
    out
}

fn promtool_blocks(dir: &Path, start_ms: i64) -> PathBuf {
    let mut om = String::from("# TYPE backfilled gauge\n");
    for s in 0..5 {
        for k in 0..480 {
            let t = start_ms + k * STEP_MS;
            om.push_str(&format!(
                "backfilled{{series=\"{s}\"}} {} {}\n",
                s * 1000 + k,
                t / 1000
            ));
        }
    }
    om.push_str("# EOF\n");
    let file = dir.join("backfill.om");
    std::fs::write(&file, om).expect("write openmetrics");
    let out_dir = dir.join("promtool-blocks");
    create_blocks_from_openmetrics(&file, &out_dir);
    out_dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_on_s3_survive_kill_9_and_an_outage_and_stay_per_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3_dir = dir.path().join("s3");
    let s3_port = hestia_testing::free_port();
    let mut s3 = Some(S3Server::start(s3_port, &s3_dir, BUCKET));
    let cfg_path = dir.path().join("hestia.toml");
    std::fs::write(&cfg_path, config(s3.as_ref().expect("s3"))).expect("write config");
    let cfg_arg = cfg_path.to_str().expect("utf-8 path").to_string();
    let data_dir = dir.path().join("data");
    let addr = free_addr();
    let base = format!("http://{addr}");
    let extra = ["--config", cfg_arg.as_str()];
    let start = || HestiaProcess::start_with(&data_dir, addr, &extra);
    let mut hestia = start().await;
    let client = reqwest::Client::new();

    let ws_a = create_active_workspace(&client, &base, "blocks-a").await;
    let ws_b = create_active_workspace(&client, &base, "blocks-b").await;
    let (tenant_a, tenant_b) = (
        tenant_of(&client, &base, &ws_a).await,
        tenant_of(&client, &base, &ws_b).await,
    );

    // 40 minutes ending 8 minutes ago: eight 5-minute ranges, each closed (end + half a range
    // in the past) and older than query_ingesters_within once shipped.
    let now = now_ms();
    let to = (now - 8 * 60_000) / RANGE_MS * RANGE_MS;
    let from = to - 8 * RANGE_MS;
    let acked_a = write(&client, &base, &ws_a, from, to, 1.0).await;
    let ranges: Vec<(i64, i64)> = (from..to)
        .step_by(RANGE_MS as usize)
        .map(|s| (s, s + RANGE_MS))
        .collect();

    // SIGKILL as soon as shipping has begun, three times, each time after more blocks landed.
    let shipped = || bucket_blocks(&s3_dir, &tenant_a).len();
    let mut kills = Vec::new();
    for _ in 0..3 {
        let before = shipped();
        let deadline = Instant::now() + Duration::from_secs(60);
        while shipped() == before && before < ranges.len() {
            assert!(Instant::now() < deadline, "no block shipped");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kills.push(shipped());
        hestia.kill9();
        hestia = start().await;
    }

    // The object store goes away; workspace b writes meanwhile, its closed ranges fail to ship
    // and stay in the ingester; then the store comes back on the same port and data.
    let upload_failures = || async {
        metrics_text(&client, &base)
            .await
            .lines()
            .filter(|l| l.starts_with("hestia_ingester_shipper_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    drop(s3.take());
    let acked_b = write(&client, &base, &ws_b, from, to, -1.0).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let f = upload_failures().await;
        if f >= 3.0 {
            break f;
        }
        assert!(Instant::now() < deadline, "no shipping failure counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(bucket_blocks(&s3_dir, &tenant_b).is_empty());
    s3 = Some(S3Server::start(s3_port, &s3_dir, BUCKET));

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (a, b) = (
            bucket_blocks(&s3_dir, &tenant_a),
            bucket_blocks(&s3_dir, &tenant_b),
        );
        if a.len() >= ranges.len() && b.len() >= ranges.len() {
            // Each range exactly once: no block became visible twice across the kills.
            assert_eq!(a, ranges, "workspace a's blocks");
            assert_eq!(b, ranges, "workspace b's blocks");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shipped {} and {} of {} ranges",
            a.len(),
            b.len(),
            ranges.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every acknowledged sample, from blocks only (the range ends before query_ingesters_within),
    // and only the workspace's own.
    let window_s = (to - from) / 1000;
    let time_s = (to - 1) as f64 / 1000.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (
            read_back(&client, &base, &ws_a, window_s, time_s).await,
            read_back(&client, &base, &ws_b, window_s, time_s).await,
        );
        if a == acked_a && b == acked_b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "read back {} + {} series, {} + {} samples, of {} + {} acknowledged",
            a.len(),
            b.len(),
            a.values().map(Vec::len).sum::<usize>(),
            b.values().map(Vec::len).sum::<usize>(),
            acked_a.values().map(Vec::len).sum::<usize>(),
            acked_b.values().map(Vec::len).sum::<usize>(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Backfill into a third workspace, on the same S3 bucket.
    let ws_c = create_active_workspace(&client, &base, "blocks-c").await;
    let backfill_start = (now - 3 * 86_400_000) / 3_600_000 * 3_600_000;
    let blocks = promtool_blocks(dir.path(), backfill_start);
    let out = Command::new(env!("CARGO_BIN_EXE_hestia"))
        .args(["admin", "--endpoint", &base, "backfill", &ws_c])
        .arg(&blocks)
        .args(["--config", &cfg_arg])
        .env("AWS_ACCESS_KEY_ID", "AKIDBACKFILL")
        .env("AWS_SECRET_ACCESS_KEY", "backfill-secret")
        .output()
        .expect("run hestia admin backfill");
    assert!(
        out.status.success(),
        "backfill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = (backfill_start + 480 * STEP_MS) as f64 / 1000.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = instant_query(
            &client,
            &base,
            &ws_c,
            "sum(count_over_time(backfilled[3h]))",
            at,
        )
        .await;
        if v["data"]["result"][0]["value"][1] == "2400" {
            break;
        }
        assert!(Instant::now() < deadline, "backfilled samples: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The other workspaces do not see it.
    let v = instant_query(&client, &base, &ws_a, "count_over_time(backfilled[3h])", at).await;
    assert_eq!(v["data"]["result"], Value::Array(vec![]), "{v}");
    // Backfilling c left a's blocks alone.
    assert_eq!(bucket_blocks(&s3_dir, &tenant_a), ranges);

    println!(
        "blocks_s3: {} ranges x 2 workspaces shipped to s3s-fs, SIGKILL at {kills:?} blocks shipped, {failures} shipping failures counted during the outage, {} + {} samples read back from blocks",
        ranges.len(),
        acked_a.values().map(Vec::len).sum::<usize>(),
        acked_b.values().map(Vec::len).sum::<usize>(),
    );
    drop(hestia);
    drop(s3);
}
