//! Every acknowledged sample survives `kill -9` of `hestia all`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use tokio::sync::Mutex;

const WRITERS: usize = 4;
const SERIES_PER_REQUEST: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_samples_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut proc = HestiaProcess::start(dir.path(), addr).await;
    let base = format!("http://{addr}");
    let start = now_ms() - 60_000;
    let acked: Arc<Vec<Mutex<BTreeSet<i64>>>> =
        Arc::new((0..WRITERS).map(|_| Mutex::new(BTreeSet::new())).collect());

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let acked = acked.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let writer = w.to_string();
            for i in 0..1_000_000i64 {
                let t = start + i;
                let ts = (0..SERIES_PER_REQUEST)
                    .map(|s| {
                        let s = s.to_string();
                        series(
                            &[("__name__", "crash_load"), ("s", &s), ("writer", &writer)],
                            &[(t, i as f64)],
                        )
                    })
                    .collect();
                let r = c
                    .post(format!("{base}/workspaces/{WS}/api/v1/remote_write"))
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .body(encode(ts))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        acked[w].lock().await.insert(i);
                    }
                    Ok(r) => panic!("unexpected status {} before the crash", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    proc.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let total: usize = {
        let mut n = 0;
        for a in acked.iter() {
            n += a.lock().await.len();
        }
        n
    };
    assert!(
        total > WRITERS * 10,
        "the load generated too few acknowledged requests ({total})"
    );

    let proc2 = HestiaProcess::start(dir.path(), addr).await;
    let c = reqwest::Client::new();
    for (w, a) in acked.iter().enumerate() {
        let a = a.lock().await;
        let last = *a.iter().next_back().unwrap();
        let at = (start + last + 1) as f64 / 1000.0;
        // Every acknowledged value of one series is there...
        let q = instant_query(
            &c,
            &base,
            WS,
            &format!("crash_load{{writer=\"{w}\",s=\"0\"}}[1h]"),
            at,
        )
        .await;
        let values: BTreeSet<i64> = q["data"]["result"][0]["values"]
            .as_array()
            .expect("matrix")
            .iter()
            .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap() as i64)
            .collect();
        let missing: Vec<_> = a.difference(&values).take(5).collect();
        assert!(
            missing.is_empty(),
            "writer {w}: acknowledged samples missing after kill -9: {missing:?}..."
        );
        // ...and every series of each acknowledged request has at least as many samples.
        let q = instant_query(
            &c,
            &base,
            WS,
            &format!("min(count_over_time(crash_load{{writer=\"{w}\"}}[1h]))"),
            at,
        )
        .await;
        let min: usize = q["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            min >= a.len(),
            "writer {w}: a series has {min} samples, {} acknowledged",
            a.len()
        );
        let q = instant_query(
            &c,
            &base,
            WS,
            &format!("count(crash_load{{writer=\"{w}\"}})"),
            at,
        )
        .await;
        assert_eq!(
            q["data"]["result"][0]["value"][1],
            SERIES_PER_REQUEST.to_string()
        );
    }
    eprintln!(
        "kill -9 recovery: {total} acknowledged requests ({} samples) all present",
        total * SERIES_PER_REQUEST
    );
    drop(proc2);
}
