//! `hestia-ingester`: the ingester role alone (gRPC for distributors and queriers, HTTP for ops).

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use hestia_config::Config;

#[derive(Parser)]
#[command(name = "hestia-ingester", version)]
struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC address for distributors and queriers.
    #[arg(long, default_value = "127.0.0.1:9095")]
    grpc_listen: SocketAddr,
    /// HTTP address for /metrics, /ready, /health.
    #[arg(long, default_value = "127.0.0.1:9094")]
    http_listen: SocketAddr,
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
    if let Some(d) = args.data_dir {
        cfg.server.data_dir = d;
    }
    cfg.validate()?;
    cfg.validate_cluster_role("ingester")?;
    let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
    let (data_dir, icfg) = (cfg.server.data_dir.clone(), cfg.ingester.clone());
    let db =
        tokio::task::spawn_blocking(move || hestia_ingester::open_tsdb(&data_dir, &icfg)).await??;
    let ready = Arc::new(AtomicBool::new(true));
    let http = tokio::net::TcpListener::bind(args.http_listen).await?;
    let ops = hestia_telemetry::ops_router(ready.clone());
    tokio::spawn(async move { axum::serve(hestia_telemetry::nodelay(http), ops).await });
    let (grpc, addr) = hestia_ingester::bind_grpc(args.grpc_listen).await?;
    tracing::info!(%addr, "ingester gRPC listening");
    let stats_db = db.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            hestia_ingester::export_head_stats(&stats_db);
        }
    });
    let kv = hestia_ring::new_kv(&cfg.ring)?;
    let lifecycler = hestia_ingester::join_ring(
        kv.clone(),
        &cfg.ring,
        &cfg.ingester,
        addr,
        &cfg.server.data_dir,
    )
    .await?;
    let ring = Arc::new(hestia_ring::RingClient::start(kv, &cfg.ring).await?);
    let overrides = Arc::new(cfg.overrides.load(&cfg.limits)?);
    let _reloader = overrides.spawn_reloader(cfg.overrides.reload_period);
    // Per-workspace overrides set through the control plane's admin API, pushed by its watch.
    let _cp_overrides = overrides.spawn_control_plane_watch(&cfg.ring.kv_endpoints)?;
    // Closed time ranges go to the object store as blocks, then leave RocksDB.
    let shipper = if cfg.blocks.ship {
        let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)?;
        let shipper = hestia_ingester::Shipper::new(
            db.clone(),
            bucket,
            cfg.blocks.clone(),
            hestia_ingester::instance_id(&cfg.ingester, addr),
            overrides.clone(),
            &cfg.server.data_dir,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(shipper.run(async move {
            let _ = stopped.await;
        }));
        Some((stop, task))
    } else {
        None
    };
    let limiter = hestia_ingester::SeriesLimiter::new(
        overrides,
        cfg.ingester.max_local_series_per_user,
        cfg.ingester.max_local_series_per_metric,
        Some(ring),
        cfg.ring.replication_factor,
    );
    let service = hestia_ingester::IngesterService::new(db.clone(), Arc::new(limiter));
    hestia_ingester::serve_grpc(grpc, service, hestia_telemetry::shutdown_signal()).await?;
    ready.store(false, Ordering::Release);
    if let Some((stop, task)) = shipper {
        let _ = stop.send(());
        task.await?;
    }
    lifecycler
        .shutdown(cfg.ingester.unregister_on_shutdown)
        .await?;
    tokio::task::spawn_blocking(move || db.close()).await??;
    Ok(())
}
