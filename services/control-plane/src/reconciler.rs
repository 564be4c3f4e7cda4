//! The leader's background work: CREATING → ACTIVE, DELETING → hidden, and the purge of a deleted
//! workspace's data once the grace period has passed (recorded in the leader's audit log as
//! `PurgeWorkspace`). Every step is a Raft write re-derived from the replicated state, so a new
//! leader (or a restart) resumes where the old one stopped, and each step is idempotent.

use std::sync::Arc;
use std::time::Duration;

use hestia_model::{TenantId, WorkspaceId};
use serde_json::json;
use tracing::Instrument;

use crate::audit::AuditEvent;
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

/// Marks a purged tenant for deletion in the block store (`[storage]`): the compactor owning
/// the tenant deletes its blocks once the mark is older than `compactor.deletion_delay`. A
/// retried purge keeps the first mark.
pub struct BucketPurger {
    bucket: hestia_bucket::Bucket,
}

impl BucketPurger {
    pub fn new(bucket: hestia_bucket::Bucket) -> Self {
        Self { bucket }
    }
}

#[async_trait::async_trait]
impl Purger for BucketPurger {
    async fn purge(&self, _: &ControlPlane, tenant: &TenantId) -> anyhow::Result<()> {
        let mark = self.bucket.tenant(tenant).mark_tenant_deleted().await?;
        tracing::info!(%tenant, deletion_time = mark.deletion_time, "tenant marked for deletion in the block store");
        Ok(())
    }
}

/// Several purgers, in order (ingesters before the block store, so that nothing is shipped
/// after the mark); the purge succeeds once every one has.
pub struct PurgeAll(pub Vec<Arc<dyn Purger>>);

#[async_trait::async_trait]
impl Purger for PurgeAll {
    async fn purge(&self, cp: &ControlPlane, tenant: &TenantId) -> anyhow::Result<()> {
        for p in &self.0 {
            p.purge(cp, tenant).await?;
        }
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
                    audit_purge(cp, &id, &account, &tenant, deleted_at);
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

/// Records a finished purge in this (the leader's) audit log. A failure is logged: the data is
/// already gone and the purge is not undone.
fn audit_purge(
    cp: &ControlPlane,
    workspace: &str,
    account: &str,
    tenant: &TenantId,
    deleted_at: Option<i64>,
) {
    let event_id = crate::api::uuid_v4();
    let appended = cp.audit.append(AuditEvent {
        time_ms: chrono::Utc::now().timestamp_millis(),
        event_id: &event_id,
        event_name: "PurgeWorkspace",
        region: &cp.cfg.region,
        account,
        user_identity: json!({"type": "AWSService", "invokedBy": "hestia-control-plane"}),
        source_ip: "hestia-control-plane".to_string(),
        user_agent: "hestia-control-plane reconciler".to_string(),
        read_only: false,
        request_parameters: json!({
            "workspaceId": workspace,
            "tenantId": tenant.as_str(),
            "deletedAtMs": deleted_at,
        }),
        response_elements: json!({"purged": true}),
        error: None,
    });
    if let Err(e) = appended {
        tracing::error!(%tenant, error = %e, "recording a purge in the audit log");
    }
}
