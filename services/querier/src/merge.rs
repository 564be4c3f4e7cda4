//! Where ingester and block reads meet. [`QueryStore`] asks the ingesters when a query reaches
//! into the last `querier.query_ingesters_within` and the blocks when it starts before now minus
//! `querier.query_store_after` (0s: always), and [`merge_series`] merges every copy of a series —
//! ingester replicas, the RF blocks the replicas shipped for the same range, overlapping blocks —
//! into one series with one sample per timestamp.

use std::future::Future;

use hestia_block::{ChunkMeta, SeriesChunks};
use hestia_chunkenc::prom_histogram::PromHistogramIter;
use hestia_chunkenc::{Encoding, HistogramIter, XorIter, XorSeek};
use hestia_model::{is_stale_nan, Labels, Matcher, Sample, TenantId};
use hestia_promql::{CounterResetHint, FloatHistogram, SelectHints, Series, Span};
use hestia_proto::ingester as pb;
use hestia_ring::now_ms;
use ulid::Ulid;

use crate::blocks::BlockStore;
use crate::store::{ChunkBudget, IngesterStore, StoreError};

/// One source's copy of a series' chunks.
pub enum SeriesPart {
    /// Chunks an ingester sent.
    Ingester(Vec<pb::Chunk>),
    /// Chunks read from a block, with the intervals its tombstones delete.
    Block {
        block: Ulid,
        chunks: Vec<ChunkMeta>,
        deleted: Vec<(i64, i64)>,
    },
}

impl SeriesPart {
    /// The labels and part of a series read from `block`.
    pub fn from_block(block: Ulid, s: SeriesChunks) -> (Labels, Self) {
        (
            s.labels,
            SeriesPart::Block {
                block,
                chunks: s.chunks,
                deleted: s.deleted,
            },
        )
    }
}

/// The tenant's data wherever it is: ingesters, and blocks when the querier has a block store.
#[derive(Clone)]
pub struct QueryStore {
    pub(crate) ingesters: IngesterStore,
    blocks: Option<BlockStore>,
    /// 0: always ask the ingesters.
    ingesters_within_ms: i64,
    /// 0: always read the blocks.
    store_after_ms: i64,
}

impl QueryStore {
    pub fn new(
        ingesters: IngesterStore,
        blocks: Option<BlockStore>,
        query_ingesters_within: std::time::Duration,
        query_store_after: std::time::Duration,
    ) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            ingesters,
            blocks,
            ingesters_within_ms: ms(query_ingesters_within),
            store_after_ms: ms(query_store_after),
        }
    }

    /// Whether `[mint, maxt]` needs the ingesters (always without blocks).
    fn wants_ingesters(&self, maxt: i64) -> bool {
        self.blocks.is_none()
            || self.ingesters_within_ms == 0
            || maxt >= now_ms().saturating_sub(self.ingesters_within_ms)
    }

    /// The block store when `[mint, ...]` needs it.
    fn blocks_for(&self, mint: i64) -> Option<&BlockStore> {
        self.blocks.as_ref().filter(|_| {
            self.store_after_ms == 0 || mint < now_ms().saturating_sub(self.store_after_ms)
        })
    }

    /// Series matching `matchers` with their samples in `[hints.mint, hints.maxt]` (only the
    /// newest with `latest_only`), from every source the range needs. Ingester and block chunks
    /// are charged to `chunks`.
    pub async fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        hints: &SelectHints,
        chunks: &ChunkBudget,
    ) -> Result<Vec<Series>, StoreError> {
        let from_ingesters = async {
            if !self.wants_ingesters(hints.maxt) {
                return Ok(Vec::new());
            }
            self.ingesters
                .query_stream(tenant, matchers, hints, chunks)
                .await
        };
        let from_blocks = async {
            match self.blocks_for(hints.mint) {
                Some(b) => {
                    b.select(tenant, matchers, hints.mint, hints.maxt, chunks)
                        .await
                }
                None => Ok(Vec::new()),
            }
        };
        let (ingested, blocks) = futures::try_join!(from_ingesters, from_blocks)?;
        let mut parts: Vec<(Labels, SeriesPart)> =
            Vec::with_capacity(ingested.len() + blocks.len());
        parts.extend(
            ingested
                .into_iter()
                .map(|(labels, c)| (labels, SeriesPart::Ingester(c))),
        );
        parts.extend(
            blocks
                .into_iter()
                .map(|(id, s)| SeriesPart::from_block(id, s)),
        );
        merge_series(parts, hints)
    }

    pub async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        union_sorted(
            self.wants_ingesters(maxt)
                .then(|| self.ingesters.series(tenant, matchers, mint, maxt)),
            self.blocks_for(mint)
                .map(|b| b.series(tenant, matchers, mint, maxt)),
        )
        .await
    }

    pub async fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        union_sorted(
            self.wants_ingesters(maxt)
                .then(|| self.ingesters.label_names(tenant, matchers, mint, maxt)),
            self.blocks_for(mint)
                .map(|b| b.label_names(tenant, matchers, mint, maxt)),
        )
        .await
    }

    pub async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        union_sorted(
            self.wants_ingesters(maxt).then(|| {
                self.ingesters
                    .label_values(tenant, name, matchers, mint, maxt)
            }),
            self.blocks_for(mint)
                .map(|b| b.label_values(tenant, name, matchers, mint, maxt)),
        )
        .await
    }
}

/// The answers of the sources a range needs (`None`: not asked), merged sorted and deduplicated.
async fn union_sorted<T: Ord>(
    ingesters: Option<impl Future<Output = Result<Vec<T>, StoreError>>>,
    blocks: Option<impl Future<Output = Result<Vec<T>, StoreError>>>,
) -> Result<Vec<T>, StoreError> {
    async fn or_empty<T>(
        f: Option<impl Future<Output = Result<Vec<T>, StoreError>>>,
    ) -> Result<Vec<T>, StoreError> {
        match f {
            Some(f) => f.await,
            None => Ok(Vec::new()),
        }
    }
    let (mut out, blocks) = futures::try_join!(or_empty(ingesters), or_empty(blocks))?;
    out.extend(blocks);
    out.sort();
    out.dedup();
    Ok(out)
}

/// Merges the copies of each series (parts with equal labels, from any source) into one series
/// of its samples in `[hints.mint, hints.maxt]`, sorted by labels, one sample per timestamp
/// (the first copy's when copies disagree); with `hints.latest_only`, only the newest sample.
/// Series left without samples are dropped.
pub fn merge_series(
    mut parts: Vec<(Labels, SeriesPart)>,
    hints: &SelectHints,
) -> Result<Vec<Series>, StoreError> {
    let (mint, maxt) = (hints.mint, hints.maxt);
    // Each source answers in label order, so the sort mostly merges runs; a stable sort keeps
    // the copies of a series in source order. Copies of a series end up adjacent.
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(Labels, Samples)> = Vec::with_capacity(parts.len());
    for (labels, part) in parts {
        if merged.last().is_none_or(|(last, _)| *last != labels) {
            merged.push((labels, Samples::new()));
        }
        if let Some((_, samples)) = merged.last_mut() {
            match &part {
                SeriesPart::Ingester(chunks) => {
                    for c in chunks {
                        decode_ingester_chunk(c, mint, maxt, samples)?;
                    }
                }
                SeriesPart::Block {
                    block,
                    chunks,
                    deleted,
                } => {
                    for c in chunks {
                        decode_block_chunk(c, deleted, mint, maxt, samples)
                            .map_err(|e| StoreError::block(*block, e.into()))?;
                    }
                }
            }
        }
    }
    Ok(merged
        .into_iter()
        .filter_map(|(labels, samples)| {
            let Samples {
                mut floats,
                mut histograms,
                floats_in_order,
            } = samples;
            // One copy's chunks come in time order; copies overlap.
            if !floats_in_order {
                floats.sort_by_key(|s| s.t);
                floats.dedup_by_key(|s| s.t);
            }
            histograms.sort_by_key(|h| h.0);
            histograms.dedup_by_key(|h| h.0);
            if hints.latest_only {
                keep_newest(&mut floats, &mut histograms);
            }
            let s = Series {
                labels,
                floats,
                histograms,
            };
            (!s.is_empty()).then_some(s)
        })
        .collect())
}

/// A series' floats and native histograms.
struct Samples {
    floats: Vec<Sample>,
    histograms: Vec<(i64, FloatHistogram)>,
    /// Whether `floats` has strictly increasing timestamps (no sort or dedup needed).
    floats_in_order: bool,
}

impl Samples {
    fn new() -> Self {
        Self {
            floats: Vec::new(),
            histograms: Vec::new(),
            floats_in_order: true,
        }
    }

    fn push_float(&mut self, t: i64, v: f64) {
        if self.floats.last().is_some_and(|last| last.t >= t) {
            self.floats_in_order = false;
        }
        self.floats.push(Sample { t, v });
    }

    fn push_histogram(&mut self, t: i64, h: hestia_chunkenc::Histogram) {
        // A histogram stale marker (sum is the stale NaN) ends the series like a float one; the
        // engine only recognises the float form.
        if is_stale_nan(h.sum) {
            self.push_float(t, h.sum);
        } else {
            self.histograms.push((t, to_float_histogram(h)));
        }
    }
}

/// Keeps only the newest of a series' time-sorted samples, float or histogram.
fn keep_newest(floats: &mut Vec<Sample>, histograms: &mut Vec<(i64, FloatHistogram)>) {
    match (floats.last().map(|s| s.t), histograms.last().map(|h| h.0)) {
        (Some(f), Some(h)) if f > h => histograms.clear(),
        (Some(_), Some(_)) => floats.clear(),
        _ => {}
    }
    if floats.len() > 1 {
        floats.drain(..floats.len() - 1);
    }
    if histograms.len() > 1 {
        histograms.drain(..histograms.len() - 1);
    }
}

fn xor_seek(p: &pb::XorSeek) -> Result<XorSeek, StoreError> {
    let narrow = || StoreError::Corrupt("xor chunk: seek point out of range".into());
    Ok(XorSeek {
        index: u16::try_from(p.index).map_err(|_| narrow())?,
        bit: u16::try_from(p.bit).map_err(|_| narrow())?,
        t: p.t,
        t_delta: p.t_delta,
        v_bits: p.v_bits,
        leading: u8::try_from(p.leading).map_err(|_| narrow())?,
        trailing: u8::try_from(p.trailing).map_err(|_| narrow())?,
    })
}

fn decode_ingester_chunk(
    c: &pb::Chunk,
    mint: i64,
    maxt: i64,
    out: &mut Samples,
) -> Result<(), StoreError> {
    let corrupt = |e: &hestia_chunkenc::ChunkError| StoreError::Corrupt(e.to_string());
    match pb::ChunkEncoding::try_from(c.encoding) {
        Ok(pb::ChunkEncoding::Xor) => {
            let mut iter = match &c.seek {
                Some(p) => XorIter::resume_at(&c.data, &xor_seek(p)?),
                None => XorIter::new(&c.data),
            }
            .map_err(|e| corrupt(&e))?;
            out.floats.reserve(iter.size_hint().1.unwrap_or(0));
            for (t, v) in iter.by_ref() {
                if t > maxt {
                    break;
                }
                if t >= mint {
                    out.push_float(t, v);
                }
            }
            iter.err().map_or(Ok(()), |e| Err(corrupt(&e)))
        }
        Ok(pb::ChunkEncoding::Histogram) => {
            let mut iter = HistogramIter::new(&c.data).map_err(|e| corrupt(&e))?;
            for (t, h) in iter.by_ref() {
                if t > maxt {
                    break;
                }
                if t >= mint {
                    out.push_histogram(t, h);
                }
            }
            iter.err().map_or(Ok(()), |e| Err(corrupt(e)))
        }
        Err(_) => Err(StoreError::Corrupt(format!(
            "unknown chunk encoding {}",
            c.encoding
        ))),
    }
}

/// Decodes a block chunk's samples in `[mint, maxt]` outside the `deleted` intervals.
fn decode_block_chunk(
    c: &ChunkMeta,
    deleted: &[(i64, i64)],
    mint: i64,
    maxt: i64,
    out: &mut Samples,
) -> Result<(), hestia_chunkenc::ChunkError> {
    let keep = |t: i64| t >= mint && !deleted.iter().any(|&(a, b)| t >= a && t <= b);
    match c.encoding {
        Encoding::Xor => {
            let mut iter = XorIter::new(&c.data)?;
            for (t, v) in iter.by_ref() {
                if t > maxt {
                    break;
                }
                if keep(t) {
                    out.push_float(t, v);
                }
            }
            iter.err().map_or(Ok(()), Err)
        }
        enc => {
            let mut iter = PromHistogramIter::new(enc, &c.data)?;
            for (t, h) in iter.by_ref() {
                if t > maxt {
                    break;
                }
                if keep(t) {
                    out.push_histogram(t, h);
                }
            }
            iter.err().map_or(Ok(()), |e| Err(e.clone()))
        }
    }
}

fn to_spans(spans: Vec<hestia_chunkenc::Span>) -> Vec<Span> {
    spans
        .into_iter()
        .map(|s| Span {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

fn to_float_histogram(h: hestia_chunkenc::Histogram) -> FloatHistogram {
    use hestia_chunkenc::CounterResetHint as Hint;
    FloatHistogram {
        counter_reset_hint: match h.counter_reset_hint {
            Hint::Unknown => CounterResetHint::Unknown,
            Hint::CounterReset => CounterResetHint::CounterReset,
            Hint::NotCounterReset => CounterResetHint::NotCounterReset,
            Hint::Gauge => CounterResetHint::Gauge,
        },
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count,
        count: h.count,
        sum: h.sum,
        positive_spans: to_spans(h.positive_spans),
        negative_spans: to_spans(h.negative_spans),
        positive_buckets: h.positive_buckets,
        negative_buckets: h.negative_buckets,
        custom_values: h.custom_values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_block::{xor_chunks, DEFAULT_CHUNK_SAMPLES};

    fn labels(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name.to_string()), ("job", "j".to_string())])
    }

    fn samples(ts: impl IntoIterator<Item = i64>, v: f64) -> Vec<(i64, f64)> {
        ts.into_iter().map(|t| (t, v + t as f64)).collect()
    }

    fn ingester(name: &str, s: &[(i64, f64)]) -> (Labels, SeriesPart) {
        let chunks = xor_chunks(s, DEFAULT_CHUNK_SAMPLES)
            .unwrap()
            .into_iter()
            .map(|c| pb::Chunk {
                min_time_ms: c.min_t,
                max_time_ms: c.max_t,
                data: c.data.to_vec().into(),
                encoding: pb::ChunkEncoding::Xor as i32,
                seek: None,
            })
            .collect();
        (labels(name), SeriesPart::Ingester(chunks))
    }

    fn block(name: &str, s: &[(i64, f64)], deleted: Vec<(i64, i64)>) -> (Labels, SeriesPart) {
        (
            labels(name),
            SeriesPart::Block {
                block: Ulid::new(),
                chunks: xor_chunks(s, DEFAULT_CHUNK_SAMPLES).unwrap(),
                deleted,
            },
        )
    }

    fn hints(mint: i64, maxt: i64, latest_only: bool) -> SelectHints {
        SelectHints {
            mint,
            maxt,
            latest_only,
        }
    }

    fn points(s: &Series) -> Vec<(i64, f64)> {
        s.floats.iter().map(|x| (x.t, x.v)).collect()
    }

    #[test]
    fn blocks_and_ingesters_merge_by_labels_with_one_sample_per_timestamp() {
        // Three replicas' blocks of 0..=300 s, two ingester replicas of 240..=600 s, and a block
        // of another series; every sample every 15 s.
        let old = samples((0..=300_000).step_by(15_000), 1.0);
        let new = samples((240_000..=600_000).step_by(15_000), 1.0);
        let other = samples((0..=60_000).step_by(15_000), 7.0);
        let parts = vec![
            ingester("up", &new),
            block("up", &old, vec![]),
            block("other", &other, vec![]),
            block("up", &old, vec![]),
            ingester("up", &new),
            block("up", &old, vec![]),
        ];
        let out = merge_series(parts, &hints(0, 600_000, false)).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels, labels("other"));
        assert_eq!(points(&out[0]), other);
        assert_eq!(out[1].labels, labels("up"));
        let want = samples((0..=600_000).step_by(15_000), 1.0);
        assert_eq!(points(&out[1]), want);
    }

    #[test]
    fn merge_honours_the_range_tombstones_and_latest_only() {
        let s = samples((0..=120_000).step_by(10_000), 0.0);
        let parts = vec![block("up", &s, vec![(20_000, 40_000)])];
        let out = merge_series(parts, &hints(10_000, 60_000, false)).unwrap();
        assert_eq!(
            points(&out[0]),
            vec![(10_000, 10_000.0), (50_000, 50_000.0), (60_000, 60_000.0)]
        );

        let parts = vec![block("up", &s[..5], vec![]), ingester("up", &s[3..8])];
        let out = merge_series(parts, &hints(0, 65_000, true)).unwrap();
        assert_eq!(points(&out[0]), vec![(60_000, 60_000.0)]);

        // Nothing in range: the series is dropped.
        let parts = vec![block("up", &s, vec![])];
        assert!(merge_series(parts, &hints(200_000, 300_000, false))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_corrupt_block_chunk_fails_the_merge() {
        let s = samples((0..=120_000).step_by(10_000), 0.0);
        let (l, mut part) = block("up", &s, vec![]);
        if let SeriesPart::Block { chunks, .. } = &mut part {
            chunks[0].data = chunks[0].data.slice(..chunks[0].data.len() / 2);
        }
        let err = merge_series(vec![(l, part)], &hints(0, 200_000, false)).unwrap_err();
        assert!(matches!(err, StoreError::Block { .. }), "{err}");
    }
}
