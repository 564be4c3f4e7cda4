//! The ingester's time-series database.
//!
//! [`Tsdb`] keeps every tenant's recent samples in memory as Gorilla/XOR chunks ([`xor`], byte
//! compatible with Prometheus) and native histogram chunks ([`histogram`]), both codecs from
//! `hestia-chunkenc` and re-exported here, with a postings index for label matchers, and makes every
//! acknowledged write durable in one RocksDB instance shared by all tenants: a WAL record per
//! append (group-committed with fsync), sealed chunks, series labels, metadata and a bounded ring of exemplars, each key
//! prefixed by its tenant. See `db.rs` for the durability protocol.

mod blocks;
#[cfg(test)]
mod blocks_tests;
mod commit;
mod db;
mod error;
mod head;
mod idle;
mod keys;
mod retention;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tsdb_tests;
mod types;

pub use blocks::RangeRead;
pub use db::{Tsdb, TsdbOptions};
pub use error::StorageError;
pub use hestia_chunkenc::{histogram, xor, ChunkError};
pub use histogram::{CounterResetHint, Histogram, HistogramAppender, HistogramIter, Span};
pub use retention::Expired;
pub use types::{
    series_in_braces, AppendLimits, AppendResult, ChunkData, ChunkEncoding, Exemplar, HeadStats,
    MetricMetadata, MetricType, RangeSeries, RejectReason, Rejection, SeriesAppend, SeriesChunks,
    SeriesExemplars, SeriesLabels, ShipState, ShippedBlock, TenantStats,
};
pub use xor::{seek_before, XorAppender, XorChunk, XorIter, XorSeek};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn tsdb_is_send_sync() {
        assert_send_sync::<super::Tsdb>();
    }
}
