//! Tests of `Tsdb`: reads, write rules, tenants, recovery and a real kill -9.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hestia_model::{Labels, MatchOp, Matcher, Sample, TenantId};

use crate::commit::{cf, Cf};
use crate::xor::XorIter;
use crate::*;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        checkpoint_interval: None,
        checkpoint_wal_bytes: None,
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 4 << 20,
        ..TsdbOptions::default()
    }
}

fn one(l: &Labels, samples: impl IntoIterator<Item = (i64, f64)>) -> SeriesAppend {
    SeriesAppend::floats(
        l.clone(),
        samples
            .into_iter()
            .map(|(t, v)| Sample::new(t, v))
            .collect(),
    )
}

/// A float or a histogram read back from chunks.
#[derive(Debug, Clone, PartialEq)]
enum Read {
    F(f64),
    H(Histogram),
}

/// Decodes a series' chunks of both encodings, checking they are ordered and disjoint.
fn decode_any(sc: &SeriesChunks) -> Vec<(i64, Read)> {
    let mut out: Vec<(i64, Read)> = Vec::new();
    for c in &sc.chunks {
        let samples: Vec<(i64, Read)> = match c.encoding {
            ChunkEncoding::Xor => {
                let mut it = XorIter::new(&c.data).unwrap();
                let v = it.by_ref().map(|(t, v)| (t, Read::F(v))).collect();
                assert!(it.err().is_none());
                v
            }
            ChunkEncoding::Histogram => {
                let mut it = HistogramIter::new(&c.data).unwrap();
                let v = it.by_ref().map(|(t, h)| (t, Read::H(h))).collect();
                assert!(it.err().is_none());
                v
            }
        };
        assert_eq!(samples.first().map(|s| s.0), Some(c.min_t), "chunk min_t");
        assert_eq!(samples.last().map(|s| s.0), Some(c.max_t), "chunk max_t");
        if let Some(last) = out.last() {
            assert!(last.0 < c.min_t, "chunks overlap");
        }
        out.extend(samples);
    }
    out
}

fn all_any(db: &Tsdb, t: &TenantId, l: &Labels) -> Vec<(i64, Read)> {
    let ms: Vec<Matcher> = l
        .iter()
        .map(|l| Matcher::equal(&l.name, &l.value))
        .collect();
    let res = db.select(t, &ms, i64::MIN, i64::MAX).unwrap();
    res.iter()
        .find(|s| s.labels == *l)
        .map(decode_any)
        .unwrap_or_default()
}

/// A cumulative exponential histogram after `i` observations.
fn test_hist(i: i64) -> Histogram {
    let f = i as f64;
    Histogram {
        counter_reset_hint: CounterResetHint::NotCounterReset,
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: f,
        count: 4.0 * f,
        sum: 7.5 * f,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        positive_buckets: vec![f, 2.0 * f, 0.0],
        ..Histogram::default()
    }
}

/// Decodes a series' chunks, checking they are ordered and disjoint.
fn decode(sc: &SeriesChunks) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for c in &sc.chunks {
        let mut it = XorIter::new(&c.data).unwrap();
        let samples: Vec<(i64, f64)> = it.by_ref().collect();
        assert!(it.err().is_none());
        assert_eq!(samples.first().map(|s| s.0), Some(c.min_t), "chunk min_t");
        assert_eq!(samples.last().map(|s| s.0), Some(c.max_t), "chunk max_t");
        if let Some(last) = out.last() {
            assert!(last.0 < c.min_t, "chunks overlap");
        }
        out.extend(samples);
    }
    out
}

fn all_samples(db: &Tsdb, t: &TenantId, l: &Labels) -> Vec<(i64, f64)> {
    let ms: Vec<Matcher> = l
        .iter()
        .map(|l| Matcher::equal(&l.name, &l.value))
        .collect();
    let res = db.select(t, &ms, i64::MIN, i64::MAX).unwrap();
    let found: Vec<&SeriesChunks> = res.iter().filter(|s| s.labels == *l).collect();
    assert!(found.len() <= 1);
    found.first().map(|s| decode(s)).unwrap_or_default()
}

fn wal_records(db: &Tsdb) -> usize {
    let d = &db.inner.db;
    d.iterator_cf(cf(d, Cf::Wal).unwrap(), rocksdb::IteratorMode::Start)
        .count()
}

#[test]
fn recent_reads_after_a_chunk_sealed_full() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let l = labels(&[("__name__", "up"), ("job", "a")]);
    let m = [Matcher::equal("job", "a")];
    let min_ts = |db: &Tsdb, mint, maxt| -> Vec<i64> {
        let res = db.select(&t, &m, mint, maxt).unwrap();
        res.iter()
            .flat_map(|s| s.chunks.iter().map(|c| c.min_t))
            .collect()
    };
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        // 240 samples: the second chunk is sealed at its last sample and no head follows it.
        for i in 0..240 {
            db.append(&t, &[one(&l, [(i * 15_000, i as f64)])]).unwrap();
        }
        let last = 239 * 15_000;
        assert_eq!(min_ts(&db, last - 300_000, last), vec![120 * 15_000]);
        assert_eq!(min_ts(&db, 0, last), vec![0, 120 * 15_000]);
        assert_eq!(min_ts(&db, last + 1, last + 60_000), Vec::<i64>::new());
        // The next sample opens a head; the full chunk is read from disk again.
        db.append(&t, &[one(&l, [(240 * 15_000, 240.0)])]).unwrap();
        assert_eq!(
            min_ts(&db, last - 300_000, last + 15_000),
            vec![120 * 15_000, 240 * 15_000]
        );
        for i in 241..360 {
            db.append(&t, &[one(&l, [(i * 15_000, i as f64)])]).unwrap();
        }
        db.close().unwrap();
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let want: Vec<(i64, f64)> = (0..360).map(|i| (i * 15_000, i as f64)).collect();
    assert_eq!(all_samples(&db, &t, &l), want);
    assert_eq!(min_ts(&db, 350 * 15_000, 359 * 15_000), vec![240 * 15_000]);
}

#[test]
fn append_select_across_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let t = tenant("t1");
    let l = labels(&[("__name__", "up"), ("job", "a")]);
    let want: Vec<(i64, f64)> = (0..300).map(|i| (i * 15_000, (i % 7) as f64)).collect();
    for batch in want.chunks(37) {
        let r = db.append(&t, &[one(&l, batch.iter().copied())]).unwrap();
        assert_eq!(r.samples_appended, batch.len());
        assert!(r.rejected.is_empty());
    }
    assert_eq!(all_samples(&db, &t, &l), want);
    let res = db
        .select(&t, &[Matcher::equal("job", "a")], 0, i64::MAX)
        .unwrap();
    assert_eq!(res[0].chunks.len(), 3, "120 + 120 + 60");
    // Only overlapping chunks: [2_000_000, 2_100_000] lies in the second chunk.
    let res = db
        .select(&t, &[Matcher::equal("job", "a")], 2_000_000, 2_100_000)
        .unwrap();
    assert_eq!(res[0].chunks.len(), 1);
    assert_eq!(res[0].chunks[0].min_t, 120 * 15_000);
    // Boundaries are inclusive.
    let res = db
        .select(
            &t,
            &[Matcher::equal("job", "a")],
            119 * 15_000,
            120 * 15_000,
        )
        .unwrap();
    assert_eq!(res[0].chunks.len(), 2);
    assert!(db
        .select(&t, &[Matcher::equal("job", "a")], 300 * 15_000, i64::MAX)
        .unwrap()
        .is_empty());
    assert!(db
        .select(&t, &[Matcher::equal("job", "a")], i64::MIN, -1)
        .unwrap()
        .is_empty());
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!((stats.series, stats.samples_appended), (1, 300));
}

#[test]
fn prometheus_append_rules() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let t = tenant("t1");
    let a = labels(&[("__name__", "a")]);
    let b = labels(&[("__name__", "b")]);
    let stale = f64::from_bits(hestia_model::STALE_NAN_BITS);
    let r = db
        .append(
            &t,
            &[one(&a, [(10, 1.0), (20, stale)]), one(&b, [(5, 1.0)])],
        )
        .unwrap();
    assert_eq!((r.samples_appended, r.series_created), (3, 2));
    let r = db
        .append(
            &t,
            &[
                // exact retry, out of order, new value at the newest timestamp, then a new sample
                one(
                    &a,
                    [
                        (10, 1.0),
                        (20, stale),
                        (15, 3.0),
                        (20, 4.0),
                        (19, 1.0),
                        (30, 5.0),
                    ],
                ),
                one(&b, [(5, 1.0), (6, 2.0)]),
            ],
        )
        .unwrap();
    assert_eq!(r.samples_appended, 2);
    assert_eq!(r.samples_duplicate, 2, "(20, stale) and (5, 1.0)");
    assert_eq!(r.series_created, 0);
    assert_eq!(
        r.rejected,
        vec![
            Rejection {
                series_index: 0,
                reason: RejectReason::OutOfOrder,
                count: 3,
                first_timestamp: 10
            },
            Rejection {
                series_index: 0,
                reason: RejectReason::DuplicateTimestamp,
                count: 1,
                first_timestamp: 20
            },
        ]
    );
    let got = all_samples(&db, &t, &a);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].1.to_bits(), hestia_model::STALE_NAN_BITS);
    assert_eq!(got[2], (30, 5.0));
    assert_eq!(all_samples(&db, &t, &b), vec![(5, 1.0), (6, 2.0)]);
    let s = db.tenant_stats(&t).unwrap();
    assert_eq!(
        (
            s.samples_out_of_order,
            s.samples_duplicate_timestamp,
            s.samples_duplicate
        ),
        (3, 1, 2)
    );
    // Empty input is a no-op.
    assert_eq!(
        db.append::<Labels>(&t, &[]).unwrap(),
        AppendResult::default()
    );
    assert_eq!(
        db.append(&t, &[one(&labels(&[("x", "y")]), [])])
            .unwrap()
            .series_created,
        0
    );
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let (a, ab) = (tenant("a"), tenant("ab"));
    let l = labels(&[("__name__", "up")]);
    db.append(&a, &[one(&l, [(1, 1.0)])]).unwrap();
    db.append(
        &ab,
        &[
            one(&l, [(1, 2.0)]),
            one(&labels(&[("__name__", "x")]), [(1, 1.0)]),
        ],
    )
    .unwrap();
    assert_eq!(all_samples(&db, &a, &l), vec![(1, 1.0)]);
    assert_eq!(all_samples(&db, &ab, &l), vec![(1, 2.0)]);
    assert_eq!(
        db.label_values(&a, "__name__", &[], i64::MIN, i64::MAX)
            .unwrap(),
        vec!["up"]
    );
    assert_eq!(
        db.label_values(&ab, "__name__", &[], i64::MIN, i64::MAX)
            .unwrap(),
        vec!["up", "x"]
    );
    assert!(db
        .series(&tenant("other"), &[], i64::MIN, i64::MAX)
        .unwrap()
        .is_empty());
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(all_samples(&db, &a, &l), vec![(1, 1.0)]);
    assert_eq!(all_samples(&db, &ab, &l), vec![(1, 2.0)]);
    assert_eq!(db.head_stats().series, 3);
}

#[test]
fn label_queries_with_matchers_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let t = tenant("t");
    let s1 = labels(&[("__name__", "up"), ("job", "api"), ("env", "prod")]);
    let s2 = labels(&[("__name__", "up"), ("job", "web")]);
    let s3 = labels(&[
        ("__name__", "requests_total"),
        ("job", "api"),
        ("code", "200"),
    ]);
    db.append(
        &t,
        &[
            one(&s1, [(100, 1.0), (200, 1.0)]),
            one(&s2, [(1000, 1.0)]),
            one(&s3, [(300, 1.0)]),
        ],
    )
    .unwrap();
    let all = (i64::MIN, i64::MAX);
    assert_eq!(
        db.label_names(&t, &[], all.0, all.1).unwrap(),
        vec!["__name__", "code", "env", "job"]
    );
    assert_eq!(
        db.label_names(&t, &[], 0, 250).unwrap(),
        vec!["__name__", "env", "job"]
    );
    let up = Matcher::equal("__name__", "up");
    assert_eq!(
        db.label_names(&t, std::slice::from_ref(&up), all.0, all.1)
            .unwrap(),
        vec!["__name__", "env", "job"]
    );
    assert_eq!(
        db.label_values(&t, "job", &[], 250, 400).unwrap(),
        vec!["api"]
    );
    assert_eq!(
        db.label_values(&t, "job", std::slice::from_ref(&up), all.0, all.1)
            .unwrap(),
        vec!["api", "web"]
    );
    assert_eq!(
        db.label_values(&t, "job", std::slice::from_ref(&up), 500, 2000)
            .unwrap(),
        vec!["web"]
    );
    assert!(db
        .label_values(&t, "nope", &[], all.0, all.1)
        .unwrap()
        .is_empty());
    let no_env = Matcher::new(MatchOp::Equal, "env", "").unwrap();
    assert_eq!(
        db.series(&t, &[up.clone(), no_env], all.0, all.1).unwrap(),
        vec![s2.clone()]
    );
    let re = Matcher::new(MatchOp::RegexMatch, "job", "a.*").unwrap();
    assert_eq!(
        db.series(&t, &[re], all.0, all.1).unwrap(),
        vec![s3.clone(), s1.clone()]
    );
    let not_api = Matcher::new(MatchOp::NotEqual, "job", "api").unwrap();
    assert_eq!(
        db.series(&t, &[not_api], all.0, all.1).unwrap(),
        vec![s2.clone()]
    );
    // Sorted by labels; series outside the range are left out.
    let res = db
        .select(
            &t,
            &[Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()],
            150,
            400,
        )
        .unwrap();
    assert_eq!(
        res.iter().map(|s| s.labels.clone()).collect::<Vec<_>>(),
        vec![s3, s1]
    );
}

#[test]
fn recovery_from_wal_checkpoints_and_partial_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let a = labels(&[("__name__", "a")]);
    let b = labels(&[("__name__", "b")]);
    let mut want_a = Vec::new();
    let mut want_b = Vec::new();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        for i in 0..50 {
            want_a.push((i * 10, i as f64));
            db.append(&t, &[one(&a, [(i * 10, i as f64)])]).unwrap();
        }
        db.checkpoint().unwrap(); // a: partial chunk of 50 on disk
        assert_eq!(wal_records(&db), 0);
        for i in 50..200 {
            want_a.push((i * 10, i as f64 * 0.5));
            want_b.push((i, -(i as f64)));
            db.append(
                &t,
                &[
                    one(&a, [(i * 10, i as f64 * 0.5)]),
                    one(&b, [(i, -(i as f64))]),
                ],
            )
            .unwrap();
        }
        assert_eq!(wal_records(&db), 150);
        // Dropped without close: the 80-sample open chunks exist only in the WAL.
    }
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        assert_eq!(all_samples(&db, &t, &a), want_a);
        assert_eq!(all_samples(&db, &t, &b), want_b);
        assert_eq!(wal_records(&db), 0, "open checkpoints the replayed WAL");
        // Appending continues the recovered open chunk.
        for i in 200..260 {
            want_a.push((i * 10, 1.0));
            db.append(&t, &[one(&a, [(i * 10, 1.0)])]).unwrap();
        }
        db.checkpoint().unwrap();
        for i in 260..270 {
            want_a.push((i * 10, 2.0));
            db.append(&t, &[one(&a, [(i * 10, 2.0)])]).unwrap();
        }
        // Retried samples at or before the newest one are idempotent.
        let r = db.append(&t, &[one(&a, [(2690, 2.0)])]).unwrap();
        assert_eq!((r.samples_appended, r.samples_duplicate), (0, 1));
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(all_samples(&db, &t, &a), want_a);
    assert_eq!(all_samples(&db, &t, &b), want_b);
    let res = db
        .select(&t, &[Matcher::equal("__name__", "a")], i64::MIN, i64::MAX)
        .unwrap();
    let sizes: Vec<usize> = res[0]
        .chunks
        .iter()
        .map(|c| XorIter::new(&c.data).unwrap().count())
        .collect();
    assert_eq!(sizes, vec![120, 120, 30]);
    // Samples older than the newest are still refused after recovery.
    let r = db.append(&t, &[one(&a, [(5, 1.0)])]).unwrap();
    assert_eq!(r.rejected[0].reason, RejectReason::OutOfOrder);
    db.close().unwrap();
    assert!(matches!(
        db.append(&t, &[one(&a, [(1 << 40, 1.0)])]),
        Err(StorageError::Closed)
    ));
    assert_eq!(all_samples(&db, &t, &a), want_a, "reads work after close");
}

#[test]
fn open_chunk_supersedes_checkpointed_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let t = tenant("t");
    let a = labels(&[("__name__", "a")]);
    db.append(&t, &[one(&a, (0..10).map(|i| (i, 1.0)))])
        .unwrap();
    db.checkpoint().unwrap();
    db.append(&t, &[one(&a, (10..20).map(|i| (i, 2.0)))])
        .unwrap();
    let res = db.select(&t, &[], i64::MIN, i64::MAX);
    // No matchers selects everything too.
    assert_eq!(res.unwrap()[0].chunks.len(), 1);
    assert_eq!(all_samples(&db, &t, &a).len(), 20);
}

#[test]
fn metadata_latest_per_family_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let md = |name: &str, kind, help: &str| MetricMetadata {
        metric_family_name: name.into(),
        kind,
        help: help.into(),
        unit: String::new(),
    };
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.put_metadata(
            &t,
            &[
                md("http_requests", MetricType::Counter, "old"),
                md("http_requests", MetricType::Counter, "Requests."),
                md("http_requests", MetricType::Gauge, "Odd."),
                md("up", MetricType::Gauge, "Up."),
                md("a_metric", MetricType::Unknown, ""),
            ],
        )
        .unwrap();
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let all = db.metadata(&t, None, None, None).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].metric_family_name, "a_metric");
    assert_eq!(
        all[1],
        md("http_requests", MetricType::Counter, "Requests.")
    );
    assert_eq!(
        db.metadata(&t, Some("http_requests"), None, None)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        db.metadata(&t, Some("http_requests"), None, Some(1))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(db.metadata(&t, None, Some(2), None).unwrap().len(), 3);
    assert_eq!(db.metadata(&t, None, Some(2), Some(1)).unwrap().len(), 2);
    assert!(db
        .metadata(&t, Some("nope"), None, None)
        .unwrap()
        .is_empty());
    assert!(db
        .metadata(&tenant("x"), None, None, None)
        .unwrap()
        .is_empty());
}

#[test]
fn concurrent_appends_and_checkpoints_recover_everything() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let o = TsdbOptions {
        chunk_max_samples: 16,
        ..opts()
    };
    {
        let db = Arc::new(Tsdb::open(dir.path(), o.clone()).unwrap());
        let mut handles = Vec::new();
        for w in 0..4i64 {
            let db = db.clone();
            let t = t.clone();
            handles.push(std::thread::spawn(move || {
                for i in 0..300i64 {
                    // Every writer also touches a shared series; its rejections are expected.
                    let own = labels(&[("__name__", "own"), ("w", &w.to_string())]);
                    let shared = labels(&[("__name__", "shared")]);
                    db.append(
                        &t,
                        &[one(&own, [(i, i as f64)]), one(&shared, [(i * 4 + w, 1.0)])],
                    )
                    .unwrap();
                }
            }));
        }
        let cp = {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    db.checkpoint().unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        for h in handles {
            h.join().unwrap();
        }
        cp.join().unwrap();
        let shared = all_samples(&db, &t, &labels(&[("__name__", "shared")]));
        assert!(shared.windows(2).all(|w| w[0].0 < w[1].0));
        drop(db);
    }
    let db = Tsdb::open(dir.path(), o).unwrap();
    for w in 0..4 {
        let own = labels(&[("__name__", "own"), ("w", &w.to_string())]);
        let want: Vec<(i64, f64)> = (0..300).map(|i| (i, i as f64)).collect();
        assert_eq!(all_samples(&db, &t, &own), want);
    }
    let shared = all_samples(&db, &t, &labels(&[("__name__", "shared")]));
    assert!(shared.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(shared.last().is_some_and(|s| s.0 >= 299 * 4));
}

const CRASH_DIR_ENV: &str = "HESTIA_STORAGE_CRASH_DIR";
const CRASH_BASE_ENV: &str = "HESTIA_STORAGE_CRASH_BASE";
const CRASH_WRITERS: usize = 3;
const CRASH_SERIES: usize = 20;

fn crash_series(w: usize, k: usize) -> Labels {
    labels(&[
        ("__name__", "crash"),
        ("w", &w.to_string()),
        ("k", &k.to_string()),
    ])
}

fn crash_opts() -> TsdbOptions {
    TsdbOptions {
        chunk_max_samples: 7,
        checkpoint_interval: Some(Duration::from_millis(20)),
        checkpoint_wal_bytes: Some(16 << 10),
        ..opts()
    }
}

/// Child half of `kill_9_loses_no_acknowledged_sample`: appends forever, printing each ack.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let base: i64 = std::env::var(CRASH_BASE_ENV).unwrap().parse().unwrap();
    let db = Arc::new(Tsdb::open(dir, crash_opts()).unwrap());
    let t = tenant("crash");
    let writers: Vec<_> = (0..CRASH_WRITERS)
        .map(|w| {
            let db = db.clone();
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let ts = base + i;
                    let mut batch: Vec<SeriesAppend> = (0..CRASH_SERIES)
                        .map(|k| one(&crash_series(w, k), [(ts, (ts * 31 + k as i64) as f64)]))
                        .collect();
                    batch.push(SeriesAppend {
                        labels: crash_series(w, CRASH_SERIES),
                        histograms: vec![(ts, test_hist(ts))],
                        ..SeriesAppend::default()
                    });
                    let r = db.append(&t, &batch).unwrap();
                    assert_eq!(r.samples_appended, CRASH_SERIES + 1);
                    println!("ACK {w} {ts}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_sample() {
    if std::env::var(CRASH_DIR_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let t = tenant("crash");
    let mut acked = [None::<i64>; CRASH_WRITERS];
    for round in 0..3i64 {
        let base = round * 1_000_000;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "tsdb_tests::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .env(CRASH_BASE_ENV, base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut n = 0;
        // Kill at a different point each round, while checkpoints are running.
        let kill_after = 300 + round as usize * 250;
        while let Some(Ok(line)) = lines.next() {
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let mut parts = rest.split(' ');
            let w: usize = parts.next().unwrap().parse().unwrap();
            let ts: i64 = parts.next().unwrap().parse().unwrap();
            acked[w] = acked[w].max(Some(ts));
            n += 1;
            if n == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        child.wait().unwrap();
        assert_eq!(n, kill_after, "child stopped early");

        let db = Tsdb::open(dir.path(), crash_opts()).unwrap();
        for (w, last) in acked.iter().enumerate() {
            let last = last.unwrap();
            for k in 0..CRASH_SERIES {
                let got = all_samples(&db, &t, &crash_series(w, k));
                let got_round: Vec<(i64, f64)> = got
                    .into_iter()
                    .filter(|s| s.0 >= base && s.0 <= last)
                    .collect();
                let want: Vec<(i64, f64)> = (base..=last)
                    .map(|ts| (ts, (ts * 31 + k as i64) as f64))
                    .collect();
                assert_eq!(
                    got_round.len(),
                    want.len(),
                    "round {round} writer {w} series {k}"
                );
                assert_eq!(got_round, want);
            }
            let got: Vec<(i64, Read)> = all_any(&db, &t, &crash_series(w, CRASH_SERIES))
                .into_iter()
                .filter(|s| s.0 >= base && s.0 <= last)
                .collect();
            let want: Vec<(i64, Read)> = (base..=last)
                .map(|ts| (ts, Read::H(test_hist(ts))))
                .collect();
            assert_eq!(got, want, "round {round} writer {w} histograms");
        }
        drop(db);
    }
}

#[test]
fn histograms_type_switch_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let h = labels(&[("__name__", "h")]);
    let mut want: Vec<(i64, Read)> = Vec::new();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        // 150 histograms: one sealed chunk of 120 and an open one.
        for i in 1..=150 {
            let r = db
                .append(
                    &t,
                    &[SeriesAppend {
                        labels: h.clone(),
                        histograms: vec![(i * 1000, test_hist(i))],
                        ..SeriesAppend::default()
                    }],
                )
                .unwrap();
            assert_eq!(
                (r.samples_appended, r.series_created),
                (1, usize::from(i == 1))
            );
            want.push((i * 1000, Read::H(test_hist(i))));
        }
        db.checkpoint().unwrap();
        // The series turns into floats, then back into histograms, within one call.
        let mut back = test_hist(1);
        back.counter_reset_hint = CounterResetHint::CounterReset;
        let r = db
            .append(
                &t,
                &[SeriesAppend {
                    labels: h.clone(),
                    samples: vec![Sample::new(151_000, 3.0), Sample::new(152_000, 4.0)],
                    histograms: vec![(153_000, back.clone())],
                    ..SeriesAppend::default()
                }],
            )
            .unwrap();
        assert_eq!(r.samples_appended, 3);
        want.push((151_000, Read::F(3.0)));
        want.push((152_000, Read::F(4.0)));
        want.push((153_000, Read::H(back.clone())));
        // Histogram duplicates and out-of-order samples follow the float rules.
        let again = |hist: Histogram, ts: i64| SeriesAppend {
            labels: h.clone(),
            histograms: vec![(ts, hist)],
            ..SeriesAppend::default()
        };
        let r = db.append(&t, &[again(back.clone(), 153_000)]).unwrap();
        assert_eq!((r.samples_appended, r.samples_duplicate), (0, 1));
        let r = db.append(&t, &[again(test_hist(9), 153_000)]).unwrap();
        assert_eq!(r.rejected[0].reason, RejectReason::DuplicateTimestamp);
        let r = db.append(&t, &[again(test_hist(9), 100)]).unwrap();
        assert_eq!(r.rejected[0].reason, RejectReason::OutOfOrder);
        let r = db.append(&t, &[one(&h, [(153_000, 1.0)])]).unwrap();
        assert_eq!(r.rejected[0].reason, RejectReason::DuplicateTimestamp);
        // A stale marker as a histogram.
        let stale = Histogram {
            sum: f64::from_bits(hestia_model::STALE_NAN_BITS),
            ..back.clone()
        };
        db.append(&t, &[again(stale.clone(), 154_000)]).unwrap();
        want.push((154_000, Read::H(stale)));
        assert_eq!(all_any(&db, &t, &h).len(), want.len());
        // Dropped without close: the newest samples are only in the WAL.
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let got = all_any(&db, &t, &h);
    assert_eq!(got.len(), want.len());
    for ((gt, g), (wt, w)) in got.iter().zip(&want) {
        assert_eq!(gt, wt);
        match (g, w) {
            (Read::H(g), Read::H(w)) => assert!(g.same_bits(w), "{gt}"),
            _ => assert_eq!(g, w),
        }
    }
    let encodings: Vec<ChunkEncoding> = db
        .select(&t, &[Matcher::equal("__name__", "h")], i64::MIN, i64::MAX)
        .unwrap()[0]
        .chunks
        .iter()
        .map(|c| c.encoding)
        .collect();
    use ChunkEncoding::{Histogram as H, Xor as X};
    assert_eq!(encodings, vec![H, H, X, H]);
    // Appends continue the recovered histogram chunk.
    let r = db
        .append(
            &t,
            &[SeriesAppend {
                labels: h.clone(),
                histograms: vec![(155_000, test_hist(2))],
                ..SeriesAppend::default()
            }],
        )
        .unwrap();
    assert_eq!(r.samples_appended, 1);
    assert_eq!(all_any(&db, &t, &h).len(), want.len() + 1);
}

#[test]
fn exemplars_are_bounded_per_tenant_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let a = labels(&[("__name__", "a")]);
    let b = labels(&[("__name__", "b")]);
    let ex = |ts: i64| Exemplar {
        labels: labels(&[("trace_id", &format!("{ts:x}"))]),
        t: ts,
        v: ts as f64 / 10.0,
    };
    let o = TsdbOptions {
        max_exemplars_per_tenant: 5,
        ..opts()
    };
    {
        let db = Tsdb::open(dir.path(), o.clone()).unwrap();
        for i in 1..=4 {
            let r = db
                .append(
                    &t,
                    &[
                        SeriesAppend {
                            labels: a.clone(),
                            samples: vec![Sample::new(i * 10, 1.0)],
                            exemplars: vec![ex(i * 10)],
                            ..SeriesAppend::default()
                        },
                        // A series with exemplars only.
                        SeriesAppend {
                            labels: b.clone(),
                            exemplars: vec![ex(i * 10 + 1)],
                            ..SeriesAppend::default()
                        },
                    ],
                )
                .unwrap();
            assert_eq!(r.exemplars_appended, 2);
        }
        // Out of order and exact re-sends are dropped.
        let r = db
            .append(
                &t,
                &[SeriesAppend {
                    labels: a.clone(),
                    exemplars: vec![ex(5), ex(40)],
                    ..SeriesAppend::default()
                }],
            )
            .unwrap();
        assert_eq!((r.exemplars_appended, r.exemplars_out_of_order), (0, 1));
        let got = db.exemplars(&t, &[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels, a);
        let ts: Vec<i64> = got[0].exemplars.iter().map(|e| e.t).collect();
        assert_eq!(ts, vec![30, 40], "the oldest were evicted");
        assert_eq!(got[1].exemplars.len(), 3);
        let got = db
            .exemplars(&t, &[Matcher::equal("__name__", "b")], 21, 35)
            .unwrap();
        assert_eq!(got[0].exemplars, vec![ex(21), ex(31)]);
        assert!(db
            .exemplars(&tenant("other"), &[], 0, 100)
            .unwrap()
            .is_empty());
    }
    let db = Tsdb::open(dir.path(), o).unwrap();
    let got = db.exemplars(&t, &[], i64::MIN, i64::MAX).unwrap();
    let n: usize = got.iter().map(|s| s.exemplars.len()).sum();
    assert_eq!(n, 5);
    assert_eq!(got[0].exemplars[1], ex(40));
    let d = &db.inner.db;
    let rows = d
        .iterator_cf(cf(d, Cf::Exemplars).unwrap(), rocksdb::IteratorMode::Start)
        .count();
    assert_eq!(rows, 5, "evicted exemplars are deleted from disk");
    // Order is kept per series after recovery.
    let r = db
        .append(
            &t,
            &[SeriesAppend {
                labels: a.clone(),
                exemplars: vec![ex(39)],
                ..SeriesAppend::default()
            }],
        )
        .unwrap();
    assert_eq!(r.exemplars_out_of_order, 1);
}

#[test]
fn series_limits_refuse_new_series_only_and_count_active_ones() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let limits = AppendLimits {
        max_series: 3,
        max_series_per_metric: 2,
        ..AppendLimits::default()
    };
    let a = |i: &str| labels(&[("__name__", "a"), ("i", i)]);
    let b = |i: &str| labels(&[("__name__", "b"), ("i", i)]);
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        let r = db
            .append_limited(
                &t,
                &[
                    one(&a("1"), [(now, 1.0)]),
                    one(&a("2"), [(now, 1.0)]),
                    one(&a("3"), [(now, 1.0), (now + 1, 2.0)]),
                    one(&b("1"), [(now, 1.0)]),
                ],
                &limits,
            )
            .unwrap();
        assert_eq!(r.samples_appended, 3);
        assert_eq!(r.series_created, 3);
        assert_eq!(r.rejected.len(), 1);
        let rej = &r.rejected[0];
        assert_eq!(
            (rej.series_index, rej.reason, rej.count, rej.first_timestamp),
            (2, RejectReason::MetricSeriesLimit, 2, now)
        );
        assert!(rej.reason.is_limit());
        // The tenant is full: a new series is refused, existing ones keep appending.
        let r = db
            .append_limited(
                &t,
                &[one(&b("2"), [(now, 1.0)]), one(&a("1"), [(now + 1, 2.0)])],
                &limits,
            )
            .unwrap();
        assert_eq!(r.samples_appended, 1);
        assert_eq!(r.rejected[0].reason, RejectReason::SeriesLimit);
        assert_eq!(r.rejected[0].series_index, 0);
        // Other tenants and unlimited appends are not affected.
        let r = db.append(&t, &[one(&b("3"), [(now, 1.0)])]).unwrap();
        assert!(r.rejected.is_empty());
        let r = db
            .append_limited(&tenant("u"), &[one(&b("3"), [(now, 1.0)])], &limits)
            .unwrap();
        assert!(r.rejected.is_empty());
        db.close().unwrap();
    }
    // Series without a sample in the active window do not count.
    {
        let db = Tsdb::open(
            dir.path(),
            TsdbOptions {
                active_series_window: Duration::from_millis(1),
                ..opts()
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let r = db
            .append_limited(&t, &[one(&b("4"), [(now + 10, 1.0)])], &limits)
            .unwrap();
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        assert_eq!(r.series_created, 1);
    }
}

#[test]
fn delete_tenant_removes_everything_durably_and_only_that_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tenant("a"), tenant("ab"));
    let l = labels(&[("__name__", "m")]);
    let md = [MetricMetadata {
        metric_family_name: "m".into(),
        kind: MetricType::Gauge,
        help: "h".into(),
        unit: String::new(),
    }];
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        for t in [&a, &b] {
            db.append(t, &[one(&l, (0..300).map(|i| (i, i as f64)))])
                .unwrap();
            db.put_metadata(t, &md).unwrap();
        }
        // Part of "a" is checkpointed into chunks, the rest only in the WAL.
        db.checkpoint().unwrap();
        db.append(&a, &[one(&l, (300..310).map(|i| (i, 1.0)))])
            .unwrap();
        assert!(db.delete_tenant(&a).unwrap());
        assert!(!db.delete_tenant(&a).unwrap(), "idempotent");
        assert!(all_samples(&db, &a, &l).is_empty());
        assert!(db.metadata(&a, None, None, None).unwrap().is_empty());
        assert_eq!(all_samples(&db, &b, &l).len(), 300);
        db.close().unwrap();
    }
    // Nothing of "a" comes back from disk; "ab" (whose prefix extends "a"'s bytes) is intact.
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert!(all_samples(&db, &a, &l).is_empty());
    assert!(db.metadata(&a, None, None, None).unwrap().is_empty());
    assert_eq!(all_samples(&db, &b, &l).len(), 300);
    assert_eq!(db.metadata(&b, None, None, None).unwrap().len(), 1);
}

/// A series' samples merged across possibly overlapping chunks, as the querier merges them.
fn merged(db: &Tsdb, t: &TenantId, l: &Labels) -> Vec<(i64, f64)> {
    let ms: Vec<Matcher> = l
        .iter()
        .map(|l| Matcher::equal(&l.name, &l.value))
        .collect();
    let mut out: Vec<(i64, f64)> = Vec::new();
    for sc in db.select(t, &ms, i64::MIN, i64::MAX).unwrap() {
        assert_eq!(sc.labels, *l);
        for c in &sc.chunks {
            let mut it = XorIter::new(&c.data).unwrap();
            out.extend(it.by_ref());
            assert!(it.err().is_none());
        }
    }
    out.sort_by_key(|s| s.0);
    out.dedup_by_key(|s| s.0);
    out
}

fn ooo_limits(window_ms: i64) -> AppendLimits {
    AppendLimits {
        out_of_order_window_ms: window_ms,
        ..AppendLimits::default()
    }
}

#[test]
fn out_of_order_window_stores_recovers_and_refuses_older() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let l = labels(&[("__name__", "late")]);
    let mut want: Vec<(i64, f64)> = (1..=10).map(|i| (i * 1000, i as f64)).collect();
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.append(&t, &[one(&l, want.clone())]).unwrap();
        // No window: refused as Prometheus does.
        let r = db.append(&t, &[one(&l, [(6500, 0.5)])]).unwrap();
        assert_eq!(r.rejected[0].reason, RejectReason::OutOfOrder);
        // A 5 s window behind the newest sample (10 000).
        let r = db
            .append_limited(
                &t,
                &[one(
                    &l,
                    [
                        (6500, 6.5),
                        (4000, 9.0),
                        (8000, 8.0),
                        (7000, 1.0),
                        (9500, 9.5),
                    ],
                )],
                &ooo_limits(5000),
            )
            .unwrap();
        assert_eq!((r.samples_appended, r.samples_out_of_order), (2, 2));
        assert_eq!(r.samples_duplicate, 1, "8000 with its stored value");
        let reasons: Vec<(RejectReason, usize)> =
            r.rejected.iter().map(|x| (x.reason, x.count)).collect();
        assert_eq!(
            reasons,
            [
                (RejectReason::TooOld, 1),
                (RejectReason::DuplicateTimestamp, 1)
            ]
        );
        want.extend([(6500, 6.5), (9500, 9.5)]);
        want.sort_by_key(|s| s.0);
        assert_eq!(merged(&db, &t, &l), want);
        // Enough to seal out-of-order chunks (32 samples each), then more after a checkpoint.
        let late: Vec<(i64, f64)> = (0..70).map(|i| (5001 + i * 10, i as f64)).collect();
        for part in late.chunks(9) {
            let r = db
                .append_limited(&t, &[one(&l, part.iter().copied())], &ooo_limits(5000))
                .unwrap();
            assert_eq!(r.samples_appended, part.len());
        }
        want.extend(late);
        want.sort_by_key(|s| s.0);
        db.checkpoint().unwrap();
        let r = db
            .append_limited(&t, &[one(&l, [(5003, 0.25)])], &ooo_limits(5000))
            .unwrap();
        assert_eq!(r.samples_appended, 1);
        want.push((5003, 0.25));
        want.sort_by_key(|s| s.0);
        assert_eq!(merged(&db, &t, &l), want);
        // Dropped without close: the last sample is only in the WAL.
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(merged(&db, &t, &l), want);
    // Numbering continues after the recovered chunks: nothing is overwritten.
    let more: Vec<(i64, f64)> = (0..40).map(|i| (5002 + i * 10, -1.0)).collect();
    let r = db
        .append_limited(&t, &[one(&l, more.clone())], &ooo_limits(5000))
        .unwrap();
    assert_eq!(r.samples_appended, 40);
    want.extend(more);
    want.sort_by_key(|s| s.0);
    db.close().unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(merged(&db, &t, &l), want);
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!(stats.series, 1);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn idle_opts() -> TsdbOptions {
    TsdbOptions {
        active_series_window: Duration::from_secs(60),
        series_idle_timeout: Some(Duration::from_secs(60)),
        ..opts()
    }
}

#[test]
fn idle_series_leave_memory_stay_queryable_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let old = now_ms() - 3 * 3_600_000;
    let a = labels(&[("__name__", "m"), ("job", "a")]);
    let b = labels(&[("__name__", "m"), ("job", "b")]);
    let c = labels(&[("__name__", "other"), ("job", "a")]);
    let fresh = labels(&[("__name__", "m"), ("job", "fresh")]);
    let series =
        |n: i64| -> Vec<(i64, f64)> { (0..n).map(|i| (old + i * 15_000, i as f64)).collect() };
    let mut want_a = series(150);
    let want_b = series(10);
    let want_c = series(3);
    let db = Tsdb::open(dir.path(), idle_opts()).unwrap();
    db.append(
        &t,
        &[
            one(&a, want_a.clone()),
            one(&b, want_b.clone()),
            one(&c, want_c.clone()),
            one(&fresh, [(now_ms(), 1.0)]),
        ],
    )
    .unwrap();
    // Out-of-order samples of an idle series are on disk too.
    let r = db
        .append_limited(&t, &[one(&a, [(old + 7_000, 0.5)])], &ooo_limits(3_600_000))
        .unwrap();
    assert_eq!(r.samples_out_of_order, 1);
    want_a.push((old + 7_000, 0.5));
    want_a.sort_by_key(|s| s.0);
    // Open chunks are not on disk yet: nothing can leave.
    assert_eq!(db.evict_idle().unwrap(), 0);
    db.checkpoint().unwrap();
    assert_eq!(db.evict_idle().unwrap(), 3);
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!((stats.series, stats.idle_series), (1, 3));

    let check = |db: &Tsdb, want_a: &[(i64, f64)]| {
        assert_eq!(merged(db, &t, &a), want_a);
        assert_eq!(merged(db, &t, &b), want_b);
        assert_eq!(merged(db, &t, &c), want_c);
        let m = db
            .series(&t, &[Matcher::equal("__name__", "m")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(m, vec![a.clone(), b.clone(), fresh.clone()]);
        let re = Matcher::new(MatchOp::RegexMatch, "job", "a|b").unwrap();
        let m = db.series(&t, &[re], i64::MIN, i64::MAX).unwrap();
        assert_eq!(m, vec![a.clone(), b.clone(), c.clone()]);
        let ne = Matcher::new(MatchOp::NotEqual, "job", "a").unwrap();
        let m = db
            .series(
                &t,
                &[Matcher::equal("__name__", "m"), ne],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(m, vec![b.clone(), fresh.clone()]);
        // Time ranges apply to idle series too: b ended 135 s after `old`.
        let m = db
            .series(
                &t,
                &[Matcher::equal("__name__", "m")],
                old + 200_000,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(m.len(), 2, "a (150 samples) and fresh");
        let jobs = db.label_values(&t, "job", &[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(jobs, ["a", "b", "fresh"]);
        let jobs = db
            .label_values(&t, "job", &[], old + 200_000, i64::MAX)
            .unwrap();
        assert_eq!(jobs, ["a", "fresh"]);
        let names = db.label_names(&t, &[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(names, ["__name__", "job"]);
        let names = db
            .label_values(
                &t,
                "__name__",
                &[Matcher::equal("job", "a")],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(names, ["m", "other"]);
    };
    check(&db, &want_a);

    // Restart: idle series stay on disk.
    drop(db);
    let db = Tsdb::open(dir.path(), idle_opts()).unwrap();
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!((stats.series, stats.idle_series), (1, 3));
    check(&db, &want_a);

    // A new sample brings `a` back under its id: its chunks continue, no new series.
    let r = db
        .append(&t, &[one(&a, [(old + 150 * 15_000, 150.0)])])
        .unwrap();
    assert_eq!((r.samples_appended, r.series_created), (1, 0));
    want_a.push((old + 150 * 15_000, 150.0));
    // Its newest sample is remembered: a repeat is a duplicate, an older one out of order.
    let r = db
        .append(&t, &[one(&a, [(old + 150 * 15_000, 150.0)])])
        .unwrap();
    assert_eq!(r.samples_duplicate, 1);
    let r = db.append(&t, &[one(&b, [(old, 3.0)])]).unwrap();
    assert_eq!(r.rejected[0].reason, RejectReason::OutOfOrder);
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!(
        (stats.series, stats.idle_series),
        (3, 1),
        "a and b came back"
    );
    check(&db, &want_a);
    drop(db);
    let db = Tsdb::open(dir.path(), idle_opts()).unwrap();
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!((stats.series, stats.idle_series), (3, 1));
    check(&db, &want_a);
    // The tenant's deletion takes the idle keys too.
    db.delete_tenant(&t).unwrap();
    assert!(db
        .series(&t, &[Matcher::equal("job", "a")], i64::MIN, i64::MAX)
        .unwrap()
        .is_empty());
}

/// A series whose idle keys were written while samples still arrived (eviction lost the race,
/// then the process died before the keys were deleted again) comes back at recovery.
#[test]
fn samples_after_idle_keys_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let old = now_ms() - 3 * 3_600_000;
    let l = labels(&[("__name__", "m")]);
    {
        let db = Tsdb::open(dir.path(), idle_opts()).unwrap();
        db.append(&t, &[one(&l, [(old, 1.0)])]).unwrap();
        db.checkpoint().unwrap();
        let prefix = crate::keys::tenant_prefix(&t);
        let ops = crate::idle::evict_ops(&prefix, 1, l.hash64(), &l, old, old);
        crate::commit::write_batch(&db.inner.db, &ops, true).unwrap();
        db.append(&t, &[one(&l, [(old + 1000, 2.0)])]).unwrap();
    }
    let db = Tsdb::open(dir.path(), idle_opts()).unwrap();
    assert_eq!(merged(&db, &t, &l), [(old, 1.0), (old + 1000, 2.0)]);
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!((stats.series, stats.idle_series), (1, 0));
    drop(db);
    let db = Tsdb::open(dir.path(), idle_opts()).unwrap();
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!(
        (stats.series, stats.idle_series),
        (1, 0),
        "idle keys deleted"
    );
    assert_eq!(merged(&db, &t, &l), [(old, 1.0), (old + 1000, 2.0)]);
}

#[test]
fn select_latest_answers_the_newest_float_alone() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let f = labels(&[("__name__", "f")]);
    let h = labels(&[("__name__", "h")]);
    let last = 300 * 15_000;
    let by_name = |n: &str| [Matcher::equal("__name__", n)];
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        let samples: Vec<(i64, f64)> = (1..=300).map(|i| (i * 15_000, i as f64)).collect();
        db.append(&t, &[one(&f, samples)]).unwrap();
        // An out-of-order sample is older than the newest one.
        let r = db
            .append_limited(&t, &[one(&f, [(last - 7_000, -1.0)])], &ooo_limits(60_000))
            .unwrap();
        assert_eq!(r.samples_out_of_order, 1);
        db.append(
            &t,
            &[SeriesAppend {
                labels: h.clone(),
                histograms: (1..=3).map(|i| (i * 1000, test_hist(i))).collect(),
                ..SeriesAppend::default()
            }],
        )
        .unwrap();

        let res = db
            .select_latest(&t, &by_name("f"), last - 300_000 + 1, last)
            .unwrap();
        assert_eq!(res.len(), 1);
        assert_eq!(decode(&res[0]), [(last, 300.0)]);
        // Newest sample after maxt: the chunks overlapping the range, as `select` answers.
        let (mint, maxt) = (last - 300_000, last - 1);
        let all = db.select(&t, &by_name("f"), mint, maxt).unwrap();
        let latest = db.select_latest(&t, &by_name("f"), mint, maxt).unwrap();
        assert_eq!(latest, all);
        assert!(all[0].chunks.len() >= 2, "in-order and out-of-order chunks");
        // Newest sample before mint: nothing.
        assert!(db
            .select_latest(&t, &by_name("f"), last + 1, last + 300_000)
            .unwrap()
            .is_empty());
        // A histogram series keeps its chunks (their counter reset hints depend on neighbours).
        let all = db.select(&t, &by_name("h"), 0, 10_000).unwrap();
        assert_eq!(db.select_latest(&t, &by_name("h"), 0, 10_000).unwrap(), all);

        // A stale marker is a sample like any other.
        db.append(
            &t,
            &[SeriesAppend::floats(
                f.clone(),
                vec![Sample::new(
                    last + 15_000,
                    f64::from_bits(hestia_model::STALE_NAN_BITS),
                )],
            )],
        )
        .unwrap();
        db.close().unwrap();
    }
    // The newest sample is known again after recovery.
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let res = db
        .select_latest(&t, &by_name("f"), last, last + 15_000)
        .unwrap();
    let got = decode(&res[0]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, last + 15_000);
    assert_eq!(got[0].1.to_bits(), hestia_model::STALE_NAN_BITS);
}
