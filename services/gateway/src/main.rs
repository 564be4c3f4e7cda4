//! `hestia-gateway`: the public endpoint of a cluster, proxying to a distributor and a querier.

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use hestia_config::Config;
use hestia_gateway::{Gateway, Upstream, Workspaces};

#[derive(Parser)]
#[command(name = "hestia-gateway", version)]
struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, env = "HESTIA_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Distributor base URL (repeatable: requests go round-robin with failover).
    #[arg(long = "distributor-url")]
    distributor_urls: Vec<String>,
    /// Querier base URL (repeatable).
    #[arg(long = "querier-url")]
    querier_urls: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_telemetry::disable_transparent_huge_pages();
    let args = Args::parse();
    let mut cfg = args
        .config
        .as_deref()
        .map(Config::from_file)
        .transpose()?
        .unwrap_or_default();
    if !args.distributor_urls.is_empty() {
        cfg.gateway.distributor_urls = args.distributor_urls;
    }
    if !args.querier_urls.is_empty() {
        cfg.gateway.querier_urls = args.querier_urls;
    }
    cfg.validate()?;
    let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
    let distributor = Upstream::remote("distributor", &cfg.gateway.distributor_urls)?;
    let querier = Upstream::remote("querier", &cfg.gateway.querier_urls)?;
    // A gateway has no audit log of its own: refusals are logged (target `hestia::audit`) and
    // forwarded to a control-plane voter's.
    let (audit, _forwarder): (Arc<dyn hestia_auth::AuditSink>, _) =
        if cfg.gateway.control_plane_endpoints.is_empty() {
            (Arc::new(hestia_auth::layer::LogAudit), None)
        } else {
            let (sink, task) = hestia_gateway::audit::forward_to_control_plane(
                &cfg.gateway.control_plane_endpoints,
            )?;
            (sink, Some(task))
        };
    let auth = hestia_auth::layer::from_config(&cfg, audit, None)?;
    let layer = auth.layer;
    let (workspaces, _watch) = Workspaces::start(
        &cfg.gateway.control_plane_endpoints,
        cfg.gateway.dev_workspaces,
        auth.authenticator,
    )?;
    let gw = Arc::new(Gateway::new(workspaces, distributor, querier));
    let app = hestia_gateway::router(gw)
        .layer(axum::middleware::from_fn_with_state(
            layer.clone(),
            hestia_auth::layer::authenticate,
        ))
        .merge(hestia_auth::layer::oauth2_router(layer))
        .layer(axum::middleware::from_fn(hestia_telemetry::track_http))
        .merge(hestia_telemetry::ops_router(Arc::new(AtomicBool::new(
            true,
        ))));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %args.listen, "gateway listening");
    axum::serve(
        hestia_telemetry::nodelay(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(hestia_telemetry::shutdown_signal())
    .await?;
    Ok(())
}
