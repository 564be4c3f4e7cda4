//! `hestia all` with its single control-plane voter: workspaces come from the AMP API on the
//! public port. Unknown ids get 404; a created workspace takes writes and queries once ACTIVE;
//! the admin limits API reaches the distributor; a deleted workspace is refused at once and
//! purged after the grace period; workspaces and their data survive a restart.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

const UNKNOWN: &str = "ws-00000000-0000-4000-8000-00000000dead";

async fn start(dir: &std::path::Path) -> hestia::AllInOne {
    start_in_process_with(dir, |cfg| {
        cfg.gateway.dev_workspaces = false;
        cfg.control_plane.purge_grace = Duration::from_secs(1);
    })
    .await
}

fn one_sample(t: i64) -> Vec<u8> {
    encode(vec![series(&[("__name__", "ws_test")], &[(t, 42.0)])])
}

async fn value(c: &reqwest::Client, base: &str, ws: &str) -> Option<String> {
    let v = instant_query(c, base, ws, "ws_test", now_ms() as f64 / 1000.0).await;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_string)
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_come_from_the_amp_api() {
    let dir = tempfile::tempdir().unwrap();
    let hestia = start(dir.path()).await;
    let base = format!("http://{}", hestia.addr);
    let c = reqwest::Client::new();

    let (status, _) = remote_write(&c, &base, UNKNOWN, one_sample(now_ms())).await;
    assert_eq!(status, 404);
    let r = c
        .get(format!("{base}/workspaces/{UNKNOWN}/api/v1/query?query=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let ws = create_active_workspace(&c, &base, "kept").await;
    let (status, body) = remote_write(&c, &base, &ws, one_sample(now_ms())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(value(&c, &base, &ws).await.as_deref(), Some("42"));

    // A quota set through the admin API reaches the distributor.
    let r = c
        .put(format!("{base}/admin/workspaces/{ws}/limits"))
        .json(&json!({"ingestion_rate": 1, "ingestion_burst_size": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    eventually("the admin quota applies", || async {
        let batch = encode(
            (0..5)
                .map(|i| {
                    series(
                        &[("__name__", "q"), ("i", &i.to_string())],
                        &[(now_ms(), 1.0)],
                    )
                })
                .collect(),
        );
        remote_write(&c, &base, &ws, batch).await.0 == 429
    })
    .await;

    // Deleted: refused at once, purged after the grace period.
    let doomed = create_active_workspace(&c, &base, "doomed").await;
    let (status, _) = remote_write(&c, &base, &doomed, one_sample(now_ms())).await;
    assert_eq!(status, 200);
    let r = c
        .delete(format!("{base}/workspaces/{doomed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually("the deleted workspace is refused", || async {
        remote_write(&c, &base, &doomed, one_sample(now_ms()))
            .await
            .0
            == 404
    })
    .await;
    eventually("the purge", || async {
        metrics_text(&c, &base)
            .await
            .lines()
            .any(|l| l.starts_with("hestia_control_plane_purged_workspaces_total 1"))
    })
    .await;

    // A restart keeps the workspace, its data and its quota.
    hestia.shutdown().await.unwrap();
    let hestia = start(dir.path()).await;
    let base = format!("http://{}", hestia.addr);
    eventually("the workspace after the restart", || async {
        matches!(value(&c, &base, &ws).await.as_deref(), Some("42"))
    })
    .await;
    let (_, v) = get_json(&c, &format!("{base}/workspaces")).await;
    let aliases: Vec<&str> = v["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["alias"].as_str())
        .collect();
    assert_eq!(aliases, vec!["kept"]);
    hestia.shutdown().await.unwrap();
}
