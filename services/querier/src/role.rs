//! The querier role (`hestia_runtime` shape), used by `hestia-querier` and `hestia all`.

use std::sync::Arc;

use anyhow::Context;
use hestia_config::Config;
use hestia_proto::IngesterPool;
use hestia_ring::RingClient;
use hestia_runtime::Role;

use crate::{BlockStore, Querier};

/// A started querier: the role (its routes: the Prometheus query API with the tenant in
/// `X-Scope-OrgID`) and the querier itself.
pub struct QuerierRole {
    pub role: Role,
    pub querier: Arc<Querier>,
}

/// The querier reads recent samples from the ingesters of `ring` through `pool` and older ones
/// from the blocks in `[storage]`. Without `blocks.ship` the ingesters keep every sample, so
/// they are asked whatever the time range.
pub fn start(
    cfg: &Config,
    ring: Arc<RingClient>,
    pool: Arc<IngesterPool>,
) -> anyhow::Result<QuerierRole> {
    let mut querier_cfg = cfg.querier.clone();
    if !cfg.blocks.ship {
        querier_cfg.query_ingesters_within = std::time::Duration::ZERO;
    }
    let blocks = BlockStore::open(cfg).context("opening the block store")?;
    let querier = Arc::new(Querier::with_blocks(querier_cfg, ring, pool, blocks));
    let role = Role::new("querier").with_routes(crate::router(querier.clone()));
    Ok(QuerierRole { role, querier })
}
