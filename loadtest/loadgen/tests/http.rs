//! Runs the generator for two seconds against an in-test receiver that checks every request
//! is snappy-compressed protobuf with the remote-write headers.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hestia_loadgen::{run, Settings};
use hestia_proto::prometheus as pb;
use prost::Message;

#[derive(Default)]
struct Seen {
    samples: AtomicU64,
    invalid: AtomicU64,
}

async fn receive(
    State(seen): State<Arc<Seen>>,
    Path(ws): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if ws == "ws-load-1" {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "ingestion rate limit exceeded",
        );
    }
    let ok_headers = headers["content-encoding"] == "snappy"
        && headers["content-type"] == "application/x-protobuf"
        && headers["x-prometheus-remote-write-version"] == "0.1.0";
    let decoded = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .ok()
        .and_then(|raw| pb::WriteRequest::decode(raw.as_slice()).ok());
    match decoded {
        Some(req) if ok_headers => {
            let valid = req.timeseries.iter().all(|ts| {
                ts.labels.windows(2).all(|w| w[0].name < w[1].name)
                    && ts.labels.len() == 6
                    && ts.samples.len() == 1
            });
            if !valid {
                seen.invalid.fetch_add(1, Relaxed);
                return (StatusCode::BAD_REQUEST, "invalid series");
            }
            let n: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
            seen.samples.fetch_add(n as u64, Relaxed);
            (StatusCode::NO_CONTENT, "")
        }
        _ => {
            seen.invalid.fetch_add(1, Relaxed);
            (StatusCode::BAD_REQUEST, "not snappy protobuf")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_valid_remote_write_and_counts_statuses() {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route("/workspaces/{ws}/api/v1/remote_write", post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let settings = Settings {
        series: 500,
        labels_per_series: 6,
        batch_size: 100,
        samples_per_second: 2000,
        workspaces: 2,
        scrape_interval: Duration::from_secs(1),
        churn_percent: 10.0,
        time_compression: 5.0,
        duration: Duration::from_secs(2),
        report_every: Duration::from_secs(1),
        url: format!("http://{addr}/workspaces/{{ws}}/api/v1/remote_write"),
        ..Default::default()
    };
    let s = run(settings).await.unwrap();
    assert_eq!(seen.invalid.load(Relaxed), 0);
    assert_eq!(s.samples_accepted, seen.samples.load(Relaxed));
    assert!(s.accepted > 0 && s.status_429 > 0, "{s:?}");
    assert_eq!(s.status_400 + s.status_5xx + s.other_errors, 0);
    assert_eq!(s.first_errors["429"], "ingestion rate limit exceeded");
    // About 2,000 samples/s for 2 s, half of them to the refusing workspace.
    let total = (s.accepted + s.status_429) * 100;
    assert!((3000..=4500).contains(&total), "{total} samples sent");
}
