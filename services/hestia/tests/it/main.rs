//! `hestia`'s integration tests, one binary (RocksDB is linked once).

mod common;

mod auth;
mod auth_clients;
mod bad_input;
mod blocks;
mod blocks_s3;
mod cluster_auth;
mod compaction_cluster;
mod crash_recovery;
mod differential;
mod ha_cluster;
mod ha_dedup;
mod histograms_e2e;
mod local_cluster;
mod out_of_order;
mod prometheus_e2e;
mod query_api;
mod quotas;
mod remote_write_v2;
mod ring_cluster;
mod workspaces;
