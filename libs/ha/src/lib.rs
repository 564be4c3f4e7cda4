//! High-availability Prometheus pairs: of several replicas sending the same series with a
//! `cluster` and a `__replica__` label, only the elected replica's samples are stored.
//!
//! [`HaTable`] holds every cluster's election and the rule that changes it (first replica seen
//! wins; another one takes over after the elected one has been silent for the failover
//! timeout). It lives in an [`HaStore`]: the control plane's Raft state
//! ([`ControlPlaneHaStore`], in a cluster and in `hestia all`), so an election happens exactly
//! once across all distributors, or memory ([`MemoryHaStore`], for in-process tests). Each
//! distributor keeps an [`HaTracker`], which answers from a cache and batches the elected
//! replicas' keep-alives (see `tracker.rs`).

mod config;
mod error;
pub mod metrics;
mod store;
mod table;
mod tracker;

pub use config::HaTrackerConfig;
pub use error::HaError;
pub use store::{
    election_from_pb, election_to_pb, outcome_to_pb, update_from_pb, update_to_pb,
    ControlPlaneHaStore, HaStore, MemoryHaStore,
};
pub use table::{ClusterElection, Election, HaTable, Outcome, Update};
pub use tracker::{now_ms, Decision, HaTracker, REFRESH_PERIOD, SAFETY_MARGIN};
