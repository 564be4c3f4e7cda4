//! The gRPC services: Raft transport between voters and the internal ControlPlane API.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use hestia_model::{TenantId, WorkspaceId};
use hestia_proto::control::control_plane_server::ControlPlane as ControlPlaneApi;
use hestia_proto::control::raft_server::Raft as RaftApi;
use hestia_proto::control::{
    AddVoterRequest, ClusterReply, Empty, HaListReply, HaListRequest, HaUpdateReply,
    HaUpdateRequest, RaftMessage, ReadIndexReply, RecordRefusalsRequest, RemoveVoterRequest,
    ResolveWorkspaceReply, ResolveWorkspaceRequest, RingCasReply, RingCasRequest,
    RingHeartbeatReply, RingHeartbeatRequest, RingKeyRequest, RingValue, WatchReply, WatchRequest,
    WorkspaceInfo, WriteReply, WriteRequest,
};
use hestia_ring::RingDesc;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::node::ControlPlane;
use crate::requests::Proposal;
use crate::state::{Command, Outcome, RingEntry, Workspace};

/// How often a ring watch re-confirms (read barrier) that this node still follows a leader; a
/// node cut off from the quorum ends its watches so clients move to another node.
const RING_WATCH_CHECK: Duration = Duration::from_secs(5);

fn decode<T: DeserializeOwned>(m: &RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&m.json).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    serde_json::to_vec(v)
        .map(|json| Response::new(RaftMessage { json }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[derive(Clone)]
pub struct RaftService(pub Arc<ControlPlane>);

#[tonic::async_trait]
impl RaftApi for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let r = self.0.raft.append_entries(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let r = self.0.raft.vote(decode(req.get_ref())?).await;
        encode(&r)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let r = self.0.raft.install_snapshot(decode(req.get_ref())?).await;
        encode(&r)
    }
}

#[derive(Clone)]
pub struct ControlPlaneService(pub Arc<ControlPlane>);

/// The internal view of a workspace (`None` for ones the API no longer shows).
pub fn workspace_info(w: &Workspace) -> Option<WorkspaceInfo> {
    if !w.visible() {
        return None;
    }
    let tenant = WorkspaceId::parse(&w.id)
        .and_then(|ws| TenantId::for_workspace(Some(&w.account), &ws))
        .map(|t| t.to_string())
        .unwrap_or_default();
    Some(WorkspaceInfo {
        workspace_id: w.id.clone(),
        account_id: w.account.clone(),
        status: w.status.code().to_string(),
        tenant_id: tenant,
        limit_overrides_json: limit_overrides_json(w),
        retention_period_in_days: w
            .configuration
            .retention_period_in_days
            .unwrap_or(crate::api::DEFAULT_RETENTION_DAYS),
    })
}

/// The workspace's `[limits]` overrides as the ingesters apply them: the operator's overrides,
/// and the workspace configuration's out-of-order window unless an override sets one.
fn limit_overrides_json(w: &Workspace) -> String {
    let mut limits = w.limit_overrides.clone();
    if let Some(secs) = w.configuration.out_of_order_time_window_in_seconds {
        limits
            .entry("out_of_order_time_window".to_string())
            .or_insert_with(|| serde_json::Value::from(format!("{secs}s")));
    }
    if limits.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&limits).unwrap_or_default()
    }
}

fn cluster_reply(m: &crate::raft_types::RaftMetrics) -> Response<ClusterReply> {
    Response::new(ClusterReply {
        metrics_json: serde_json::to_string(m).unwrap_or_default(),
    })
}

type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type WatchStream = ReplyStream<WatchReply>;
type RingWatchStream = ReplyStream<RingValue>;

fn ring_value(entry: Option<&RingEntry>) -> Result<RingValue, Status> {
    Ok(match entry {
        Some(e) => RingValue {
            found: true,
            version: e.version,
            desc_json: serde_json::to_string(&e.desc)
                .map_err(|e| Status::internal(e.to_string()))?,
        },
        None => RingValue::default(),
    })
}

#[tonic::async_trait]
impl ControlPlaneApi for ControlPlaneService {
    async fn write(&self, req: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        let proposal: Proposal = serde_json::from_slice(&req.get_ref().command)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Command errors travel back as data, so the follower maps them like local ones.
        let result = self
            .0
            .write_local(proposal)
            .await
            .map_err(|e| e.to_status())?;
        // Tests: the leader dies after committing a forwarded write, before answering it.
        if self.0.failpoint("abort-after-commit") {
            std::process::abort();
        }
        let result = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(WriteReply { result }))
    }

    async fn read_index(&self, _: Request<Empty>) -> Result<Response<ReadIndexReply>, Status> {
        let index = self.0.read_index().await.map_err(|e| e.to_status())?;
        Ok(Response::new(ReadIndexReply { index }))
    }

    async fn resolve_workspace(
        &self,
        req: Request<ResolveWorkspaceRequest>,
    ) -> Result<Response<ResolveWorkspaceReply>, Status> {
        let id = &req.get_ref().workspace_id;
        let workspace = self
            .0
            .read(|s| s.workspaces.get(id).and_then(workspace_info))
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ResolveWorkspaceReply { workspace }))
    }

    type WatchWorkspacesStream = WatchStream;

    async fn watch_workspaces(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let cp = self.0.clone();
        let mut rx = cp.sm.subscribe();
        let mut after = req.get_ref().after_revision;
        let stream = async_stream(move |tx| async move {
            loop {
                let snapshot = cp.sm.read(|s| {
                    (s.revision > after).then(|| WatchReply {
                        revision: s.revision,
                        workspaces: s.workspaces.values().filter_map(workspace_info).collect(),
                        identities_json: serde_json::to_vec(&s.identities).unwrap_or_default(),
                    })
                });
                if let Some(reply) = snapshot {
                    after = reply.revision;
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    r = rx.changed() => if r.is_err() { return },
                    _ = cp.closed() => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn add_voter(
        &self,
        req: Request<AddVoterRequest>,
    ) -> Result<Response<ClusterReply>, Status> {
        let r = req.into_inner();
        let m = self
            .0
            .add_voter(r.node_id, r.addr)
            .await
            .map_err(|e| e.to_status())?;
        Ok(cluster_reply(&m))
    }

    async fn remove_voter(
        &self,
        req: Request<RemoveVoterRequest>,
    ) -> Result<Response<ClusterReply>, Status> {
        let m = self
            .0
            .remove_voter(req.get_ref().node_id)
            .await
            .map_err(|e| e.to_status())?;
        Ok(cluster_reply(&m))
    }

    async fn cluster_status(&self, _: Request<Empty>) -> Result<Response<ClusterReply>, Status> {
        Ok(cluster_reply(&self.0.metrics()))
    }

    async fn ring_get(&self, req: Request<RingKeyRequest>) -> Result<Response<RingValue>, Status> {
        let entry = self
            .0
            .ring_get(&req.get_ref().key)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(ring_value(entry.as_ref())?))
    }

    async fn ring_cas(
        &self,
        req: Request<RingCasRequest>,
    ) -> Result<Response<RingCasReply>, Status> {
        let r = req.into_inner();
        let desc: RingDesc = serde_json::from_str(&r.desc_json)
            .map_err(|e| Status::invalid_argument(format!("desc_json: {e}")))?;
        let (ok, version) = self
            .0
            .ring_cas(&r.key, r.expected, desc)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(RingCasReply { ok, version }))
    }

    async fn ring_heartbeat(
        &self,
        req: Request<RingHeartbeatRequest>,
    ) -> Result<Response<RingHeartbeatReply>, Status> {
        let r = req.get_ref();
        let known = self
            .0
            .ring_heartbeat(&r.key, &r.instance, r.at_ms)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(RingHeartbeatReply { known }))
    }

    async fn ha_update(
        &self,
        req: Request<HaUpdateRequest>,
    ) -> Result<Response<HaUpdateReply>, Status> {
        let r = req.into_inner();
        let mut updates = Vec::with_capacity(r.updates.len());
        for u in r.updates {
            TenantId::parse(&u.tenant)
                .map_err(|e| Status::invalid_argument(format!("HA update tenant: {e}")))?;
            if u.cluster.is_empty() || u.replica.is_empty() {
                return Err(Status::invalid_argument(
                    "HA update: cluster and replica must not be empty",
                ));
            }
            updates.push(hestia_ha::update_from_pb(u));
        }
        let names: Vec<(String, String)> = updates
            .iter()
            .map(|u| (u.tenant.clone(), u.cluster.clone()))
            .collect();
        let cmd = Command::HaUpdate {
            updates,
            forget_before_ms: r.forget_before_ms,
        };
        let outcomes = match self.0.write(cmd).await.map_err(|e| e.to_status())? {
            Outcome::Ha(o) => o,
            other => return Err(Status::internal(format!("HA update produced {other:?}"))),
        };
        Ok(Response::new(HaUpdateReply {
            outcomes: outcomes
                .into_iter()
                .zip(&names)
                .map(|(o, (t, c))| hestia_ha::outcome_to_pb(o, t, c))
                .collect(),
        }))
    }

    async fn record_refusals(
        &self,
        req: Request<RecordRefusalsRequest>,
    ) -> Result<Response<Empty>, Status> {
        use hestia_auth::AuditSink as _;
        for json in req.into_inner().refusals_json {
            let f: hestia_auth::AuthFailure = serde_json::from_str(&json)
                .map_err(|e| Status::invalid_argument(format!("refusal: {e}")))?;
            self.0.audit.record(&f);
        }
        Ok(Response::new(Empty {}))
    }

    async fn ha_list(&self, req: Request<HaListRequest>) -> Result<Response<HaListReply>, Status> {
        let tenant = req.into_inner().tenant;
        let tenant = (!tenant.is_empty()).then_some(tenant);
        let elections = self
            .0
            .read(|s| s.ha.list(tenant.as_deref()))
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(HaListReply {
            elections: elections
                .into_iter()
                .map(hestia_ha::election_to_pb)
                .collect(),
        }))
    }

    type RingWatchStream = RingWatchStream;

    async fn ring_watch(
        &self,
        req: Request<RingKeyRequest>,
    ) -> Result<Response<RingWatchStream>, Status> {
        let key = req.into_inner().key;
        let cp = self.0.clone();
        // Subscribed before the first read, so no change between the two is missed.
        let mut changes = cp.sm.subscribe_rings();
        // A linearizable read first (it also validates the key): the stream starts no older
        // than any acknowledged write, then follows this node's applied state.
        cp.ring_get(&key).await.map_err(|e| e.to_status())?;
        let stream = async_stream(move |tx| async move {
            let mut sent = None;
            let mut check = tokio::time::interval(RING_WATCH_CHECK);
            check.tick().await;
            loop {
                let value = cp.sm.read(|s| {
                    let entry = s.rings.get(&key);
                    (sent != Some(entry.map_or(0, |e| e.version))).then(|| ring_value(entry))
                });
                match value {
                    Some(Ok(v)) => {
                        sent = Some(v.version);
                        if tx.send(Ok(v)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    None => {}
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = check.tick() => {
                        if let Err(e) = cp.read_barrier().await {
                            let _ = tx.send(Err(e.to_status())).await;
                            return;
                        }
                    }
                    _ = cp.closed() => {
                        let stopping = Status::unavailable("control-plane node stopping");
                        let _ = tx.send(Err(stopping)).await;
                        return;
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a small channel (the task ends when the client goes away).
fn async_stream<T, F, Fut>(f: F) -> ReplyStream<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
