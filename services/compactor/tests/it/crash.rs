//! What a killed compactor leaves behind is finished or removed by the next one.

use std::time::{Duration, SystemTime};

use ulid::Ulid;

use crate::harness::*;

/// The state of a compactor killed after uploading its outputs and before marking their
/// sources: the marks of a finished pass (and the index) removed.
fn unmark_everything(fx: &Fixture, tenant: &str) {
    let root = fx.bucket_dir().join(tenant);
    for f in files_under(&root) {
        if f.ends_with("deletion-mark.json") || f == "bucket-index.json.gz" {
            std::fs::remove_file(root.join(f)).expect("remove");
        }
    }
}

#[tokio::test]
async fn a_crash_between_upload_and_marks_is_finished_by_the_next_pass() {
    let fx = Fixture::new();
    let mut cfg = fx.config("c1");
    cfg.compactor.block_ranges = vec![Duration::from_millis(RANGE as u64)];
    // Sources stay after their marks, so the crash can be replayed.
    cfg.compactor.deletion_delay = Duration::from_secs(3600);
    let c = fx.compactor(&cfg).await;
    let t = fx.tenant("a");
    let want = fx.ship_replicas(&t, 3, 0..2, 30).await;
    let report = c.run_once().await;
    assert_eq!(report.tenants[0].compactions, 2, "{report:?}");
    let outputs = live_blocks(&t).await;
    unmark_everything(&fx, t.tenant().as_str());
    assert_eq!(live_blocks(&t).await.len(), 8, "sources and outputs");

    let report = c.run_once().await;
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    assert_eq!((r.compactions, r.superseded), (0, 6), "{r:?}");
    assert_eq!(live_blocks(&t).await, outputs);
    let (got, lines) = dump_live(&fx, &t).await;
    assert_eq!((got, lines), (want.clone(), count(&want)));
}

#[tokio::test]
async fn leftovers_of_a_killed_compactor_are_removed_at_start() {
    let fx = Fixture::new();
    let cfg = fx.config("c1");
    let work = cfg.compactor.data_dir(&cfg.server.data_dir);
    let tmp = work
        .join("123456789012_ws-a")
        .join("out")
        .join(format!("{}.tmp-for-creation", Ulid::new()));
    std::fs::create_dir_all(&tmp).expect("dir");
    std::fs::write(tmp.join("index"), b"half an index").expect("file");
    let source = work.join("123456789012_ws-a").join("sources").join("x");
    std::fs::create_dir_all(&source).expect("dir");
    std::fs::write(source.join("meta.json"), b"{}").expect("file");
    let _c = fx.compactor(&cfg).await;
    assert!(work.is_dir());
    assert_eq!(std::fs::read_dir(&work).expect("read").count(), 0);
}

#[tokio::test]
async fn partial_uploads_are_removed_after_the_deletion_delay() {
    let fx = Fixture::new();
    let mut cfg = fx.config("c1");
    cfg.compactor.deletion_delay = Duration::from_secs(3600);
    let c = fx.compactor(&cfg).await;
    let t = fx.tenant("a");
    let data = series_data(5, BASE, BASE + RANGE);
    let kept = fx.ship(&t, "ingester-a", BASE, BASE + RANGE, &data).await;
    // Two uploads killed before meta.json: one long ago, one just now.
    let root = fx.bucket_dir().join(t.tenant().as_str());
    let (old, fresh) = (Ulid::new(), Ulid::new());
    for id in [old, fresh] {
        let dir = root.join(id.to_string());
        std::fs::create_dir_all(dir.join("chunks")).expect("dir");
        std::fs::copy(
            root.join(kept.ulid.to_string()).join("index"),
            dir.join("index"),
        )
        .expect("copy");
        std::fs::write(dir.join("chunks/000001"), b"chunks").expect("write");
    }
    let long_ago = SystemTime::now() - Duration::from_secs(7200);
    for f in files_under(&root.join(old.to_string())) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(root.join(old.to_string()).join(f))
            .expect("open")
            .set_modified(long_ago)
            .expect("mtime");
    }

    let report = c.run_once().await;
    let r = report.tenant(t.tenant().as_str()).expect("tenant");
    assert_eq!((r.partial_deleted, r.compactions), (1, 0), "{r:?}");
    assert!(!root.join(old.to_string()).exists());
    assert!(root.join(fresh.to_string()).join("index").is_file());
    assert_eq!(live_blocks(&t).await.len(), 1);
    let listing = c.tenant_blocks(t.tenant()).await.expect("blocks");
    assert_eq!(
        listing.partial.iter().map(|p| p.id).collect::<Vec<_>>(),
        [fresh]
    );
}
