//! Generated wire types. `prometheus` is remote write 1.0 (used to encode requests in clients,
//! tests and the load generator; the receiver's hot path decodes by hand in hestia-remote-write).
//! `ingester` is the internal gRPC service between distributors/queriers and ingesters.

#[allow(clippy::all, missing_docs)]
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

#[allow(clippy::all, missing_docs)]
pub mod ingester {
    tonic::include_proto!("hestia.ingester");
}
