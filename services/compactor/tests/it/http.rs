//! The compactor's HTTP API: one pass on demand, a tenant's blocks.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hestia_compactor::{ErrorBody, PassReport, TenantBlocks};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::harness::*;

async fn call(app: &axum::Router, method: &str, uri: &str) -> (StatusCode, Vec<u8>) {
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, body.to_vec())
}

#[tokio::test]
async fn compact_now_and_list_blocks() {
    let fx = Fixture::new();
    let mut cfg = fx.config("c1");
    cfg.compactor.deletion_delay = std::time::Duration::from_secs(3600);
    let c = fx.compactor(&cfg).await;
    let app = hestia_compactor::router(c);
    let t = fx.tenant("a");
    let want = fx.ship_replicas(&t, 3, 0..1, 10).await;
    let other = fx.tenant("b");
    fx.ship_replicas(&other, 3, 0..1, 10).await;

    // `?tenant=` passes over that tenant alone.
    let uri = format!("/compactor/compact?tenant={}", t.tenant());
    let (status, body) = call(&app, "POST", &uri).await;
    assert_eq!(status, StatusCode::OK);
    let report: PassReport = serde_json::from_slice(&body).expect("report");
    assert_eq!(report.instance, "c1");
    assert_eq!(report.tenants.len(), 1, "{report:?}");
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    assert_eq!((r.compactions, r.samples_out), (1, count(&want) as u64));
    let (status, body) = call(&app, "POST", "/compactor/compact").await;
    assert_eq!(status, StatusCode::OK);
    let report: PassReport = serde_json::from_slice(&body).expect("report");
    let r = report
        .tenant(other.tenant().as_str())
        .expect("other tenant");
    assert_eq!(r.compactions, 1, "{report:?}");
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    assert_eq!(r.compactions, 0, "compacted once: {report:?}");
    let (status, _) = call(&app, "POST", "/compactor/compact?tenant=no%20such").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let uri = format!("/compactor/tenants/{}/blocks", t.tenant());
    let (status, body) = call(&app, "GET", &uri).await;
    assert_eq!(status, StatusCode::OK);
    let blocks: TenantBlocks = serde_json::from_slice(&body).expect("blocks");
    assert_eq!(blocks.tenant_deletion_time, None);
    assert_eq!(blocks.blocks.len(), 4);
    let (marked, live): (Vec<_>, Vec<_>) = blocks
        .blocks
        .iter()
        .partition(|b| b.deletion_time.is_some());
    assert_eq!((marked.len(), live.len()), (3, 1));
    let out = live[0];
    assert_eq!((out.level, out.source.as_str()), (2, "compactor"));
    assert_eq!((out.min_time, out.max_time), (BASE, BASE + RANGE));
    let mut sources: Vec<_> = marked.iter().map(|b| b.id).collect();
    sources.sort();
    assert_eq!(out.sources, sources);
    assert_eq!(out.num_samples, count(&want) as u64);
    assert!(blocks.blocks.iter().all(|b| b.size_bytes > 0), "{blocks:?}");
    assert!(marked
        .iter()
        .all(|b| b.level == 1 && b.source == "ingester"));

    let (status, body) = call(&app, "GET", "/compactor/tenants/no%20such/blocks").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: ErrorBody = serde_json::from_slice(&body).expect("error body");
    assert!(err.error.contains("tenant"), "{err:?}");
}
