//! Compatibility with Prometheus 2.42's tools: promtool reads Hestia's blocks, Hestia reads
//! promtool's. `promtool` is a declared dependency (`make deps`), so its absence fails.

mod common;
mod compacted_blocks;
mod hestia_reads_promtool;
mod prometheus_reads_hestia;
mod promtool_reads_hestia;
