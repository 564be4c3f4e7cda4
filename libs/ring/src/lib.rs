//! The ingester ring: which ingesters hold a series, and who is alive.
//!
//! Every ingester owns random 32-bit tokens; a series (by a 32-bit token of its hash) belongs to
//! the first instances found walking clockwise from its token, one per zone, up to the
//! replication factor. The ring descriptor lives in a [`Kv`] store chosen by [`RingConfig::kv`]:
//! [`MemoryKv`] in-process, or [`ControlPlaneKv`], the control plane's Raft group over gRPC.
//! Members run a [`Lifecycler`]; readers keep a [`RingClient`] and take a [`Ring`] snapshot per
//! request: [`Ring::replication_set`] for one series, [`Ring::shard_batch`] for a whole
//! remote-write request with per-series quorum tracking, [`Ring::read_plan`] for queries.

mod client;
mod config;
mod desc;
mod error;
mod kv;
mod lifecycler;
mod read;
mod remote;
mod ring;
mod shard;

pub use client::RingClient;
pub use config::{InstanceConfig, KvBackend, RingConfig, MAX_REPLICATION_FACTOR};
pub use desc::{InstanceDesc, InstanceState, RingDesc};
pub use error::RingError;
pub use kv::{new_kv, update, Kv, KvWatch, MemoryKv, Versioned};
pub use lifecycler::{now_ms, Lifecycler};
pub use read::{ReadPlan, ZoneReplicas};
pub use remote::ControlPlaneKv;
pub use ring::{InstanceStatus, ReplicationSet, Ring};
pub use shard::{QuorumStatus, QuorumTracker, ShardedBatch};

/// The ring token of a 64-bit series hash: its upper half.
pub fn token_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}
