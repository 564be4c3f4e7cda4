//! `hestia-querier`: the Prometheus query API alone (tenant from `X-Scope-OrgID`).

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;

use hestia_config::Config;

#[derive(Debug, Clone, clap::Args)]
struct Flags {
    /// HTTP address (querier.http_listen).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

impl hestia_runtime::RoleFlags for Flags {
    fn apply(&self, cfg: &mut Config) {
        cfg.querier.http_listen = self.listen.unwrap_or(cfg.querier.http_listen);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_runtime::run::<Flags, _, _>(
        "hestia-querier",
        |cfg| Ok(cfg.validate_cluster_role("querier")?),
        |cfg| cfg.querier.http_listen,
        |cfg| async move {
            let kv = hestia_ring::new_kv(&cfg.ring)?;
            let ring = Arc::new(hestia_ring::RingClient::start(kv, &cfg.ring).await?);
            let pool = Arc::new(hestia_proto::IngesterPool::default());
            Ok(hestia_querier::role::start(&cfg, ring, pool)?.role)
        },
    )
    .await
}
