//! Raft RPCs over tonic: each message is openraft's own serde type as JSON in a `RaftMessage`;
//! the reply is the JSON of `Result<response, RaftError>`.

use std::time::Duration;

use hestia_proto::control::raft_client::RaftClient;
use hestia_proto::control::RaftMessage;
use openraft::error::{NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use crate::raft_types::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotError, InstallSnapshotRequest,
    InstallSnapshotResponse, Node, NodeId, RaftError, RpcError, TypeConfig, VoteRequest,
    VoteResponse,
};

/// A lazily connected gRPC channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, http::uri::InvalidUri> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy())
}

#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            client: None,
        }
    }
}

pub struct Peer {
    target: NodeId,
    addr: String,
    client: Option<RaftClient<Channel>>,
}

type Call =
    fn(
        RaftClient<Channel>,
        RaftMessage,
    )
        -> futures::future::BoxFuture<'static, Result<tonic::Response<RaftMessage>, tonic::Status>>;

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned, E>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        call: Call,
    ) -> Result<Resp, openraft::error::RPCError<NodeId, Node, RaftError<E>>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let ch = channel(&self.addr).map_err(|e| rpc_unreachable(&e))?;
                let c = RaftClient::new(ch).max_decoding_message_size(256 << 20);
                self.client = Some(c.clone());
                c
            }
        };
        let msg = RaftMessage {
            json: serde_json::to_vec(req)
                .map_err(|e| openraft::error::RPCError::Network(NetworkError::new(&e)))?,
        };
        let reply = tokio::time::timeout(option.hard_ttl(), call(client, msg))
            .await
            .map_err(|e| rpc_unreachable(&e))?
            .map_err(|status| {
                // A dropped connection invalidates the cached channel's state; reconnect next time.
                self.client = None;
                rpc_unreachable(&status)
            })?;
        let result: Result<Resp, RaftError<E>> =
            serde_json::from_slice(&reply.into_inner().json)
                .map_err(|e| openraft::error::RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| openraft::error::RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn rpc_unreachable<E: std::error::Error + 'static, F>(
    e: &E,
) -> openraft::error::RPCError<NodeId, Node, F>
where
    F: std::error::Error,
{
    openraft::error::RPCError::Unreachable(Unreachable::new(e))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        self.call(&rpc, &option, |mut c, m| {
            Box::pin(async move { c.append_entries(m).await })
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse, RpcError<InstallSnapshotError>> {
        self.call(&rpc, &option, |mut c, m| {
            Box::pin(async move { c.install_snapshot(m).await })
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.call(&rpc, &option, |mut c, m| {
            Box::pin(async move { c.vote(m).await })
        })
        .await
    }
}
