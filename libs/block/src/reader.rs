//! [`BlockReader`]: queries a block through byte ranges.
//!
//! Opening reads `meta.json`, the `tombstones` and the index header: the TOC, the symbol table
//! and the postings offset table (label names, values and where their postings are), each one
//! range. A query then fetches the postings lists its matchers need (adjacent lists in one range),
//! the series entries of the resulting refs, and the chunks overlapping its time range. Ranges
//! closer than [`MERGE_GAP`] are fetched as one, and every fetch of a step runs concurrently.
//! Sizes of entries are not known before they are read: series and chunks are read with a guessed
//! length bounded by the next known entry, and read again in full when the guess was short.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;
use futures::future::try_join_all;
use hestia_chunkenc::prom_histogram::PromHistogramIter;
use hestia_chunkenc::{Encoding, Histogram, XorIter};
use hestia_model::{Label, Labels, MatchOp, Matcher};

use crate::chunks::{check_segment_header, parse_chunk, segment_name, ChunkMeta, CHUNKS_DIR};
use crate::enc::{checked_section, crc32c, Decoder};
use crate::index::{Toc, INDEX_FILENAME, INDEX_MAGIC, INDEX_VERSION, TOC_LEN};
use crate::meta::{BlockMeta, META_FILENAME};
use crate::range::RangeReader;
use crate::tombstones::{parse_tombstones, Tombstones, TOMBSTONES_FILENAME};
use crate::BlockError;

/// Ranges of one file closer than this are read as one.
pub const MERGE_GAP: u64 = 4096;
/// First guess of a series entry's size.
const SERIES_GUESS: u64 = 512;
/// First guess of a chunk's size when no later chunk bounds it.
const CHUNK_GUESS: u64 = 2048;
/// Most bytes of the series section [`BlockReader::series_batch`] reads at once.
const SCAN_MAX: u64 = 1 << 20;

/// A series selected by a query: its labels, its chunks overlapping the query range, and the
/// intervals tombstones delete from it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesChunks {
    pub labels: Labels,
    pub chunks: Vec<ChunkMeta>,
    /// Deleted `[mint, maxt]` intervals (inclusive); empty for Hestia's blocks.
    pub deleted: Vec<(i64, i64)>,
}

/// Series read in index order by [`BlockReader::series_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBatch {
    pub series: Vec<SeriesChunks>,
    /// Where the next batch starts (a series ref); `None` after the last series.
    pub next: Option<u64>,
}

/// Decoded samples of a series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, Histogram)>,
}

impl SeriesChunks {
    /// Decodes the samples in `[mint, maxt]` that no tombstone deletes, verifying every chunk.
    pub fn samples(&self, mint: i64, maxt: i64) -> Result<Samples, BlockError> {
        let keep =
            |t: i64| t >= mint && t <= maxt && !self.deleted.iter().any(|&(a, b)| t >= a && t <= b);
        let mut out = Samples::default();
        for c in &self.chunks {
            match c.encoding {
                Encoding::Xor => {
                    let mut it = XorIter::new(&c.data)?;
                    out.floats.extend(it.by_ref().filter(|s| keep(s.0)));
                    if let Some(e) = it.err() {
                        return Err(e.into());
                    }
                }
                enc => {
                    let mut it = PromHistogramIter::new(enc, &c.data)?;
                    out.histograms.extend(it.by_ref().filter(|s| keep(s.0)));
                    if let Some(e) = it.err() {
                        return Err(e.clone().into());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A postings list: where it starts and where the next known structure starts.
#[derive(Debug, Clone, Copy)]
struct PostingsRange {
    start: u64,
    end: u64,
}

/// A block opened for queries.
pub struct BlockReader<R> {
    r: R,
    meta: BlockMeta,
    toc: Toc,
    symbols: Vec<String>,
    /// Label name → (value, postings) sorted by value; the all-series list is under `""`.
    postings: BTreeMap<String, Vec<(String, PostingsRange)>>,
    series_end: u64,
    tombstones: Tombstones,
    segment_sizes: Mutex<HashMap<u32, u64>>,
}

impl<R: RangeReader> BlockReader<R> {
    /// Reads the block's metadata, tombstones and index header.
    pub async fn open(r: R) -> Result<Self, BlockError> {
        let meta_size = r.size(META_FILENAME).await?;
        let meta = BlockMeta::from_json(&r.read_range(META_FILENAME, 0..meta_size).await?)?;
        let tombstones = match r.size(TOMBSTONES_FILENAME).await {
            Ok(n) => parse_tombstones(&r.read_range(TOMBSTONES_FILENAME, 0..n).await?)?,
            Err(BlockError::NotFound(_)) => Tombstones::new(),
            Err(e) => return Err(e),
        };

        let size = r.size(INDEX_FILENAME).await?;
        if size < 5 + TOC_LEN {
            return Err(BlockError::corrupt("index", "shorter than header and TOC"));
        }
        let toc_at = size - TOC_LEN;
        let toc = Toc::decode(&r.read_range(INDEX_FILENAME, toc_at..size).await?, size)?;
        // A section ends where the next one in the file starts.
        let starts = [
            toc.symbols,
            toc.series,
            toc.label_indices,
            toc.postings,
            toc.label_offset_table,
            toc.postings_offset_table,
        ];
        let section_end = |from: u64| {
            starts
                .iter()
                .copied()
                .filter(|&s| s > from)
                .min()
                .unwrap_or(toc_at)
        };
        if toc.symbols == 0 || toc.postings_offset_table == 0 {
            return Err(BlockError::corrupt(
                "index TOC",
                "missing symbols or postings",
            ));
        }
        let (head, symbols, table) = futures::try_join!(
            r.read_range(INDEX_FILENAME, 0..5),
            r.read_range(INDEX_FILENAME, toc.symbols..section_end(toc.symbols)),
            r.read_range(
                INDEX_FILENAME,
                toc.postings_offset_table..section_end(toc.postings_offset_table)
            ),
        )?;
        let mut d = Decoder::new(&head, "index header");
        if d.be32()? != INDEX_MAGIC {
            return Err(d.err("bad magic"));
        }
        if d.u8()? != INDEX_VERSION {
            return Err(d.err("only index format v2 is supported"));
        }
        let symbols = parse_symbols(&symbols)?;
        let postings_end = match toc.label_offset_table {
            0 => toc.postings_offset_table,
            t => t.min(toc.postings_offset_table),
        };
        let postings = parse_postings_table(&table, postings_end)?;
        Ok(Self {
            r,
            meta,
            toc,
            symbols,
            postings,
            series_end: section_end(toc.series),
            tombstones,
            segment_sizes: Mutex::new(HashMap::new()),
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Every label name of the block, sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.postings
            .keys()
            .filter(|n| !n.is_empty())
            .map(String::as_str)
            .collect()
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        match name {
            "" => Vec::new(),
            _ => self
                .postings
                .get(name)
                .map(|v| v.iter().map(|(v, _)| v.as_str()).collect())
                .unwrap_or_default(),
        }
    }

    /// Refs of the series matching every matcher (none: all series), ascending.
    async fn postings_for(&self, matchers: &[Matcher]) -> Result<Vec<u32>, BlockError> {
        // Positive sets are intersected; sets of matchers that accept a missing label are
        // subtracted as the series whose value they reject (Prometheus' PostingsForMatchers).
        let mut wanted: Vec<Vec<PostingsRange>> = Vec::new();
        let mut unwanted: Vec<PostingsRange> = Vec::new();
        for m in matchers {
            let values = self.postings.get(&m.name).filter(|_| !m.name.is_empty());
            let values = values.map(Vec::as_slice).unwrap_or(&[]);
            if m.matches_empty() {
                unwanted.extend(values.iter().filter(|(v, _)| !m.matches(v)).map(|x| x.1));
            } else {
                let hits: Vec<PostingsRange> = match m.op {
                    MatchOp::Equal => values
                        .binary_search_by(|(v, _)| v.as_str().cmp(&m.value))
                        .map(|i| vec![values[i].1])
                        .unwrap_or_default(),
                    _ => values
                        .iter()
                        .filter(|(v, _)| m.matches(v))
                        .map(|x| x.1)
                        .collect(),
                };
                if hits.is_empty() {
                    return Ok(Vec::new());
                }
                wanted.push(hits);
            }
        }
        if wanted.is_empty() {
            let all = self
                .postings
                .get("")
                .and_then(|v| v.first())
                .ok_or_else(|| BlockError::corrupt("index", "no all-series postings"))?;
            wanted.push(vec![all.1]);
        }
        let groups: Vec<&[PostingsRange]> = wanted
            .iter()
            .map(Vec::as_slice)
            .chain((!unwanted.is_empty()).then_some(unwanted.as_slice()))
            .collect();
        let flat: Vec<PostingsRange> = groups.iter().flat_map(|g| g.iter().copied()).collect();
        let lists = self.read_postings(&flat).await?;
        let mut lists = lists.into_iter();
        let mut result: Option<Vec<u32>> = None;
        for (i, g) in groups.iter().enumerate() {
            let union = union_all(lists.by_ref().take(g.len()).collect());
            let is_unwanted = !unwanted.is_empty() && i == groups.len() - 1;
            result = Some(match (result, is_unwanted) {
                (None, _) => union,
                (Some(r), false) => intersect(&r, &union),
                (Some(r), true) => subtract(&r, &union),
            });
        }
        Ok(result.unwrap_or_default())
    }

    /// Reads and decodes postings lists, in the order given.
    async fn read_postings(&self, ranges: &[PostingsRange]) -> Result<Vec<Vec<u32>>, BlockError> {
        let wanted: Vec<Range<u64>> = ranges.iter().map(|p| p.start..p.end).collect();
        let fetched = self.fetch(INDEX_FILENAME, &wanted).await?;
        wanted
            .iter()
            .map(|w| parse_postings(&fetched.slice(w)?))
            .collect()
    }

    /// Reads the entries of series `refs` (ascending).
    async fn read_series(&self, refs: &[u32]) -> Result<Vec<(u64, SeriesEntry)>, BlockError> {
        let guesses: Vec<Range<u64>> = refs
            .iter()
            .map(|&r| {
                let at = u64::from(r) * 16;
                at..(at + SERIES_GUESS).min(self.series_end)
            })
            .collect();
        for g in &guesses {
            if g.start < self.toc.series || g.start >= self.series_end {
                return Err(BlockError::corrupt(
                    "postings",
                    "series ref outside the series",
                ));
            }
        }
        let fetched = self.fetch(INDEX_FILENAME, &guesses).await?;
        let mut out = Vec::with_capacity(refs.len());
        let mut short = Vec::new();
        for (&r, g) in refs.iter().zip(&guesses) {
            match parse_series(&fetched.slice(g)?, &self.symbols)? {
                Ok((s, _)) => out.push((u64::from(r), s)),
                Err(need) => short.push((u64::from(r), g.start..g.start + need)),
            }
        }
        let full = try_join_all(
            short
                .iter()
                .map(|(_, range)| self.r.read_range(INDEX_FILENAME, range.clone())),
        )
        .await?;
        for ((r, _), b) in short.iter().zip(full) {
            match parse_series(&b, &self.symbols)? {
                Ok((s, _)) => out.push((*r, s)),
                Err(_) => return Err(BlockError::corrupt("series", "length beyond its range")),
            }
        }
        out.sort_unstable_by_key(|(r, _)| *r);
        Ok(out)
    }

    /// The label sets of the series matching `matchers`, without reading chunks (the `/series`
    /// and `/labels` APIs).
    pub async fn series_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>, BlockError> {
        let refs = self.postings_for(matchers).await?;
        Ok(self
            .read_series(&refs)
            .await?
            .into_iter()
            .map(|(_, s)| s.labels)
            .collect())
    }

    /// The series matching every matcher with their chunks overlapping `[mint, maxt]`.
    pub async fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesChunks>, BlockError> {
        if maxt < mint || maxt < self.meta.min_time || mint >= self.meta.max_time {
            return Ok(Vec::new());
        }
        let refs = self.postings_for(matchers).await?;
        let series = self.read_series(&refs).await?;
        self.with_chunks(series, mint, maxt).await
    }

    /// Series in index order, which is label order, at most `limit` entries read per call, with
    /// their chunks overlapping `[mint, maxt]` (series without any are left out). Start with
    /// `from = None` and continue with the returned [`SeriesBatch::next`] until it is `None`.
    /// The series section is read sequentially in ranges, as Prometheus' index writer scans it,
    /// so memory holds one batch whatever the size of the block.
    pub async fn series_batch(
        &self,
        from: Option<u64>,
        limit: usize,
        mint: i64,
        maxt: i64,
    ) -> Result<SeriesBatch, BlockError> {
        let limit = limit.max(1);
        let mut at = match from {
            None => self.toc.series.next_multiple_of(16),
            Some(r) => r
                .checked_mul(16)
                .filter(|&at| at >= self.toc.series)
                .ok_or_else(|| BlockError::Invalid(format!("series ref {r} out of range")))?,
        };
        let mut entries = Vec::new();
        let (mut buf, mut buf_at) = (Bytes::new(), at);
        while entries.len() < limit && at < self.series_end {
            let off = (at - buf_at) as usize;
            let rest = buf.get(off..).unwrap_or_default();
            let parsed = match rest.first() {
                // Zero bytes are padding (Prometheus' readers skip them too).
                Some(0) => {
                    at += 16;
                    continue;
                }
                Some(_) => parse_series(rest, &self.symbols)?,
                None => Err(0),
            };
            match parsed {
                Ok((entry, len)) => {
                    entries.push((at / 16, entry));
                    at = (at + len).next_multiple_of(16);
                }
                Err(_) if buf_at + buf.len() as u64 >= self.series_end => {
                    return Err(BlockError::corrupt("series", "entry past the series"));
                }
                Err(need) => {
                    let guess = ((limit - entries.len()) as u64 * self.series_size() * 9 / 8)
                        .clamp(MERGE_GAP, SCAN_MAX);
                    let end = (at + guess.max(need)).min(self.series_end);
                    buf = self.r.read_range(INDEX_FILENAME, at..end).await?;
                    buf_at = at;
                }
            }
        }
        let next = (at < self.series_end).then_some(at / 16);
        let series = match maxt < mint || maxt < self.meta.min_time || mint >= self.meta.max_time {
            true => Vec::new(),
            false => self.with_chunks(entries, mint, maxt).await?,
        };
        Ok(SeriesBatch { series, next })
    }

    /// The average size of a series entry: the series section over the length of the
    /// all-series postings list.
    fn series_size(&self) -> u64 {
        let all = self.postings.get("").and_then(|v| v.first());
        let n = all.map_or(0, |(_, p)| (p.end - p.start).saturating_sub(12) / 4);
        match n {
            0 => SERIES_GUESS,
            n => (self.series_end - self.toc.series).div_ceil(n),
        }
    }

    /// The sorted symbol table of the index: every label name and value of the block.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Reads the chunks of `series` overlapping `[mint, maxt]`; series without any are left out.
    async fn with_chunks(
        &self,
        series: Vec<(u64, SeriesEntry)>,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesChunks>, BlockError> {
        // Every chunk ref of the selected series bounds the chunk before it in its segment.
        let mut known: Vec<u64> = series
            .iter()
            .flat_map(|(_, s)| s.chunks.iter().map(|c| c.r))
            .collect();
        known.sort_unstable();
        let mut by_segment: BTreeMap<u32, Vec<Range<u64>>> = BTreeMap::new();
        for (_, s) in &series {
            for c in s
                .chunks
                .iter()
                .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            {
                let (seg, off) = ((c.r >> 32) as u32, c.r & 0xffff_ffff);
                let next = known
                    .get(known.partition_point(|&k| k <= c.r))
                    .filter(|&&k| k >> 32 == c.r >> 32)
                    .map(|&k| k & 0xffff_ffff);
                let end = next.unwrap_or(u64::MAX).min(off + CHUNK_GUESS);
                by_segment.entry(seg).or_default().push(off..end);
            }
        }
        let segments = try_join_all(
            by_segment
                .into_iter()
                .map(|(seg, ranges)| self.read_chunks(seg, ranges)),
        )
        .await?;
        let chunks: HashMap<u64, (Encoding, Bytes)> = segments.into_iter().flatten().collect();

        let mut out = Vec::with_capacity(series.len());
        for (r, s) in series {
            let mut metas = Vec::new();
            for c in s
                .chunks
                .iter()
                .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            {
                let (encoding, data) = chunks
                    .get(&c.r)
                    .cloned()
                    .ok_or_else(|| BlockError::corrupt("chunk", "not read"))?;
                metas.push(ChunkMeta {
                    min_t: c.min_t,
                    max_t: c.max_t,
                    encoding,
                    data,
                });
            }
            if metas.is_empty() {
                continue;
            }
            out.push(SeriesChunks {
                labels: s.labels,
                chunks: metas,
                deleted: self.tombstones.get(&r).cloned().unwrap_or_default(),
            });
        }
        Ok(out)
    }

    async fn segment_size(&self, seg: u32) -> Result<u64, BlockError> {
        if let Some(&n) = self.sizes().get(&seg) {
            return Ok(n);
        }
        let name = format!("{CHUNKS_DIR}/{}", segment_name(seg));
        let n = self.r.size(&name).await?;
        let head = self.r.read_range(&name, 0..8.min(n)).await?;
        check_segment_header(&head)?;
        self.sizes().insert(seg, n);
        Ok(n)
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, HashMap<u32, u64>> {
        // A panic while holding this lock leaves only a complete map behind.
        self.segment_sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the chunks at the starts of `ranges` (upper bounds) in segment `seg`.
    async fn read_chunks(
        &self,
        seg: u32,
        mut ranges: Vec<Range<u64>>,
    ) -> Result<Vec<(u64, (Encoding, Bytes))>, BlockError> {
        let size = self.segment_size(seg).await?;
        for r in &mut ranges {
            if r.start < 8 || r.start >= size {
                return Err(BlockError::corrupt(
                    "series",
                    "chunk ref outside its segment",
                ));
            }
            r.end = r.end.min(size);
        }
        let name = format!("{CHUNKS_DIR}/{}", segment_name(seg));
        let fetched = self.fetch(&name, &ranges).await?;
        let mut out = Vec::with_capacity(ranges.len());
        for r in &ranges {
            let chunk = match parse_chunk(&fetched.slice(r)?)? {
                Ok(c) => c,
                Err(need) => {
                    let end = (r.start + need as u64).min(size);
                    let b = self.r.read_range(&name, r.start..end).await?;
                    parse_chunk(&b)?
                        .map_err(|_| BlockError::corrupt("chunk", "longer than its segment"))?
                }
            };
            out.push((u64::from(seg) << 32 | r.start, chunk));
        }
        Ok(out)
    }

    /// Fetches `wanted` ranges of `file`, merging close ones, concurrently.
    async fn fetch(&self, file: &str, wanted: &[Range<u64>]) -> Result<Fetched, BlockError> {
        let mut sorted: Vec<Range<u64>> = wanted.to_vec();
        sorted.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::new();
        for r in sorted {
            match merged.last_mut() {
                Some(m) if r.start <= m.end + MERGE_GAP => m.end = m.end.max(r.end),
                _ => merged.push(r),
            }
        }
        let parts = try_join_all(merged.iter().map(|m| self.r.read_range(file, m.clone()))).await?;
        Ok(Fetched {
            parts: merged.into_iter().map(|m| m.start).zip(parts).collect(),
        })
    }
}

/// Merged ranges read from one file, by start offset.
struct Fetched {
    parts: Vec<(u64, Bytes)>,
}

impl Fetched {
    /// The bytes of `r`, which lies within one fetched part.
    fn slice(&self, r: &Range<u64>) -> Result<Bytes, BlockError> {
        let i = self.parts.partition_point(|(s, _)| *s <= r.start);
        let (start, b) = i
            .checked_sub(1)
            .map(|i| &self.parts[i])
            .ok_or_else(|| BlockError::corrupt("index", "range not read"))?;
        let (from, to) = ((r.start - start) as usize, (r.end - start) as usize);
        if to > b.len() || from > to {
            return Err(BlockError::corrupt("index", "range not read"));
        }
        Ok(b.slice(from..to))
    }
}

fn parse_symbols(b: &[u8]) -> Result<Vec<String>, BlockError> {
    let content = checked_section(b, "symbol table")?;
    let mut d = Decoder::new(content, "symbol table");
    let n = d.be32()?;
    // Each symbol takes at least one byte: a count beyond the content is corrupt.
    if n as usize > d.len() {
        return Err(d.err("more symbols than bytes"));
    }
    let symbols = (0..n)
        .map(|_| d.str().map(str::to_string))
        .collect::<Result<Vec<_>, _>>()?;
    if !d.is_empty() {
        return Err(d.err("trailing bytes"));
    }
    Ok(symbols)
}

type PostingsTable = BTreeMap<String, Vec<(String, PostingsRange)>>;

/// Parses the postings offset table; `postings_end` is where the postings section ends.
fn parse_postings_table(b: &[u8], postings_end: u64) -> Result<PostingsTable, BlockError> {
    let content = checked_section(b, "postings offset table")?;
    let mut d = Decoder::new(content, "postings offset table");
    let n = d.be32()?;
    if n as usize > d.len() {
        return Err(d.err("more entries than bytes"));
    }
    let mut entries: Vec<(&str, &str, u64)> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if d.uvarint()? != 2 {
            return Err(d.err("entry without exactly a name and a value"));
        }
        let (name, value, off) = (d.str()?, d.str()?, d.uvarint()?);
        if entries.last().is_some_and(|l| (l.0, l.1) >= (name, value)) {
            return Err(d.err("entries out of order"));
        }
        if off >= postings_end {
            return Err(d.err("offset past the postings"));
        }
        entries.push((name, value, off));
    }
    let mut starts: Vec<u64> = entries.iter().map(|e| e.2).collect();
    starts.sort_unstable();
    let mut table = PostingsTable::new();
    for (name, value, start) in entries {
        let end = starts
            .get(starts.partition_point(|&s| s <= start))
            .copied()
            .unwrap_or(postings_end);
        table
            .entry(name.to_string())
            .or_default()
            .push((value.to_string(), PostingsRange { start, end }));
    }
    Ok(table)
}

fn parse_postings(b: &[u8]) -> Result<Vec<u32>, BlockError> {
    let content = checked_section(b, "postings")?;
    let mut d = Decoder::new(content, "postings");
    let n = d.be32()? as usize;
    if d.len() != n.saturating_mul(4) {
        return Err(d.err("length disagrees with the entry count"));
    }
    let refs = (0..n).map(|_| d.be32()).collect::<Result<Vec<_>, _>>()?;
    if !refs.windows(2).all(|w| w[0] < w[1]) {
        return Err(d.err("refs not ascending"));
    }
    Ok(refs)
}

/// A chunk as a series entry describes it.
struct ChunkEntry {
    min_t: i64,
    max_t: i64,
    r: u64,
}

struct SeriesEntry {
    labels: Labels,
    chunks: Vec<ChunkEntry>,
}

/// Parses the series entry at the start of `b` and returns it with its length in bytes;
/// `Ok(Err(n))`: `b` is short, the entry takes `n`.
fn parse_series(
    b: &[u8],
    symbols: &[String],
) -> Result<Result<(SeriesEntry, u64), u64>, BlockError> {
    let mut d = Decoder::new(b, "series");
    let len = match d.uvarint() {
        Ok(n) => n,
        Err(_) if b.len() < 10 => return Ok(Err(10)),
        Err(e) => return Err(e),
    };
    let head = (b.len() - d.len()) as u64;
    let total = len.saturating_add(head + 4);
    if (b.len() as u64) < total {
        return Ok(Err(total));
    }
    let body = d.take(len as usize)?;
    if crc32c(body) != d.be32()? {
        return Err(d.err("checksum mismatch"));
    }
    let mut d = Decoder::new(body, "series");
    let sym = |d: &mut Decoder<'_>| -> Result<String, BlockError> {
        let i = d.uvarint32()? as usize;
        symbols
            .get(i)
            .cloned()
            .ok_or_else(|| d.err("symbol ref out of range"))
    };
    let n = d.uvarint()?;
    if n > d.len() as u64 {
        return Err(d.err("more labels than bytes"));
    }
    let mut labels = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (name, value) = (sym(&mut d)?, sym(&mut d)?);
        if labels.last().is_some_and(|l: &Label| l.name >= name) {
            return Err(d.err("labels not sorted"));
        }
        labels.push(Label { name, value });
    }
    let n = d.uvarint()?;
    if n > d.len() as u64 {
        return Err(d.err("more chunks than bytes"));
    }
    let mut chunks: Vec<ChunkEntry> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let c = match chunks.last() {
            None => {
                let min_t = d.varint()?;
                let max_t = min_t.wrapping_add(d.uvarint()? as i64);
                ChunkEntry {
                    min_t,
                    max_t,
                    r: d.uvarint()?,
                }
            }
            Some(p) => {
                let min_t = p.max_t.wrapping_add(d.uvarint()? as i64);
                let max_t = min_t.wrapping_add(d.uvarint()? as i64);
                ChunkEntry {
                    min_t,
                    max_t,
                    r: p.r.wrapping_add(d.varint()? as u64),
                }
            }
        };
        chunks.push(c);
    }
    if !d.is_empty() {
        return Err(d.err("trailing bytes"));
    }
    let entry = SeriesEntry {
        labels: Labels::from_sorted_unchecked(labels),
        chunks,
    };
    Ok(Ok((entry, total)))
}

fn union_all(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.swap_remove(0),
        _ => {
            let mut all: Vec<u32> = lists.into_iter().flatten().collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    a.iter()
        .copied()
        .filter(|&x| {
            while j < b.len() && b[j] < x {
                j += 1;
            }
            j >= b.len() || b[j] != x
        })
        .collect()
}
