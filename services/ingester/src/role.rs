//! The ingester role (`hestia_runtime` shape), used by `hestia-ingester` and `hestia all`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hestia_config::Config;
use hestia_limits::{Overrides, Retentions};
use hestia_ring::{Kv, RingClient};
use hestia_runtime::Role;
use hestia_storage::Tsdb;

use crate::{IngesterService, SeriesLimiter, Shipper};

/// `hestia-ingester`'s gRPC address when `ingester.grpc_listen` is unset.
pub const DEFAULT_GRPC_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9095);

/// A started ingester: the role, and what other roles of the same process may call directly.
pub struct Ingester {
    pub role: Role,
    pub service: IngesterService,
    pub grpc_addr: SocketAddr,
    pub db: Arc<Tsdb>,
}

/// Opens (recovers) the database, serves gRPC on `ingester.grpc_listen` (else `default_grpc`),
/// joins the ring in `kv`, with `blocks.ship` ships closed ranges to `[storage]`, and deletes
/// what is older than each workspace's retention from `retentions` (which the host keeps
/// following the control plane).
/// Shutdown: in-flight pushes finish and the shipper stops (a block being cut or uploaded is
/// resumed by the next start), the ingester leaves the ring, the database closes.
pub async fn start(
    cfg: &Config,
    kv: Arc<dyn Kv>,
    overrides: Arc<Overrides>,
    retentions: Retentions,
    default_grpc: SocketAddr,
) -> anyhow::Result<Ingester> {
    let (data_dir, icfg) = (cfg.server.data_dir.clone(), cfg.ingester.clone());
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let db = tokio::task::spawn_blocking(move || crate::open_tsdb(&data_dir, &icfg)).await??;
    let mut role = Role::new("ingester");
    let grpc = cfg.ingester.grpc_listen.unwrap_or(default_grpc);
    let (listener, grpc_addr) = crate::bind_grpc(grpc)
        .await
        .with_context(|| format!("binding ingester gRPC on {grpc}"))?;
    tracing::info!(%grpc_addr, "ingester gRPC listening");
    let lifecycler = crate::join_ring(
        kv.clone(),
        &cfg.ring,
        &cfg.ingester,
        grpc_addr,
        &cfg.server.data_dir,
    )
    .await?;
    let ring = Arc::new(RingClient::start(kv, &cfg.ring).await?);
    if cfg.blocks.ship {
        let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)
            .context("opening the block store")?;
        let shipper = Shipper::new(
            db.clone(),
            bucket,
            cfg.blocks.clone(),
            crate::instance_id(&cfg.ingester, grpc_addr),
            overrides.clone(),
            &cfg.server.data_dir,
        );
        role.spawn("shipper", |stop| async move {
            shipper.run(stop.wait()).await;
            Ok(())
        });
    }
    let expiring = db.clone();
    role.spawn("retention", |stop| async move {
        crate::retention::run(expiring, retentions, stop.wait()).await;
        Ok(())
    });
    let limiter = SeriesLimiter::new(
        overrides,
        cfg.ingester.max_local_series_per_user,
        cfg.ingester.max_local_series_per_metric,
        Some(ring),
        cfg.ring.replication_factor,
    );
    let service = IngesterService::new(db.clone(), Arc::new(limiter));
    let served = service.clone();
    role.spawn("grpc", |stop| async move {
        crate::serve_grpc(listener, served, stop.wait())
            .await
            .context("serving ingester gRPC")
    });
    let stats_db = db.clone();
    role.spawn("head stats", |stop| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        let stop = stop.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => crate::export_head_stats(&stats_db),
                _ = &mut stop => return Ok(()),
            }
        }
    });
    let unregister = cfg.ingester.unregister_on_shutdown;
    role.on_shutdown("leave the ring", async move {
        lifecycler
            .shutdown(unregister)
            .await
            .context("leaving the ring")
    });
    let closing = db.clone();
    role.on_shutdown("close the database", async move {
        tokio::task::spawn_blocking(move || closing.close()).await??;
        Ok(())
    });
    Ok(Ingester {
        role,
        service,
        grpc_addr,
        db,
    })
}
