//! `hestia-compactor`: merges, deduplicates and expires the blocks of the tenants it owns in
//! the compactors' ring; `/metrics`, `/ready` and the compactor API on `--http-listen`.

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
#[command(name = "hestia-compactor", version)]
struct Args {
    #[arg(long, env = "HESTIA_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides compactor.http_listen.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Overrides server.data_dir.
    #[arg(long, env = "HESTIA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides compactor.ring.instance_id.
    #[arg(long)]
    instance_id: Option<String>,
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
    if let Some(a) = args.http_listen {
        cfg.compactor.http_listen = a;
    }
    if let Some(d) = args.data_dir {
        cfg.server.data_dir = d;
    }
    if let Some(id) = args.instance_id {
        cfg.compactor.ring.instance_id = Some(id);
    }
    cfg.validate()?;
    anyhow::ensure!(
        cfg.compactor.enabled,
        "compactor.enabled = false: nothing to run"
    );
    let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
    // Bind first: a port in use fails before joining the ring.
    let listener = tokio::net::TcpListener::bind(cfg.compactor.http_listen).await?;
    let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)?;
    let kv = hestia_ring::new_kv(&cfg.ring)?;
    let retentions = hestia_compactor::Retentions::new();
    let _workspaces = match cfg.ring.kv_endpoints.is_empty() {
        true => None,
        false => Some(retentions.follow(&cfg.ring.kv_endpoints)?),
    };
    let compactor = hestia_compactor::Compactor::start(&cfg, bucket, kv, retentions).await?;
    let app = hestia_compactor::router(compactor.clone())
        .layer(axum::middleware::from_fn(hestia_telemetry::track_http))
        .merge(hestia_telemetry::ops_router(Arc::new(AtomicBool::new(
            true,
        ))));
    tracing::info!(addr = %cfg.compactor.http_listen, "compactor listening");
    let server = tokio::spawn(async move {
        axum::serve(hestia_telemetry::nodelay(listener), app)
            .with_graceful_shutdown(hestia_telemetry::shutdown_signal())
            .await
    });
    compactor.run(hestia_telemetry::shutdown_signal()).await;
    compactor.stop().await?;
    server.await??;
    Ok(())
}
