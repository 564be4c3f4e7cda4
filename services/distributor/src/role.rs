//! The distributor role (`hestia_runtime` shape), used by `hestia-distributor` and `hestia all`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hestia_config::Config;
use hestia_limits::Overrides;
use hestia_proto::IngesterPool;
use hestia_ring::{Kv, RingClient};
use hestia_runtime::Role;

use crate::Distributor;

/// A started distributor: the role (its routes: `POST /api/v1/push` with the tenant in
/// `X-Scope-OrgID`, `/ring`, `/ha_tracker`) and the distributor itself.
pub struct DistributorRole {
    pub role: Role,
    pub distributor: Arc<Distributor>,
}

/// The distributor writes through `ingesters` (the ingester ring) and `pool`, with its HA
/// elections on the control plane at `control_plane` (gRPC URLs). With `peers` (the ring KV and
/// this distributor's address) it joins the distributors' ring, so that each enforces its share
/// of every workspace's rate, and leaves it at shutdown; without, it enforces the whole rate.
pub async fn start(
    cfg: &Config,
    ingesters: Arc<RingClient>,
    pool: Arc<IngesterPool>,
    overrides: Arc<Overrides>,
    control_plane: &[String],
    peers: Option<(Arc<dyn Kv>, SocketAddr)>,
) -> anyhow::Result<DistributorRole> {
    let mut role = Role::new("distributor");
    let distributors = match peers {
        Some((kv, addr)) => {
            let (lifecycler, ring) = crate::join_distributor_ring(kv, &cfg.ring, addr)
                .await
                .context("joining the distributors' ring")?;
            role.on_shutdown("leave the distributors' ring", async move {
                lifecycler
                    .shutdown(true)
                    .await
                    .context("leaving the distributors' ring")
            });
            Some(ring)
        }
        None => None,
    };
    let (ha, refresher) = crate::start_ha_tracker(control_plane, &cfg.distributor.ha_tracker)?;
    role.abort_on_shutdown(refresher);
    let distributor = Arc::new(Distributor::new(
        cfg.distributor.clone(),
        overrides,
        ingesters,
        pool,
        distributors,
        ha,
    ));
    let role = role.with_routes(crate::router(distributor.clone()));
    Ok(DistributorRole { role, distributor })
}
