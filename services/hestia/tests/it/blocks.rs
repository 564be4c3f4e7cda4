//! Long-term storage end to end: blocks made by `promtool tsdb create-blocks-from openmetrics` are
//! backfilled into a workspace with `hestia admin backfill`, and the differential test's queries
//! over them answer as Debian's Prometheus 2.42 does over the same blocks in its data directory.
//! A corrupt block is refused with nothing of it visible.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::dataset::{Dataset, Spec};
use crate::common::prometheus::{create_blocks_from_openmetrics, Prometheus};
use crate::common::*;
use crate::differential::{compare, get, QUERIES};
use serde_json::Value;

/// `hestia admin backfill WS DIR` against the `hestia all` at `base` with data under `data_dir`.
fn backfill(base: &str, data_dir: &Path, ws: &str, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hestia"))
        .args(["admin", "--endpoint", base, "backfill", ws])
        .arg(dir)
        .arg("--data-dir")
        .arg(data_dir)
        .env("AWS_ACCESS_KEY_ID", "AKIDBACKFILL")
        .env("AWS_SECRET_ACCESS_KEY", "backfill-secret")
        .env_remove("HESTIA_CONFIG")
        .output()
        .expect("run hestia admin backfill")
}

/// Copies a block directory (`chunks/` and the files beside it).
fn copy_block(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("chunks")).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    for entry in std::fs::read_dir(from.join("chunks")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("chunks").join(entry.file_name())).unwrap();
    }
}

fn block_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_blocks_answer_as_prometheus_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Six hours of 15 s scrapes two days ago: older than query_ingesters_within (13 h), so only
    // blocks answer.
    let interval_ms = 15_000;
    let scrapes = 6 * 240;
    let start_ms = (now_ms() / 1000 - 2 * 86_400) / 3600 * 3600 * 1000;
    let data = Dataset::generate(&Spec {
        jobs: 3,
        instances_per_job: 4,
        churn_series: 24,
        start_ms,
        interval_ms,
        scrapes,
        seed: 7,
    });
    let om = dir.path().join("data.om");
    std::fs::write(&om, data.openmetrics()).unwrap();
    let made = dir.path().join("made");
    create_blocks_from_openmetrics(&om, &made);
    let blocks = block_dirs(&made);
    assert!(blocks.len() >= 3, "promtool made {} blocks", blocks.len());

    // Prometheus 2.42 over the same blocks.
    let prom_dir = dir.path().join("prometheus");
    for b in &blocks {
        copy_block(b, &prom_dir.join("data").join(b.file_name().unwrap()));
    }
    let prom = Prometheus::start(
        &prom_dir,
        "global:\n  scrape_interval: 15s\n",
        &["--storage.tsdb.retention.time=100y"],
    )
    .await;

    let data_dir = dir.path().join("hestia");
    let hestia = start_in_process_with(&data_dir, |cfg| {
        cfg.blocks.bucket_index_update_interval = Duration::from_secs(1);
    })
    .await;
    let base = format!("http://{}", hestia.addr);
    let client = reqwest::Client::new();
    let ws = create_active_workspace(&client, &base, "backfilled").await;

    let out = backfill(&base, &data_dir, &ws, &made);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "backfill: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uploaded: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per block"))
        .collect();
    assert_eq!(uploaded.len(), blocks.len());
    let samples: u64 = uploaded
        .iter()
        .map(|b| b["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(samples as usize, data.num_samples(), "samples uploaded");

    let at17 = |t: i64| t - t.rem_euclid(60) + 17;
    let end_s = start_ms / 1000 + (scrapes as i64) * interval_ms / 1000;
    let first_s = at17(start_ms / 1000 + 60);
    let last_s = at17(end_s - 60);
    // The querier sees the blocks once its bucket index refresh ran.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = instant_query(&client, &base, &ws, "count(up)", last_s as f64).await;
        if v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(Instant::now() < deadline, "blocks not visible: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let instants = [
        last_s,
        last_s - 97 * 60,
        first_s + 181 * 60,
        first_s + 6 * 60,
    ];
    let ranges = [
        (first_s + 5 * 60, last_s, 300),
        (first_s + 100 * 60, first_s + 160 * 60, 45),
    ];
    let ours_q = format!("{base}/workspaces/{ws}/api/v1/query");
    let ours_r = format!("{base}/workspaces/{ws}/api/v1/query_range");
    let theirs_q = format!("{}/api/v1/query", prom.base());
    let theirs_r = format!("{}/api/v1/query_range", prom.base());
    let mut compared = 0;
    let mut failures = Vec::new();
    for q in QUERIES {
        for t in instants {
            let p = [("query", q.to_string()), ("time", t.to_string())];
            compared += 1;
            if let Err(e) = compare(
                q,
                &get(&client, &theirs_q, &p).await,
                &get(&client, &ours_q, &p).await,
            ) {
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
            compared += 1;
            if let Err(e) = compare(
                q,
                &get(&client, &theirs_r, &p).await,
                &get(&client, &ours_r, &p).await,
            ) {
                failures.push(format!("range {start}..{end} step {step}: {e}"));
            }
        }
    }
    // Series and label names over the blocks' range.
    for (path, params) in [
        (
            "series",
            vec![
                ("match[]", "up".to_string()),
                ("start", first_s.to_string()),
                ("end", last_s.to_string()),
            ],
        ),
        (
            "labels",
            vec![("start", first_s.to_string()), ("end", last_s.to_string())],
        ),
        (
            "label/job/values",
            vec![("start", first_s.to_string()), ("end", last_s.to_string())],
        ),
    ] {
        let theirs = get(&client, &format!("{}/api/v1/{path}", prom.base()), &params).await;
        let ours = get(
            &client,
            &format!("{base}/workspaces/{ws}/api/v1/{path}"),
            &params,
        )
        .await;
        compared += 1;
        if theirs["data"] != ours["data"] {
            failures.push(format!(
                "{path}: hestia {} vs Prometheus {}",
                ours["data"], theirs["data"]
            ));
        }
    }
    println!(
        "blocks: {} blocks, {samples} samples backfilled; {compared} queries compared with Prometheus 2.42, {} differ",
        blocks.len(),
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

    // A block with a flipped byte in its chunks is refused and nothing of it becomes visible.
    let corrupt = dir.path().join("corrupt");
    let victim = corrupt.join(blocks[1].file_name().unwrap());
    copy_block(&blocks[1], &victim);
    let segment = victim.join("chunks").join("000001");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&segment, bytes).unwrap();
    let other = create_active_workspace(&client, &base, "refused").await;
    let out = backfill(&base, &data_dir, &other, &corrupt);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt block was accepted");
    assert!(stderr.contains("block"), "unclear error: {stderr}");
    let v = instant_query(&client, &base, &other, "count(up)", last_s as f64).await;
    assert_eq!(v["data"]["result"], Value::Array(vec![]), "{v}");
    // Nor did the first workspace's data leak into the second (tenant isolation).
    let v = instant_query(&client, &base, &other, "up", last_s as f64).await;
    assert_eq!(v["data"]["result"], Value::Array(vec![]), "{v}");

    hestia.shutdown().await.expect("shutdown");
}
