//! The multi-process cluster of `deploy/local/cluster` under a steady write load: three Raft
//! voters holding the ring, six ingesters in three zones, two distributors, two queriers and the
//! gateway, each its own process on 127.0.0.x. Ingesters are SIGKILLed one by one, then a whole
//! zone; every acknowledged sample must stay queryable and queries complete. One more ingester
//! in a second zone: writes must fail with 5xx, never 2xx. Restarted ingesters rejoin the ring
//! and everything acknowledged is still there. Around it, the control plane's side: only its
//! workspaces are served, its quota overrides reach the distributors, and a deleted workspace
//! is refused at once and purged from every ingester after the grace period.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::cluster::{create_workspace, LocalCluster};
use crate::common::{encode, now_ms, series, WS};
use serde_json::json;

const METRIC: &str = "local_cluster_load";
const SERIES: usize = 60;

/// Every write the load sent: (timestamp, status); the value of each sample is its timestamp.
type Log = Arc<Mutex<Vec<(i64, u16)>>>;

async fn write_round(client: &reqwest::Client, base: &str, t: i64) -> u16 {
    let ts = (0..SERIES)
        .map(|i| {
            series(
                &[("__name__", METRIC), ("i", &i.to_string())],
                &[(t, t as f64)],
            )
        })
        .collect();
    let r = client
        .post(format!("{base}/api/v1/remote_write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(Duration::from_secs(10))
        .body(encode(ts))
        .send()
        .await;
    match r {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Writes one sample per series every 100 ms until stopped.
fn start_load(base: String, log: Log) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut last = 0;
        loop {
            let t = now_ms().max(last + 1);
            last = t;
            let status = write_round(&client, &base, t).await;
            log.lock().expect("log").push((t, status));
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    stop
}

/// The raw samples of every series over the last 30 minutes: series index -> timestamps, or the
/// HTTP status of a failed query.
async fn stored(client: &reqwest::Client, base: &str) -> Result<BTreeMap<usize, Vec<i64>>, u16> {
    let r = client
        .get(format!("{base}/api/v1/query"))
        .query(&[
            ("query", format!("{METRIC}[30m]")),
            ("time", format!("{:.3}", (now_ms() + 1000) as f64 / 1000.0)),
        ])
        .send()
        .await
        .expect("query");
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    let v: serde_json::Value = r.json().await.expect("json");
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().expect("matrix") {
        let i: usize = s["metric"]["i"]
            .as_str()
            .expect("i")
            .parse()
            .expect("index");
        let ts = s["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().expect("t") * 1000.0).round() as i64;
                let v: f64 = p[1].as_str().expect("v").parse().expect("value");
                assert_eq!(v, t as f64, "series {i}: value at {t}");
                t
            })
            .collect();
        assert!(out.insert(i, ts).is_none(), "series {i} returned twice");
    }
    Ok(out)
}

/// Every acknowledged write is in every series; answers `Err` with the query's status.
async fn check_complete(client: &reqwest::Client, base: &str, log: &Log) -> Result<usize, u16> {
    let acked: Vec<i64> = log
        .lock()
        .expect("log")
        .iter()
        .filter(|(_, s)| (200..300).contains(s))
        .map(|(t, _)| *t)
        .collect();
    let stored = stored(client, base).await?;
    assert_eq!(stored.len(), SERIES, "every series is returned");
    for (i, ts) in &stored {
        let missing: Vec<&i64> = acked
            .iter()
            .filter(|t| ts.binary_search(t).is_err())
            .collect();
        assert!(
            missing.is_empty(),
            "series {i}: {} acknowledged samples missing, first {:?}",
            missing.len(),
            missing.first()
        );
    }
    Ok(acked.len())
}

async fn ring(client: &reqwest::Client) -> Vec<serde_json::Value> {
    let v: serde_json::Value = client
        .get("http://127.0.0.31:8081/ring")
        .send()
        .await
        .expect("ring page")
        .json()
        .await
        .expect("ring json");
    v["instances"].as_array().cloned().unwrap_or_default()
}

async fn wait_ring_healthy(client: &reqwest::Client, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = ring(client)
            .await
            .iter()
            .filter(|i| i["state"] == "ACTIVE" && i["healthy"] == true)
            .count();
        if healthy == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ring has {healthy} healthy ACTIVE ingesters, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn statuses_since(log: &Log, from: usize) -> Vec<u16> {
    log.lock().expect("log")[from..]
        .iter()
        .map(|(_, s)| *s)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_ingesters_under_load() {
    let c = LocalCluster::up();
    let client = reqwest::Client::new();
    wait_ring_healthy(&client, 6).await;
    // The gateway serves the workspaces of the control plane, and only those.
    let unknown = format!("{}/workspaces/{WS}", c.base());
    assert_eq!(write_round(&client, &unknown, now_ms()).await, 404);
    assert_eq!(stored(&client, &unknown).await, Err(404));
    let ws = create_workspace(&client).await;
    let base = format!("{}/workspaces/{ws}", c.base());

    let log: Log = Arc::default();
    let load = start_load(base.clone(), log.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // One ingester, then its whole zone: every write acknowledged, every query complete.
    for victim in ["ingester-b1", "ingester-b2"] {
        let from = log.lock().expect("log").len();
        c.run(&["kill", victim]);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let statuses = statuses_since(&log, from);
        assert!(
            statuses.iter().all(|s| *s == 200),
            "{victim} down: every write 200, got {statuses:?}"
        );
        let acked = check_complete(&client, &base, &log)
            .await
            .unwrap_or_else(|s| panic!("{victim} down: query failed with {s}"));
        assert!(acked > 10, "the load kept writing ({acked} rounds)");
    }
    let _ = load.send(());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A second zone loses a member: series replicated on b and a1 have no quorum, so every
    // request (each carries all series) fails with 5xx, never 2xx. Queries refuse, never partial.
    c.run(&["kill", "ingester-a1"]);
    for _ in 0..5 {
        let t = now_ms();
        let status = write_round(&client, &base, t).await;
        log.lock().expect("log").push((t, status));
        assert!((500..600).contains(&status), "no quorum: got {status}");
    }
    match check_complete(&client, &base, &log).await {
        Ok(_) | Err(503) => {}
        Err(s) => panic!("query with zone b and a1 down: {s}"),
    }

    // Back on the same disks: they rejoin, and everything acknowledged is there.
    for name in ["ingester-a1", "ingester-b1", "ingester-b2"] {
        c.run(&["start", name]);
    }
    wait_ring_healthy(&client, 6).await;
    let t = now_ms();
    let status = write_round(&client, &base, t).await;
    log.lock().expect("log").push((t, status));
    assert_eq!(status, 200, "writes after the restarts");
    let acked = check_complete(&client, &base, &log)
        .await
        .unwrap_or_else(|s| panic!("after restarts: query failed with {s}"));
    eprintln!("{acked} acknowledged rounds of {SERIES} series, all queryable");

    // A quota set through the control plane's admin API reaches both distributors within
    // seconds; the rate is shared between them.
    let r = client
        .put(format!(
            "http://127.0.0.11:8090/admin/workspaces/{ws}/limits"
        ))
        .json(&json!({"ingestion_rate": 10, "ingestion_burst_size": 10}))
        .send()
        .await
        .expect("set limits");
    assert_eq!(r.status(), 200, "set limits");
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let t = now_ms();
        let r = client
            .post(format!("{base}/api/v1/remote_write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(encode(
                (0..SERIES)
                    .map(|i| {
                        series(
                            &[("__name__", METRIC), ("i", &i.to_string())],
                            &[(t, t as f64)],
                        )
                    })
                    .collect(),
            ))
            .send()
            .await
            .expect("write");
        if r.status() == 429 {
            break r.text().await.expect("body");
        }
        assert!(Instant::now() < deadline, "the new quota did not apply");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        body,
        format!("ingestion rate limit (5) exceeded while adding {SERIES} samples and 0 metadata")
    );

    // A deleted workspace is refused at once by the data plane.
    let r = client
        .delete(format!("http://127.0.0.13:8090/workspaces/{ws}"))
        .send()
        .await
        .expect("DeleteWorkspace");
    assert_eq!(r.status(), 202, "DeleteWorkspace");
    let deadline = Instant::now() + Duration::from_secs(10);
    while write_round(&client, &base, now_ms()).await != 404 {
        assert!(
            Instant::now() < deadline,
            "deleted workspace still accepts writes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored(&client, &base).await, Err(404));

    // After the grace period (1 s here) its data is purged from every ingester: a querier asked
    // directly for the tenant finds nothing.
    let tenant = format!("000000000000_{ws}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: serde_json::Value = client
            .get("http://127.0.0.41:8082/api/v1/query")
            .header("X-Scope-OrgID", &tenant)
            .query(&[("query", format!("count({METRIC})"))])
            .send()
            .await
            .expect("querier")
            .json()
            .await
            .expect("json");
        assert_eq!(v["status"], "success", "{v}");
        if v["data"]["result"].as_array().is_some_and(|r| r.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "workspace data not purged: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
