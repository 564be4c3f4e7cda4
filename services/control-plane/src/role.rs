//! The control-plane voter role (`hestia_runtime` shape), used by `hestia-control-plane` and
//! `hestia all`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hestia_config::Config;
use hestia_runtime::Role;

use crate::identity_api::{bootstrap_identities, follow_identities};
use crate::{ControlPlane, Purger};

/// When the operator account is created (first start of a new cluster only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorBootstrap {
    /// Before `start` returns (one voter: it is the leader at once); a failure fails the start.
    Now,
    /// In the background, retried until a leader commits it: every voter of a new cluster
    /// tries, the first committed wins and its node writes the credentials file.
    Background,
}

/// A started voter: the role (its routes: the AMP workspace API, the admin and identity
/// endpoints, not yet authenticated) and what the rest of the process may use.
pub struct ControlPlaneRole {
    pub role: Role,
    pub cp: Arc<ControlPlane>,
    pub grpc_addr: SocketAddr,
    pub auth: hestia_auth::layer::AuthSetup,
}

/// Starts the voter (`[control_plane]`, state under `server.data_dir`), its authentication
/// from `[auth]` (master key from the configuration, else `default_key_file`) following the
/// replicated identities, and creates the operator account when the cluster has none; its
/// credentials files point at `endpoint`. `public_url` is the base of `prometheusEndpoint`.
pub async fn start(
    cfg: &Config,
    public_url: String,
    purger: Arc<dyn Purger>,
    default_key_file: Option<&Path>,
    endpoint: String,
    bootstrap: OperatorBootstrap,
) -> anyhow::Result<ControlPlaneRole> {
    let running = crate::start(&cfg.control_plane, &cfg.server.data_dir, public_url, purger)
        .await
        .context("starting the control plane")?;
    let cp = running.cp.clone();
    let auth = hestia_auth::layer::from_config(cfg, Arc::new(cp.audit.clone()), default_key_file)?;
    let mut role = Role::new("control-plane");
    if let (Some(authenticator), Some(master)) = (&auth.authenticator, &auth.master) {
        role.abort_on_shutdown(follow_identities(cp.clone(), authenticator.clone()));
        let (dir, region) = (
            cfg.server.data_dir.clone(),
            cfg.control_plane.region.clone(),
        );
        match bootstrap {
            OperatorBootstrap::Now => {
                let created = bootstrap_identities(&cp, master, &dir, &endpoint)
                    .await
                    .context("creating the operator account")?;
                if let Some(c) = created {
                    authenticator.update(&cp.sm.read(|s| s.identities.clone()));
                    c.announce(&region, &endpoint);
                }
            }
            OperatorBootstrap::Background => {
                let (cp, master) = (cp.clone(), master.clone());
                role.spawn("operator account", |stop| async move {
                    loop {
                        match bootstrap_identities(&cp, &master, &dir, &endpoint).await {
                            Ok(Some(c)) => {
                                c.announce(&region, &endpoint);
                                return Ok(());
                            }
                            Ok(None) => return Ok(()),
                            Err(e) => {
                                tracing::warn!(error = %e, "operator account not created yet, retrying");
                            }
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stop.clone().wait() => return Ok(()),
                        }
                    }
                });
            }
        }
    }
    let routes = running.router(auth.master.clone(), auth.authenticator.clone());
    let grpc_addr = running.grpc_addr;
    role.on_shutdown("stop Raft", async move {
        running.shutdown().await;
        Ok(())
    });
    Ok(ControlPlaneRole {
        role: role.with_routes(routes),
        cp,
        grpc_addr,
        auth,
    })
}

/// What a stand-alone voter does with purged workspaces: delete them from every ingester of the
/// ring it stores, then, when `[storage]` is set, mark them for deletion in the block store (a
/// default store would be a directory under this voter's data_dir, which no compactor reads).
pub fn cluster_purger(cfg: &Config) -> anyhow::Result<Arc<dyn Purger>> {
    let ingesters: Arc<dyn Purger> = Arc::new(crate::IngesterPurger::new(&cfg.ring.key));
    if cfg.storage == hestia_config::StorageConfig::default() {
        tracing::info!("no [storage]: purged workspaces' blocks are left in the block store");
        return Ok(ingesters);
    }
    let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)?;
    Ok(Arc::new(crate::PurgeAll(vec![
        ingesters,
        Arc::new(crate::BucketPurger::new(bucket)),
    ])))
}

/// A cluster's voter: [`start`] with the [`cluster_purger`], the operator account created in
/// the background, the compactors found in their ring, every route authenticated.
pub async fn start_cluster(cfg: &Config) -> anyhow::Result<Role> {
    let public_url = cfg
        .control_plane
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    // The credentials' config file points the AWS CLI at this voter's API (the gateway serves
    // only the data plane); a wildcard listen address falls back to the public URL.
    let api = cfg.control_plane.api_listen;
    let endpoint = match &cfg.control_plane.public_url {
        Some(url) if api.ip().is_unspecified() => url.clone(),
        _ => format!("http://{api}"),
    };
    let mut voter = start(
        cfg,
        public_url,
        cluster_purger(cfg)?,
        None,
        endpoint,
        OperatorBootstrap::Background,
    )
    .await?;
    // `hestia admin blocks list` and `compact --now` reach the compactors of the ring.
    voter.cp.set_compactors(crate::compactors_from_config(cfg)?);
    let routes = voter.role.take_routes();
    Ok(voter
        .role
        .with_routes(hestia_auth::layer::protect(routes, voter.auth.layer)))
}
