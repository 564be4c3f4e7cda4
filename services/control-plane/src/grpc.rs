//! The gRPC services: Raft transport between voters and the internal ControlPlane API.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use hestia_model::{TenantId, WorkspaceId};
use hestia_proto::control::control_plane_server::ControlPlane as ControlPlaneApi;
use hestia_proto::control::raft_server::Raft as RaftApi;
use hestia_proto::control::{
    AddVoterRequest, ClusterReply, Empty, RaftMessage, ReadIndexReply, RemoveVoterRequest,
    ResolveWorkspaceReply, ResolveWorkspaceRequest, WatchReply, WatchRequest, WorkspaceInfo,
    WriteReply, WriteRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::node::ControlPlane;
use crate::state::{Command, Workspace};

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
        limit_overrides_json: if w.limit_overrides.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&w.limit_overrides).unwrap_or_default()
        },
    })
}

fn cluster_reply(m: &crate::raft_types::RaftMetrics) -> Response<ClusterReply> {
    Response::new(ClusterReply {
        metrics_json: serde_json::to_string(m).unwrap_or_default(),
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchReply, Status>> + Send>>;

#[tonic::async_trait]
impl ControlPlaneApi for ControlPlaneService {
    async fn write(&self, req: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        let cmd: Command = serde_json::from_slice(&req.get_ref().command)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Command errors travel back as data, so the follower maps them like local ones.
        let result = self.0.write_local(cmd).await.map_err(|e| e.to_status())?;
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
                    })
                });
                if let Some(reply) = snapshot {
                    after = reply.revision;
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
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
}

/// A stream fed by a task through a small channel (the task ends when the client goes away).
fn async_stream<F, Fut>(f: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<WatchReply, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
