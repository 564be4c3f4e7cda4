//! Writer → reader round trips, matcher semantics against brute force, malformed input.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use hestia_chunkenc::{CounterResetHint, Histogram, Span};
use hestia_model::{Labels, MatchOp, Matcher, TenantId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::*;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A block's files in memory.
#[derive(Clone)]
struct MemBlock(HashMap<String, Bytes>);

impl MemBlock {
    fn load(dir: &Path) -> Self {
        let mut files = HashMap::new();
        for name in ["meta.json", "index", "tombstones"] {
            files.insert(
                name.to_string(),
                Bytes::from(std::fs::read(dir.join(name)).unwrap()),
            );
        }
        for e in std::fs::read_dir(dir.join(CHUNKS_DIR)).unwrap() {
            let e = e.unwrap();
            let name = format!("{CHUNKS_DIR}/{}", e.file_name().to_string_lossy());
            files.insert(name, Bytes::from(std::fs::read(e.path()).unwrap()));
        }
        Self(files)
    }
}

#[async_trait]
impl RangeReader for MemBlock {
    async fn read_range(&self, file: &str, range: Range<u64>) -> Result<Bytes, BlockError> {
        let b = self
            .0
            .get(file)
            .ok_or_else(|| BlockError::NotFound(file.into()))?;
        if range.end > b.len() as u64 || range.start > range.end {
            return Err(BlockError::Invalid(format!(
                "{file}: range {range:?} past the end"
            )));
        }
        Ok(b.slice(range.start as usize..range.end as usize))
    }

    async fn size(&self, file: &str) -> Result<u64, BlockError> {
        self.0
            .get(file)
            .map(|b| b.len() as u64)
            .ok_or_else(|| BlockError::NotFound(file.into()))
    }
}

pub(crate) struct TestSeries {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, Histogram)>,
}

fn histogram(rng: &mut StdRng, base: f64) -> Histogram {
    let buckets: Vec<f64> = (0..4).map(|i| base * (i + 1) as f64).collect();
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 1,
        zero_threshold: 2f64.powi(-128),
        zero_count: base,
        count: base + buckets.iter().sum::<f64>(),
        sum: base * rng.random_range(1.0..2.0),
        positive_spans: vec![Span {
            offset: 1,
            length: 4,
        }],
        negative_spans: vec![],
        positive_buckets: buckets,
        negative_buckets: vec![],
        custom_values: vec![],
    }
}

/// Series with random floats (stale markers included) and some histogram series.
pub(crate) fn random_series(seed: u64, n: usize) -> Vec<TestSeries> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<TestSeries> = (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", format!("metric_{}", i % 7)),
                ("job", format!("job-{}", i % 3)),
                ("instance", format!("host-{i}:9100")),
                (
                    "env",
                    if i % 4 == 0 {
                        String::new()
                    } else {
                        "prod".into()
                    },
                ),
            ]);
            let mut t = 1_700_000_000_000 + rng.random_range(0..60_000i64);
            let mut v: f64 = rng.random_range(-100.0..100.0);
            let histograms = i % 10 == 9;
            let count = rng.random_range(1..400);
            let mut floats = Vec::new();
            let mut hists = Vec::new();
            for j in 0..count {
                t += 15_000 + rng.random_range(-20..20);
                if histograms {
                    hists.push((t, histogram(&mut rng, f64::from(j))));
                } else if rng.random_bool(0.02) {
                    floats.push((t, f64::from_bits(STALE_NAN)));
                } else {
                    v += rng.random_range(-1.0..3.0);
                    floats.push((t, if j % 5 == 0 { v.round() } else { v }));
                }
            }
            TestSeries {
                labels,
                floats,
                histograms: hists,
            }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

pub(crate) fn write_block(dir: &Path, series: &[TestSeries]) -> BlockMeta {
    let opts = BlockOptions {
        tenant: TenantId::parse("tenant-1").unwrap(),
        ingester: Some("ingester-a1".into()),
        source: BlockSource::Ingester,
        time_range: None,
    };
    let mut w = BlockWriter::new(dir, opts, symbols_of(series.iter().map(|s| &s.labels))).unwrap();
    for s in series {
        let mut chunks = xor_chunks(&s.floats, DEFAULT_CHUNK_SAMPLES).unwrap();
        chunks.extend(histogram_chunks(&s.histograms, DEFAULT_CHUNK_SAMPLES).unwrap());
        w.add_series(&s.labels, &chunks).unwrap();
    }
    w.finish().unwrap()
}

fn same_floats(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
}

async fn open(dir: &Path, meta: &BlockMeta) -> BlockReader<LocalDir> {
    BlockReader::open(LocalDir::new(dir.join(meta.ulid.to_string())))
        .await
        .unwrap()
}

#[tokio::test]
async fn write_then_select_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let series = random_series(1, 200);
    let meta = write_block(dir.path(), &series);
    assert!(!dir
        .path()
        .join(format!("{}.tmp-for-creation", meta.ulid))
        .exists());
    let r = open(dir.path(), &meta).await;
    assert_eq!(r.meta(), &meta);
    assert_eq!(meta.tenant().unwrap().as_str(), "tenant-1");
    assert_eq!(meta.stats.num_series, 200);
    let samples: usize = series
        .iter()
        .map(|s| s.floats.len() + s.histograms.len())
        .sum();
    assert_eq!(meta.stats.num_samples, samples as u64);
    let names: Vec<&str> = meta
        .thanos
        .files
        .iter()
        .map(|f| f.rel_path.as_str())
        .collect();
    assert_eq!(names, ["chunks/000001", "index", "meta.json", "tombstones"]);

    let all = Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap();
    let got = r.select(&[all], i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(got.len(), series.len());
    for (g, w) in got.iter().zip(&series) {
        assert_eq!(g.labels, w.labels);
        let s = g.samples(i64::MIN, i64::MAX).unwrap();
        assert!(same_floats(&s.floats, &w.floats), "{}", w.labels);
        assert_eq!(s.histograms.len(), w.histograms.len());
        for (a, b) in s.histograms.iter().zip(&w.histograms) {
            assert_eq!(a.0, b.0);
            assert_eq!((a.1.count, a.1.sum), (b.1.count, b.1.sum));
            assert_eq!(a.1.positive_buckets, b.1.positive_buckets);
        }
    }
}

#[tokio::test]
async fn matchers_and_time_ranges_select_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let series = random_series(2, 120);
    let meta = write_block(dir.path(), &series);
    let r = open(dir.path(), &meta).await;
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    use MatchOp::*;
    let cases: Vec<Vec<Matcher>> = vec![
        vec![m(Equal, "__name__", "metric_3")],
        vec![m(Equal, "__name__", "metric_3"), m(Equal, "job", "job-1")],
        vec![
            m(Equal, "__name__", "metric_3"),
            m(NotEqual, "job", "job-1"),
        ],
        vec![
            m(RegexMatch, "job", "job-(0|2)"),
            m(RegexNoMatch, "__name__", "metric_[0-4]"),
        ],
        vec![m(Equal, "env", ""), m(RegexMatch, "__name__", ".+")],
        vec![m(NotEqual, "env", "")],
        vec![m(RegexMatch, "env", "prod|"), m(Equal, "job", "job-2")],
        vec![m(Equal, "nonexistent", "")],
        vec![m(Equal, "nonexistent", "x")],
        vec![m(RegexMatch, "instance", "host-1.*")],
        vec![m(Equal, "__name__", "no_such_metric")],
        vec![],
    ];
    for ms in &cases {
        let want: Vec<&Labels> = series
            .iter()
            .map(|s| &s.labels)
            .filter(|l| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .collect();
        let got = r.series_labels(ms).await.unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "{ms:?}");
        let selected = r.select(ms, i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(selected.len(), want.len(), "{ms:?}");
    }

    // A time range selects the chunks overlapping it; samples() trims to it exactly.
    let (mint, maxt) = (meta.min_time + 600_000, meta.min_time + 1_800_000);
    let all = [m(RegexMatch, "__name__", ".+")];
    let got = r.select(&all, mint, maxt).await.unwrap();
    let mut n = 0;
    for s in &series {
        let want: Vec<(i64, f64)> = s
            .floats
            .iter()
            .copied()
            .filter(|x| x.0 >= mint && x.0 <= maxt)
            .collect();
        let hists = s
            .histograms
            .iter()
            .filter(|x| x.0 >= mint && x.0 <= maxt)
            .count();
        if want.is_empty() && hists == 0 {
            assert!(got.iter().all(|g| g.labels != s.labels));
            continue;
        }
        let g = &got[n];
        n += 1;
        assert_eq!(g.labels, s.labels);
        assert!(g.chunks.iter().all(|c| c.max_t >= mint && c.min_t <= maxt));
        let samples = g.samples(mint, maxt).unwrap();
        assert!(same_floats(&samples.floats, &want));
        assert_eq!(samples.histograms.len(), hists);
    }
    assert_eq!(n, got.len());
    assert!(r
        .select(&all, meta.max_time, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert!(r.select(&all, 5, 4).await.unwrap().is_empty());
}

#[tokio::test]
async fn label_names_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let series = random_series(3, 30);
    let meta = write_block(dir.path(), &series);
    let r = open(dir.path(), &meta).await;
    assert_eq!(r.label_names(), ["__name__", "env", "instance", "job"]);
    assert_eq!(r.label_values("job"), ["job-0", "job-1", "job-2"]);
    assert_eq!(r.label_values("env"), ["prod"]);
    assert_eq!(r.label_values("instance").len(), 30);
    assert!(r.label_values("nope").is_empty());
    assert!(r.label_values("").is_empty());
}

#[test]
fn writer_refuses_what_the_format_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let opts = BlockOptions {
        tenant: TenantId::parse("t").unwrap(),
        ingester: None,
        source: BlockSource::Backfill,
        time_range: Some((0, 1000)),
    };
    let a = Labels::from_pairs([("__name__", "a")]);
    let b = Labels::from_pairs([("__name__", "b")]);
    let chunks = |ts: &[i64]| xor_chunks(&ts.iter().map(|&t| (t, 1.0)).collect::<Vec<_>>(), 2);
    let new = || BlockWriter::new(dir.path(), opts.clone(), symbols_of([&a, &b])).unwrap();

    let mut w = new();
    w.add_series(&b, &chunks(&[1]).unwrap()).unwrap();
    assert!(
        w.add_series(&a, &chunks(&[1]).unwrap()).is_err(),
        "out of order"
    );
    assert!(
        w.add_series(&b, &chunks(&[2]).unwrap()).is_err(),
        "duplicate"
    );
    let c = Labels::from_pairs([("__name__", "c")]);
    assert!(
        w.add_series(&c, &chunks(&[1]).unwrap()).is_err(),
        "unknown symbol"
    );
    drop(w);

    let mut w = new();
    assert!(
        w.add_series(&a, &chunks(&[1, 1000]).unwrap()).is_err(),
        "outside the range"
    );
    let mut overlapping = chunks(&[1, 5]).unwrap();
    overlapping.extend(chunks(&[5, 6]).unwrap());
    assert!(w.add_series(&a, &overlapping).is_err());
    assert!(chunks(&[3, 2]).is_err(), "samples out of order");
    w.add_series(&a, &[]).unwrap();
    assert!(w.finish().is_err(), "no series");
    // Failed and dropped writers leave nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let mut w = new();
    w.add_series(&a, &chunks(&[10, 20, 30]).unwrap()).unwrap();
    let meta = w.finish().unwrap();
    assert_eq!((meta.min_time, meta.max_time), (0, 1000));
    assert_eq!(meta.stats.num_chunks, 2);
    let stones = std::fs::read(dir.path().join(meta.ulid.to_string()).join("tombstones")).unwrap();
    assert_eq!(stones, [0x01, 0x30, 0xba, 0x30, 1, 0, 0, 0, 0]);
}

#[tokio::test]
async fn corrupt_index_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let series = random_series(4, 40);
    let meta = write_block(dir.path(), &series);
    let block = MemBlock::load(&dir.path().join(meta.ulid.to_string()));
    let index = block.0["index"].clone();
    let all = [Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()];
    let probe = |index: Vec<u8>| {
        let mut b = block.clone();
        b.0.insert("index".into(), Bytes::from(index));
        let all = all.clone();
        async move {
            if let Ok(r) = BlockReader::open(b).await {
                for s in r.select(&all, i64::MIN, i64::MAX).await.unwrap_or_default() {
                    let _ = s.samples(i64::MIN, i64::MAX);
                }
                // Walking the series section ends, in an error or at the last series.
                let mut from = None;
                while let Ok(b) = r.series_batch(from, 16, i64::MIN, i64::MAX).await {
                    assert!(b.next > from || b.next.is_none());
                    match b.next {
                        Some(n) => from = Some(n),
                        None => break,
                    }
                }
            }
        }
    };
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..300 {
        probe(index[..rng.random_range(0..index.len())].to_vec()).await;
    }
    for _ in 0..3000 {
        let mut b = index.to_vec();
        let i = rng.random_range(0..b.len() * 8);
        b[i / 8] ^= 1 << (i % 8);
        probe(b).await;
    }
    // Flipped bits that checksums cover are reported.
    let mut b = index.to_vec();
    let toc = b.len() - 10;
    b[toc] ^= 1;
    let mut bad = block.clone();
    bad.0.insert("index".into(), Bytes::from(b));
    assert!(BlockReader::open(bad).await.is_err());
    // So are corrupt chunks.
    let mut bad = block.clone();
    let seg = bad.0["chunks/000001"].to_vec();
    let mut seg2 = seg.clone();
    seg2[40] ^= 0x10;
    bad.0.insert("chunks/000001".into(), Bytes::from(seg2));
    let r = BlockReader::open(bad).await.unwrap();
    assert!(r.select(&all, i64::MIN, i64::MAX).await.is_err());
}

#[tokio::test]
async fn reads_through_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let series = random_series(6, 50);
    let meta = write_block(dir.path(), &series);
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let block = object_store::path::Path::from(meta.ulid.to_string());
    let r = BlockReader::open(ObjectStoreDir::new(std::sync::Arc::new(store), block))
        .await
        .unwrap();
    let local = open(dir.path(), &meta).await;
    let all = [Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()];
    let (a, b) = (
        r.select(&all, i64::MIN, i64::MAX).await.unwrap(),
        local.select(&all, i64::MIN, i64::MAX).await.unwrap(),
    );
    assert_eq!(a.len(), 50);
    assert_eq!(a, b);
    let missing = ObjectStoreDir::new(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        "x".into(),
    );
    assert!(matches!(
        missing.size("index").await,
        Err(BlockError::NotFound(_))
    ));
}
