//! The process-wide registry is `prometheus::default_registry()`; each crate registers its own
//! metrics in its `metrics.rs`. This module holds the HTTP request histogram.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use once_cell::sync::Lazy;
use prometheus::{register_histogram_vec, Encoder, HistogramVec, TextEncoder};

pub static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "hestia_request_duration_seconds",
        "Time spent serving HTTP requests, by route, method and status code.",
        &["route", "method", "status_code"],
        vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            120.0
        ]
    )
    .expect("metric registers once")
});

/// Axum middleware observing `hestia_request_duration_seconds` per matched route template
/// (never the raw path, which holds workspace ids).
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    REQUEST_DURATION
        .with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()])
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Encodes every registered metric in Prometheus' text format.
pub fn encode_text() -> Result<Vec<u8>, prometheus::Error> {
    Lazy::force(&REQUEST_DURATION);
    let mut buf = Vec::new();
    TextEncoder::new().encode(&prometheus::gather(), &mut buf)?;
    Ok(buf)
}
