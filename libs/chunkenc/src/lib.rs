//! Chunk codecs shared by the ingester's storage, the querier and the block writer.
//!
//! - [`xor`]: Prometheus' XOR float chunks, byte compatible with `tsdb/chunkenc/xor.go`, with
//!   Hestia's seek points.
//! - [`histogram`]: Hestia's native histogram chunks (integer and float counts in one format) and
//!   the self-contained single-histogram encoding of the ingester's WAL.
//! - [`prom_histogram`]: Prometheus' integer and float histogram chunks, as TSDB blocks hold them.
//!
//! No storage engine is linked: decoding a chunk needs only this crate.

mod bits;
mod error;
pub mod histogram;
pub mod prom_histogram;
pub mod varint;
pub mod xor;

pub use error::ChunkError;
pub use histogram::{CounterResetHint, Histogram, HistogramAppender, HistogramIter, Span};
pub use prom_histogram::{PromHistogramAppender, PromHistogramIter};
pub use xor::{seek_before, XorAppender, XorChunk, XorIter, XorSeek};

/// Prometheus' chunk encodings, as the byte in block segment files names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Xor,
    Histogram,
    FloatHistogram,
}

impl Encoding {
    pub fn as_u8(self) -> u8 {
        match self {
            Encoding::Xor => 1,
            Encoding::Histogram => 2,
            Encoding::FloatHistogram => 3,
        }
    }

    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::Histogram),
            3 => Some(Encoding::FloatHistogram),
            _ => None,
        }
    }
}
