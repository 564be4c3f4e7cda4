//! `hestia-distributor`: the remote-write receiver alone (tenant from `X-Scope-OrgID`).

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;

use hestia_config::Config;

#[derive(Debug, Clone, clap::Args)]
struct Flags {
    /// HTTP address (distributor.http_listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

impl hestia_runtime::RoleFlags for Flags {
    fn apply(&self, cfg: &mut Config) {
        cfg.distributor.http_listen = self.listen.unwrap_or(cfg.distributor.http_listen);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_runtime::run::<Flags, _, _>(
        "hestia-distributor",
        |cfg| Ok(cfg.validate_cluster_role("distributor")?),
        |cfg| cfg.distributor.http_listen,
        |cfg| async move {
            let kv = hestia_ring::new_kv(&cfg.ring)?;
            let ring = Arc::new(hestia_ring::RingClient::start(kv.clone(), &cfg.ring).await?);
            let overrides = Arc::new(cfg.overrides.load(&cfg.limits)?);
            let reloader = overrides.spawn_reloader(cfg.overrides.reload_period);
            // Per-workspace overrides set through the control plane's admin API, pushed by its watch.
            let watch = overrides.spawn_control_plane_watch(&cfg.ring.kv_endpoints)?;
            let pool = Arc::new(hestia_proto::IngesterPool::default());
            let mut d = hestia_distributor::role::start(
                &cfg,
                ring,
                pool,
                overrides,
                &cfg.ring.kv_endpoints,
                Some((kv, cfg.distributor.http_listen)),
            )
            .await?;
            d.role.abort_on_shutdown(reloader);
            d.role.abort_on_shutdown(watch);
            Ok(d.role)
        },
    )
    .await
}
