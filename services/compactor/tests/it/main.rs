//! hestia-compactor over a filesystem bucket: blocks shipped as ingesters ship them (RF
//! replicas), compacted, read back with promtool 2.42; crashes, retention, deletions, two
//! compactors sharing tenants, and the HTTP API.

mod compaction;
mod crash;
mod deletion;
mod harness;
mod http;
mod kill;
mod sharding;
