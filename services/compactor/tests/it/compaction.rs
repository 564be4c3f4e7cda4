//! RF replicas of each range become one block per range holding every sample once, then
//! closed windows merge into the longer ranges.

use std::time::Duration;

use crate::harness::*;

#[tokio::test]
async fn replicas_become_one_block_per_range_with_every_sample_once() {
    let fx = Fixture::new();
    let mut cfg = fx.config("c1");
    // Only the vertical merge: one level.
    cfg.compactor.block_ranges = vec![Duration::from_millis(RANGE as u64)];
    let c = fx.compactor(&cfg).await;
    let t = fx.tenant("a");
    let want = fx.ship_replicas(&t, 3, 0..3, 50).await;
    let unique = count(&want) as u64;

    let report = c.run_once().await;
    assert!(!report.failed(), "{report:?}");
    let r = report
        .tenant(t.tenant().as_str())
        .expect("tenant compacted");
    assert_eq!(
        (r.compactions, r.blocks_in, r.blocks_out),
        (3, 9, 3),
        "{r:?}"
    );
    assert_eq!(r.samples_in, 3 * unique);
    assert_eq!(r.samples_out, unique);
    assert_eq!((r.duplicates, r.conflicts), (2 * unique, 0));
    assert_eq!((r.blocks_marked, r.blocks_deleted), (9, 9), "{r:?}");
    assert!(r.bytes_in > 2 * r.bytes_out, "{r:?}");

    let live = live_blocks(&t).await;
    let ranges: Vec<(i64, i64)> = live.iter().map(|b| (b.1, b.2)).collect();
    assert_eq!(
        ranges,
        (0..3)
            .map(|i| (BASE + i * RANGE, BASE + (i + 1) * RANGE))
            .collect::<Vec<_>>()
    );
    let index = index(&t).await;
    assert!(index.block_deletion_marks.is_empty(), "{index:?}");
    let stored = hestia_bucket::BucketIndex::read(&t)
        .await
        .expect("read")
        .expect("the compactor writes the index");
    assert_eq!(stored.blocks, index.blocks);
    let mut samples = 0;
    for (id, _, _) in &live {
        samples += t.read_meta(*id).await.expect("meta").stats.num_samples;
    }
    assert_eq!(samples, unique);
    let (got, lines) = dump_live(&fx, &t).await;
    assert_eq!(lines as u64, unique);
    assert_eq!(got, want);
    // Nothing else is left in the tenant's prefix.
    let files = files_under(&fx.bucket_dir().join(t.tenant().as_str()));
    let dirs: std::collections::BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.split_once('/').map(|(d, _)| d))
        .collect();
    assert_eq!(dirs.len(), 3, "{files:?}");

    // A second pass finds nothing to do.
    let again = c.run_once().await;
    let r = again.tenant(t.tenant().as_str()).expect("tenant");
    assert_eq!(
        (r.compactions, r.blocks_marked, r.blocks_deleted),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn closed_windows_merge_into_longer_ranges() {
    let fx = Fixture::new();
    let c = fx.compactor(&fx.config("c1")).await;
    let t = fx.tenant("a");
    let mut want = fx.ship_replicas(&t, 3, 0..3, 20).await;

    // 3 vertical merges, then the three 2m blocks of [0, 6m) into one.
    let report = c.run_once().await;
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!((r.compactions, r.blocks_in), (4, 12), "{r:?}");
    let live = live_blocks(&t).await;
    assert_eq!(
        live.iter().map(|b| (b.1, b.2)).collect::<Vec<_>>(),
        [(BASE, BASE + 3 * RANGE)]
    );
    assert_eq!(
        t.read_meta(live[0].0).await.expect("meta").compaction.level,
        3
    );

    // The next 6 minutes arrive: [6m, 12m) becomes one block, then [0, 12m) one.
    let more = fx.ship_replicas(&t, 3, 3..6, 20).await;
    for (k, v) in more {
        want.entry(k).or_default().extend(v);
    }
    let report = c.run_once().await;
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    assert_eq!((r.compactions, r.blocks_in), (5, 14), "{r:?}");
    let live = live_blocks(&t).await;
    assert_eq!(
        live.iter().map(|b| (b.1, b.2)).collect::<Vec<_>>(),
        [(BASE, BASE + 6 * RANGE)]
    );
    let meta = t.read_meta(live[0].0).await.expect("meta");
    assert_eq!(meta.compaction.sources.len(), 18, "every shipped block");
    assert_eq!(meta.stats.num_samples, count(&want) as u64);
    let (got, lines) = dump_live(&fx, &t).await;
    assert_eq!(lines, count(&want));
    assert_eq!(got, want);
}

#[tokio::test]
async fn conflicting_replicas_keep_one_value_and_are_counted() {
    let fx = Fixture::new();
    let mut cfg = fx.config("c1");
    cfg.compactor.block_ranges = vec![Duration::from_millis(RANGE as u64)];
    let c = fx.compactor(&cfg).await;
    let t = fx.tenant("a");
    let (min, max) = (BASE, BASE + RANGE);
    let data = series_data(4, min, max);
    let mut other = data.clone();
    other[1].1[3].1 += 1.0;
    fx.ship(&t, "ingester-a", min, max, &data).await;
    fx.ship(&t, "ingester-b", min, max, &other).await;
    let report = c.run_once().await;
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    let unique: usize = data.iter().map(|s| s.1.len()).sum();
    assert_eq!((r.conflicts, r.duplicates), (1, unique as u64 - 1), "{r:?}");
    let (got, lines) = dump_live(&fx, &t).await;
    assert_eq!(lines, unique);
    let kept = got[&go_labels(&data[1].0)][&data[1].1[3].0];
    assert!(kept == data[1].1[3].1 || kept == other[1].1[3].1, "{kept}");
}
