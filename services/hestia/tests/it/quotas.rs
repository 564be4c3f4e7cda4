//! AMP's ingestion quotas through `hestia all`, with small limits: the series limits refuse new
//! series with Cortex's messages (429) while storing the rest of the request, the rate limit
//! refuses whole requests (429, Retry-After) and stores nothing of them, a workspace with an
//! override is unaffected, and a changed overrides file takes effect while running.

use std::time::Duration;

use crate::common::*;

const OTHER: &str = "ws-00000000-0000-4000-8000-000000000002";

fn overrides(per_user: usize) -> String {
    format!(
        "[overrides.\"{OTHER}\"]\ningestion_rate = 1000000.0\ningestion_burst_size = 1000000\n\
         max_global_series_per_metric = 1000\n\n\
         [overrides.\"{WS}\"]\nmax_global_series_per_user = {per_user}\n"
    )
}

/// `n` series `metric{i="from".."from+n"}`, one sample each at `t`.
fn series_batch(metric: &str, from: usize, n: usize, t: i64) -> Vec<u8> {
    encode(
        (from..from + n)
            .map(|i| series(&[("__name__", metric), ("i", &i.to_string())], &[(t, 1.0)]))
            .collect(),
    )
}

async fn count(c: &reqwest::Client, base: &str, ws: &str, q: &str) -> f64 {
    let v = instant_query(c, base, ws, q, now_ms() as f64 / 1000.0).await;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map_or(0.0, |s| s.parse().expect("number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_with_cortex_messages_per_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let overrides_file = dir.path().join("overrides.toml");
    std::fs::write(&overrides_file, overrides(10)).unwrap();
    let file = overrides_file.clone();
    let hestia = start_in_process_with(&dir.path().join("data"), move |cfg| {
        cfg.limits.ingestion_rate = 1000.0;
        cfg.limits.ingestion_burst_size = 500;
        cfg.limits.max_global_series_per_user = 1_000_000;
        cfg.limits.max_global_series_per_metric = 6;
        cfg.limits.max_global_metrics_with_metadata_per_user = 3;
        cfg.overrides.file = Some(file);
        cfg.overrides.reload_period = Duration::from_millis(100);
    })
    .await;
    let base = format!("http://{}", hestia.addr);
    let c = reqwest::Client::new();
    let t = now_ms();

    // Per metric: 6 of 8 new series fit, the rest is refused with the series named.
    let (status, body) = remote_write(&c, &base, WS, series_batch("a", 0, 8, t)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        format!(
            "user={WS}: per-metric series limit of 6 exceeded, please contact administrator to \
             raise it (local limit: 0 global limit: 6 actual local limit: 6) for series \
             {{__name__=\"a\", i=\"6\"}}"
        )
    );
    assert_eq!(count(&c, &base, WS, "count(a)").await, 6.0);

    // Per workspace (10, from the override): 4 of 6 new series of another metric fit.
    let (status, body) = remote_write(&c, &base, WS, series_batch("b", 0, 6, t)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        format!(
            "user={WS}: per-user series limit of 10 exceeded, please contact administrator to \
             raise it (local limit: 0 global limit: 10 actual local limit: 10)"
        )
    );
    assert_eq!(count(&c, &base, WS, "count(b)").await, 4.0);

    // Existing series keep being written; another workspace is not affected.
    let (status, body) = remote_write(&c, &base, WS, series_batch("a", 0, 6, t + 1000)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = remote_write(&c, &base, OTHER, series_batch("a", 0, 20, t)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(&c, &base, OTHER, "count(a)").await, 20.0);

    // A raised quota applies once the overrides file is re-read.
    std::fs::write(&overrides_file, overrides(12)).unwrap();
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (status, _) = remote_write(&c, &base, WS, series_batch("b", 4, 2, t)).await;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200, "raised per-user limit took effect");
    assert_eq!(count(&c, &base, WS, "count(b)").await, 6.0);

    // Rate: 600 samples exceed the 500-sample burst. Nothing of the request is stored.
    let big = encode(vec![series(
        &[("__name__", "burst")],
        &(0..600)
            .map(|k| (t - 600 + k, k as f64))
            .collect::<Vec<_>>(),
    )]);
    let r = c
        .post(format!("{base}/workspaces/{WS}/api/v1/remote_write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(
        r.text().await.unwrap(),
        "ingestion rate limit (1000) exceeded while adding 600 samples and 0 metadata"
    );
    assert_eq!(
        count(&c, &base, WS, "count_over_time(burst[1h])").await,
        0.0
    );
    let (status, body) = remote_write(&c, &base, OTHER, big).await;
    assert_eq!(status, 200, "{body}");

    // Metadata: 3 metric families per workspace; a known family can still be updated.
    let md = |names: &[&str]| {
        use hestia_proto::prometheus as pb;
        use prost::Message;
        let raw = pb::WriteRequest {
            timeseries: vec![],
            metadata: names
                .iter()
                .map(|n| pb::MetricMetadata {
                    r#type: pb::metric_metadata::MetricType::Counter as i32,
                    metric_family_name: n.to_string(),
                    help: format!("help of {n}"),
                    unit: String::new(),
                })
                .collect(),
        }
        .encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&raw).unwrap()
    };
    let (status, body) = remote_write(&c, &base, WS, md(&["m1", "m2", "m3", "m4", "m5"])).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        format!(
            "user={WS}: per-user metric metadata limit of 3 exceeded, please contact \
             administrator to raise it (local limit: 0 global limit: 3 actual local limit: 3)"
        )
    );
    let (status, body) = remote_write(&c, &base, WS, md(&["m2"])).await;
    assert_eq!(status, 200, "{body}");
    let (_, v) = get_json(&c, &format!("{base}/workspaces/{WS}/api/v1/metadata")).await;
    let mut families: Vec<&String> = v["data"].as_object().expect("metadata").keys().collect();
    families.sort();
    assert_eq!(families, ["m1", "m2", "m3"]);

    // Discarded samples are counted by reason and workspace.
    let metrics = metrics_text(&c, &base).await;
    for want in [
        format!("hestia_discarded_samples_total{{reason=\"rate_limited\",tenant=\"{WS}\"}} 600"),
        format!(
            "hestia_discarded_samples_total{{reason=\"per_metric_series_limit\",tenant=\"{WS}\"}} 2"
        ),
        format!(
            "hestia_discarded_metadata_total{{reason=\"per_user_metadata_limit\",tenant=\"{WS}\"}} 2"
        ),
    ] {
        assert!(metrics.contains(&want), "missing {want}");
    }
    hestia.shutdown().await.unwrap();
}
