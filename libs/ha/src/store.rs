//! Where elections are decided: [`MemoryHaStore`] in one process (tests), or
//! [`ControlPlaneHaStore`], the control plane's Raft group over gRPC (`HaUpdate`, `HaList`).

use std::sync::Arc;

use async_trait::async_trait;
use hestia_proto::control as pb;
use hestia_proto::{CallError, ControlPlaneEndpoints};
use parking_lot::Mutex;

use crate::table::{ClusterElection, Election, HaTable, Outcome, Update};
use crate::HaError;

#[async_trait]
pub trait HaStore: Send + Sync + 'static {
    /// Applies `updates` in order, after forgetting clusters silent since `forget_before_ms`;
    /// one outcome per update.
    async fn update(
        &self,
        updates: Vec<Update>,
        forget_before_ms: i64,
    ) -> Result<Vec<Outcome>, HaError>;

    /// Every election, or one tenant's.
    async fn list(&self, tenant: Option<&str>) -> Result<Vec<ClusterElection>, HaError>;
}

/// The table in this process's memory.
#[derive(Default)]
pub struct MemoryHaStore(Mutex<HaTable>);

#[async_trait]
impl HaStore for MemoryHaStore {
    async fn update(
        &self,
        updates: Vec<Update>,
        forget_before_ms: i64,
    ) -> Result<Vec<Outcome>, HaError> {
        Ok(self.0.lock().apply_batch(&updates, forget_before_ms).0)
    }

    async fn list(&self, tenant: Option<&str>) -> Result<Vec<ClusterElection>, HaError> {
        Ok(self.0.lock().list(tenant))
    }
}

/// The table in the control plane's replicated state.
pub struct ControlPlaneHaStore {
    endpoints: Arc<ControlPlaneEndpoints>,
}

impl ControlPlaneHaStore {
    /// Clients for control-plane gRPC `endpoints` (`http://host:port`), connected lazily. Must
    /// be called inside a tokio runtime.
    pub fn new(endpoints: &[String]) -> Result<Self, HaError> {
        Ok(Self {
            endpoints: Arc::new(ControlPlaneEndpoints::new(endpoints)?),
        })
    }
}

impl From<CallError> for HaError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Config(m) => HaError::Config(m),
            e => HaError::Store(e.to_string()),
        }
    }
}

#[async_trait]
impl HaStore for ControlPlaneHaStore {
    async fn update(
        &self,
        updates: Vec<Update>,
        forget_before_ms: i64,
    ) -> Result<Vec<Outcome>, HaError> {
        let n = updates.len();
        let req = pb::HaUpdateRequest {
            updates: updates.into_iter().map(update_to_pb).collect(),
            forget_before_ms,
        };
        let reply = self
            .endpoints
            .call("HA update", |mut c| {
                let req = req.clone();
                async move { c.ha_update(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        if reply.outcomes.len() != n {
            return Err(HaError::Store(format!(
                "HA update: {} outcomes for {n} updates",
                reply.outcomes.len()
            )));
        }
        reply.outcomes.into_iter().map(outcome_from_pb).collect()
    }

    async fn list(&self, tenant: Option<&str>) -> Result<Vec<ClusterElection>, HaError> {
        let req = pb::HaListRequest {
            tenant: tenant.unwrap_or_default().to_string(),
        };
        let reply = self
            .endpoints
            .call("HA list", |mut c| {
                let req = req.clone();
                async move { c.ha_list(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        Ok(reply.elections.into_iter().map(election_from_pb).collect())
    }
}

/// The wire forms, shared with the control plane's server side.
pub fn update_to_pb(u: Update) -> pb::HaUpdate {
    pb::HaUpdate {
        tenant: u.tenant,
        cluster: u.cluster,
        replica: u.replica,
        now_ms: u.now_ms,
        failover_timeout_ms: u.failover_timeout_ms,
        max_clusters: u32::try_from(u.max_clusters).unwrap_or(u32::MAX),
    }
}

pub fn update_from_pb(u: pb::HaUpdate) -> Update {
    Update {
        tenant: u.tenant,
        cluster: u.cluster,
        replica: u.replica,
        now_ms: u.now_ms,
        failover_timeout_ms: u.failover_timeout_ms,
        max_clusters: u.max_clusters as usize,
    }
}

pub fn election_to_pb(e: ClusterElection) -> pb::HaElection {
    pb::HaElection {
        tenant: e.tenant,
        cluster: e.cluster,
        replica: e.election.replica,
        received_at_ms: e.election.received_at_ms,
        elected_at_ms: e.election.elected_at_ms,
        changes: e.election.changes,
    }
}

pub fn election_from_pb(e: pb::HaElection) -> ClusterElection {
    ClusterElection {
        tenant: e.tenant,
        cluster: e.cluster,
        election: Election {
            replica: e.replica,
            received_at_ms: e.received_at_ms,
            elected_at_ms: e.elected_at_ms,
            changes: e.changes,
        },
    }
}

/// `tenant` and `cluster` name the update the outcome answers.
pub fn outcome_to_pb(o: Outcome, tenant: &str, cluster: &str) -> pb::HaOutcome {
    match o {
        Outcome::Elected { election, changed } => pb::HaOutcome {
            election: Some(election_to_pb(ClusterElection {
                tenant: tenant.to_string(),
                cluster: cluster.to_string(),
                election,
            })),
            changed,
            too_many_clusters: 0,
        },
        Outcome::TooManyClusters { limit } => pb::HaOutcome {
            election: None,
            changed: false,
            too_many_clusters: u32::try_from(limit).unwrap_or(u32::MAX),
        },
    }
}

fn outcome_from_pb(o: pb::HaOutcome) -> Result<Outcome, HaError> {
    if o.too_many_clusters > 0 {
        return Ok(Outcome::TooManyClusters {
            limit: o.too_many_clusters as usize,
        });
    }
    let e = o
        .election
        .ok_or_else(|| HaError::Store("HA update: outcome without an election".into()))?;
    Ok(Outcome::Elected {
        election: election_from_pb(e).election,
        changed: o.changed,
    })
}
