//! Chunk codecs shared by the ingester's storage, the querier and the block writer.
//!
//! - [`xor`]: Prometheus' XOR float chunks, byte compatible with `tsdb/chunkenc/xor.go`, with
//!   Hestia's seek points.
//! - [`histogram`]: Hestia's native histogram chunks (integer and float counts in one format) and
//!   the self-contained single-histogram encoding of the ingester's WAL.
//!
//! No storage engine is linked: decoding a chunk needs only this crate.

mod bits;
mod error;
pub mod histogram;
mod varint;
pub mod xor;

pub use error::ChunkError;
pub use histogram::{CounterResetHint, Histogram, HistogramAppender, HistogramIter, Span};
pub use xor::{seek_before, XorAppender, XorChunk, XorIter, XorSeek};
