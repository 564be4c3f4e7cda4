//! [`compact`]: merges blocks of one tenant into one block, streaming.
//!
//! Every source is read in index (label) order, `batch_series` series at a time
//! ([`BlockReader::series_batch`]), and the sources are merged by labels, so memory holds one
//! batch per source, the samples of one series, and the writer's symbols and postings.
//!
//! Per series, the chunks of every source are grouped where their time ranges overlap. A group
//! of one chunk that lies inside the output range and that no tombstone touches is copied as it
//! is. Any other group is decoded, merged by timestamp and encoded again ([`xor_chunks`],
//! [`histogram_chunks`]; a series may switch between floats and histograms). Of the samples
//! sharing a timestamp one is kept: **the one from the source with the smallest ULID** (within
//! a source, the one of the earliest chunk), so the result does not depend on the order of
//! `sources`. The others are counted as duplicates when they equal the kept one (floats
//! bitwise, histograms bit for bit except the counter reset hint, which depends on where chunks
//! start) and as conflicts otherwise.

use std::collections::VecDeque;
use std::path::Path;

use futures::future::try_join_all;
use hestia_chunkenc::prom_histogram::PromHistogramIter;
use hestia_chunkenc::{CounterResetHint, Encoding, Histogram, XorIter};
use hestia_model::TenantId;
use serde::Serialize;

use crate::chunks::ChunkMeta;
use crate::encode::{histogram_chunks, xor_chunks, DEFAULT_CHUNK_SAMPLES};
use crate::meta::{BlockDesc, BlockMeta, BlockSource, Compaction};
use crate::range::RangeReader;
use crate::reader::{BlockReader, SeriesChunks};
use crate::writer::{BlockOptions, BlockWriter};
use crate::BlockError;

/// Series read from each source at a time unless [`CompactOptions::batch_series`] says otherwise.
pub const DEFAULT_BATCH_SERIES: usize = 1024;

/// What [`compact`] writes.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub tenant: TenantId,
    /// `[minTime, maxTime)` of the output; `None`: the union of the sources' ranges.
    pub time_range: Option<(i64, i64)>,
    /// Series read from each source per batch (bounds memory).
    pub batch_series: usize,
}

impl CompactOptions {
    /// Options for `tenant`: the sources' whole range, [`DEFAULT_BATCH_SERIES`].
    pub fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            time_range: None,
            batch_series: DEFAULT_BATCH_SERIES,
        }
    }
}

/// What a compaction read and wrote. `samples_in = samples_out + duplicates + conflicts +
/// dropped`; `chunks_copied + chunks_reencoded` is the output's chunk count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactStats {
    /// Series written.
    pub series: u64,
    /// Samples of the source chunks read (chunks outside the output range are not read).
    pub samples_in: u64,
    pub samples_out: u64,
    /// Samples dropped because another source had the same timestamp and the same value
    /// (bitwise for floats, equal for histograms).
    pub duplicates: u64,
    /// Same timestamp, different value: the smallest source ULID's value is kept, the others
    /// counted here.
    pub conflicts: u64,
    /// Samples deleted by tombstones or outside the output range.
    pub dropped: u64,
    /// Output chunks copied byte for byte from a source.
    pub chunks_copied: u64,
    /// Output chunks encoded from merged samples.
    pub chunks_reencoded: u64,
    /// Bytes of the source chunks read.
    pub bytes_in: u64,
}

/// Merges `sources` (blocks of `opts.tenant`, in any order) into one new block under `parent`,
/// written by [`BlockWriter`] (temporary directory, `meta.json` last, renamed to its ULID).
///
/// The output's `compaction` is level = highest source level + 1, `sources` = the sorted union
/// of the sources' sources, `parents` = the sources (sorted by time, then ULID), as Prometheus'
/// compactor writes it; `thanos.source` is `compactor`. Returns `Ok(None)`, writing nothing,
/// when no sample is left (e.g. everything deleted or outside `time_range`).
pub async fn compact<R: RangeReader>(
    sources: &[BlockReader<R>],
    parent: &Path,
    opts: &CompactOptions,
) -> Result<Option<(BlockMeta, CompactStats)>, BlockError> {
    let mut sorted: Vec<&BlockReader<R>> = sources.iter().collect();
    sorted.sort_by_key(|s| s.meta().ulid);
    if sorted.is_empty() {
        return Err(BlockError::Invalid("nothing to compact".into()));
    }
    if let Some(w) = sorted
        .windows(2)
        .find(|w| w[0].meta().ulid == w[1].meta().ulid)
    {
        return Err(BlockError::Invalid(format!(
            "block {} given twice",
            w[0].meta().ulid
        )));
    }
    for s in &sorted {
        let tenant = s.meta().tenant()?;
        if tenant != opts.tenant {
            return Err(BlockError::Invalid(format!(
                "block {} belongs to tenant {}, not {}",
                s.meta().ulid,
                tenant.as_str(),
                opts.tenant.as_str()
            )));
        }
    }
    let (mint, maxt) = opts.time_range.unwrap_or_else(|| {
        let min = sorted.iter().map(|s| s.meta().min_time).min();
        let max = sorted.iter().map(|s| s.meta().max_time).max();
        (min.unwrap_or(0), max.unwrap_or(0))
    });

    let mut symbols: Vec<&str> = sorted
        .iter()
        .flat_map(|s| s.symbols().iter().map(String::as_str))
        .collect();
    symbols.sort_unstable();
    symbols.dedup();
    let block_opts = BlockOptions {
        tenant: opts.tenant.clone(),
        ingester: None,
        source: BlockSource::Compactor,
        time_range: Some((mint, maxt)),
    };
    let mut w = BlockWriter::new(parent, block_opts, symbols.into_iter().map(String::from))?;
    w.set_compaction(compaction_of(&sorted));

    let mut inputs: Vec<Input<'_, R>> = sorted
        .iter()
        .map(|&reader| Input {
            reader,
            pending: VecDeque::new(),
            from: None,
            done: false,
        })
        .collect();
    let batch = opts.batch_series.max(1);
    let mut stats = CompactStats::default();
    let mut group: Vec<(usize, SeriesChunks)> = Vec::new();
    loop {
        // Every source must show its next series before the smallest one is known.
        let empty = inputs
            .iter_mut()
            .filter(|i| i.pending.is_empty() && !i.done);
        try_join_all(empty.map(|i| i.refill(batch, mint, maxt - 1))).await?;
        if inputs.iter().any(|i| i.pending.is_empty() && !i.done) {
            continue;
        }
        let Some(labels) = inputs
            .iter()
            .filter_map(|i| i.pending.front().map(|s| &s.labels))
            .min()
            .cloned()
        else {
            break;
        };
        group.clear();
        for (rank, i) in inputs.iter_mut().enumerate() {
            if i.pending.front().is_some_and(|s| s.labels == labels) {
                group.extend(i.pending.pop_front().map(|s| (rank, s)));
            }
        }
        let chunks = merge_series(&group, mint, maxt - 1, &mut stats)?;
        if !chunks.is_empty() {
            w.add_series(&labels, &chunks)?;
            stats.series += 1;
        }
    }
    if stats.series == 0 {
        // Dropping the writer removes its temporary directory.
        return Ok(None);
    }
    Ok(Some((w.finish()?, stats)))
}

/// The `compaction` section of a block merged from `sources`.
fn compaction_of<R: RangeReader>(sources: &[&BlockReader<R>]) -> Compaction {
    let metas = sources.iter().map(|s| s.meta());
    let mut parents: Vec<BlockDesc> = metas
        .clone()
        .map(|m| BlockDesc {
            ulid: m.ulid,
            min_time: m.min_time,
            max_time: m.max_time,
        })
        .collect();
    parents.sort_by_key(|p| (p.min_time, p.ulid));
    let mut ulids: Vec<_> = metas
        .clone()
        .flat_map(|m| m.compaction.sources.iter().copied())
        .collect();
    ulids.sort_unstable();
    ulids.dedup();
    Compaction {
        level: metas.map(|m| m.compaction.level).max().unwrap_or(0) + 1,
        sources: ulids,
        parents,
        deletable: false,
        failed: false,
        hints: Vec::new(),
    }
}

/// One source block being read batch by batch.
struct Input<'a, R> {
    reader: &'a BlockReader<R>,
    pending: VecDeque<SeriesChunks>,
    /// Where the next batch starts (`None`: at the first series).
    from: Option<u64>,
    done: bool,
}

impl<R: RangeReader> Input<'_, R> {
    async fn refill(&mut self, limit: usize, mint: i64, maxt: i64) -> Result<(), BlockError> {
        let b = self
            .reader
            .series_batch(self.from, limit, mint, maxt)
            .await?;
        self.pending.extend(b.series);
        self.from = b.next;
        self.done = b.next.is_none();
        Ok(())
    }
}

/// A decoded sample.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Float(f64),
    Histogram(Histogram),
}

impl Value {
    /// Whether `o` is the same sample value (see the module docs).
    fn same(&self, o: Value) -> bool {
        match (self, o) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Histogram(a), Value::Histogram(mut b)) => {
                let gauge = |h: &Histogram| h.counter_reset_hint == CounterResetHint::Gauge;
                if gauge(a) != gauge(&b) {
                    return false;
                }
                b.counter_reset_hint = a.counter_reset_hint;
                a.same_bits(&b)
            }
            _ => false,
        }
    }
}

/// A chunk of the series being merged.
#[derive(Clone, Copy)]
struct Part<'a> {
    /// The source's position by ULID.
    rank: usize,
    /// The chunk's position in its source's series.
    pos: usize,
    chunk: &'a ChunkMeta,
    /// The source's deleted intervals of the series.
    deleted: &'a [(i64, i64)],
}

/// The output chunks of one series from its chunks in `sources` (rank = position by ULID),
/// keeping samples in `[mint, maxt]` (inclusive) that no tombstone deletes.
fn merge_series(
    sources: &[(usize, SeriesChunks)],
    mint: i64,
    maxt: i64,
    stats: &mut CompactStats,
) -> Result<Vec<ChunkMeta>, BlockError> {
    let mut chunks: Vec<Part<'_>> = sources
        .iter()
        .flat_map(|(rank, s)| {
            s.chunks.iter().enumerate().map(|(pos, chunk)| Part {
                rank: *rank,
                pos,
                chunk,
                deleted: &s.deleted,
            })
        })
        .collect();
    chunks.sort_by_key(|p| (p.chunk.min_t, p.rank, p.pos));
    stats.bytes_in += chunks
        .iter()
        .map(|p| p.chunk.data.len() as u64)
        .sum::<u64>();

    let mut out = Vec::new();
    let mut start = 0;
    while start < chunks.len() {
        // The chunks overlapping, directly or through each other, the one at `start`.
        let mut end = start + 1;
        let mut group_max = chunks[start].chunk.max_t;
        while end < chunks.len() && chunks[end].chunk.min_t <= group_max {
            group_max = group_max.max(chunks[end].chunk.max_t);
            end += 1;
        }
        let group = &chunks[start..end];
        start = end;
        if let [Part {
            chunk: c, deleted, ..
        }] = group
        {
            let n = u64::from(c.num_samples());
            let untouched = !deleted.iter().any(|&(a, b)| a <= c.max_t && b >= c.min_t);
            if n > 0 && c.min_t >= mint && c.max_t <= maxt && untouched {
                stats.samples_in += n;
                stats.samples_out += n;
                stats.chunks_copied += 1;
                out.push((*c).clone());
                continue;
            }
        }
        let samples = merge_samples(group, mint, maxt, stats)?;
        let before = out.len();
        encode(samples, &mut out)?;
        stats.chunks_reencoded += (out.len() - before) as u64;
    }
    Ok(out)
}

/// Decodes the chunks of a group and merges their samples by timestamp, one per timestamp.
fn merge_samples(
    group: &[Part<'_>],
    mint: i64,
    maxt: i64,
    stats: &mut CompactStats,
) -> Result<Vec<(i64, Value)>, BlockError> {
    // (timestamp, rank, value); a stable sort keeps a source's chunk order within a rank.
    let mut all: Vec<(i64, usize, Value)> = Vec::new();
    for &Part {
        rank,
        chunk: c,
        deleted,
        ..
    } in group
    {
        let mut add = |t: i64, v: Value| {
            stats.samples_in += 1;
            if t < mint || t > maxt || deleted.iter().any(|&(a, b)| t >= a && t <= b) {
                stats.dropped += 1;
            } else {
                all.push((t, rank, v));
            }
        };
        match c.encoding {
            Encoding::Xor => {
                let mut it = XorIter::new(&c.data)?;
                it.by_ref().for_each(|(t, v)| add(t, Value::Float(v)));
                if let Some(e) = it.err() {
                    return Err(e.into());
                }
            }
            enc => {
                let mut it = PromHistogramIter::new(enc, &c.data)?;
                it.by_ref().for_each(|(t, h)| add(t, Value::Histogram(h)));
                if let Some(e) = it.err() {
                    return Err(e.clone().into());
                }
            }
        }
    }
    all.sort_by_key(|s| (s.0, s.1));
    let mut kept: Vec<(i64, Value)> = Vec::with_capacity(all.len());
    for (t, _, v) in all {
        match kept.last() {
            Some((last_t, last)) if *last_t == t => match last.same(v) {
                true => stats.duplicates += 1,
                false => stats.conflicts += 1,
            },
            _ => kept.push((t, v)),
        }
    }
    stats.samples_out += kept.len() as u64;
    Ok(kept)
}

/// Encodes merged samples: XOR chunks for runs of floats, histogram chunks for runs of
/// histograms.
fn encode(samples: Vec<(i64, Value)>, out: &mut Vec<ChunkMeta>) -> Result<(), BlockError> {
    let mut floats: Vec<(i64, f64)> = Vec::new();
    let mut hists: Vec<(i64, Histogram)> = Vec::new();
    for (t, v) in samples {
        match v {
            Value::Float(f) => {
                if !hists.is_empty() {
                    out.extend(histogram_chunks(&hists, DEFAULT_CHUNK_SAMPLES)?);
                    hists.clear();
                }
                floats.push((t, f));
            }
            Value::Histogram(mut h) => {
                if !floats.is_empty() {
                    out.extend(xor_chunks(&floats, DEFAULT_CHUNK_SAMPLES)?);
                    floats.clear();
                }
                // "Not a reset" held against the sample before it in its source chunk, which
                // may not be the sample before it now; an unknown hint lets readers compare.
                if h.counter_reset_hint == CounterResetHint::NotCounterReset {
                    h.counter_reset_hint = CounterResetHint::Unknown;
                }
                hists.push((t, h));
            }
        }
    }
    out.extend(xor_chunks(&floats, DEFAULT_CHUNK_SAMPLES)?);
    out.extend(histogram_chunks(&hists, DEFAULT_CHUNK_SAMPLES)?);
    Ok(())
}
