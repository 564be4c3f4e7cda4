//! Prometheus TSDB blocks, so the Prometheus ecosystem (promtool, Prometheus, Thanos tools) reads
//! what Hestia writes and Hestia reads what they write.

mod error;
pub mod meta;

pub use error::BlockError;
pub use meta::{
    BlockDesc, BlockFile, BlockMeta, BlockSource, BlockStats, Compaction, Downsample, ThanosMeta,
    INGESTER_LABEL, META_FILENAME, META_VERSION, TENANT_LABEL,
};
