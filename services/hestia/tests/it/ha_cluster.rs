//! An HA Prometheus pair through the multi-process cluster of `deploy/local/cluster` (two
//! distributors behind the gateway, elections on the three-voter control plane): two Debian
//! Prometheus 2.42 servers scrape the same eight targets with external labels
//! `cluster: prom-team1` and `__replica__: replica1|replica2` and remote-write to one workspace.
//! Hestia stores one series per target (no `__replica__`, `cluster` kept) with the samples of
//! one replica at a time. Killing the leading Prometheus hands over to the other within the
//! failover timeout (30 s) plus a scrape interval; restarting it does not take the lead back;
//! killing the distributor that made the failover, then the control-plane leader, changes
//! nothing. At the end every stored sample is traced to the replica whose local TSDB has it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::cluster::{create_workspace, LocalCluster, CP_API};
use crate::common::prometheus::Prometheus;
use serde_json::Value;

const SCRAPE_S: i64 = 2;
const FAILOVER_S: i64 = 30;
const DISTRIBUTORS: [(&str, &str); 2] = [
    ("distributor-1", "http://127.0.0.31:8081"),
    ("distributor-2", "http://127.0.0.32:8081"),
];
/// What both replicas scrape: the ingesters' and distributors' /metrics.
const TARGETS: [&str; 8] = [
    "127.0.0.21:9094",
    "127.0.0.22:9094",
    "127.0.0.23:9094",
    "127.0.0.24:9094",
    "127.0.0.25:9094",
    "127.0.0.26:9094",
    "127.0.0.31:8081",
    "127.0.0.32:8081",
];

fn prometheus_config(gateway: &str, ws: &str, replica: &str) -> String {
    let targets = TARGETS.map(|t| format!("\"{t}\"")).join(", ");
    format!(
        r#"
global:
  scrape_interval: {SCRAPE_S}s
  external_labels:
    cluster: prom-team1
    __replica__: {replica}
scrape_configs:
  - job_name: hestia
    static_configs:
      - targets: [{targets}]
remote_write:
  - url: http://{gateway}/workspaces/{ws}/api/v1/remote_write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
    )
}

async fn start_replica(dir: &Path, gateway: &str, ws: &str, replica: &str) -> Prometheus {
    let cfg = prometheus_config(gateway, ws, replica);
    Prometheus::start(&dir.join(replica), &cfg, &[]).await
}

/// `up` over the last `window` as raw samples: instance → (labels, timestamps in ms).
async fn raw_up(
    client: &reqwest::Client,
    query_url: &str,
    window: &str,
) -> BTreeMap<String, (Value, Vec<i64>)> {
    let r = client
        .get(query_url)
        .query(&[("query", format!("up[{window}]"))])
        .send()
        .await
        .expect("query");
    assert_eq!(r.status(), 200, "{query_url}");
    let v: Value = r.json().await.expect("json");
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().expect("matrix") {
        let instance = s["metric"]["instance"].as_str().unwrap_or("").to_string();
        let ts: Vec<i64> = s["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| (p[0].as_f64().expect("ts") * 1000.0).round() as i64)
            .collect();
        let dup = out.insert(instance.clone(), (s["metric"].clone(), ts));
        assert!(dup.is_none(), "two series for {instance}: {v}");
    }
    out
}

/// The elections the store holds, as a distributor shows them.
async fn elections(client: &reqwest::Client) -> Vec<Value> {
    for (_, url) in DISTRIBUTORS {
        if let Ok(r) = client.get(format!("{url}/ha_tracker")).send().await {
            if r.status() == 200 {
                let v: Value = r.json().await.expect("json");
                return v["elections"].as_array().cloned().unwrap_or_default();
            }
        }
    }
    panic!("no distributor answered /ha_tracker");
}

async fn elected(client: &reqwest::Client) -> (String, u64) {
    let e = elections(client).await;
    assert_eq!(e.len(), 1, "one HA cluster: {e:?}");
    assert_eq!(e[0]["cluster"], "prom-team1");
    (
        e[0]["replica"].as_str().expect("replica").to_string(),
        e[0]["changes"].as_u64().expect("changes"),
    )
}

/// The sum of one metric family on a distributor's /metrics (0 when it is down).
async fn distributor_metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
    let Ok(r) = client.get(format!("{url}/metrics")).send().await else {
        return 0.0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_pair_is_deduplicated_and_fails_over_once() {
    let c = LocalCluster::up();
    let client = reqwest::Client::new();
    let ws = create_workspace(&client).await;
    let hestia_query = format!("{}/workspaces/{ws}/api/v1/query", c.base());
    let dir = tempfile::tempdir().expect("tempdir");

    // replica1 starts first and is elected; replica2 joins once replica1's data is stored.
    let r1 = start_replica(dir.path(), &c.gateway, &ws, "replica1").await;
    wait_until("replica1's samples", Duration::from_secs(60), || async {
        let up = raw_up(&client, &hestia_query, "1m").await;
        up.len() == TARGETS.len() && up.values().all(|(_, ts)| ts.len() >= 2)
    })
    .await;
    let r2 = start_replica(dir.path(), &c.gateway, &ws, "replica2").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(elected(&client).await, ("replica1".to_string(), 0));
    let mut deduplicated = 0.0;
    for (_, url) in DISTRIBUTORS {
        deduplicated += distributor_metric(
            &client,
            url,
            "hestia_distributor_deduplicated_samples_total",
        )
        .await;
    }
    assert!(deduplicated > 0.0, "replica2's samples were not dropped");
    for (instance, (labels, _)) in raw_up(&client, &hestia_query, "1m").await {
        let names: BTreeSet<&str> = labels
            .as_object()
            .expect("labels")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["__name__", "cluster", "instance", "job"]),
            "{instance}: {labels}"
        );
        assert_eq!(labels["cluster"], "prom-team1");
    }

    // The leader dies: replica2 takes over after the failover timeout.
    drop(r1);
    let killed = Instant::now();
    wait_until("replica2's election", Duration::from_secs(90), || async {
        elected(&client).await.0 == "replica2"
    })
    .await;
    let took = killed.elapsed();
    eprintln!("replica2 elected {took:?} after replica1 was killed");
    assert!(
        took <= Duration::from_secs((FAILOVER_S + SCRAPE_S + 5) as u64),
        "failover took {took:?}"
    );
    // Every distributor's count of failovers together: exactly one.
    let mut changes = Vec::new();
    for (name, url) in DISTRIBUTORS {
        let n = distributor_metric(
            &client,
            url,
            "hestia_ha_tracker_elected_replica_changes_total",
        )
        .await;
        changes.push((name, n));
    }
    assert_eq!(
        changes.iter().map(|(_, n)| n).sum::<f64>(),
        1.0,
        "{changes:?}"
    );

    // The old leader comes back while replica2 sends: the lead stays.
    let r1 = start_replica(dir.path(), &c.gateway, &ws, "replica1").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(elected(&client).await, ("replica2".to_string(), 1));

    // The distributor that made the failover, then the control-plane leader, die.
    let (victim, _) = changes
        .iter()
        .find(|(_, n)| *n == 1.0)
        .copied()
        .expect("a distributor made the failover");
    c.run(&["kill", victim]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(elected(&client).await, ("replica2".to_string(), 1));
    let (_, cluster) = crate::common::get_json(&client, &format!("{CP_API}/admin/cluster")).await;
    let leader = cluster["current_leader"].as_u64().expect("a leader");
    c.run(&["kill", &format!("control-plane-{leader}")]);
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(elected(&client).await, ("replica2".to_string(), 1));

    // Every stored sample belongs to one replica's own TSDB: replica1's, then replica2's.
    let stored = raw_up(&client, &hestia_query, "10m").await;
    let own1 = raw_up(&client, &format!("{}/api/v1/query", r1.base()), "10m").await;
    let own2 = raw_up(&client, &format!("{}/api/v1/query", r2.base()), "10m").await;
    assert_eq!(stored.len(), TARGETS.len(), "{:?}", stored.keys());
    for (instance, (_, ts)) in &stored {
        let set = |own: &BTreeMap<String, (Value, Vec<i64>)>| -> BTreeSet<i64> {
            own.get(instance)
                .map(|(_, t)| t.iter().copied().collect())
                .unwrap_or_default()
        };
        let (s1, s2) = (set(&own1), set(&own2));
        let mut origin = Vec::new();
        for t in ts {
            match (s1.contains(t), s2.contains(t)) {
                (true, false) => origin.push((1, *t)),
                (false, true) => origin.push((2, *t)),
                (true, true) => {}
                (false, false) => panic!("{instance}: stored sample at {t} is in neither replica"),
            }
        }
        let switch = origin.iter().position(|(r, _)| *r == 2);
        let switch = switch.unwrap_or_else(|| panic!("{instance}: nothing from replica2"));
        assert!(switch > 0, "{instance}: nothing from replica1");
        assert!(
            origin[switch..].iter().all(|(r, _)| *r == 2),
            "{instance}: replicas interleaved after the failover: {origin:?}"
        );
        let gap = origin[switch].1 - origin[switch - 1].1;
        // The failover itself takes 30 s after the last report; replica1's last samples may
        // have died in its send queue, and scrapes are 2 s apart.
        assert!(
            gap <= (FAILOVER_S + 2 * SCRAPE_S + 4) * 1000,
            "{instance}: failover gap {gap} ms"
        );
        // After the failover, the kills of a distributor and a voter leave no long hole.
        let worst = origin[switch..]
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or(0);
        assert!(
            worst <= 15_000,
            "{instance}: {worst} ms without samples after the failover"
        );
        eprintln!(
            "{instance}: {} samples from replica1, {} from replica2, failover gap {gap} ms, longest gap after it {worst} ms",
            switch,
            origin.len() - switch
        );
    }
}
