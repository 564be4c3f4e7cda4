//! One control-plane voter: the Raft instance, its state machine, and the write/read paths every
//! API uses (writes forwarded to the leader, reads made linearizable with a read index).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hestia_config::ControlPlaneConfig;
use hestia_proto::control::control_plane_client::ControlPlaneClient;
use hestia_proto::control::{AddVoterRequest, Empty, RemoveVoterRequest, WriteRequest};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::audit::AuditLog;
use crate::compactors::{Compactors, RingCompactors};
use crate::error::CpError;
use crate::network::{channel, Network};
use crate::raft_types::{CheckIsLeaderError, NodeId, Raft, RaftMetrics};
use crate::requests::Proposal;
use crate::ring::HeartbeatBuffer;
use crate::state::{Command, CommandResult, Outcome, State, Status};
use crate::store::{open_db, LogStore, StateMachine};
use hestia_model::{TenantId, WorkspaceId};

/// How long a write or read keeps retrying while there is no reachable leader.
const LEADER_WAIT: Duration = Duration::from_secs(10);

pub struct ControlPlane {
    pub node_id: NodeId,
    pub raft: Raft,
    pub sm: StateMachine,
    pub cfg: ControlPlaneConfig,
    pub audit: AuditLog,
    /// Base of `prometheusEndpoint`.
    pub public_url: String,
    /// This node's gRPC address as the other voters reach it.
    pub grpc_addr: SocketAddr,
    /// Ring heartbeats received here and not yet committed.
    pub ring_beats: HeartbeatBuffer,
    peers: Mutex<HashMap<String, ControlPlaneClient<Channel>>>,
    /// Set by `shutdown`: ends the gRPC streams so the server can stop.
    closing: watch::Sender<bool>,
    /// Fault injection for multi-process tests: `<data-dir>/control-plane/failpoints` when
    /// `$HESTIA_FAILPOINTS` is set at start; a failpoint is armed by a file of its name there.
    failpoints: Option<PathBuf>,
    /// Who lists blocks and runs compaction passes for the admin API.
    compactors: parking_lot::RwLock<Arc<dyn Compactors>>,
}

impl ControlPlane {
    /// Opens the RocksDB under `<data_dir>/control-plane` and starts Raft. Call `bootstrap` once
    /// the gRPC server answers.
    pub async fn open(
        cfg: &ControlPlaneConfig,
        data_dir: &Path,
        grpc_addr: SocketAddr,
        public_url: String,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = data_dir.join("control-plane");
        std::fs::create_dir_all(&dir)?;
        let db = open_db(&dir)?;
        let sm = StateMachine::open(db.clone())?;
        let hb = cfg.heartbeat_interval.as_millis().max(1) as u64;
        let raft_cfg = openraft::Config {
            cluster_name: "hestia-control-plane".to_string(),
            heartbeat_interval: hb,
            election_timeout_min: hb * 3,
            election_timeout_max: hb * 6,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every_entries),
            max_in_snapshot_log_to_keep: cfg.snapshot_every_entries.min(100),
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(raft_cfg),
            Network,
            LogStore::new(db.clone()),
            sm.clone(),
        )
        .await?;
        Ok(Arc::new(Self {
            node_id: cfg.node_id,
            raft,
            sm,
            cfg: cfg.clone(),
            audit: AuditLog::new(db, &cfg.region),
            public_url,
            grpc_addr,
            ring_beats: HeartbeatBuffer::default(),
            peers: Mutex::new(HashMap::new()),
            closing: watch::channel(false).0,
            failpoints: std::env::var_os("HESTIA_FAILPOINTS").map(|_| dir.join("failpoints")),
            compactors: parking_lot::RwLock::new(Arc::new(RingCompactors::new(
                &hestia_config::CompactorRingConfig::default().key,
                hestia_ring::RingConfig::default().heartbeat_timeout,
            )?)),
        }))
    }

    /// Initialises a new cluster with the configured voters (or this node alone) when nothing
    /// has been initialised yet; a no-op on restart.
    pub async fn bootstrap(&self) -> anyhow::Result<()> {
        if self.raft.is_initialized().await? {
            return Ok(());
        }
        let mut voters: BTreeMap<NodeId, BasicNode> = self
            .cfg
            .bootstrap_voters()?
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        if voters.is_empty() {
            voters.insert(self.node_id, BasicNode::new(self.grpc_addr.to_string()));
        }
        tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "bootstrapping control plane");
        match self.raft.initialize(voters).await {
            Ok(()) => Ok(()),
            // Another voter's initialisation reached us first.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.metrics().current_leader == Some(self.node_id)
    }

    fn peer(&self, addr: &str) -> Result<ControlPlaneClient<Channel>, CpError> {
        let mut peers = self.peers.lock();
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let c =
            ControlPlaneClient::new(channel(addr).map_err(|e| CpError::Internal(e.to_string()))?);
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Proposes a command on the leader (here, or forwarded) and returns its result once
    /// committed and applied. Retries while there is no leader, then answers Unavailable.
    /// Every attempt, local or forwarded, proposes the same request id, so a command that an
    /// earlier attempt already committed is not applied again (`requests.rs`).
    pub async fn write(&self, cmd: Command) -> Result<Outcome, CpError> {
        let proposal = Proposal::new(cmd);
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            // A leader cut off from its quorum never commits: answer Unavailable (the outcome
            // is then unknown to the caller, as with any timeout) instead of hanging.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let written = tokio::time::timeout(remaining, self.raft.client_write(proposal.clone()))
                .await
                .map_err(|_| {
                    CpError::Unavailable("no control-plane quorum committed the write".into())
                })?;
            let leader_addr = match written {
                Ok(resp) => return resp.data.map_err(CpError::from),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    f.leader_node.map(|n| n.addr)
                }
                Err(RaftError::APIError(e)) => return Err(CpError::Internal(e.to_string())),
                Err(RaftError::Fatal(e)) => return Err(CpError::Unavailable(e.to_string())),
            };
            if let Some(addr) = leader_addr {
                // A leader that stopped answering must not hold the call past the deadline.
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, self.forward_write(&addr, &proposal)).await {
                    Ok(Ok(r)) => return r,
                    Ok(Err(e)) => {
                        tracing::debug!(%addr, error = %e, "forwarding to leader failed")
                    }
                    Err(_) => tracing::debug!(%addr, "forwarding to leader timed out"),
                }
            }
            if Instant::now() >= deadline {
                return Err(CpError::Unavailable("no control-plane leader".to_string()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Only the leader's local write path, for forwarded requests (never forwards again).
    pub async fn write_local(&self, proposal: Proposal) -> Result<CommandResult, CpError> {
        match tokio::time::timeout(LEADER_WAIT, self.raft.client_write(proposal)).await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(CpError::Unavailable(e.to_string())),
            Err(_) => Err(CpError::Unavailable(
                "no control-plane quorum committed the write".into(),
            )),
        }
    }

    async fn forward_write(
        &self,
        addr: &str,
        proposal: &Proposal,
    ) -> Result<Result<Outcome, CpError>, tonic::Status> {
        crate::metrics::FORWARDED.inc();
        let command =
            serde_json::to_vec(proposal).map_err(|e| tonic::Status::internal(e.to_string()))?;
        let reply = self
            .peer(addr)
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .write(WriteRequest { command })
            .await?
            .into_inner();
        let result: CommandResult = serde_json::from_slice(&reply.result)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(result.map_err(CpError::from))
    }

    /// Waits until this node's state machine reflects every write acknowledged before the call
    /// (ReadIndex: the leader confirms its leadership with a quorum; a follower asks the leader
    /// for that index and waits to apply it).
    pub async fn read_barrier(&self) -> Result<(), CpError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let no_leader = || CpError::Unavailable("no control-plane leader".to_string());
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let confirmed = tokio::time::timeout(remaining, self.raft.ensure_linearizable())
                .await
                .map_err(|_| no_leader())?;
            let leader_addr = match confirmed {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    f.leader_node.map(|n| n.addr)
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => None,
                Err(RaftError::Fatal(e)) => return Err(CpError::Unavailable(e.to_string())),
            };
            if let Some(addr) = leader_addr {
                if let Ok(mut client) = self.peer(&addr) {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let asked = tokio::time::timeout(remaining, client.read_index(Empty {})).await;
                    if let Ok(Ok(reply)) = asked {
                        let index = reply.into_inner().index;
                        let waited = self
                            .raft
                            .wait(Some(deadline.saturating_duration_since(Instant::now())))
                            .applied_index_at_least(Some(index), "read index")
                            .await;
                        return waited
                            .map(|_| ())
                            .map_err(|e| CpError::Unavailable(e.to_string()));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(no_leader());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader's read index (fails on a follower).
    pub async fn read_index(&self) -> Result<u64, CpError> {
        self.raft
            .ensure_linearizable()
            .await
            .map(|l| l.map(|l| l.index).unwrap_or(0))
            .map_err(|e| CpError::Unavailable(e.to_string()))
    }

    /// A linearizable read of the state.
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, CpError> {
        self.read_barrier().await?;
        Ok(self.sm.read(f))
    }

    /// Adds a voter (as a learner first, so it catches up before it counts for the quorum).
    pub async fn add_voter(&self, id: NodeId, addr: String) -> Result<RaftMetrics, CpError> {
        if let Some(leader) = self.leader_addr_if_follower() {
            let mut c = self.peer(&leader)?;
            c.add_voter(AddVoterRequest { node_id: id, addr })
                .await
                .map_err(|s| CpError::Unavailable(s.message().to_string()))?;
            return Ok(self.metrics());
        }
        self.raft
            .add_learner(id, BasicNode { addr }, true)
            .await
            .map_err(|e| CpError::Unavailable(e.to_string()))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| CpError::Unavailable(e.to_string()))?;
        Ok(self.metrics())
    }

    pub async fn remove_voter(&self, id: NodeId) -> Result<RaftMetrics, CpError> {
        if let Some(leader) = self.leader_addr_if_follower() {
            let mut c = self.peer(&leader)?;
            c.remove_voter(RemoveVoterRequest { node_id: id })
                .await
                .map_err(|s| CpError::Unavailable(s.message().to_string()))?;
            return Ok(self.metrics());
        }
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| CpError::Unavailable(e.to_string()))?;
        Ok(self.metrics())
    }

    fn leader_addr_if_follower(&self) -> Option<String> {
        let m = self.metrics();
        let leader = m.current_leader.filter(|l| *l != self.node_id)?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// The data-plane tenant of an ACTIVE workspace, from this node's applied state.
    pub fn active_tenant(&self, ws: &WorkspaceId) -> Option<TenantId> {
        self.sm.read(|s| {
            let w = s.workspaces.get(ws.as_str())?;
            if w.status != Status::Active {
                return None;
            }
            TenantId::for_workspace(Some(&w.account), ws).ok()
        })
    }

    /// Serves the admin API's block listings and compaction passes through `compactors`
    /// (default: the ring `compactor-ring` in this group's state, called over HTTP).
    pub fn set_compactors(&self, compactors: Arc<dyn Compactors>) {
        *self.compactors.write() = compactors;
    }

    /// The compactors the admin API asks.
    pub fn compactors(&self) -> Arc<dyn Compactors> {
        self.compactors.read().clone()
    }

    /// Whether the test failpoint `name` is armed (always false unless `$HESTIA_FAILPOINTS`).
    pub fn failpoint(&self, name: &str) -> bool {
        self.failpoints
            .as_ref()
            .is_some_and(|dir| dir.join(name).exists())
    }

    /// Resolves once `shutdown` has begun.
    pub async fn closed(&self) {
        let _ = self.closing.subscribe().wait_for(|c| *c).await;
    }

    pub async fn shutdown(&self) {
        self.closing.send_replace(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
