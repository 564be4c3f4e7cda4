//! `hestia-ingester`: the ingester role alone (gRPC for distributors and queriers, HTTP for ops).

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;

use hestia_config::Config;

#[derive(Debug, Clone, clap::Args)]
struct Flags {
    /// gRPC address for distributors and queriers (ingester.grpc_listen) [default: 127.0.0.1:9095].
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// HTTP address for /metrics, /ready, /health (ingester.http_listen).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
}

impl hestia_runtime::RoleFlags for Flags {
    fn apply(&self, cfg: &mut Config) {
        cfg.ingester.grpc_listen = self.grpc_listen.or(cfg.ingester.grpc_listen);
        cfg.ingester.http_listen = self.http_listen.unwrap_or(cfg.ingester.http_listen);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_runtime::run::<Flags, _, _>(
        "hestia-ingester",
        |cfg| Ok(cfg.validate_cluster_role("ingester")?),
        |cfg| cfg.ingester.http_listen,
        |cfg| async move {
            let kv = hestia_ring::new_kv(&cfg.ring)?;
            let overrides = Arc::new(cfg.overrides.load(&cfg.limits)?);
            let reloader = overrides.spawn_reloader(cfg.overrides.reload_period);
            // Per-workspace overrides set through the control plane's admin API, pushed by its watch.
            let watch = overrides.spawn_control_plane_watch(&cfg.ring.kv_endpoints)?;
            // Each workspace's retentionPeriodInDays, from the same control plane.
            let retentions = hestia_limits::Retentions::new();
            let follower = retentions.follow(&cfg.ring.kv_endpoints)?;
            let mut ingester = hestia_ingester::role::start(
                &cfg,
                kv,
                overrides,
                retentions,
                hestia_ingester::role::DEFAULT_GRPC_LISTEN,
            )
            .await?;
            ingester.role.abort_on_shutdown(reloader);
            ingester.role.abort_on_shutdown(watch);
            ingester.role.abort_on_shutdown(follower);
            Ok(ingester.role)
        },
    )
    .await
}
