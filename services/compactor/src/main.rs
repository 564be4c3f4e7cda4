//! `hestia-compactor`: merges, deduplicates and expires the blocks of the tenants it owns in
//! the compactors' ring; `/metrics`, `/ready` and the compactor API on `--http-listen`.

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;

use hestia_config::Config;

#[derive(Debug, Clone, clap::Args)]
struct Flags {
    /// HTTP address (compactor.http_listen).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Ring id (compactor.ring.instance_id).
    #[arg(long)]
    instance_id: Option<String>,
}

impl hestia_runtime::RoleFlags for Flags {
    fn apply(&self, cfg: &mut Config) {
        cfg.compactor.http_listen = self.http_listen.unwrap_or(cfg.compactor.http_listen);
        if let Some(id) = &self.instance_id {
            cfg.compactor.ring.instance_id = Some(id.clone());
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_runtime::run::<Flags, _, _>(
        "hestia-compactor",
        |cfg| {
            anyhow::ensure!(
                cfg.compactor.enabled,
                "compactor.enabled = false: nothing to run"
            );
            Ok(())
        },
        |cfg| cfg.compactor.http_listen,
        |cfg| async move {
            let kv = hestia_ring::new_kv(&cfg.ring)?;
            // Each workspace's retentionPeriodInDays, from the control plane's workspace watch.
            let retentions = hestia_compactor::Retentions::new();
            let follower = match cfg.ring.kv_endpoints.is_empty() {
                true => None,
                false => Some(retentions.follow(&cfg.ring.kv_endpoints)?),
            };
            let mut c = hestia_compactor::role::start(&cfg, kv, retentions).await?;
            if let Some(f) = follower {
                c.role.abort_on_shutdown(f);
            }
            Ok(c.role)
        },
    )
    .await
}
