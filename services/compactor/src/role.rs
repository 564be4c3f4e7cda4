//! The compactor role (`hestia_runtime` shape), used by `hestia-compactor` and `hestia all`.

use std::sync::Arc;

use anyhow::Context;
use hestia_config::Config;
use hestia_ring::Kv;
use hestia_runtime::Role;

use crate::{Compactor, Retentions};

/// A started compactor: the role (its routes: the compactor API, [`crate::router`]) and the
/// compactor itself.
pub struct CompactorRole {
    pub role: Role,
    pub compactor: Compactor,
}

/// Joins the compactors' ring in `kv` and compacts the tenants it owns in `[storage]` every
/// `compactor.compaction_interval`, with each workspace's retention from `retentions` (which
/// the host keeps following the control plane). Shutdown: the pass in progress is abandoned
/// (the next start removes its leftovers), the compactor leaves the ring.
pub async fn start(
    cfg: &Config,
    kv: Arc<dyn Kv>,
    retentions: Retentions,
) -> anyhow::Result<CompactorRole> {
    let mut role = Role::new("compactor");
    let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)
        .context("opening the block store")?;
    let compactor = Compactor::start(cfg, bucket, kv, retentions).await?;
    let running = compactor.clone();
    role.spawn("compaction", |stop| async move {
        running.run(stop.wait()).await;
        Ok(())
    });
    let leaving = compactor.clone();
    role.on_shutdown("leave the compactors' ring", async move {
        leaving.stop().await.context("leaving the compactors' ring")
    });
    let role = role.with_routes(crate::router(compactor.clone()));
    Ok(CompactorRole { role, compactor })
}
