//! [`compact`]: merges blocks of one tenant into one block, streaming.
//!
//! Every source is read in index (label) order, `batch_series` series at a time
//! ([`BlockReader::series_batch`]), the next batch being read while the current one is merged,
//! and the sources are merged by labels. Memory holds two batches per source, the samples of
//! one series, and the writer's symbols and postings.
//!
//! Per series, the chunks of every source are grouped where their time ranges overlap. A group
//! of one chunk that lies inside the output range and that no tombstone touches is copied as it
//! is; chunks that replicas cut byte for byte alike count as one, the copies as duplicates.
//! Any other group is decoded, merged by timestamp and encoded again ([`xor_chunks`],
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
use crate::reader::{BlockReader, SeriesBatch, SeriesChunks};
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
    /// Series read from each source per batch; memory holds two batches per source.
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

    let mut cursors: Vec<Cursor<'_, R>> = sorted
        .iter()
        .map(|&reader| Cursor {
            reader,
            from: None,
            done: false,
            ahead: None,
        })
        .collect();
    let mut queues: Vec<VecDeque<SeriesChunks>> = vec![VecDeque::new(); cursors.len()];
    let (batch, range) = (opts.batch_series.max(1), (mint, maxt - 1));
    let mut m = Merge {
        w,
        stats: CompactStats::default(),
        range,
    };
    loop {
        // Queues that ran out take their next batch: the one read ahead, or one read now.
        let now = cursors
            .iter_mut()
            .zip(&queues)
            .filter(|(c, q)| q.is_empty() && c.ahead.is_none() && !c.done);
        try_join_all(now.map(|(c, _)| c.read_ahead(batch, range))).await?;
        for (c, q) in cursors.iter_mut().zip(&mut queues) {
            if q.is_empty() {
                q.extend(c.ahead.take().into_iter().flat_map(|b| b.series));
            }
        }
        let more: Vec<bool> = cursors
            .iter()
            .map(|c| !c.done || c.ahead.is_some())
            .collect();
        if queues
            .iter()
            .zip(&more)
            .any(|(q, &more)| q.is_empty() && more)
        {
            // A batch without series in the range.
            continue;
        }
        if queues.iter().all(VecDeque::is_empty) {
            break;
        }
        // The next batches are read while these are merged.
        let ahead = cursors
            .iter_mut()
            .filter(|c| c.ahead.is_none() && !c.done)
            .map(|c| c.read_ahead(batch, range));
        let (ahead, merged) = futures::join!(try_join_all(ahead), m.merge(&mut queues, &more));
        ahead?;
        merged?;
    }
    let Merge { w, stats, .. } = m;
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

/// Where the reading of one source is.
struct Cursor<'a, R> {
    reader: &'a BlockReader<R>,
    /// Where the next batch starts (`None`: at the first series).
    from: Option<u64>,
    /// Whether every batch was read.
    done: bool,
    /// A batch read ahead.
    ahead: Option<SeriesBatch>,
}

impl<R: RangeReader> Cursor<'_, R> {
    async fn read_ahead(&mut self, limit: usize, range: (i64, i64)) -> Result<(), BlockError> {
        let b = self
            .reader
            .series_batch(self.from, limit, range.0, range.1)
            .await?;
        self.from = b.next;
        self.done = b.next.is_none();
        self.ahead = Some(b);
        Ok(())
    }
}

/// Series merged between chances for the batches read ahead to progress.
const YIELD_EVERY: u64 = 64;

/// The output being written.
struct Merge {
    w: BlockWriter,
    stats: CompactStats,
    /// `[mint, maxt]` of the samples kept, inclusive.
    range: (i64, i64),
}

impl Merge {
    /// Merges series by labels until a queue with `more` series to come runs out.
    async fn merge(
        &mut self,
        queues: &mut [VecDeque<SeriesChunks>],
        more: &[bool],
    ) -> Result<(), BlockError> {
        let mut group: Vec<(usize, SeriesChunks)> = Vec::new();
        for n in 1.. {
            if queues
                .iter()
                .zip(more)
                .any(|(q, &more)| q.is_empty() && more)
            {
                break;
            }
            let Some(labels) = queues
                .iter()
                .filter_map(|q| q.front())
                .map(|s| &s.labels)
                .min()
            else {
                break;
            };
            let labels = labels.clone();
            group.clear();
            for (rank, q) in queues.iter_mut().enumerate() {
                if q.front().is_some_and(|s| s.labels == labels) {
                    group.extend(q.pop_front().map(|s| (rank, s)));
                }
            }
            let chunks = merge_series(&group, self.range.0, self.range.1, &mut self.stats)?;
            if !chunks.is_empty() {
                self.w.add_series(&labels, &chunks)?;
                self.stats.series += 1;
            }
            // Lets the batches being read ahead make progress.
            if n % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }
}

/// A decoded sample.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Float(f64),
    /// Boxed: samples are sorted, and floats are the common case.
    Histogram(Box<Histogram>),
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

impl Part<'_> {
    /// Whether the chunk can be written as it is: samples, all inside `[mint, maxt]`, none
    /// deleted.
    fn copyable(&self, mint: i64, maxt: i64) -> bool {
        let c = self.chunk;
        c.num_samples() > 0
            && c.min_t >= mint
            && c.max_t <= maxt
            && !self
                .deleted
                .iter()
                .any(|&(a, b)| a <= c.max_t && b >= c.min_t)
    }
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
    // Replicas that received the same samples cut the same chunks. A chunk byte for byte equal
    // to one of a smaller ULID is set aside as its twin: when the equal chunk is copied, the
    // twin holds only duplicates; otherwise it joins the equal chunk's group.
    let mut kept: Vec<Part<'_>> = Vec::with_capacity(chunks.len());
    let mut twins: Vec<(usize, Part<'_>)> = Vec::new();
    for p in chunks {
        let twin_of = match p.copyable(mint, maxt) {
            true => kept
                .iter()
                .enumerate()
                .rev()
                .take_while(|(_, q)| q.chunk.min_t == p.chunk.min_t)
                .find(|(_, q)| q.copyable(mint, maxt) && q.chunk == p.chunk),
            false => None,
        };
        match twin_of {
            Some((i, _)) => twins.push((i, p)),
            None => kept.push(p),
        }
    }
    twins.sort_by_key(|t| t.0);

    let mut out = Vec::new();
    let mut start = 0;
    while start < kept.len() {
        // The chunks overlapping, directly or through each other, the one at `start`.
        let mut end = start + 1;
        let mut group_max = kept[start].chunk.max_t;
        while end < kept.len() && kept[end].chunk.min_t <= group_max {
            group_max = group_max.max(kept[end].chunk.max_t);
            end += 1;
        }
        let group = &kept[start..end];
        let twins =
            &twins[twins.partition_point(|t| t.0 < start)..twins.partition_point(|t| t.0 < end)];
        start = end;
        if let [p] = group {
            if p.copyable(mint, maxt) {
                let n = u64::from(p.chunk.num_samples());
                stats.samples_in += n * (1 + twins.len() as u64);
                stats.samples_out += n;
                stats.duplicates += n * twins.len() as u64;
                stats.chunks_copied += 1;
                out.push(p.chunk.clone());
                continue;
            }
        }
        let mut parts = group.to_vec();
        parts.extend(twins.iter().map(|t| t.1));
        parts.sort_by_key(|p| (p.chunk.min_t, p.rank, p.pos));
        let samples = merge_samples(&parts, mint, maxt, stats)?;
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
                it.by_ref()
                    .for_each(|(t, h)| add(t, Value::Histogram(Box::new(h))));
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
                hists.push((t, *h));
            }
        }
    }
    out.extend(xor_chunks(&floats, DEFAULT_CHUNK_SAMPLES)?);
    out.extend(histogram_chunks(&hists, DEFAULT_CHUNK_SAMPLES)?);
    Ok(())
}
