//! The cleaner: marked blocks after the delay, retention per workspace, deleted tenants.

use std::time::Duration;

use hestia_bucket::BucketIndex;
use hestia_compactor::Retentions;

use crate::harness::*;

#[tokio::test]
async fn marked_blocks_are_deleted_only_after_the_delay() {
    let fx = Fixture::new();
    let mut cfg = fx.config("c1");
    cfg.compactor.block_ranges = vec![Duration::from_millis(RANGE as u64)];
    cfg.compactor.deletion_delay = Duration::from_secs(2);
    let c = fx.compactor(&cfg).await;
    let t = fx.tenant("a");
    let want = fx.ship_replicas(&t, 3, 0..1, 10).await;
    let report = c.run_once().await;
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    assert_eq!((r.blocks_marked, r.blocks_deleted), (3, 0), "{r:?}");
    // Queriers still find the sources through the index until they are deleted.
    let stored = BucketIndex::read(&t).await.expect("read").expect("index");
    assert_eq!(
        (stored.blocks.len(), stored.block_deletion_marks.len()),
        (4, 3)
    );
    let r = c.cleanup_once().await;
    assert_eq!(r.tenants[0].blocks_deleted, 0, "{r:?}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = c.cleanup_once().await;
    assert_eq!(r.tenants[0].blocks_deleted, 3, "{r:?}");
    let stored = BucketIndex::read(&t).await.expect("read").expect("index");
    assert_eq!(
        (stored.blocks.len(), stored.block_deletion_marks.len()),
        (1, 0)
    );
    let files = files_under(&fx.bucket_dir().join(t.tenant().as_str()));
    assert!(
        !files.iter().any(|f| f.starts_with("markers/")),
        "{files:?}"
    );
    let (got, _) = dump_live(&fx, &t).await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn retention_removes_blocks_wholly_older_and_follows_changes() {
    let fx = Fixture::new();
    let retentions = Retentions::new();
    let c = fx
        .compactor_with(&fx.config("c1"), retentions.clone())
        .await;
    let t = fx.tenant("a");
    const DAY: i64 = 86_400_000;
    let now = hestia_ring::now_ms() / RANGE * RANGE;
    let mut starts = Vec::new();
    for age_days in [200, 100, 1] {
        let min = now - age_days * DAY;
        fx.ship(
            &t,
            "ingester-a",
            min,
            min + RANGE,
            &series_data(3, min, min + RANGE),
        )
        .await;
        starts.push(min);
    }
    let alive = |starts: &[i64]| starts.iter().map(|s| (*s, s + RANGE)).collect::<Vec<_>>();
    let ranges = || async {
        live_blocks(&t)
            .await
            .iter()
            .map(|b| (b.1, b.2))
            .collect::<Vec<_>>()
    };

    // No workspace known for the tenant: nothing expires.
    let r = c.run_once().await;
    assert_eq!(r.tenants[0].retention_marked, 0, "{r:?}");
    retentions.set(t.tenant(), 300);
    c.run_once().await;
    assert_eq!(ranges().await, alive(&starts));

    retentions.set(t.tenant(), 150);
    let r = c.run_once().await;
    assert_eq!(
        (r.tenants[0].retention_marked, r.tenants[0].blocks_deleted),
        (1, 1),
        "{r:?}"
    );
    assert_eq!(ranges().await, alive(&starts[1..]));

    // Lowered through UpdateWorkspaceConfiguration: applies at the next pass.
    retentions.set(t.tenant(), 30);
    c.cleanup_once().await;
    assert_eq!(ranges().await, alive(&starts[2..]));
}

#[tokio::test]
async fn a_deleted_tenant_is_purged_after_the_delay() {
    let fx = Fixture::new();
    let (gone, kept) = (fx.tenant("gone"), fx.tenant("kept"));
    fx.ship_replicas(&gone, 3, 0..2, 5).await;
    let want = fx.ship_replicas(&kept, 3, 0..2, 5).await;
    let mark = gone.mark_tenant_deleted().await.expect("mark");
    assert_eq!(
        gone.mark_tenant_deleted().await.expect("mark again"),
        mark,
        "a retried purge keeps the first mark"
    );

    let mut cfg = fx.config("c1");
    cfg.compactor.deletion_delay = Duration::from_secs(3600);
    let c = fx.compactor(&cfg).await;
    let report = c.run_once().await;
    let r = report.tenant(gone.tenant().as_str()).expect("tenant");
    assert!(r.tenant_deletion_pending && !r.tenant_deleted, "{r:?}");
    assert_eq!((r.compactions, r.blocks_deleted), (0, 0));
    assert_eq!(live_blocks(&gone).await.len(), 6);
    let listing = c.tenant_blocks(gone.tenant()).await.expect("listing");
    assert_eq!(listing.tenant_deletion_time, Some(mark.deletion_time));
    c.stop().await.expect("leave the ring");

    let c = fx.compactor(&fx.config("c2")).await;
    let report = c.run_once().await;
    let r = report.tenant(gone.tenant().as_str()).expect("tenant");
    assert!(r.tenant_deleted, "{r:?}");
    assert_eq!(r.blocks_deleted, 6);
    assert!(files_under(&fx.bucket_dir().join(gone.tenant().as_str())).is_empty());
    assert_eq!(
        fx.bucket.tenants().await.expect("tenants"),
        vec![kept.tenant().clone()]
    );
    assert_eq!(gone.tenant_deletion_mark().await.expect("read"), None);
    let (got, _) = dump_live(&fx, &kept).await;
    assert_eq!(got, want);
}
