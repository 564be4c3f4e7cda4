//! Blocks `compact` writes: promtool 2.42 analyzes them and dumps exactly the merged samples,
//! for overlapping replicas (gaps, conflicts, stale markers) and for adjacent blocks with a
//! tombstone.

use std::collections::BTreeMap;
use std::path::Path;

use hestia_block::{
    compact, xor_chunks, BlockMeta, BlockOptions, BlockReader, BlockSource, BlockWriter,
    CompactOptions, LocalDir, TOMBSTONES_FILENAME, TOMBSTONES_MAGIC,
};
use hestia_chunkenc::varint::{put_uvarint, put_varint, read_uvarint};
use hestia_model::TenantId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ulid::Ulid;

use crate::common::{
    go_labels, parse_dump, promtool, random_series, same_value, write_block, Series,
};

const START: i64 = 1_700_000_000_000;
const SPAN: i64 = 2 * 3600 * 1000;

fn tenant() -> TenantId {
    TenantId::parse("tenant-1").unwrap()
}

/// Float samples by `go_labels`: per timestamp the one of the smallest ULID.
type Floats = BTreeMap<String, BTreeMap<i64, f64>>;

fn merge(blocks: &mut [(Ulid, Vec<Series>)]) -> Floats {
    blocks.sort_by_key(|b| b.0);
    let mut want = Floats::new();
    for (_, series) in blocks.iter() {
        for s in series.iter().filter(|s| s.histograms.is_empty()) {
            let e = want.entry(go_labels(&s.labels)).or_default();
            for &(t, v) in &s.floats {
                e.entry(t).or_insert(v);
            }
        }
    }
    want.retain(|_, v| !v.is_empty());
    want
}

/// Runs `analyze` and `dump` on the only block under `parent`; checks the dump against `want`.
fn check_with_promtool(parent: &Path, meta: &BlockMeta, want: &Floats) {
    let dir = parent.to_str().unwrap();
    let ulid = meta.ulid.to_string();
    let analysis = promtool(&["tsdb", "analyze", "--extended", dir, &ulid]);
    assert!(
        analysis.contains(&format!("Series: {}", meta.stats.num_series)),
        "{analysis}"
    );
    std::fs::create_dir_all(parent.join("wal")).unwrap();
    let got = parse_dump(&promtool(&["tsdb", "dump", dir]));
    assert_eq!(got.len(), want.len());
    for (key, w) in want {
        let g = got
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the dump"));
        assert_eq!(g.len(), w.len(), "{key}");
        for (a, b) in g.iter().zip(w) {
            assert!(
                a.0 == *b.0 && same_value(a.1, *b.1),
                "{key}: {a:?} != {b:?}"
            );
        }
    }
}

/// A replica: each sample dropped with probability `gap`, floats altered with `conflict`.
fn replica(full: &[Series], seed: u64, gap: f64, conflict: f64) -> Vec<Series> {
    let mut rng = StdRng::seed_from_u64(seed);
    full.iter()
        .map(|s| Series {
            labels: s.labels.clone(),
            floats: s
                .floats
                .iter()
                .filter_map(|&(t, v)| {
                    let v = if rng.random_bool(conflict) {
                        v * 2.0 + 1.0
                    } else {
                        v
                    };
                    (!rng.random_bool(gap)).then_some((t, v))
                })
                .collect(),
            histograms: s
                .histograms
                .iter()
                .filter(|_| !rng.random_bool(gap))
                .cloned()
                .collect(),
        })
        .collect()
}

async fn open(parent: &Path, ulid: Ulid) -> BlockReader<LocalDir> {
    BlockReader::open(LocalDir::new(parent.join(ulid.to_string())))
        .await
        .unwrap()
}

#[tokio::test]
async fn promtool_reads_merged_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let full = random_series(21, 200, START, SPAN, false);
    let mut blocks = Vec::new();
    for (seed, gap, conflict) in [(1, 0.1, 0.0), (2, 0.2, 0.0), (3, 0.05, 0.02)] {
        let series = replica(&full, seed, gap, conflict);
        blocks.push((write_block(dir.path(), &series).ulid, series));
    }
    let mut readers = Vec::new();
    for (u, _) in &blocks {
        readers.push(open(dir.path(), *u).await);
    }
    let out = dir.path().join("out");
    let (meta, stats) = compact(&readers, &out, &CompactOptions::new(tenant()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.series, 200);
    assert!(stats.duplicates > 0 && stats.conflicts > 0, "{stats:?}");
    assert_eq!(
        stats.samples_in,
        stats.samples_out + stats.duplicates + stats.conflicts
    );
    assert_eq!(meta.stats.num_samples, stats.samples_out);
    let want = merge(&mut blocks);
    assert!(want.values().map(BTreeMap::len).sum::<usize>() > 50_000);
    check_with_promtool(&out, &meta, &want);
}

/// The refs of a block's series, in order, scanning its index's series section.
fn series_refs(index: &[u8]) -> Vec<u64> {
    let toc = &index[index.len() - 52..];
    let be = |i: usize| u64::from_be_bytes(toc[i * 8..i * 8 + 8].try_into().unwrap());
    let (mut at, end) = (be(1), be(2));
    let mut refs = Vec::new();
    loop {
        at = at.next_multiple_of(16);
        if at >= end {
            return refs;
        }
        let (len, n) = read_uvarint(&index[at as usize..]).unwrap();
        refs.push(at / 16);
        at += n as u64 + len + 4;
    }
}

/// Three adjacent 2h blocks, one with a tombstone, merged into a 6h block.
#[tokio::test]
async fn promtool_reads_adjacent_blocks_merged_with_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let mut blocks = Vec::new();
    let mut metas = Vec::new();
    for i in 0..3 {
        let from = START + i * SPAN;
        let series = random_series(30 + i as u64, 100, from, SPAN, false);
        let opts = BlockOptions {
            tenant: tenant(),
            ingester: Some("ingester-a1".into()),
            source: BlockSource::Ingester,
            time_range: Some((from, from + SPAN)),
        };
        let symbols = hestia_block::symbols_of(series.iter().map(|s| &s.labels));
        let mut w = BlockWriter::new(dir.path(), opts, symbols).unwrap();
        for s in &series {
            let mut chunks = xor_chunks(&s.floats, 120).unwrap();
            chunks.extend(hestia_block::histogram_chunks(&s.histograms, 120).unwrap());
            w.add_series(&s.labels, &chunks).unwrap();
        }
        let meta = w.finish().unwrap();
        blocks.push((meta.ulid, series));
        metas.push(meta);
    }
    // Delete a quarter hour of the first series of the middle block.
    let block = dir.path().join(metas[1].ulid.to_string());
    let refs = series_refs(&std::fs::read(block.join("index")).unwrap());
    let (a, b) = (START + SPAN + 1_800_000, START + SPAN + 2_700_000);
    let mut body = Vec::new();
    put_uvarint(&mut body, refs[0]);
    put_varint(&mut body, a);
    put_varint(&mut body, b);
    let mut stones = TOMBSTONES_MAGIC.to_be_bytes().to_vec();
    stones.push(1);
    stones.extend_from_slice(&body);
    stones.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    std::fs::write(block.join(TOMBSTONES_FILENAME), stones).unwrap();
    blocks[1].1[0].floats.retain(|x| x.0 < a || x.0 > b);

    let mut readers = Vec::new();
    for m in &metas {
        readers.push(open(dir.path(), m.ulid).await);
    }
    let out = dir.path().join("out");
    let (meta, stats) = compact(&readers, &out, &CompactOptions::new(tenant()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((meta.min_time, meta.max_time), (START, START + 3 * SPAN));
    assert_eq!(meta.compaction.level, 2);
    assert!(stats.dropped > 0 && stats.duplicates == 0);
    // Only the chunks the tombstone touches are encoded again.
    assert!(stats.chunks_reencoded <= 2, "{stats:?}");
    let chunks: u64 = metas.iter().map(|m| m.stats.num_chunks).sum();
    assert!(stats.chunks_copied >= chunks - 2);
    check_with_promtool(&out, &meta, &merge(&mut blocks));
}
