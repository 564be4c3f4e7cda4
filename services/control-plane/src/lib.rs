//! Hestia's control plane: workspaces, their configuration and limit overrides, replicated by an
//! openraft group (log and state machine on RocksDB, snapshots, log compaction), served as the
//! AMP workspace API (REST-JSON) and as an internal gRPC API (resolve, watch, voters). The same
//! group stores the ingester ring (hestia-ring's KV: CAS, coalesced heartbeats, watch).
//!
//! - `raft_types`: every openraft type parameter.
//! - `state`: the replicated state and how commands change it (quota, idempotency, conflicts).
//! - `requests`: proposals carry a request id; a retried one is applied at most once.
//! - `store`: Raft log + state machine on RocksDB.
//! - `network` / `grpc`: Raft RPCs over tonic, the internal ControlPlane service.
//! - `node`: writes forwarded to the leader, linearizable reads (ReadIndex), voters.
//! - `api`: the AMP REST-JSON API and admin endpoints; `audit`: the CloudTrail-like log.
//! - `identity_api`: accounts, users, access keys, policies, workspace tokens; the first
//!   start's operator account and its credentials file.
//! - `reconciler`: CREATING → ACTIVE, DELETING → hidden, purge after the grace period (ingesters,
//!   and a tenant deletion mark in the block store for the compactor), audited.
//! - `ring`: the ring KV's server side, heartbeats buffered and committed in batches.
//! - `compactors` / `compactor_api`: the operator's block listings and compaction passes,
//!   asked of the compactors (their ring in this group's state, or `hestia all`'s own).

pub mod api;
pub mod audit;
pub mod compactor_api;
pub mod compactors;
pub mod error;
pub mod grpc;
pub mod identity_api;
pub mod metrics;
pub mod network;
pub mod node;
pub mod raft_types;
pub mod reconciler;
pub mod requests;
pub mod ring;
pub mod role;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hestia_config::ControlPlaneConfig;
use hestia_proto::control::control_plane_server::ControlPlaneServer;
use hestia_proto::control::raft_server::RaftServer;
use tokio::sync::watch;

pub use compactors::{compactors_from_config, in_process_compactor, Compactors};
pub use error::CpError;
pub use node::ControlPlane;
pub use reconciler::{BucketPurger, IngesterPurger, NoDataPlane, PurgeAll, Purger};

/// How often the leader's reconciler looks for work.
const RECONCILE_TICK: Duration = Duration::from_millis(500);
/// How often a node commits the ring heartbeats it buffered (one Raft entry per ring key).
const RING_HEARTBEAT_FLUSH: Duration = Duration::from_secs(1);

/// A running control-plane voter: gRPC server, Raft, reconciler.
pub struct Running {
    pub cp: Arc<ControlPlane>,
    pub grpc_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds the gRPC address, opens the state under `<data_dir>/control-plane`, starts Raft and
/// bootstraps a new cluster if needed. `public_url` is the base of `prometheusEndpoint`.
pub async fn start(
    cfg: &ControlPlaneConfig,
    data_dir: &Path,
    public_url: String,
    purger: Arc<dyn Purger>,
) -> anyhow::Result<Running> {
    let listen = cfg
        .grpc_listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let grpc_addr = listener.local_addr()?;
    let cp = ControlPlane::open(cfg, data_dir, grpc_addr, public_url).await?;
    let (stop, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tonic::transport::Server::builder()
        .add_service(
            RaftServer::new(grpc::RaftService(cp.clone())).max_decoding_message_size(256 << 20),
        )
        .add_service(ControlPlaneServer::new(grpc::ControlPlaneService(
            cp.clone(),
        )))
        .serve_with_incoming_shutdown(
            // `Server::tcp_nodelay` applies only to listeners tonic binds itself.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            wait(stop_rx.clone()),
        );
    let grpc_task = tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "control-plane gRPC server");
        }
    });
    cp.bootstrap().await?;
    let reconcile = tokio::spawn(reconciler::run(
        cp.clone(),
        purger,
        RECONCILE_TICK,
        wait(stop_rx.clone()),
    ));
    let heartbeats = tokio::spawn(ring::flush_heartbeats(
        cp.clone(),
        RING_HEARTBEAT_FLUSH,
        wait(stop_rx),
    ));
    tracing::info!(node_id = cfg.node_id, %grpc_addr, "control plane started");
    Ok(Running {
        cp,
        grpc_addr,
        stop,
        tasks: vec![grpc_task, reconcile, heartbeats],
    })
}

impl Running {
    /// The AMP workspace API, the admin and identity endpoints of this voter, without the auth
    /// middleware (the caller adds it in front). `master` seals new access keys; `auth`, when
    /// given, sees identity changes made here at once (read-your-writes).
    pub fn router(
        &self,
        master: Option<hestia_auth::secrets::MasterKey>,
        auth: Option<Arc<hestia_auth::Authenticator>>,
    ) -> axum::Router {
        let api = api::Api::new(self.cp.clone(), master, auth);
        api::router(api.clone())
            .merge(compactor_api::router(api.clone()))
            .merge(identity_api::router(api))
    }

    /// Serves the admin routes `GET /admin/workspaces/{id}/blocks` and `POST
    /// /admin/compactor/compact` through `compactors`: [`compactors_from_config`] for a voter,
    /// [`in_process_compactor`] for `hestia all`. Until then the ring `compactor-ring` of this
    /// group's state is asked, with `[ring]`'s default heartbeat timeout.
    pub fn set_compactors(&self, compactors: Arc<dyn Compactors>) {
        self.cp.set_compactors(compactors);
    }

    /// Stops the reconciler, Raft and the gRPC server.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.cp.shutdown().await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
