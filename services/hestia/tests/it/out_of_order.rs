//! AMP's out-of-order window end to end through `hestia all`: refused by default (400, Mimir's
//! text), accepted once UpdateWorkspaceConfiguration sets `outOfOrderTimeWindowInSeconds` (the
//! control plane's watch carries it to the ingester), refused again beyond the window, and
//! queryable in time order, also after a restart.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

fn sample(t: i64, v: f64) -> Vec<u8> {
    encode(vec![series(&[("__name__", "late_metric")], &[(t, v)])])
}

/// `late_metric` samples over the last 20 minutes as (ms, value).
async fn stored(c: &reqwest::Client, base: &str, ws: &str, now: i64) -> Vec<(i64, f64)> {
    let url = format!(
        "{base}/workspaces/{ws}/api/v1/query?query=late_metric[20m]&time={}",
        now as f64 / 1000.0 + 1.0
    );
    let (status, v) = get_json(c, &url).await;
    assert_eq!(status, 200, "{v}");
    v["data"]["result"][0]["values"]
        .as_array()
        .map(|vals| {
            vals.iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    (t, p[1].as_str().unwrap().parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_window_follows_the_workspace_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: std::path::PathBuf| async move {
        start_in_process_with(&dir, |cfg| cfg.gateway.dev_workspaces = false).await
    };
    let hestia = start(dir.path().to_path_buf()).await;
    let base = format!("http://{}", hestia.addr);
    let c = reqwest::Client::new();
    let ws = create_active_workspace(&c, &base, "late").await;
    let now = now_ms() / 1000 * 1000;

    let (status, body) = remote_write(&c, &base, &ws, sample(now, 1.0)).await;
    assert_eq!(status, 200, "{body}");
    // AMP's default: no window.
    let (status, body) = remote_write(&c, &base, &ws, sample(now - 60_000, 2.0)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("out-of-order samples are not allowed (err-mimir-sample-out-of-order)"),
        "{body}"
    );

    let r = c
        .patch(format!("{base}/workspaces/{ws}/configuration"))
        .json(&json!({ "outOfOrderTimeWindowInSeconds": 600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let (_, v) = get_json(&c, &format!("{base}/workspaces/{ws}/configuration")).await;
    assert_eq!(
        v["workspaceConfiguration"]["outOfOrderTimeWindowInSeconds"], 600,
        "{v}"
    );

    // The ingester learns the window from the control plane's watch.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = remote_write(&c, &base, &ws, sample(now - 60_000, 2.0)).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 400, "{body}");
        assert!(Instant::now() < deadline, "window never applied: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = remote_write(&c, &base, &ws, sample(now - 300_000, 3.0)).await;
    assert_eq!(status, 200, "{body}");
    // A retry of the same sample is accepted; another value at its timestamp is not.
    let (status, body) = remote_write(&c, &base, &ws, sample(now - 300_000, 3.0)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = remote_write(&c, &base, &ws, sample(now - 300_000, 4.0)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("err-mimir-sample-duplicate-timestamp"),
        "{body}"
    );
    // Beyond the window behind the newest sample.
    let (status, body) = remote_write(&c, &base, &ws, sample(now - 601_000, 5.0)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("beyond the out-of-order time window (err-mimir-sample-too-old)"),
        "{body}"
    );

    let want = vec![(now - 300_000, 3.0), (now - 60_000, 2.0), (now, 1.0)];
    assert_eq!(stored(&c, &base, &ws, now).await, want);
    let metrics = metrics_text(&c, &base).await;
    assert!(
        metrics.contains("hestia_ingester_out_of_order_samples_appended_total{tenant="),
        "{metrics}"
    );

    hestia.shutdown().await.unwrap();
    let hestia = start(dir.path().to_path_buf()).await;
    let base = format!("http://{}", hestia.addr);
    assert_eq!(stored(&c, &base, &ws, now).await, want);
    hestia.shutdown().await.unwrap();
}
