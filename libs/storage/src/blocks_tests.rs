//! Tests of the block shipper's storage API (`blocks.rs`).

use hestia_model::{Labels, Matcher, Sample, TenantId};

use crate::xor::XorIter;
use crate::*;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        checkpoint_interval: None,
        checkpoint_wal_bytes: None,
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 4 << 20,
        chunk_max_samples: 10,
        ..TsdbOptions::default()
    }
}

fn floats(l: &Labels, ts: impl IntoIterator<Item = i64>) -> SeriesAppend {
    SeriesAppend::floats(
        l.clone(),
        ts.into_iter()
            .map(|t| Sample::new(t, t as f64 / 10.0))
            .collect(),
    )
}

fn hist(n: f64) -> Histogram {
    Histogram {
        schema: 1,
        count: n,
        zero_count: n,
        sum: n,
        ..Histogram::default()
    }
}

/// Every sample of the series `name` through `select`, deduplicated by time.
fn float_times(db: &Tsdb, t: &TenantId, name: &str) -> Vec<i64> {
    let m = [Matcher::equal("__name__", name)];
    let mut out = Vec::new();
    for s in db.select(t, &m, i64::MIN, i64::MAX).unwrap() {
        for c in s.chunks {
            if c.encoding == ChunkEncoding::Xor {
                out.extend(XorIter::new(&c.data).unwrap().map(|x| x.0));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn read_all(db: &Tsdb, t: &TenantId, mint: i64, maxt: i64) -> Vec<RangeSeries> {
    let mut r = db.read_range(t, mint, maxt).unwrap();
    let labels: Vec<Labels> = r.labels().cloned().collect();
    assert!(labels.windows(2).all(|w| w[0] < w[1]), "labels sorted");
    let mut out = Vec::new();
    while let Some(s) = r.next_series().unwrap() {
        assert!(labels.contains(&s.labels));
        out.push(s);
    }
    out
}

#[test]
fn read_range_merges_in_order_out_of_order_and_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let t = tenant("t1");
    let limits = AppendLimits {
        out_of_order_window_ms: 1_000_000,
        ..AppendLimits::default()
    };
    let (a, b, h) = (
        Labels::from_pairs([("__name__", "a")]),
        Labels::from_pairs([("__name__", "b")]),
        Labels::from_pairs([("__name__", "h")]),
    );
    // `a`: every 10 ms over [0, 3000), then out of order the odd 5 ms points below 2500.
    db.append_limited(&t, &[floats(&a, (0..300).map(|i| i * 10))], &limits)
        .unwrap();
    db.checkpoint().unwrap();
    let ooo: Vec<i64> = (0..250).map(|i| i * 10 + 5).collect();
    let r = db
        .append_limited(&t, &[floats(&a, ooo.iter().rev().copied())], &limits)
        .unwrap();
    assert_eq!(r.samples_out_of_order, 250);
    // `b`: floats, then histograms, then floats again (chunks of both kinds in the range).
    db.append(&t, &[floats(&b, [1000, 1100])]).unwrap();
    let hs = SeriesAppend {
        labels: b.clone(),
        histograms: vec![(1200, hist(1.0)), (1300, hist(2.0))],
        ..SeriesAppend::default()
    };
    db.append(&t, &[hs]).unwrap();
    db.append(&t, &[floats(&b, [1400])]).unwrap();
    // `h`: histograms only, outside the range read below but for one.
    let hs = SeriesAppend {
        labels: h.clone(),
        histograms: vec![(500, hist(1.0)), (1999, hist(3.0)), (2000, hist(4.0))],
        ..SeriesAppend::default()
    };
    db.append(&t, &[hs]).unwrap();

    let got = read_all(&db, &t, 1000, 2000);
    assert_eq!(
        got.iter().map(|s| s.labels.clone()).collect::<Vec<_>>(),
        vec![a.clone(), b.clone(), h.clone()]
    );
    let want_a: Vec<i64> = (1000..2000)
        .filter(|x| x % 10 == 0 || x % 10 == 5)
        .collect();
    assert_eq!(
        got[0].floats.iter().map(|x| x.0).collect::<Vec<_>>(),
        want_a
    );
    assert!(got[0].floats.iter().all(|x| x.1 == x.0 as f64 / 10.0));
    assert!(got[0].histograms.is_empty());
    assert_eq!(
        got[1].floats.iter().map(|x| x.0).collect::<Vec<_>>(),
        [1000, 1100, 1400]
    );
    assert_eq!(
        got[1].histograms.iter().map(|x| x.0).collect::<Vec<_>>(),
        [1200, 1300]
    );
    assert!(got[1].histograms[1].1.same_bits(&hist(2.0)));
    assert_eq!(got[2].histograms.len(), 1);
    assert_eq!(got[2].histograms[0].0, 1999);

    // The same after a restart (everything from disk) and for a tenant without data.
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    assert_eq!(read_all(&db, &t, 1000, 2000), got);
    assert!(read_all(&db, &tenant("none"), 0, 10_000).is_empty());
    assert!(read_all(&db, &t, 5000, 6000).is_empty());
}

#[test]
fn min_valid_time_refuses_older_samples_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let l = Labels::from_pairs([("__name__", "x")]);
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        db.append(&t, &[floats(&l, [100, 200])]).unwrap();
        db.set_min_valid_time(&t, 1000).unwrap();
        // Never lowered.
        db.set_min_valid_time(&t, 500).unwrap();
        assert_eq!(db.ship_state(&t).unwrap().min_valid_time, 1000);
        let r = db.append(&t, &[floats(&l, [999, 1000, 1001])]).unwrap();
        assert_eq!(r.samples_appended, 2);
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(r.rejected[0].reason, RejectReason::OutOfBounds);
        assert_eq!(
            (r.rejected[0].count, r.rejected[0].first_timestamp),
            (1, 999)
        );
        assert!(r.rejected[0]
            .reason
            .to_string()
            .ends_with("(err-mimir-sample-out-of-bounds)"));
    }
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let other = Labels::from_pairs([("__name__", "y")]);
    let hs = SeriesAppend {
        labels: other,
        histograms: vec![(10, hist(1.0))],
        ..SeriesAppend::default()
    };
    let r = db.append(&t, &[hs]).unwrap();
    assert_eq!(r.rejected[0].reason, RejectReason::OutOfBounds);
    assert_eq!(db.ship_state(&t).unwrap().min_valid_time, 1000);
    assert_eq!(
        db.ship_state(&tenant("t2")).unwrap().min_valid_time,
        i64::MIN
    );
    assert_eq!(float_times(&db, &t, "x"), [100, 200, 1000, 1001]);
}

#[test]
fn ship_state_and_time_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (t1, t2) = (tenant("t1"), tenant("t2"));
    let l = Labels::from_pairs([("__name__", "x")]);
    let block = ShippedBlock {
        min_t: -7200,
        max_t: 0,
        block: u128::MAX - 5,
        uploaded_at_ms: 1_700_000_000_000,
    };
    {
        let db = Tsdb::open(dir.path(), opts()).unwrap();
        assert!(db.time_bounds(&t1).unwrap().is_none());
        db.append(&t1, &[floats(&l, [-5000, 20, 700])]).unwrap();
        db.append(&t2, &[floats(&l, [3])]).unwrap();
        assert_eq!(db.tenants(), [t1.clone(), t2.clone()]);
        assert_eq!(db.time_bounds(&t1).unwrap(), Some((-5000, 700)));
        assert_eq!(
            db.ship_state(&t1).unwrap(),
            ShipState {
                min_valid_time: i64::MIN,
                ..ShipState::default()
            }
        );
        db.record_shipped(&t1, -7200, None).unwrap();
        db.record_shipped(&t1, 0, Some(&block)).unwrap();
        db.record_shipped(
            &t1,
            7200,
            Some(&ShippedBlock {
                min_t: 0,
                max_t: 7200,
                ..block
            }),
        )
        .unwrap();
    }
    let idle_opts = TsdbOptions {
        series_idle_timeout: Some(std::time::Duration::from_secs(300)),
        ..opts()
    };
    let db = Tsdb::open(dir.path(), idle_opts).unwrap();
    // Samples of 1970: every series leaves memory, and its time range is read from disk.
    assert_eq!(db.evict_idle().unwrap(), 2);
    assert_eq!(db.time_bounds(&t1).unwrap(), Some((-5000, 700)));
    let st = db.ship_state(&t1).unwrap();
    assert_eq!(st.shipped_through, Some(7200));
    assert_eq!(st.blocks.len(), 2);
    assert_eq!(st.blocks[0], block);
    db.forget_shipped(&t1, -7200).unwrap();
    assert_eq!(db.ship_state(&t1).unwrap().blocks[0].min_t, 0);
    assert_eq!(db.ship_state(&t2).unwrap().shipped_through, None);
    assert_eq!(db.time_bounds(&t2).unwrap(), Some((3, 3)));
    db.delete_tenant(&t1).unwrap();
    assert_eq!(
        db.ship_state(&t1).unwrap(),
        ShipState {
            min_valid_time: i64::MIN,
            ..ShipState::default()
        }
    );
}

#[test]
fn drop_before_deletes_chunks_wholly_before_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let limits = AppendLimits {
        out_of_order_window_ms: 1_000_000,
        ..AppendLimits::default()
    };
    let (a, stopped, o) = (
        Labels::from_pairs([("__name__", "a")]),
        Labels::from_pairs([("__name__", "stopped")]),
        Labels::from_pairs([("__name__", "o")]),
    );
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    // 10 samples per chunk: `a` has chunks [0, 90], [100, 190], ..., the last one open.
    db.append(&t, &[floats(&a, (0..205).map(|i| i * 10))])
        .unwrap();
    // `stopped` ends before the drop point with an open, partially persisted chunk.
    db.append(&t, &[floats(&stopped, [10, 20, 30])]).unwrap();
    db.checkpoint().unwrap();
    db.append(&t, &[floats(&stopped, [40])]).unwrap();
    // `o`: in order at 5000, then out of order at 100..=130 and 900.
    db.append_limited(&t, &[floats(&o, [5000])], &limits)
        .unwrap();
    db.append_limited(&t, &[floats(&o, [100, 110, 120, 130, 900])], &limits)
        .unwrap();

    let deleted = db.drop_before(&t, 1005).unwrap();
    assert!(deleted >= 11, "{deleted} rows");
    assert_eq!(db.ship_state(&t).unwrap().min_valid_time, 1005);
    let want_a: Vec<i64> = (100..205).map(|i| i * 10).collect();
    assert_eq!(
        float_times(&db, &t, "a"),
        want_a,
        "the chunk [1000, 1090] stays whole"
    );
    assert!(float_times(&db, &t, "stopped").is_empty());
    // The out-of-order chunk [100, 900] (still open) ended before 1005.
    assert_eq!(float_times(&db, &t, "o"), [5000]);
    assert!(db.time_bounds(&t).unwrap().is_some_and(|b| b.0 >= 1005));
    // Newer data keeps coming.
    let r = db
        .append(&t, &[floats(&a, [3000]), floats(&stopped, [1004, 2000])])
        .unwrap();
    assert_eq!((r.samples_appended, r.rejected.len()), (2, 1));

    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let mut want_a = want_a;
    want_a.push(3000);
    assert_eq!(float_times(&db, &t, "a"), want_a);
    assert_eq!(float_times(&db, &t, "stopped"), [2000]);
    assert_eq!(float_times(&db, &t, "o"), [5000]);
    // Series rows stay.
    assert_eq!(db.series(&t, &[], i64::MIN, i64::MAX).unwrap().len(), 3);
    assert_eq!(db.drop_before(&tenant("none"), 5).unwrap(), 0);
}
