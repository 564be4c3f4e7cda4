//! Remote write 1.0 (`prometheus.WriteRequest`) decoding for the receiver's hot path.
//!
//! The body is decompressed once into a buffer the caller owns, then decoded without copying:
//! label names and values borrow from that buffer, and every series' labels and samples live in
//! two flat vectors of the request, so a request costs a handful of allocations, not several per
//! series. Encoding (clients, tests, load generator) uses the prost types in `hestia-proto`.

mod decode;
mod error;
mod snappy;
mod v2;
pub mod wire;

pub use decode::{
    decode_label, decode_write_request, ExemplarRef, HistogramCount, HistogramRef, LabelRef,
    MetadataRef, MetricType, SampleRef, SeriesRef, WriteRequest,
};
pub use error::DecodeError;
pub use snappy::decompress;
pub use v2::{decode_write_request_v2, FlatWriteRequest, SeriesV2, WriteRequestV2};
