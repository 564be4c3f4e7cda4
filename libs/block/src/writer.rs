//! [`BlockWriter`]: writes a block directory in a temporary directory and renames it to its ULID.

use std::fs;
use std::path::{Path, PathBuf};

use hestia_chunkenc::Encoding;
use hestia_model::{Labels, TenantId};
use ulid::Ulid;

use crate::chunks::{ChunkMeta, SegmentWriter, CHUNKS_DIR};
use crate::index::{ChunkRef, IndexWriter, INDEX_FILENAME};
use crate::meta::{BlockFile, BlockMeta, BlockSource, BlockStats, Compaction, META_FILENAME};
use crate::tombstones::{write_empty_tombstones, TOMBSTONES_FILENAME};
use crate::BlockError;

/// Who a block belongs to and where it comes from.
#[derive(Debug, Clone)]
pub struct BlockOptions {
    pub tenant: TenantId,
    /// The ingester cutting the block, recorded in `meta.json`.
    pub ingester: Option<String>,
    pub source: BlockSource,
    /// The block's `[minTime, maxTime)`; every chunk must lie inside it. `None`: from the first
    /// to the last sample written (`maxTime` = last + 1).
    pub time_range: Option<(i64, i64)>,
}

/// The sorted, unique strings of label sets: the symbols [`BlockWriter::new`] needs.
pub fn symbols_of<'a>(series: impl IntoIterator<Item = &'a Labels>) -> Vec<String> {
    let mut s: Vec<String> = series
        .into_iter()
        .flat_map(|l| l.iter().flat_map(|l| [l.name.clone(), l.value.clone()]))
        .collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// Writes one block. Chunks go to the segment files as series are added; the index keeps the
/// symbols and postings in memory (see `index.rs`); nothing else grows with the block.
///
/// Files are written under `<parent>/<ulid>.tmp-for-creation` (the name Prometheus gives its
/// own temporary blocks, which it skips and removes); [`BlockWriter::finish`] writes
/// `meta.json` last, fsyncs and renames the directory to `<parent>/<ulid>`. A writer dropped
/// before `finish` removes its temporary directory.
pub struct BlockWriter {
    parent: PathBuf,
    tmp: PathBuf,
    ulid: Ulid,
    opts: BlockOptions,
    segments: Option<SegmentWriter>,
    index: Option<IndexWriter>,
    stats: BlockStats,
    min_t: i64,
    max_t: i64,
    refs: Vec<ChunkRef>,
    compaction: Option<Compaction>,
}

impl BlockWriter {
    /// Starts a block under `parent`. `symbols` must hold every label name and value of the
    /// series to come ([`symbols_of`]), in any order.
    pub fn new(
        parent: &Path,
        opts: BlockOptions,
        symbols: impl IntoIterator<Item = String>,
    ) -> Result<Self, BlockError> {
        if let Some((min, max)) = opts.time_range {
            if min >= max {
                return Err(BlockError::Invalid(format!(
                    "empty block time range [{min}, {max})"
                )));
            }
        }
        let ulid = Ulid::new();
        let tmp = parent.join(format!("{ulid}.tmp-for-creation"));
        fs::create_dir_all(&tmp)?;
        let mut symbols: Vec<String> = symbols.into_iter().collect();
        symbols.sort_unstable();
        symbols.dedup();
        let mut w = Self {
            parent: parent.to_path_buf(),
            tmp: tmp.clone(),
            ulid,
            opts,
            segments: None,
            index: None,
            stats: BlockStats::default(),
            min_t: i64::MAX,
            max_t: i64::MIN,
            refs: Vec::new(),
            compaction: None,
        };
        // `w` owns the directory from here on: an error below removes it on drop.
        w.segments = Some(SegmentWriter::new(&tmp.join(CHUNKS_DIR))?);
        w.index = Some(IndexWriter::new(&tmp.join(INDEX_FILENAME), symbols)?);
        Ok(w)
    }

    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// The `compaction` section of `meta.json` instead of a level-1 block's.
    pub fn set_compaction(&mut self, compaction: Compaction) {
        self.compaction = Some(compaction);
    }

    /// Adds a series (labels ascending across calls) with its chunks (by time, not overlapping).
    /// A series without chunks is left out, as Prometheus' compactor does.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<(), BlockError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let (Some(segments), Some(index)) = (&mut self.segments, &mut self.index) else {
            return Err(BlockError::Invalid("block writer already failed".into()));
        };
        let mut refs = std::mem::take(&mut self.refs);
        refs.clear();
        for c in chunks {
            if let Some((min, max)) = self.opts.time_range {
                if c.min_t < min || c.max_t >= max {
                    return Err(BlockError::Invalid(format!(
                        "{labels}: chunk [{}, {}] outside the block [{min}, {max})",
                        c.min_t, c.max_t
                    )));
                }
            }
            if refs.last().is_some_and(|p: &ChunkRef| c.min_t <= p.max_t) || c.max_t < c.min_t {
                return Err(BlockError::Invalid(format!(
                    "{labels}: chunks overlap or are out of order"
                )));
            }
            let r = segments.write(c)?;
            refs.push(ChunkRef {
                min_t: c.min_t,
                max_t: c.max_t,
                r,
            });
            let n = u64::from(c.num_samples());
            self.stats.num_samples += n;
            match c.encoding {
                Encoding::Xor => self.stats.num_float_samples += n,
                Encoding::Histogram | Encoding::FloatHistogram => {
                    self.stats.num_histogram_samples += n
                }
            }
            self.stats.num_chunks += 1;
            self.min_t = self.min_t.min(c.min_t);
            self.max_t = self.max_t.max(c.max_t);
        }
        index.add_series(labels, &refs)?;
        self.stats.num_series += 1;
        self.refs = refs;
        Ok(())
    }

    /// Finishes the files, writes `meta.json` and moves the block to `<parent>/<ulid>`.
    pub fn finish(mut self) -> Result<BlockMeta, BlockError> {
        let (Some(segments), Some(index)) = (self.segments.take(), self.index.take()) else {
            return Err(BlockError::Invalid("block writer already failed".into()));
        };
        if self.stats.num_series == 0 {
            return Err(BlockError::Invalid(
                "a block needs at least one series".into(),
            ));
        }
        let (min_t, max_t) = self
            .opts
            .time_range
            .unwrap_or((self.min_t, self.max_t.saturating_add(1)));
        let segment_files = segments.finish()?;
        let index_size = index.finish()?;
        let tombstones_size = write_empty_tombstones(&self.tmp.join(TOMBSTONES_FILENAME))?;

        let mut meta = BlockMeta::new(
            self.ulid,
            min_t,
            max_t,
            &self.opts.tenant,
            self.opts.ingester.as_deref(),
            self.opts.source,
        );
        meta.stats = self.stats.clone();
        if let Some(c) = self.compaction.take() {
            meta.compaction = c;
        }
        let file = |rel_path: String, size_bytes: u64| BlockFile {
            rel_path,
            size_bytes,
        };
        meta.thanos.segment_files = segment_files.iter().map(|(n, _)| n.clone()).collect();
        meta.thanos.files = segment_files
            .iter()
            .map(|(n, s)| file(format!("{CHUNKS_DIR}/{n}"), *s))
            .chain([
                file(INDEX_FILENAME.into(), index_size),
                file(META_FILENAME.into(), 0),
                file(TOMBSTONES_FILENAME.into(), tombstones_size),
            ])
            .collect();
        meta.validate()?;
        meta.write_to_dir(&self.tmp)?;
        sync_dir(&self.tmp.join(CHUNKS_DIR))?;
        sync_dir(&self.tmp)?;
        let dst = self.parent.join(self.ulid.to_string());
        fs::rename(&self.tmp, &dst)?;
        sync_dir(&self.parent)?;
        Ok(meta)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // After a successful finish the directory was renamed away and this finds nothing.
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}
