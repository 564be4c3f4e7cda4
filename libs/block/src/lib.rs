//! Prometheus TSDB blocks, so the Prometheus ecosystem (promtool, Prometheus, Thanos tools) reads
//! what Hestia writes and Hestia reads what they write.
//!
//! A block is a directory named by its ULID; each format is described next to its code:
//!
//! | file | format | code |
//! |---|---|---|
//! | `meta.json` | Prometheus' block meta (version 1) plus Thanos' `thanos` section; Hestia's tenant and ingester are `thanos.labels` | `meta.rs` |
//! | `index` | index format v2: symbols, series, label indices, postings, offset tables, TOC | `index.rs` (writer), `reader.rs` |
//! | `chunks/000001`… | chunk segments of at most 512 MiB | `chunks.rs` |
//! | `tombstones` | deletion intervals; Hestia writes none (9 bytes, as Prometheus does) | `tombstones.rs` |
//!
//! Chunks are Prometheus' encodings from `hestia-chunkenc`: XOR for floats (the ingester's own
//! chunks, byte for byte) and `prom_histogram`'s integer and float native histogram chunks (the
//! ingester's histogram chunks are Hestia's own format and are re-encoded, see
//! [`histogram_chunks`]).
//!
//! **Writing:** [`BlockWriter::new`] with every symbol of the block ([`symbols_of`]), then
//! [`BlockWriter::add_series`] in label order with chunks from [`xor_chunks`] /
//! [`histogram_chunks`], then [`BlockWriter::finish`], which returns the [`BlockMeta`]. Chunk
//! bytes go to disk as series are added; memory holds the symbols and the postings (4 bytes per
//! label of every series).
//!
//! **Reading:** [`BlockReader::open`] over a [`RangeReader`] ([`LocalDir`], [`ObjectStoreDir`])
//! reads `meta.json`, `tombstones` and the index header (TOC, symbol table, postings offset
//! table); [`BlockReader::select`] then fetches only the postings, series entries and chunks a
//! query needs, as byte ranges, with every checksum verified. Label names and values come from
//! the postings offset table, as in Prometheus' v2 reader; the label indices and their offset
//! table are written for older readers and never read.
//!
//! [`BlockReader::series_batch`] instead walks every series in index order, a batch at a time,
//! reading the series section sequentially.
//!
//! **Compacting** (`compact.rs`): [`compact`] merges blocks of one tenant (a range's replicas,
//! adjacent ranges) into one block. Sources are read in batches of
//! [`CompactOptions::batch_series`] series, the next while the current one is merged by labels,
//! so memory holds two batches per source and one series' samples. A chunk overlapping no other one, inside the output range
//! and untouched by tombstones is copied as it is; overlapping chunks are decoded, merged with
//! one sample per timestamp (on conflicts the source with the smallest ULID wins) and encoded
//! again. `meta.json` gets the level, sources and parents as Prometheus' compactor writes them.
//!
//! **Compatibility** (tests in `tests/it`): `promtool tsdb analyze` and `promtool tsdb dump`
//! (2.42) accept Hestia's blocks, compacted ones included, and dump exactly the written (or
//! merged) float samples; Prometheus 2.42's server answers the written integer histograms;
//! blocks from `promtool tsdb create-blocks-from` read back sample for sample. Deviations from Prometheus' writer, none visible to readers: a new
//! histogram bucket starts a new chunk instead of recoding the open one; `meta.json` carries
//! `numFloatSamples` and `numHistogramSamples` as newer Prometheus versions write them; float
//! histogram chunks need a Prometheus newer than 2.42 (2.42's promtool still analyzes such
//! blocks, and its dump prints no histograms at all). promtool 2.42's `tsdb dump` also wants a
//! `wal` directory next to the blocks.

#[cfg(test)]
mod block_tests;
mod chunks;
mod compact;
#[cfg(test)]
mod compact_tests;
mod enc;
mod encode;
mod error;
mod index;
pub mod meta;
mod range;
mod reader;
mod tombstones;
mod writer;

pub use chunks::{segment_name, ChunkMeta, CHUNKS_DIR, MAX_SEGMENT_SIZE, SEGMENT_MAGIC};
pub use compact::{compact, CompactOptions, CompactStats, DEFAULT_BATCH_SERIES};
pub use encode::{histogram_chunks, xor_chunks, DEFAULT_CHUNK_SAMPLES};
pub use error::BlockError;
pub use index::{INDEX_FILENAME, INDEX_MAGIC, INDEX_VERSION};
pub use meta::{
    BlockDesc, BlockFile, BlockMeta, BlockSource, BlockStats, Compaction, Downsample, ThanosMeta,
    INGESTER_LABEL, META_FILENAME, META_VERSION, TENANT_LABEL,
};
pub use range::{LocalDir, ObjectStoreDir, RangeReader};
pub use reader::{BlockReader, Samples, SeriesBatch, SeriesChunks, MERGE_GAP};
pub use tombstones::{TOMBSTONES_FILENAME, TOMBSTONES_MAGIC};
pub use writer::{symbols_of, BlockOptions, BlockWriter};
