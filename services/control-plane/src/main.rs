//! `hestia-control-plane`: one control-plane voter serving the AMP workspace API and the
//! internal gRPC API.

// glibc malloc was a quarter of the push path's CPU (perf); mimalloc is several times cheaper.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;

use hestia_config::Config;

#[derive(Debug, Clone, clap::Args)]
struct Flags {
    /// Raft node id (control_plane.node_id).
    #[arg(long)]
    node_id: Option<u64>,
    /// gRPC address for Raft and the internal API (control_plane.grpc_listen).
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// AMP workspace API address (control_plane.api_listen).
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// Voters of a new cluster, `id=host:port`, repeatable (control_plane.bootstrap).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Base of prometheusEndpoint, the gateway's public URL (control_plane.public_url).
    #[arg(long)]
    public_url: Option<String>,
}

impl hestia_runtime::RoleFlags for Flags {
    fn apply(&self, cfg: &mut Config) {
        let cp = &mut cfg.control_plane;
        cp.node_id = self.node_id.unwrap_or(cp.node_id);
        cp.grpc_listen = self.grpc_listen.or(cp.grpc_listen);
        cp.api_listen = self.api_listen.unwrap_or(cp.api_listen);
        if let Some(u) = &self.public_url {
            cp.public_url = Some(u.clone());
        }
        if !self.bootstrap.is_empty() {
            cp.bootstrap = self.bootstrap.clone();
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hestia_runtime::run::<Flags, _, _>(
        "hestia-control-plane",
        |_| Ok(()),
        |cfg| cfg.control_plane.api_listen,
        |cfg| async move { hestia_control_plane::role::start_cluster(&cfg).await },
    )
    .await
}
