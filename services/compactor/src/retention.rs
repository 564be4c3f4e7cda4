//! Each tenant's retention (its workspace's `retentionPeriodInDays`), followed from the control
//! plane. A tenant the control plane does not know (a dev workspace, a deleted one, or before
//! the first answer) gets no retention: its blocks are kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hestia_model::TenantId;
use hestia_proto::control::WorkspaceInfo;
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

use crate::CompactorError;

/// AMP's retention when a workspace sets none; also what a control plane that does not send
/// the field (0) means.
pub const DEFAULT_RETENTION_DAYS: u32 = 150;

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
            tracing::info!(%tenant, "no workspace known for this tenant: its blocks are kept whatever their age");
        }
        days
    }

    /// Follows the control plane's workspaces at the gRPC `endpoints` until the returned task
    /// is aborted; a changed retention applies from the next pass.
    pub fn follow(&self, endpoints: &[String]) -> Result<JoinHandle<()>, CompactorError> {
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
        r.set_workspaces(&[info("a_ws-2", 7)]);
        assert_eq!(r.days(&t("a_ws-1")), None);
        assert_eq!(r.days(&t("a_ws-2")), Some(7));
    }
}
