//! Generated wire types. `prometheus` is remote write 1.0 (used to encode requests in clients,
//! tests and the load generator; the receiver's hot path decodes by hand in hestia-remote-write).
//! `ingester` is the internal gRPC service between distributors/queriers and ingesters.
//! `control` holds the control plane's Raft transport and internal API. [`IngesterPool`] keeps one
//! client per ingester address (or calls the ingester of this process directly);
//! [`ControlPlaneEndpoints`] calls any control-plane voter.

mod control_client;
mod pool;
pub use control_client::{
    follow_workspaces, CallError, ControlPlaneEndpoints, MAX_BACKOFF, MIN_BACKOFF,
};
pub use pool::{IngesterConn, IngesterPool, LocalIngester, QueryStreamAnswers};

#[allow(clippy::all, missing_docs)]
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// Remote write 2.0 (`io.prometheus.write.v2.Request`), for encoding.
#[allow(clippy::all, missing_docs)]
pub mod write_v2 {
    tonic::include_proto!("io.prometheus.write.v2");
}

#[allow(clippy::all, missing_docs)]
pub mod ingester {
    tonic::include_proto!("hestia.ingester");
}

#[allow(clippy::all, missing_docs)]
pub mod control {
    tonic::include_proto!("hestia.control");
}
