//! Helpers shared by the integration tests: start `hestia all` in-process or as a child process,
//! encode remote-write requests, and query the Prometheus API.
#![allow(dead_code)]

pub mod cluster;
pub mod dataset;
pub mod prometheus;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hestia_proto::prometheus as pb;
use prost::Message;

pub const WS: &str = "ws-00000000-0000-4000-8000-000000000001";

/// Starts `hestia all` inside the test process on an ephemeral port.
pub async fn start_in_process(data_dir: &Path) -> hestia::AllInOne {
    start_in_process_with(data_dir, |_| {}).await
}

/// Like [`start_in_process`], with `adjust` applied to the default configuration first.
pub async fn start_in_process_with(
    data_dir: &Path,
    adjust: impl FnOnce(&mut hestia_config::Config),
) -> hestia::AllInOne {
    let mut cfg = hestia_config::Config::default();
    // The tests write to fixed workspace ids without creating them, unauthenticated (tests/auth*
    // turn authentication back on).
    cfg.gateway.dev_workspaces = true;
    cfg.auth.enabled = false;
    adjust(&mut cfg);
    cfg.server.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.server.data_dir = data_dir.to_path_buf();
    hestia::AllInOne::start(cfg)
        .await
        .expect("hestia all starts")
}

pub use hestia_testing::free_addr;

/// `hestia all` as a child process (for kill -9 tests).
pub struct HestiaProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl HestiaProcess {
    pub async fn start(data_dir: &Path, addr: SocketAddr) -> Self {
        Self::start_with(data_dir, addr, &[]).await
    }

    /// Like [`HestiaProcess::start`] with more `hestia all` arguments (e.g. `--config F`).
    pub async fn start_with(data_dir: &Path, addr: SocketAddr, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_hestia"))
            .args([
                "all",
                "--dev-workspaces",
                "--auth=disabled",
                "--listen",
                &addr.to_string(),
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn hestia");
        let p = Self { child, addr };
        p.wait_ready(Duration::from_secs(60)).await;
        p
    }

    async fn wait_ready(&self, timeout: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = client
                .get(format!("http://{}/ready", self.addr))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "hestia did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for HestiaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| pb::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| pb::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

pub fn encode(ts: Vec<pb::TimeSeries>) -> Vec<u8> {
    let raw = pb::WriteRequest {
        timeseries: ts,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

pub async fn remote_write(
    client: &reqwest::Client,
    base: &str,
    ws: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let r = client
        .post(format!("{base}/workspaces/{ws}/api/v1/remote_write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// The process's `/metrics` exposition.
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let r = client.get(url).send().await.expect("send");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

pub async fn instant_query(
    client: &reqwest::Client,
    base: &str,
    ws: &str,
    q: &str,
    time_s: f64,
) -> serde_json::Value {
    let r = client
        .get(format!("{base}/workspaces/{ws}/api/v1/query"))
        .query(&[("query", q), ("time", &format!("{time_s:.3}"))])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "query {q}");
    r.json().await.expect("json")
}

/// Creates a workspace through the AMP API of `hestia all` at `base`; returns its id once ACTIVE.
pub async fn create_active_workspace(c: &reqwest::Client, base: &str, alias: &str) -> String {
    let r = c
        .post(format!("{base}/workspaces"))
        .json(&serde_json::json!({ "alias": alias }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["workspaceId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = get_json(c, &format!("{base}/workspaces/{id}")).await;
        if v["workspace"]["status"]["statusCode"] == "ACTIVE" {
            assert_eq!(
                v["workspace"]["prometheusEndpoint"],
                format!("{base}/workspaces/{id}/")
            );
            return id;
        }
        assert!(Instant::now() < deadline, "not ACTIVE: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
