//! Cross-cutting process plumbing every binary shares: `tracing` subscriber setup, the `/metrics`
//! exposition of the process' Prometheus registry, a middleware timing every HTTP request by
//! route, the operational routes (`/metrics`, `/ready`, `/health`) and shutdown signals.

pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use hestia_config::{LogFormat, TelemetryConfig};
use tracing_subscriber::{fmt, EnvFilter};

pub use metrics::track_http;

/// Installs the global tracing subscriber. `RUST_LOG` overrides the configured level.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init_tracing(cfg: &TelemetryConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = match cfg.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// `GET /metrics`: the process' registry in Prometheus text format.
pub async fn metrics_handler() -> impl IntoResponse {
    match metrics::encode_text() {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `/metrics`, `/health` (the process is up) and `/ready` (200 once `ready` is set, else 503).
pub fn ops_router(ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(|| async { "OK" }))
        .route(
            "/ready",
            get(move || {
                let ready = ready.load(Ordering::Acquire);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        )
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
