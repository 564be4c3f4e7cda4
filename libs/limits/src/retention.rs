//! Each tenant's retention (its workspace's `retentionPeriodInDays`, AMP's workspace
//! configuration), followed from the control plane. The compactor deletes blocks past it; an
//! ingester that keeps its data (`blocks.ship = false`) deletes its own samples past it. A tenant
//! the control plane does not know (a dev workspace, a deleted one, or before the first answer)
//! gets no retention: its data is kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hestia_model::TenantId;
use hestia_proto::control::WorkspaceInfo;
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

/// AMP's retention when a workspace sets none; also what a control plane that does not send
/// the field (0) means.
pub const DEFAULT_RETENTION_DAYS: u32 = 150;

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Retention in days per tenant. Clones share the table.
#[derive(Clone, Default)]
pub struct Retentions {
    days: Arc<RwLock<HashMap<String, u32>>>,
    /// Tenants already logged as having no known workspace.
    logged: Arc<Mutex<HashSet<String>>>,
}

impl Retentions {
    /// An empty table: no tenant has a retention until [`Retentions::set`] or
    /// [`Retentions::follow`] gives it one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one tenant's retention (tests, in-process wiring).
    pub fn set(&self, tenant: &TenantId, days: u32) {
        self.days.write().insert(tenant.to_string(), days);
    }

    /// Replaces the table with the retention of every workspace in `workspaces`.
    pub fn set_workspaces(&self, workspaces: &[WorkspaceInfo]) {
        let table = workspaces
            .iter()
            .filter(|w| !w.tenant_id.is_empty())
            .map(|w| {
                let days = match w.retention_period_in_days {
                    0 => DEFAULT_RETENTION_DAYS,
                    d => d,
                };
                (w.tenant_id.clone(), days)
            })
            .collect();
        *self.days.write() = table;
    }

    /// The tenant's retention in days; `None` (logged once per tenant) when no workspace is
    /// known for it.
    pub fn days(&self, tenant: &TenantId) -> Option<u32> {
        let days = self.days.read().get(tenant.as_str()).copied();
        if days.is_none() && self.logged.lock().insert(tenant.to_string()) {
            tracing::info!(%tenant, "no workspace known for this tenant: its data is kept whatever its age");
        }
        days
    }

    /// The time (ms) before which the tenant's samples are past its retention at `now_ms`;
    /// `None` when it has none ([`Retentions::days`]).
    pub fn cutoff_ms(&self, tenant: &TenantId, now_ms: i64) -> Option<i64> {
        self.days(tenant)
            .map(|d| now_ms.saturating_sub(i64::from(d).saturating_mul(DAY_MS)))
    }

    /// Follows the control plane's workspaces at the gRPC `endpoints` until the returned task
    /// is aborted; a changed retention applies from the next pass of its users.
    pub fn follow(&self, endpoints: &[String]) -> Result<JoinHandle<()>, hestia_proto::CallError> {
        let endpoints = hestia_proto::ControlPlaneEndpoints::new(endpoints)?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            hestia_proto::follow_workspaces(&endpoints, |reply| {
                this.set_workspaces(&reply.workspaces)
            })
            .await
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspaces_set_the_table_and_zero_means_the_default() {
        let r = Retentions::new();
        let info = |tenant: &str, days: u32| WorkspaceInfo {
            tenant_id: tenant.to_string(),
            retention_period_in_days: days,
            ..WorkspaceInfo::default()
        };
        r.set_workspaces(&[info("a_ws-1", 30), info("a_ws-2", 0)]);
        let t = |s: &str| TenantId::parse(s).unwrap();
        assert_eq!(r.days(&t("a_ws-1")), Some(30));
        assert_eq!(r.days(&t("a_ws-2")), Some(DEFAULT_RETENTION_DAYS));
        assert_eq!(r.days(&t("a_ws-3")), None);
        assert_eq!(r.cutoff_ms(&t("a_ws-1"), 31 * DAY_MS), Some(DAY_MS));
        assert_eq!(r.cutoff_ms(&t("a_ws-3"), 31 * DAY_MS), None);
        r.set_workspaces(&[info("a_ws-2", 7)]);
        assert_eq!(r.days(&t("a_ws-1")), None);
        assert_eq!(r.days(&t("a_ws-2")), Some(7));
    }
}
