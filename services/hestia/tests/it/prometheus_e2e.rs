//! A real Prometheus (Debian's 2.42) scrapes itself every second and remote-writes to
//! `hestia all` for 60 s; Hestia then answers the same as that Prometheus does locally.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Result vector as sorted (labels, value) pairs.
fn vector(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("not a vector: {v}"))
        .iter()
        .map(|s| {
            (
                s["metric"].to_string(),
                s["value"][1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let hestia = start_in_process(&dir.path().join("hestia")).await;
    let base = format!("http://{}", hestia.addr);
    let prom_addr = free_addr();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["{prom_addr}"]
remote_write:
  - url: {base}/workspaces/{WS}/api/v1/remote_write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
    );
    let cfg_path = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, config).unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(
        Command::new(crate::common::prometheus::binary())
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus must be installed (make test installs it)"),
    );

    tokio::time::sleep(Duration::from_secs(62)).await;
    let c = reqwest::Client::new();
    let prom_base = format!("http://{prom_addr}");

    // Pick an evaluation time half-way between two scrapes, so no sample sits on a range
    // boundary (Prometheus 2.42's ranges are closed on the left, Hestia's left-open as in 3.x).
    let (_, raw) = get_json(&c, &format!("{prom_base}/api/v1/query?query=up%5B10s%5D")).await;
    let last_scrape = raw["data"]["result"][0]["values"]
        .as_array()
        .and_then(|v| v.last())
        .and_then(|p| p[0].as_f64())
        .expect("prometheus has scraped itself");
    let at = last_scrape - 2.5;
    // Let remote write catch up past `at`.
    tokio::time::sleep(Duration::from_secs(4)).await;

    for q in [
        "count_over_time(up[1m])",
        "prometheus_tsdb_head_series",
        "sum by (job) (rate(prometheus_http_requests_total[30s]))",
    ] {
        let url_q = |b: &str| format!("{b}/api/v1/query");
        let theirs = c
            .get(url_q(&prom_base))
            .query(&[("query", q), ("time", &format!("{at:.3}"))])
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let ours = instant_query(&c, &base, WS, q, at).await;
        assert!(
            !vector(&theirs).is_empty(),
            "{q}: prometheus returned nothing: {theirs}"
        );
        assert_eq!(vector(&ours), vector(&theirs), "{q} at {at}");
        eprintln!("{q} at {at}: {:?}", vector(&ours));
    }
    let (_, v) = get_json(
        &c,
        &format!(
            "{base}/workspaces/{WS}/api/v1/query?query=count_over_time(up%5B1m%5D)&time={at:.3}"
        ),
    )
    .await;
    // Prometheus needs a few seconds to start scraping; after that, one sample per second.
    let n: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    assert!(
        (45.0..=60.0).contains(&n),
        "about one sample per second for a minute: {v}"
    );

    // The series and label APIs see what Prometheus sent.
    let (s, series) = get_json(
        &c,
        &format!("{base}/workspaces/{WS}/api/v1/series?match[]=up"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(series["data"][0]["job"], "prometheus", "{series}");
    let (_, names) = get_json(
        &c,
        &format!("{base}/workspaces/{WS}/api/v1/label/__name__/values"),
    )
    .await;
    let names = names["data"].as_array().unwrap();
    assert!(
        names.len() > 100,
        "prometheus exposes hundreds of metrics, got {}",
        names.len()
    );
    hestia.shutdown().await.unwrap();
}
