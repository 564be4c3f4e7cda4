//! `hestia-distributor`: the remote-write receiver alone (tenant from `X-Scope-OrgID`).

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use hestia_config::Config;

#[derive(Parser)]
#[command(name = "hestia-distributor", version)]
struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_telemetry::disable_transparent_huge_pages();
    let args = Args::parse();
    let cfg = args
        .config
        .as_deref()
        .map(Config::from_file)
        .transpose()?
        .unwrap_or_default();
    cfg.validate()?;
    cfg.validate_cluster_role("distributor")?;
    let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
    let kv = hestia_ring::new_kv(&cfg.ring)?;
    let ring = Arc::new(hestia_ring::RingClient::start(kv.clone(), &cfg.ring).await?);
    let (lifecycler, distributors) =
        hestia_distributor::join_distributor_ring(kv, &cfg.ring, args.listen).await?;
    let overrides = Arc::new(cfg.overrides.load(&cfg.limits)?);
    let _reloader = overrides.spawn_reloader(cfg.overrides.reload_period);
    // Per-workspace overrides set through the control plane's admin API, pushed by its watch.
    let _cp_overrides = overrides.spawn_control_plane_watch(&cfg.ring.kv_endpoints)?;
    let pool = Arc::new(hestia_proto::IngesterPool::default());
    let (ha, _ha_refresher) =
        hestia_distributor::start_ha_tracker(&cfg.ring.kv_endpoints, &cfg.distributor.ha_tracker)?;
    let d = Arc::new(hestia_distributor::Distributor::new(
        cfg.distributor,
        overrides,
        ring,
        pool,
        Some(distributors),
        ha,
    ));
    let app = hestia_distributor::router(d)
        .layer(axum::middleware::from_fn(hestia_telemetry::track_http))
        .merge(hestia_telemetry::ops_router(Arc::new(AtomicBool::new(
            true,
        ))));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %args.listen, "distributor listening");
    axum::serve(hestia_telemetry::nodelay(listener), app)
        .with_graceful_shutdown(hestia_telemetry::shutdown_signal())
        .await?;
    lifecycler.shutdown(true).await?;
    Ok(())
}
