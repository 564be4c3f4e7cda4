//! `hestia-querier`: the Prometheus query API alone (tenant from `X-Scope-OrgID`).

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
#[command(name = "hestia-querier", version)]
struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8082")]
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
    cfg.validate_cluster_role("querier")?;
    let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
    let kv = hestia_ring::new_kv(&cfg.ring)?;
    let ring = Arc::new(hestia_ring::RingClient::start(kv, &cfg.ring).await?);
    let pool = Arc::new(hestia_proto::IngesterPool::default());
    let blocks = hestia_querier::BlockStore::open(&cfg)?;
    let mut querier_cfg = cfg.querier.clone();
    if !cfg.blocks.ship {
        // Ingesters keep every sample: they are asked whatever the time range.
        querier_cfg.query_ingesters_within = std::time::Duration::ZERO;
    }
    let q = Arc::new(hestia_querier::Querier::with_blocks(
        querier_cfg,
        ring,
        pool,
        blocks,
    ));
    let app = hestia_querier::router(q)
        .layer(axum::middleware::from_fn(hestia_telemetry::track_http))
        .merge(hestia_telemetry::ops_router(Arc::new(AtomicBool::new(
            true,
        ))));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %args.listen, "querier listening");
    axum::serve(hestia_telemetry::nodelay(listener), app)
        .with_graceful_shutdown(hestia_telemetry::shutdown_signal())
        .await?;
    Ok(())
}
