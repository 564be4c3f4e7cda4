//! The leader's background work: CREATING → ACTIVE, DELETING → hidden, and the purge of a deleted
//! workspace's data once the grace period has passed. Every step is a Raft write re-derived from
//! the replicated state, so a new leader (or a restart) resumes where the old one stopped, and
//! each step is idempotent.

use std::sync::Arc;
use std::time::Duration;

use hestia_model::{TenantId, WorkspaceId};
use tracing::Instrument;

use crate::node::ControlPlane;
use crate::state::{Command, Status};

/// Removes a deleted workspace's data from the data plane. Must be idempotent: it is called again
/// after a crash or leader change between the purge and the record's removal.
#[async_trait::async_trait]
pub trait Purger: Send + Sync + 'static {
    async fn purge(&self, cp: &ControlPlane, tenant: &TenantId) -> anyhow::Result<()>;
}

/// For a control plane without a data plane (tests): nothing to remove.
pub struct NoDataPlane;

#[async_trait::async_trait]
impl Purger for NoDataPlane {
    async fn purge(&self, _: &ControlPlane, tenant: &TenantId) -> anyhow::Result<()> {
        tracing::info!(%tenant, "purge: no data plane attached");
        Ok(())
    }
}

/// Purges a tenant on every ingester of the ring this control plane stores (under
/// `ring_key`), whatever its state: the purge succeeds only once all of them answered, so an
/// ingester that is down is purged on a later attempt.
pub struct IngesterPurger {
    ring_key: String,
    pool: hestia_proto::IngesterPool,
}

impl IngesterPurger {
    pub fn new(ring_key: &str) -> Self {
        Self {
            ring_key: ring_key.to_string(),
            pool: hestia_proto::IngesterPool::default(),
        }
    }
}

#[async_trait::async_trait]
impl Purger for IngesterPurger {
    async fn purge(&self, cp: &ControlPlane, tenant: &TenantId) -> anyhow::Result<()> {
        let addrs: Vec<String> = cp
            .ring_get(&self.ring_key)
            .await?
            .map(|e| e.desc.instances.values().map(|i| i.addr.clone()).collect())
            .unwrap_or_default();
        let calls = addrs.iter().map(|addr| async move {
            let mut client = self.pool.get(addr)?;
            let req = hestia_proto::ingester::PurgeTenantRequest {
                tenant: tenant.to_string(),
            };
            tokio::time::timeout(Duration::from_secs(30), client.purge_tenant(req))
                .await
                .map_err(|_| anyhow::anyhow!("ingester {addr}: purge timed out"))?
                .map_err(|s| anyhow::anyhow!("ingester {addr}: {}", s.message()))?;
            Ok::<_, anyhow::Error>(())
        });
        for r in futures::future::join_all(calls).await {
            r?;
        }
        tracing::info!(%tenant, ingesters = addrs.len(), "tenant purged from the data plane");
        Ok(())
    }
}

/// Runs until `stop` resolves.
pub async fn run(
    cp: Arc<ControlPlane>,
    purger: Arc<dyn Purger>,
    tick: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = interval.tick() => {}
        }
        if !cp.is_leader() {
            continue;
        }
        if let Err(e) = step(&cp, purger.as_ref()).await {
            tracing::warn!(error = %e, "control-plane reconciler");
        }
    }
}

async fn step(cp: &ControlPlane, purger: &dyn Purger) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let grace = cp.cfg.purge_grace.as_millis() as i64;
    let work: Vec<(String, String, Status, Option<i64>)> = cp.sm.read(|s| {
        s.workspaces
            .values()
            .filter(|w| w.status != Status::Active)
            .map(|w| (w.id.clone(), w.account.clone(), w.status, w.deleted_at_ms))
            .collect()
    });
    for (id, account, status, deleted_at) in work {
        let span = tracing::info_span!("reconcile", workspace = %id);
        async {
            match status {
                Status::Creating => {
                    cp.write(Command::Activate { id }).await?;
                }
                Status::Deleting => {
                    cp.write(Command::Hide { id }).await?;
                }
                Status::Deleted if deleted_at.unwrap_or(0).saturating_add(grace) <= now => {
                    let ws = WorkspaceId::parse(&id)?;
                    let tenant = TenantId::for_workspace(Some(&account), &ws)?;
                    purger.purge(cp, &tenant).await?;
                    cp.write(Command::Purged { id }).await?;
                    crate::metrics::PURGED.inc();
                }
                Status::Deleted | Status::Active => {}
            }
            Ok::<_, anyhow::Error>(())
        }
        .instrument(span)
        .await?;
    }
    Ok(())
}
