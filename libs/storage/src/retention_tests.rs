//! Tests of retention (`retention.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hestia_model::{Labels, Matcher, Sample, TenantId};

use crate::xor::XorIter;
use crate::*;

const DAY: i64 = 86_400_000;

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
        active_series_window: Duration::from_secs(60),
        series_idle_timeout: Some(Duration::from_secs(60)),
        ..TsdbOptions::default()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn floats(l: &Labels, ts: impl IntoIterator<Item = i64>) -> SeriesAppend {
    SeriesAppend::floats(
        l.clone(),
        ts.into_iter()
            .map(|t| Sample::new(t, (t % 1000) as f64))
            .collect(),
    )
}

/// Every sample time of the series `name`, deduplicated.
fn times(db: &Tsdb, t: &TenantId, name: &str) -> Vec<i64> {
    let m = [Matcher::equal("__name__", name)];
    let mut out = Vec::new();
    for s in db.select(t, &m, i64::MIN, i64::MAX).unwrap() {
        for c in s.chunks {
            out.extend(XorIter::new(&c.data).unwrap().map(|x| x.0));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn names(db: &Tsdb, t: &TenantId) -> Vec<String> {
    db.series(t, &[], i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|l| l.metric_name().unwrap().to_string())
        .collect()
}

#[test]
fn expire_deletes_whole_chunks_before_the_cutoff_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (t, other) = (tenant("t1"), tenant("t2"));
    let a = Labels::from_pairs([("__name__", "a")]);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    // 10 samples per chunk: [0, 90], [100, 190], ..., the last one open; the same for `other`.
    let all: Vec<i64> = (0..205).map(|i| i * 10).collect();
    for tn in [&t, &other] {
        db.append(tn, &[floats(&a, all.iter().copied())]).unwrap();
    }
    db.checkpoint().unwrap();

    let r = db
        .expire(&[(t.clone(), 1005), (tenant("nobody"), 1005)])
        .unwrap();
    assert!(r[0].chunks >= 10, "{r:?}");
    assert_eq!(r[0].series, 0);
    assert_eq!(r[1], Expired::default());
    let kept: Vec<i64> = (100..205).map(|i| i * 10).collect();
    assert_eq!(
        times(&db, &t, "a"),
        kept,
        "the chunk [1000, 1090] stays whole"
    );
    assert_eq!(
        times(&db, &other, "a"),
        all,
        "other tenants keep everything"
    );
    assert_eq!(db.ship_state(&t).unwrap().min_valid_time, 1005);
    // Older samples are refused from now on, newer ones stored.
    let res = db.append(&t, &[floats(&a, [1004, 3000])]).unwrap();
    assert_eq!(res.samples_appended, 1);
    assert_eq!(res.rejected[0].reason, RejectReason::OutOfBounds);

    // Neither the WAL nor a checkpoint brings anything back.
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    let mut kept = kept;
    kept.push(3000);
    assert_eq!(times(&db, &t, "a"), kept);
    assert_eq!(times(&db, &other, "a"), all);
    // Nothing more to delete.
    assert_eq!(db.expire(&[(t.clone(), 1005)]).unwrap()[0].chunks, 0);
}

#[test]
fn idle_series_wholly_past_the_cutoff_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t1");
    let now = now_ms();
    let cutoff = now - 2 * DAY;
    let (gone, straddle, fresh) = (
        Labels::from_pairs([("__name__", "gone"), ("job", "x")]),
        Labels::from_pairs([("__name__", "straddle"), ("job", "x")]),
        Labels::from_pairs([("__name__", "fresh"), ("job", "y")]),
    );
    let hourly = |from: i64, to: i64| {
        (0..)
            .map(move |i| from + i * 3_600_000)
            .take_while(move |x| *x < to)
    };
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    db.append(
        &t,
        &[
            floats(&gone, hourly(now - 4 * DAY, now - 3 * DAY)),
            floats(&straddle, hourly(now - 4 * DAY, now - DAY)),
            floats(&fresh, [now - 1000]),
        ],
    )
    .unwrap();
    db.checkpoint().unwrap();
    assert_eq!(db.evict_idle().unwrap(), 2);
    let stats = db.tenant_stats(&t).unwrap();
    assert_eq!((stats.series, stats.idle_series), (1, 2));

    let r = db.expire(&[(t.clone(), cutoff)]).unwrap();
    assert_eq!(r[0].series, 1, "{r:?}");
    assert!(r[0].chunks >= 4, "{r:?}");
    let check = |db: &Tsdb| {
        assert_eq!(names(db, &t), ["fresh", "straddle"]);
        assert!(times(db, &t, "gone").is_empty());
        let s = times(db, &t, "straddle");
        assert!(s.iter().all(|x| *x >= cutoff - 10 * 3_600_000), "{s:?}");
        assert_eq!(s.last(), hourly(now - 4 * DAY, now - DAY).last().as_ref());
        assert_eq!(times(db, &t, "fresh"), [now - 1000]);
        assert_eq!(
            db.label_values(&t, "job", &[], i64::MIN, i64::MAX).unwrap(),
            ["x", "y"]
        );
        let stats = db.tenant_stats(&t).unwrap();
        assert_eq!((stats.series, stats.idle_series), (1, 1));
    };
    check(&db);
    drop(db);
    let db = Tsdb::open(dir.path(), opts()).unwrap();
    check(&db);

    // The same labels again make a new series; the old samples stay gone.
    let r = db.append(&t, &[floats(&gone, [now - 500])]).unwrap();
    assert_eq!((r.samples_appended, r.series_created), (1, 1));
    assert_eq!(times(&db, &t, "gone"), [now - 500]);
    assert_eq!(db.expire(&[(t.clone(), cutoff)]).unwrap()[0].series, 0);
}
