//! HA deduplication through `hestia all` (elections on its control-plane voter), with a 6 s
//! failover timeout: the first replica of a cluster is stored without its `__replica__` label,
//! the other one is answered 202 and dropped (remote write 1.0 and 2.0), the other replica takes
//! over once the elected one has been silent for the timeout, a workspace's HA cluster limit
//! refuses new clusters with 400, and a workspace with deduplication off stores every replica.

use std::time::{Duration, Instant};

use crate::common::*;

const OTHER: &str = "ws-00000000-0000-4000-8000-000000000002";
const FAILOVER: Duration = Duration::from_secs(6);

/// One sample of `ha_test{cluster, __replica__}` at `t`.
fn from_replica(cluster: &str, replica: &str, t: i64) -> Vec<u8> {
    encode(vec![series(
        &[
            ("__name__", "ha_test"),
            ("__replica__", replica),
            ("cluster", cluster),
        ],
        &[(t, t as f64)],
    )])
}

/// The stored series of `q` with their samples' values.
async fn stored(c: &reqwest::Client, base: &str, ws: &str, q: &str) -> Vec<serde_json::Value> {
    let v = instant_query(c, base, ws, q, now_ms() as f64 / 1000.0).await;
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_per_cluster_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let overrides_file = dir.path().join("overrides.toml");
    std::fs::write(
        &overrides_file,
        format!("[overrides.\"{WS}\"]\nha_max_clusters = 2\n\n[overrides.\"{OTHER}\"]\naccept_ha_samples = false\n"),
    )
    .unwrap();
    let file = overrides_file.clone();
    let hestia = start_in_process_with(&dir.path().join("data"), move |cfg| {
        cfg.overrides.file = Some(file);
        let ha = &mut cfg.distributor.ha_tracker;
        ha.failover_timeout = FAILOVER;
        ha.update_timeout = Duration::from_secs(1);
        ha.update_timeout_jitter_max = Duration::ZERO;
    })
    .await;
    let base = format!("http://{}", hestia.addr);
    let c = reqwest::Client::new();

    let t0 = now_ms();
    let (status, body) = remote_write(&c, &base, WS, from_replica("team1", "r1", t0)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = remote_write(&c, &base, WS, from_replica("team1", "r2", t0 + 1)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        "replicas did not match, rejecting sample: replica=r2, elected=r1"
    );
    // Remote write 2.0 gets the same answer, with nothing written.
    let v2 = hestia_proto::write_v2::Request {
        symbols: [
            "",
            "__name__",
            "ha_test",
            "__replica__",
            "r2",
            "cluster",
            "team1",
        ]
        .map(String::from)
        .to_vec(),
        timeseries: vec![hestia_proto::write_v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4, 5, 6],
            samples: vec![hestia_proto::write_v2::Sample {
                value: 1.0,
                timestamp: t0 + 2,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = c
        .post(format!("{base}/workspaces/{WS}/api/v1/remote_write"))
        .header("Content-Encoding", "snappy")
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .body(
            snap::raw::Encoder::new()
                .compress_vec(&prost::Message::encode_to_vec(&v2))
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()["x-prometheus-remote-write-samples-written"],
        "0"
    );

    let got = stored(&c, &base, WS, "ha_test[1m]").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["metric"],
        serde_json::json!({"__name__": "ha_test", "cluster": "team1"})
    );
    assert_eq!(got[0]["values"].as_array().unwrap().len(), 1);

    // r1 keeps sending for a while (its reports keep the election), then goes silent.
    let mut last_r1 = t0;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last_r1 = now_ms();
        let (s, b) = remote_write(&c, &base, WS, from_replica("team1", "r1", last_r1)).await;
        assert_eq!(s, 200, "{b}");
        let (s, _) = remote_write(&c, &base, WS, from_replica("team1", "r2", last_r1 + 1)).await;
        assert_eq!(s, 202, "r2 must wait while r1 sends");
    }
    // r2 takes over after r1 has been silent for the failover timeout, and not much earlier.
    let failed_over = loop {
        let t = now_ms();
        let (s, b) = remote_write(&c, &base, WS, from_replica("team1", "r2", t)).await;
        if s == 200 {
            break t;
        }
        assert_eq!(s, 202, "{b}");
        assert!(t - last_r1 < 20_000, "no failover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let silent = failed_over - last_r1;
    assert!(
        (4_000..=(FAILOVER.as_millis() as i64 + 1_000)).contains(&silent),
        "failover after {silent} ms of silence"
    );
    let (s, _) = remote_write(&c, &base, WS, from_replica("team1", "r1", now_ms())).await;
    assert_eq!(s, 202, "the old leader must not take the lead back");
    let got = stored(&c, &base, WS, "ha_test[1m]").await;
    assert_eq!(got.len(), 1, "{got:?}");

    let (_, v) = get_json(&c, &format!("{base}/distributor/ha_tracker")).await;
    let e = &v["elections"][0];
    assert_eq!(
        (
            e["tenant"].as_str(),
            e["cluster"].as_str(),
            e["replica"].as_str()
        ),
        (Some(WS), Some("team1"), Some("r2"))
    );
    assert_eq!(e["changes"], 1);

    // Two clusters at most in WS; another workspace has its own count.
    let t = now_ms();
    let (s, b) = remote_write(&c, &base, WS, from_replica("team2", "a", t)).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = remote_write(&c, &base, WS, from_replica("team3", "a", t)).await;
    assert_eq!((s, b.as_str()), (400, "too many HA clusters (limit: 2)"));
    // A request without both labels is not an HA request.
    let plain = encode(vec![series(
        &[("__name__", "ha_test"), ("cluster", "team3")],
        &[(t, 1.0)],
    )]);
    let (s, b) = remote_write(&c, &base, WS, plain).await;
    assert_eq!(s, 200, "{b}");

    // Deduplication off: both replicas are stored, labels untouched.
    for r in ["r1", "r2"] {
        let (s, b) = remote_write(&c, &base, OTHER, from_replica("team1", r, t)).await;
        assert_eq!(s, 200, "{b}");
    }
    assert_eq!(stored(&c, &base, OTHER, "ha_test").await.len(), 2);

    hestia.shutdown().await.unwrap();
}
