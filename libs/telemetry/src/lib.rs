//! Cross-cutting process plumbing every binary shares: `tracing` subscriber setup, the `/metrics`
//! exposition of the process' Prometheus registry, a middleware timing every HTTP request by
//! route, the operational routes (`/metrics`, `/ready`, `/health`), shutdown signals and the
//! process' memory settings.

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

/// Keeps the OpenTelemetry exporter alive; dropping it flushes pending spans.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`, what mimalloc's
/// `allow_thp=0` does). mimalloc asks for huge pages on its arenas, so every page it takes back
/// from the OS after a purge faulted in and zeroed 2 MiB: in `make bench-ingest` that was a third
/// of the ingesters' CPU, with push p99 at 850 ms instead of 35–47 ms.
pub fn disable_transparent_huge_pages() {
    // Called before logging is set up; a kernel without the call (before 3.15) just keeps THP.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments only and touches no memory
    // of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Installs the global tracing subscriber (text or JSON logs; `RUST_LOG` overrides the configured
/// level) and, when `otlp_endpoint` is set, exports spans over OTLP/HTTP. A second call keeps the
/// first subscriber.
pub fn init_tracing(cfg: &TelemetryConfig) -> TelemetryGuard {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    // openraft narrates every election and snapshot at INFO; its warnings are what matter.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        if cfg.log_level.contains("openraft") {
            EnvFilter::new(&cfg.log_level)
        } else {
            EnvFilter::new(format!("{},openraft=warn", cfg.log_level))
        }
    });
    let logs = match cfg.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Text => fmt::layer().with_target(true).boxed(),
    };
    let mut provider = None;
    let otel = cfg.otlp_endpoint.as_ref().and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .build();
        match exporter {
            Ok(exporter) => {
                let p = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(cfg.service_name.clone())
                            .build(),
                    )
                    .build();
                let tracer = p.tracer("hestia");
                provider = Some(p);
                Some(tracing_opentelemetry::layer().with_tracer(tracer))
            }
            Err(e) => {
                eprintln!("OTLP trace export disabled: {e}");
                None
            }
        }
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .try_init();
    TelemetryGuard { provider }
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

/// `listener` with TCP_NODELAY on every accepted connection, for `axum::serve` (which leaves
/// it off): otherwise a response hyper writes in two parts can wait for the client's delayed
/// ACK, 40 ms on Linux.
pub fn nodelay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

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
