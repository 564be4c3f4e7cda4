//! `hestia-gateway`: the public endpoint of a cluster, proxying to distributors and queriers.

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;

use hestia_config::Config;

#[derive(Debug, Clone, clap::Args)]
struct Flags {
    /// Public HTTP address (server.listen).
    #[arg(long, env = "HESTIA_GATEWAY_ADDR")]
    listen: Option<SocketAddr>,
    /// Distributor base URL, repeatable: round-robin with failover (gateway.distributor_urls).
    #[arg(long = "distributor-url")]
    distributor_urls: Vec<String>,
    /// Querier base URL, repeatable (gateway.querier_urls).
    #[arg(long = "querier-url")]
    querier_urls: Vec<String>,
}

impl hestia_runtime::RoleFlags for Flags {
    fn apply(&self, cfg: &mut Config) {
        cfg.server.listen = self.listen.unwrap_or(cfg.server.listen);
        if !self.distributor_urls.is_empty() {
            cfg.gateway.distributor_urls = self.distributor_urls.clone();
        }
        if !self.querier_urls.is_empty() {
            cfg.gateway.querier_urls = self.querier_urls.clone();
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_runtime::run::<Flags, _, _>(
        "hestia-gateway",
        |_| Ok(()),
        |cfg| cfg.server.listen,
        |cfg| async move { hestia_gateway::role::start_cluster(&cfg) },
    )
    .await
}
