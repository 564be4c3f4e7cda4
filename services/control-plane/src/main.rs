//! `hestia-control-plane`: one control-plane voter serving the AMP workspace API and the
//! internal gRPC API.

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
#[command(name = "hestia-control-plane", version)]
struct Args {
    #[arg(long, env = "HESTIA_CONFIG")]
    config: Option<PathBuf>,
    /// Raft node id (overrides control_plane.node_id).
    #[arg(long)]
    node_id: Option<u64>,
    /// gRPC address for Raft and the internal API.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// AMP workspace API address.
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    #[arg(long, env = "HESTIA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Voters of a new cluster, `id=host:port` (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Base of prometheusEndpoint (the gateway's public URL).
    #[arg(long)]
    public_url: Option<String>,
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
    let cp = &mut cfg.control_plane;
    cp.node_id = args.node_id.unwrap_or(cp.node_id);
    cp.grpc_listen = args.grpc_listen.or(cp.grpc_listen);
    cp.api_listen = args.api_listen.unwrap_or(cp.api_listen);
    cp.public_url = args.public_url.or(cp.public_url.take());
    if !args.bootstrap.is_empty() {
        cp.bootstrap = args.bootstrap;
    }
    if let Some(d) = args.data_dir {
        cfg.server.data_dir = d;
    }
    cfg.validate()?;
    let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
    let public_url = cfg
        .control_plane
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    // Purged workspaces are deleted from every ingester of the ring this group stores, then
    // marked for deletion in the block store when [storage] is set (a default one would be a
    // directory under this voter's data_dir, which no compactor reads).
    let mut purger: Arc<dyn hestia_control_plane::Purger> =
        Arc::new(hestia_control_plane::IngesterPurger::new(&cfg.ring.key));
    if cfg.storage != hestia_config::StorageConfig::default() {
        let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)?;
        purger = Arc::new(hestia_control_plane::PurgeAll(vec![
            purger,
            Arc::new(hestia_control_plane::BucketPurger::new(bucket)),
        ]));
    } else {
        tracing::info!("no [storage]: purged workspaces' blocks are left in the block store");
    }
    let running =
        hestia_control_plane::start(&cfg.control_plane, &cfg.server.data_dir, public_url, purger)
            .await?;
    // Every API call authenticates; refusals go to this voter's audit log.
    let auth = hestia_auth::layer::from_config(&cfg, Arc::new(running.cp.audit.clone()), None)?;
    let mut follower = None;
    if let (Some(authenticator), Some(master)) = (&auth.authenticator, &auth.master) {
        follower = Some(hestia_control_plane::identity_api::follow_identities(
            running.cp.clone(),
            authenticator.clone(),
        ));
        // Every voter tries; the first committed bootstrap wins and its node writes the file.
        // The credentials' config file points the AWS CLI at this voter's API (the gateway
        // serves only the data plane); a wildcard listen address falls back to the public URL.
        let api = cfg.control_plane.api_listen;
        let endpoint = match &cfg.control_plane.public_url {
            Some(url) if api.ip().is_unspecified() => url.clone(),
            _ => format!("http://{api}"),
        };
        let (cp, master, dir) = (
            running.cp.clone(),
            master.clone(),
            cfg.server.data_dir.clone(),
        );
        let region = cfg.control_plane.region.clone();
        tokio::spawn(async move {
            loop {
                match hestia_control_plane::identity_api::bootstrap_identities(
                    &cp, &master, &dir, &endpoint,
                )
                .await
                {
                    Ok(Some(c)) => return c.announce(&region, &endpoint),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "operator account not created yet, retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    let app = running
        .router(auth.master.clone(), auth.authenticator.clone())
        .layer(axum::middleware::from_fn_with_state(
            auth.layer.clone(),
            hestia_auth::layer::authenticate,
        ))
        .merge(hestia_auth::layer::oauth2_router(auth.layer))
        .layer(axum::middleware::from_fn(hestia_telemetry::track_http))
        .merge(hestia_telemetry::ops_router(Arc::new(AtomicBool::new(
            true,
        ))));
    let listener = tokio::net::TcpListener::bind(cfg.control_plane.api_listen).await?;
    tracing::info!(addr = %cfg.control_plane.api_listen, "control-plane API listening");
    axum::serve(
        hestia_telemetry::nodelay(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(hestia_telemetry::shutdown_signal())
    .await?;
    if let Some(f) = follower {
        f.abort();
    }
    running.shutdown().await;
    Ok(())
}
