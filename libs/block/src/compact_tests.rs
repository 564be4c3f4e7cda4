//! Compaction against a brute-force merge: replicas, gaps, conflicts, histograms, tombstones,
//! level merges, batch sizes, bounded reads.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hestia_chunkenc::varint::{put_uvarint, put_varint, read_uvarint};
use hestia_chunkenc::{CounterResetHint, Histogram, Span};
use hestia_model::{Labels, TenantId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ulid::Ulid;

use crate::block_tests::random_series;
use crate::*;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

#[derive(Debug, Clone)]
enum S {
    F(f64),
    H(Histogram),
}

impl S {
    /// Same value: floats bitwise, histograms bit for bit apart from "not a counter reset" hints
    /// (those depend on where a chunk starts).
    fn same(&self, o: &S) -> bool {
        match (self, o) {
            (S::F(a), S::F(b)) => a.to_bits() == b.to_bits(),
            (S::H(a), S::H(b)) => norm(a).same_bits(&norm(b)),
            _ => false,
        }
    }
}

fn norm(h: &Histogram) -> Histogram {
    let mut h = h.clone();
    if h.counter_reset_hint == CounterResetHint::NotCounterReset {
        h.counter_reset_hint = CounterResetHint::Unknown;
    }
    h
}

type Series = BTreeMap<Labels, Vec<(i64, S)>>;

fn tenant() -> TenantId {
    TenantId::parse("tenant-1").unwrap()
}

/// `n` random series (floats with stale markers, every tenth a histogram series).
fn base(seed: u64, n: usize) -> Series {
    random_series(seed, n)
        .into_iter()
        .map(|s| {
            let mut v: Vec<(i64, S)> = s.floats.into_iter().map(|(t, f)| (t, S::F(f))).collect();
            v.extend(s.histograms.into_iter().map(|(t, h)| (t, S::H(h))));
            v.sort_by_key(|x| x.0);
            (s.labels, v)
        })
        .collect()
}

/// Writes a level-1 block, cutting runs of one kind into chunks of `per_chunk` samples.
fn write(dir: &Path, series: &Series, per_chunk: u16, range: Option<(i64, i64)>) -> BlockMeta {
    let opts = BlockOptions {
        tenant: tenant(),
        ingester: Some("ingester-a1".into()),
        source: BlockSource::Ingester,
        time_range: range,
    };
    let mut w = BlockWriter::new(dir, opts, symbols_of(series.keys())).unwrap();
    for (labels, samples) in series {
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < samples.len() {
            let float = matches!(samples[i].1, S::F(_));
            let n = samples[i..]
                .iter()
                .take_while(|s| matches!(s.1, S::F(_)) == float)
                .count();
            let run = &samples[i..i + n];
            i += n;
            if float {
                let f: Vec<(i64, f64)> = run
                    .iter()
                    .map(|(t, s)| match s {
                        S::F(f) => (*t, *f),
                        S::H(_) => unreachable!(),
                    })
                    .collect();
                chunks.extend(xor_chunks(&f, per_chunk).unwrap());
            } else {
                let h: Vec<(i64, Histogram)> = run
                    .iter()
                    .map(|(t, s)| match s {
                        S::H(h) => (*t, h.clone()),
                        S::F(_) => unreachable!(),
                    })
                    .collect();
                chunks.extend(histogram_chunks(&h, per_chunk).unwrap());
            }
        }
        w.add_series(labels, &chunks).unwrap();
    }
    w.finish().unwrap()
}

async fn open(parent: &Path, ulid: Ulid) -> BlockReader<LocalDir> {
    BlockReader::open(LocalDir::new(parent.join(ulid.to_string())))
        .await
        .unwrap()
}

/// Every sample of a block.
async fn read_all(parent: &Path, ulid: Ulid) -> Series {
    let r = open(parent, ulid).await;
    let mut out = Series::new();
    for s in r.select(&[], i64::MIN, i64::MAX).await.unwrap() {
        let x = s.samples(i64::MIN, i64::MAX).unwrap();
        let mut v: Vec<(i64, S)> = x.floats.into_iter().map(|(t, f)| (t, S::F(f))).collect();
        v.extend(x.histograms.into_iter().map(|(t, h)| (t, S::H(h))));
        v.sort_by_key(|x| x.0);
        out.insert(s.labels, v);
    }
    out
}

/// Brute force: per timestamp the sample of the first block in `blocks` by ULID, with the
/// numbers of duplicates and conflicts.
fn merged(blocks: &[(Ulid, &Series)]) -> (Series, u64, u64) {
    let mut sorted = blocks.to_vec();
    sorted.sort_by_key(|b| b.0);
    let mut m: BTreeMap<Labels, BTreeMap<i64, S>> = BTreeMap::new();
    let (mut dups, mut conflicts) = (0, 0);
    for (_, series) in sorted {
        for (l, samples) in series {
            let e = m.entry(l.clone()).or_default();
            for (t, s) in samples {
                match e.get(t) {
                    Some(kept) if kept.same(s) => dups += 1,
                    Some(_) => conflicts += 1,
                    None => {
                        e.insert(*t, s.clone());
                    }
                }
            }
        }
    }
    let series = m
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(l, s)| (l, s.into_iter().collect()))
        .collect();
    (series, dups, conflicts)
}

fn expected(blocks: &[(Ulid, &Series)]) -> Series {
    merged(blocks).0
}

fn assert_same(got: &Series, want: &Series) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (l, w) in want {
        let g = &got[l];
        assert_eq!(g.len(), w.len(), "{l}");
        for (a, b) in g.iter().zip(w) {
            assert!(a.0 == b.0 && a.1.same(&b.1), "{l}: {a:?} != {b:?}");
        }
    }
}

fn count(s: &Series) -> u64 {
    s.values().map(|v| v.len() as u64).sum()
}

/// Removes each sample with probability `p`.
fn thin(s: &Series, seed: u64, p: f64) -> Series {
    let mut rng = StdRng::seed_from_u64(seed);
    s.iter()
        .map(|(l, v)| {
            let kept = v.iter().filter(|_| !rng.random_bool(p)).cloned().collect();
            (l.clone(), kept)
        })
        .collect()
}

async fn run(
    parent: &Path,
    out: &Path,
    ulids: &[Ulid],
    opts: &CompactOptions,
) -> Option<(BlockMeta, CompactStats)> {
    let mut readers = Vec::new();
    for u in ulids {
        readers.push(open(parent, *u).await);
    }
    compact(&readers, out, opts).await.unwrap()
}

/// Three replicas with the same samples, cut into the same chunks (copied once) or into
/// different ones (merged and encoded again).
#[tokio::test]
async fn identical_replicas_merge_to_one_copy() {
    let series = base(1, 150);
    let unique = count(&series);
    for chunking in [[120, 120, 120], [120, 50, 77]] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let metas: Vec<BlockMeta> = chunking
            .iter()
            .map(|&n| write(dir.path(), &series, n, None))
            .collect();
        let ulids: Vec<Ulid> = metas.iter().map(|m| m.ulid).collect();
        let (meta, stats) = run(dir.path(), &out, &ulids, &CompactOptions::new(tenant()))
            .await
            .unwrap();
        assert_eq!(stats.series, 150);
        assert_eq!(stats.samples_in, 3 * unique);
        assert_eq!(stats.samples_out, unique);
        assert_eq!(stats.duplicates, 2 * unique);
        assert_eq!((stats.conflicts, stats.dropped), (0, 0));
        let chunks = meta.stats.num_chunks;
        assert_eq!(stats.chunks_copied + stats.chunks_reencoded, chunks);
        match chunking[1] {
            120 => assert_eq!(stats.chunks_copied, chunks),
            // Series short enough for one chunk still have equal chunks.
            _ => assert!(stats.chunks_reencoded > chunks * 9 / 10, "{stats:?}"),
        }
        assert_eq!(meta.stats.num_samples, unique);
        assert_eq!(meta.stats.num_series, 150);
        assert_same(&read_all(&out, meta.ulid).await, &series);

        let mut sorted = ulids.clone();
        sorted.sort();
        assert_eq!(meta.compaction.level, 2);
        assert_eq!(meta.compaction.sources, sorted);
        assert_eq!(meta.compaction.parents.len(), 3);
        for p in &meta.compaction.parents {
            let m = metas.iter().find(|m| m.ulid == p.ulid).unwrap();
            assert_eq!((p.min_time, p.max_time), (m.min_time, m.max_time));
        }
        assert_eq!(
            meta.min_time,
            metas.iter().map(|m| m.min_time).min().unwrap()
        );
        assert_eq!(
            meta.max_time,
            metas.iter().map(|m| m.max_time).max().unwrap()
        );
        assert_eq!(meta.thanos.source, "compactor");
        assert_eq!(meta.tenant().unwrap(), tenant());
        assert_eq!(meta.ingester(), None);
        assert_eq!(
            BlockMeta::read_from_dir(&out.join(meta.ulid.to_string())).unwrap(),
            meta
        );
        // Only the new block is left in the output directory.
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    }
}

#[tokio::test]
async fn replicas_with_gaps_and_other_chunking_merge_to_the_union() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let full = base(2, 120);
    let a = thin(&full, 10, 0.1);
    let b = thin(&full, 11, 0.3);
    let c = thin(&full, 12, 0.05);
    let ma = write(dir.path(), &a, 120, None);
    let mb = write(dir.path(), &b, 37, None);
    let mc = write(dir.path(), &c, 200, None);
    let (meta, stats) = run(
        dir.path(),
        &out,
        &[ma.ulid, mb.ulid, mc.ulid],
        &CompactOptions::new(tenant()),
    )
    .await
    .unwrap();
    let want = expected(&[(ma.ulid, &a), (mb.ulid, &b), (mc.ulid, &c)]);
    assert_same(&read_all(&out, meta.ulid).await, &want);
    assert_eq!(stats.samples_out, count(&want));
    assert_eq!(stats.samples_in, count(&a) + count(&b) + count(&c));
    assert_eq!(stats.duplicates, stats.samples_in - stats.samples_out);
    assert_eq!(stats.conflicts, 0);
    // Far fewer samples are missing from all three than from any one.
    assert!(count(&want) > count(&a) && count(&want) > count(&c));
}

#[tokio::test]
async fn conflicts_keep_the_smallest_ulid_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let full = base(3, 60);
    let mut rng = StdRng::seed_from_u64(4);
    let mut changed = 0;
    let mut alter = |s: &Series| -> Series {
        s.iter()
            .map(|(l, v)| {
                let v = v
                    .iter()
                    .map(|(t, x)| match x {
                        S::F(f) if rng.random_bool(0.05) => {
                            changed += 1;
                            (*t, S::F(f + 1.0))
                        }
                        _ => (*t, x.clone()),
                    })
                    .collect();
                (l.clone(), v)
            })
            .collect()
    };
    let blocks = [full.clone(), alter(&full), alter(&full)];
    let metas: Vec<BlockMeta> = blocks
        .iter()
        .map(|s| write(dir.path(), s, 90, None))
        .collect();
    let ulids: Vec<Ulid> = metas.iter().map(|m| m.ulid).collect();
    let (want, dups, conflicts) = merged(&[
        (ulids[0], &blocks[0]),
        (ulids[1], &blocks[1]),
        (ulids[2], &blocks[2]),
    ]);
    let mut outputs = Vec::new();
    for (i, order) in [[0, 1, 2], [2, 1, 0], [1, 2, 0]].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let ulids: Vec<Ulid> = order.iter().map(|&j| ulids[j]).collect();
        let (meta, stats) = run(dir.path(), &out, &ulids, &CompactOptions::new(tenant()))
            .await
            .unwrap();
        assert_same(&read_all(&out, meta.ulid).await, &want);
        assert_eq!((stats.duplicates, stats.conflicts), (dups, conflicts));
        assert_eq!(stats.duplicates + stats.conflicts, 2 * count(&full));
        outputs.push(block_files(&out.join(meta.ulid.to_string())));
    }
    assert!(
        changed > 50 && conflicts >= changed,
        "{changed} {conflicts}"
    );
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

/// The index and chunk segments of a block (meta.json names the block and differs).
fn block_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = vec![std::fs::read(dir.join("index")).unwrap()];
    let mut segs: Vec<_> = std::fs::read_dir(dir.join(CHUNKS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    files.extend(segs.iter().map(|p| std::fs::read(p).unwrap()));
    files
}

fn hist(i: u32, float: bool) -> Histogram {
    let f = f64::from(i);
    let scale = if float { 0.25 } else { 1.0 };
    let buckets: Vec<f64> = (1..=3).map(|b| (f * f64::from(b) + 1.0) * scale).collect();
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: f * scale,
        count: f * scale + buckets.iter().sum::<f64>(),
        sum: f * 3.3,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        negative_spans: vec![],
        positive_buckets: buckets,
        negative_buckets: vec![],
        custom_values: vec![],
    }
}

fn stale_histogram() -> Histogram {
    Histogram {
        sum: f64::from_bits(STALE_NAN),
        ..Histogram::default()
    }
}

/// Floats, then integer histograms ending in a stale marker, float histograms, floats again.
fn switching(offset: i64) -> Vec<(i64, S)> {
    let t0 = 1_700_000_000_000 + offset;
    let mut v = Vec::new();
    for i in 0..400u32 {
        let t = t0 + i64::from(i) * 15_000;
        let s = match i {
            0..100 => S::F(f64::from(i)),
            100..199 => S::H(hist(i, false)),
            199 => S::H(stale_histogram()),
            200..300 => S::H(hist(i, true)),
            300 => S::F(f64::from_bits(STALE_NAN)),
            _ => S::F(f64::from(i) * 0.5),
        };
        v.push((t, s));
    }
    v
}

#[tokio::test]
async fn histograms_and_floats_switch_within_a_series() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let l = |n: &str| Labels::from_pairs([("__name__", n)]);
    let mut a = Series::new();
    a.insert(l("mixed"), switching(0));
    a.insert(l("only_a"), switching(7));
    let mut b = Series::new();
    b.insert(l("mixed"), switching(0));
    b.insert(l("only_b"), switching(3));
    let b = thin(&b, 5, 0.2);
    let ma = write(dir.path(), &a, 64, None);
    let mb = write(dir.path(), &b, 25, None);
    let (meta, stats) = run(
        dir.path(),
        &out,
        &[ma.ulid, mb.ulid],
        &CompactOptions::new(tenant()),
    )
    .await
    .unwrap();
    let want = expected(&[(ma.ulid, &a), (mb.ulid, &b)]);
    let got = read_all(&out, meta.ulid).await;
    assert_same(&got, &want);
    assert_eq!(stats.conflicts, 0);
    assert_eq!(stats.duplicates, b[&l("mixed")].len() as u64);
    // Stale markers come back bit for bit.
    let mixed = &got[&l("mixed")];
    assert!(matches!(&mixed[300].1, S::F(f) if f.to_bits() == STALE_NAN));
    assert!(matches!(&mixed[199].1, S::H(h) if h.sum.to_bits() == STALE_NAN));
    assert!(meta.stats.num_histogram_samples > 0 && meta.stats.num_float_samples > 0);
    // Series of one source with chunks not overlapping are copied.
    assert!(stats.chunks_copied > 0 && stats.chunks_reencoded > 0);
}

#[tokio::test]
async fn stale_markers_survive_bitwise() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let series = base(6, 200);
    let stale = |s: &Series| {
        s.values()
            .flatten()
            .filter(|x| matches!(x.1, S::F(f) if f.to_bits() == STALE_NAN))
            .count()
    };
    assert!(stale(&series) > 20);
    let ma = write(dir.path(), &series, 120, None);
    let mb = write(dir.path(), &thin(&series, 1, 0.5), 50, None);
    let (meta, _) = run(
        dir.path(),
        &out,
        &[ma.ulid, mb.ulid],
        &CompactOptions::new(tenant()),
    )
    .await
    .unwrap();
    let got = read_all(&out, meta.ulid).await;
    assert_eq!(stale(&got), stale(&series));
    assert_same(&got, &series);
}

const HOUR: i64 = 3_600_000;

/// Six adjacent 2h blocks → one 12h block of copied chunks; two of those → level 3.
#[tokio::test]
async fn level_merges_copy_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let series = base(7, 80);
    // random_series' samples lie within 6100 s after 1_700_000_000_000.
    let (t0, start) = (1_700_000_000_000, 1_700_006_400_000); // `start`: a multiple of 2h.
    let shift = |by: i64| -> Series {
        series
            .iter()
            .map(|(l, v)| {
                (
                    l.clone(),
                    v.iter().map(|(t, x)| (t + by, x.clone())).collect(),
                )
            })
            .collect()
    };
    let mut parts = Vec::new();
    let mut metas = Vec::new();
    for i in 0..12 {
        let from = start + i * 2 * HOUR;
        let s = shift(from - t0);
        metas.push(write(dir.path(), &s, 120, Some((from, from + 2 * HOUR))));
        parts.push(s);
    }
    let mut level2 = Vec::new();
    for half in 0..2 {
        let out = dir.path().join(format!("l2-{half}"));
        let ms = &metas[half * 6..half * 6 + 6];
        let ulids: Vec<Ulid> = ms.iter().map(|m| m.ulid).collect();
        let (meta, stats) = run(dir.path(), &out, &ulids, &CompactOptions::new(tenant()))
            .await
            .unwrap();
        let chunks: u64 = ms.iter().map(|m| m.stats.num_chunks).sum();
        assert_eq!(stats.chunks_copied, chunks);
        assert_eq!(stats.chunks_reencoded, 0);
        assert_eq!(stats.duplicates + stats.conflicts + stats.dropped, 0);
        assert_eq!(meta.stats.num_chunks, chunks);
        assert_eq!(meta.compaction.level, 2);
        assert_eq!(
            (meta.min_time, meta.max_time),
            (ms[0].min_time, ms[5].max_time)
        );
        let refs: Vec<(Ulid, &Series)> = ms
            .iter()
            .zip(&parts[half * 6..])
            .map(|(m, s)| (m.ulid, s))
            .collect();
        assert_same(&read_all(&out, meta.ulid).await, &expected(&refs));
        // Parents by time.
        let parents: Vec<Ulid> = meta.compaction.parents.iter().map(|p| p.ulid).collect();
        assert_eq!(parents, ulids);
        level2.push((out, meta));
    }
    // Level 3 from two level-2 blocks in different directories.
    let readers = vec![
        open(&level2[0].0, level2[0].1.ulid).await,
        open(&level2[1].0, level2[1].1.ulid).await,
    ];
    let out = dir.path().join("l3");
    let (meta, stats) = compact(&readers, &out, &CompactOptions::new(tenant()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.compaction.level, 3);
    let mut all: Vec<Ulid> = metas.iter().map(|m| m.ulid).collect();
    all.sort();
    assert_eq!(meta.compaction.sources, all);
    assert_eq!(stats.chunks_reencoded, 0);
    assert_eq!(
        (meta.min_time, meta.max_time),
        (metas[0].min_time, metas[11].max_time)
    );
    let refs: Vec<(Ulid, &Series)> = metas.iter().zip(&parts).map(|(m, s)| (m.ulid, s)).collect();
    assert_same(&read_all(&out, meta.ulid).await, &expected(&refs));
}

#[tokio::test]
async fn batch_size_does_not_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let full = base(8, 300);
    let ma = write(dir.path(), &thin(&full, 1, 0.1), 120, None);
    let mb = write(dir.path(), &thin(&full, 2, 0.1), 60, None);
    // Series only some sources have: every third in a third block.
    let third: Series = full
        .iter()
        .step_by(3)
        .map(|(l, v)| (l.clone(), v.clone()))
        .collect();
    let mc = write(dir.path(), &third, 120, None);
    let mut files = Vec::new();
    for batch in [1, 7, 10_000] {
        let out = dir.path().join(format!("out{batch}"));
        let opts = CompactOptions {
            batch_series: batch,
            ..CompactOptions::new(tenant())
        };
        let (meta, stats) = run(dir.path(), &out, &[ma.ulid, mb.ulid, mc.ulid], &opts)
            .await
            .unwrap();
        assert_eq!(stats.series, 300);
        files.push((
            block_files(&out.join(meta.ulid.to_string())),
            stats,
            meta.stats,
        ));
    }
    assert_eq!(files[0], files[1]);
    assert_eq!(files[0], files[2]);
}

/// The refs of a block's series, in order, from its index.
fn series_refs(index: &[u8]) -> Vec<u64> {
    let toc = &index[index.len() - 52..];
    let be = |i: usize| u64::from_be_bytes(toc[i * 8..i * 8 + 8].try_into().unwrap());
    let (mut at, end) = (be(1), be(2));
    let mut refs = Vec::new();
    while at < end {
        at = at.next_multiple_of(16);
        if at >= end {
            break;
        }
        let (len, n) = read_uvarint(&index[at as usize..]).unwrap();
        refs.push(at / 16);
        at += n as u64 + len + 4;
    }
    refs
}

fn write_tombstones(block: &Path, stones: &[(u64, i64, i64)]) {
    let mut body = Vec::new();
    for &(r, min, max) in stones {
        put_uvarint(&mut body, r);
        put_varint(&mut body, min);
        put_varint(&mut body, max);
    }
    let mut b = TOMBSTONES_MAGIC.to_be_bytes().to_vec();
    b.push(1);
    b.extend_from_slice(&body);
    b.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    std::fs::write(block.join(TOMBSTONES_FILENAME), b).unwrap();
}

#[tokio::test]
async fn tombstones_delete_samples() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let series = base(9, 30);
    let m = write(dir.path(), &series, 120, None);
    let block = dir.path().join(m.ulid.to_string());
    let refs = series_refs(&std::fs::read(block.join("index")).unwrap());
    assert_eq!(refs.len(), 30);
    let labels: Vec<&Labels> = series.keys().collect();
    // Series 0 loses a window, series 1 everything, series 2 two windows.
    let s0 = &series[labels[0]];
    let s2 = &series[labels[2]];
    let (a, b) = (s0[s0.len() / 3].0, s0[s0.len() / 2].0);
    let (c, d) = (s2[0].0, s2[1].0);
    let (e, f) = (s2[s2.len() - 1].0, i64::MAX);
    write_tombstones(
        &block,
        &[
            (refs[0], a, b),
            (refs[1], i64::MIN, i64::MAX),
            (refs[2], c, d),
            (refs[2], e, f),
        ],
    );
    let mut want = series.clone();
    want.get_mut(labels[0])
        .unwrap()
        .retain(|x| x.0 < a || x.0 > b);
    want.remove(labels[1]);
    want.get_mut(labels[2])
        .unwrap()
        .retain(|x| (x.0 < c || x.0 > d) && x.0 < e);
    let (meta, stats) = run(dir.path(), &out, &[m.ulid], &CompactOptions::new(tenant()))
        .await
        .unwrap();
    assert_same(&read_all(&out, meta.ulid).await, &want);
    assert_eq!(stats.dropped, count(&series) - count(&want));
    assert_eq!(stats.series, 29);
    assert!(stats.chunks_copied > 0, "untouched chunks are copied");
    assert!(stats.chunks_reencoded > 0);
    assert_eq!(meta.stats.num_tombstones, 0);
}

#[tokio::test]
async fn time_range_clips_and_empty_results_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let series = base(10, 50);
    let ma = write(dir.path(), &series, 120, None);
    let mb = write(dir.path(), &thin(&series, 3, 0.5), 120, None);
    let (from, to) = (ma.min_time + HOUR / 2, ma.min_time + HOUR);
    let opts = CompactOptions {
        time_range: Some((from, to)),
        ..CompactOptions::new(tenant())
    };
    let out = dir.path().join("out");
    let (meta, stats) = run(dir.path(), &out, &[ma.ulid, mb.ulid], &opts)
        .await
        .unwrap();
    assert_eq!((meta.min_time, meta.max_time), (from, to));
    let mut want = series.clone();
    want.values_mut()
        .for_each(|v| v.retain(|x| x.0 >= from && x.0 < to));
    want.retain(|_, v| !v.is_empty());
    assert_same(&read_all(&out, meta.ulid).await, &want);
    assert_eq!(
        stats.samples_in,
        stats.samples_out + stats.duplicates + stats.conflicts + stats.dropped
    );
    assert!(stats.dropped > 0);

    // Nothing in range: no block, no leftovers.
    let empty = dir.path().join("empty");
    let opts = CompactOptions {
        time_range: Some((0, 1000)),
        ..CompactOptions::new(tenant())
    };
    assert!(run(dir.path(), &empty, &[ma.ulid], &opts).await.is_none());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[tokio::test]
async fn misuse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), &base(11, 5), 120, None);
    let r = || open(dir.path(), m.ulid);
    let opts = CompactOptions::new(tenant());
    let none: [BlockReader<LocalDir>; 0] = [];
    assert!(compact(&none, dir.path(), &opts).await.is_err());
    assert!(compact(&[r().await, r().await], dir.path(), &opts)
        .await
        .is_err());
    let other = CompactOptions::new(TenantId::parse("tenant-2").unwrap());
    assert!(compact(&[r().await], dir.path(), &other).await.is_err());
    let bad = CompactOptions {
        time_range: Some((10, 10)),
        ..opts
    };
    assert!(compact(&[r().await], dir.path(), &bad).await.is_err());
}

/// A compaction can run in a spawned task.
#[tokio::test]
async fn compaction_is_send() {
    fn send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), &base(13, 5), 120, None);
    let readers = [open(dir.path(), m.ulid).await];
    let opts = CompactOptions::new(tenant());
    let f = compact(&readers, dir.path(), &opts);
    send(&f);
    assert!(f.await.unwrap().is_some());
}

/// A local block counting the bytes read and the largest single read.
struct Counting {
    inner: LocalDir,
    bytes: Arc<AtomicU64>,
    largest: Arc<AtomicU64>,
}

#[async_trait]
impl RangeReader for Counting {
    async fn read_range(&self, file: &str, range: Range<u64>) -> Result<Bytes, BlockError> {
        self.bytes
            .fetch_add(range.end - range.start, Ordering::Relaxed);
        self.largest
            .fetch_max(range.end - range.start, Ordering::Relaxed);
        self.inner.read_range(file, range).await
    }

    async fn size(&self, file: &str) -> Result<u64, BlockError> {
        self.inner.size(file).await
    }
}

/// Reads are bounded by the batch, not the block, and the files are read about once.
#[tokio::test]
async fn reads_stay_bounded_by_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let series = base(12, 3000);
    let m = write(dir.path(), &series, 120, None);
    let block = dir.path().join(m.ulid.to_string());
    let size = |f: &str| std::fs::metadata(block.join(f)).unwrap().len();
    let (index, chunks) = (size("index"), size("chunks/000001"));
    let bytes = Arc::new(AtomicU64::new(0));
    let largest = Arc::new(AtomicU64::new(0));
    let r = BlockReader::open(Counting {
        inner: LocalDir::new(&block),
        bytes: bytes.clone(),
        largest: largest.clone(),
    })
    .await
    .unwrap();
    bytes.store(0, Ordering::Relaxed);
    largest.store(0, Ordering::Relaxed);
    let opts = CompactOptions {
        batch_series: 50,
        ..CompactOptions::new(tenant())
    };
    let (meta, stats) = compact(&[r], &dir.path().join("out"), &opts)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.series, 3000);
    assert_eq!(stats.chunks_copied, meta.stats.num_chunks);
    let read = bytes.load(Ordering::Relaxed);
    let largest = largest.load(Ordering::Relaxed);
    // 50 series hold about 1/60 of the chunks.
    assert!(largest < chunks / 20, "largest read {largest} of {chunks}");
    assert!(
        read < (index + chunks) * 13 / 10,
        "{read} of {}",
        index + chunks
    );
}

/// A process' memory figure from `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Writes `n` series × 720 float samples (10 s apart, so 2h), one series at a time, in chunks
/// of `per_chunk` samples.
fn write_bench_block(dir: &Path, n: usize, per_chunk: u16) -> BlockMeta {
    let labels = |i: usize| {
        Labels::from_pairs([
            ("__name__", format!("bench_metric_{}", i % 50)),
            ("instance", format!("host-{i:06}:9100")),
            ("job", "bench".to_string()),
        ])
    };
    let mut all: Vec<Labels> = (0..n).map(labels).collect();
    all.sort();
    let opts = BlockOptions {
        tenant: tenant(),
        ingester: Some(format!("ingester-{per_chunk}")),
        source: BlockSource::Ingester,
        time_range: None,
    };
    let mut w = BlockWriter::new(dir, opts, symbols_of(&all)).unwrap();
    for (i, l) in all.iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(i as u64);
        let mut v = 0.0;
        let samples: Vec<(i64, f64)> = (0..720)
            .map(|j| {
                v += rng.random_range(0.0..10.0f64).round();
                (1_700_000_000_000 + j * 10_000, v)
            })
            .collect();
        w.add_series(l, &xor_chunks(&samples, per_chunk).unwrap())
            .unwrap();
    }
    w.finish().unwrap()
}

/// Throughput and peak memory of merging three replicas with the same samples in different
/// chunks, so every sample is decoded (`HESTIA_BENCH_SERIES` series each, default 1000;
/// `HESTIA_BENCH_BATCH` series per batch, default 1024), then of copying the result's chunks;
/// one configuration per process, for a clean peak:
/// `cargo test -p hestia-block --lib compact_throughput -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement, run by hand"]
async fn compact_throughput() {
    let env =
        |name: &str, default: usize| std::env::var(name).map_or(default, |v| v.parse().unwrap());
    let (n, batch) = (
        env("HESTIA_BENCH_SERIES", 1000),
        env("HESTIA_BENCH_BATCH", DEFAULT_BATCH_SERIES),
    );
    let dir = tempfile::tempdir().unwrap();
    let metas: Vec<BlockMeta> = [120, 100, 90]
        .into_iter()
        .map(|per_chunk| write_bench_block(dir.path(), n, per_chunk))
        .collect();
    let ulids: Vec<Ulid> = metas.iter().map(|m| m.ulid).collect();
    let size: u64 = metas
        .iter()
        .flat_map(|m| m.thanos.files.iter().map(|f| f.size_bytes))
        .sum();
    let mut readers = Vec::new();
    for u in &ulids {
        readers.push(open(dir.path(), *u).await);
    }
    let opts = CompactOptions {
        batch_series: batch,
        ..CompactOptions::new(tenant())
    };
    // Resets the peak resident set size (VmHWM) to the current one.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let rss = status_kib("VmRSS:");
    let out = dir.path().join("out");
    let t = std::time::Instant::now();
    let (meta, stats) = compact(&readers, &out, &opts).await.unwrap().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    println!(
        "merge: 3 × {n} series × 720 samples ({} KiB of blocks), batch {batch}: {secs:.2} s, \
         {:.0} samples/s in, {:.0} series/s; RSS {rss} KiB with the sources open, peak +{} KiB; \
         output {} chunks, {stats:?}",
        size >> 10,
        stats.samples_in as f64 / secs,
        stats.series as f64 / secs,
        peak - rss,
        meta.stats.num_chunks,
    );
    let copy_out = dir.path().join("copy");
    let t = std::time::Instant::now();
    let (_, stats) = run(&out, &copy_out, &[meta.ulid], &opts).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "copy: {} chunks in {secs:.2} s, {:.0} samples/s",
        stats.chunks_copied,
        stats.samples_in as f64 / secs
    );
}
