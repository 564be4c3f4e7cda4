//! Authentication across processes: the local cluster with `HESTIA_AUTH=enabled` (three voters
//! and the gateway sharing one master key). The winning voter's first start writes the
//! operator's credentials; identities created on a voter reach the gateway through the
//! workspace watch; the gateway refuses unauthenticated and revoked credentials, and its
//! refusals reach a voter's audit log.

use std::time::{Duration, Instant};

use crate::common::cluster::{LocalCluster, CP_API};
use crate::common::*;
use serde_json::{json, Value};

/// Retries `f` until it answers `want` (identities propagate asynchronously), for at most 20 s.
async fn eventually<F, Fut>(what: &str, want: u16, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, String)>,
{
    let start = Instant::now();
    loop {
        let (status, text) = f().await;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: {status} {text}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_authenticates_at_every_listener() {
    let cluster = LocalCluster::up_with_auth();
    let (id, secret) = cluster.operator_key().await;
    let c = reqwest::Client::new();
    let base = cluster.base();

    // The voters' AMP API: unauthenticated 403, the operator's key works on any voter.
    let r = c.get(format!("{CP_API}/workspaces")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post("http://127.0.0.12:8090/workspaces")
        .basic_auth(&id, Some(&secret))
        .json(&json!({"alias": "auth"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let ws = r.json::<Value>().await.unwrap()["workspaceId"]
        .as_str()
        .unwrap()
        .to_string();
    let describe = || async {
        let r = c
            .get(format!("http://127.0.0.13:8090/workspaces/{ws}"))
            .basic_auth(&id, Some(&secret))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let active = v["workspace"]["status"]["statusCode"] == "ACTIVE";
        (if active { 200 } else { 0 }, v.to_string())
    };
    eventually("workspace ACTIVE", 200, describe).await;

    // The gateway: the operator's key (learned through the watch), then a token made on a voter.
    let rw = format!("{base}/workspaces/{ws}/api/v1/remote_write");
    let body = encode(vec![series(
        &[("__name__", "cluster_auth"), ("job", "t")],
        &[(now_ms(), 7.0)],
    )]);
    let write = |auth: Option<String>| {
        let mut req = c
            .post(&rw)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let (status, text) = write(None).await;
    assert_eq!(status, 403, "unauthenticated write: {text}");
    // The gateway's refusal is in one voter's audit log (the one that received the batch).
    let audited = eventually("gateway refusal audited", 200, || async {
        let mut found = String::new();
        for v in 1..=3 {
            let page: Value = c
                .get(format!(
                    "http://127.0.0.1{v}:8090/admin/audit?maxResults=1000"
                ))
                .basic_auth(&id, Some(&secret))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for e in page["events"].as_array().into_iter().flatten() {
                if e["eventName"] == "RemoteWrite"
                    && e["errorCode"] == "MissingAuthenticationTokenException"
                {
                    found = e.to_string();
                }
            }
        }
        (if found.is_empty() { 0 } else { 200 }, found)
    })
    .await;
    println!("a gateway refusal was in a voter's audit log within {audited:?}");
    let basic = reqwest::Client::new()
        .get("http://x/")
        .basic_auth(&id, Some(&secret))
        .build()
        .unwrap()
        .headers()["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    eventually("operator write", 200, || async {
        let (s, t) = write(Some(basic.clone())).await;
        (if s < 300 { 200 } else { s }, t)
    })
    .await;
    let q = format!("{base}/workspaces/{ws}/api/v1/query?query=cluster_auth");
    let r = c
        .get(&q)
        .header("authorization", &basic)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");

    let t: Value = c
        .post(format!("{CP_API}/workspaces/{ws}/tokens"))
        .basic_auth(&id, Some(&secret))
        .json(&json!({"scope": "write"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["token"].as_str().unwrap().to_string();
    let propagated = eventually("token write", 200, || async {
        let (s, t) = write(Some(format!("Bearer {token}"))).await;
        (if s < 300 { 200 } else { s }, t)
    })
    .await;
    println!("a new token reached the gateway within {propagated:?}");
    let r = c
        .delete(format!(
            "http://127.0.0.12:8090/workspaces/{ws}/tokens/{}",
            t["tokenId"].as_str().unwrap()
        ))
        .basic_auth(&id, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually("revoked token", 403, || {
        write(Some(format!("Bearer {token}")))
    })
    .await;
}
