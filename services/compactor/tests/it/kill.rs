//! `kill -9` of the `hestia-compactor` process at random points of its passes (downloading,
//! merging, uploading, marking, deleting), then one more pass: every sample once, no partial
//! or marked block left, nothing left in the working directory.

use std::process::Command;
use std::time::Duration;

use rand::Rng;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_point_the_next_pass_leaves_every_sample_once() {
    let fx = Fixture::new();
    let mut want = Samples::new();
    let tenants: Vec<_> = (0..3).map(|i| fx.tenant(&format!("k{i}"))).collect();
    for t in &tenants {
        let got = fx.ship_replicas(t, 3, 0..6, 200).await;
        if want.is_empty() {
            want = got;
        }
    }
    let mut cfg = fx.config("proc");
    cfg.storage.filesystem.dir = fx.bucket_dir();
    cfg.compactor.http_listen = hestia_testing::free_addr();
    let config = fx.dir.path().join("compactor.toml");
    std::fs::write(&config, hestia_config::to_toml(&cfg).expect("toml")).expect("config");
    let log = fx.dir.path().join("compactor.log");
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log")
    };

    let mut rng = rand::rng();
    let (mut seen_partial, mut seen_unmarked) = (0, 0);
    for round in 0..8 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hestia-compactor"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(open_log())
            .stderr(open_log())
            .spawn()
            .expect("hestia-compactor starts");
        let after = Duration::from_millis(rng.random_range(100..1500));
        tokio::time::sleep(after).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let mut live = Vec::new();
        for t in &tenants {
            let (_, report) = hestia_bucket::BucketIndex::build(t).await.expect("index");
            seen_partial += report.partial_blocks.len();
            let blocks = live_blocks(t).await;
            // An output uploaded and its sources not all marked yet.
            for (id, min, max) in &blocks {
                let meta = t.read_meta(*id).await.expect("meta");
                let covers = |b: &&(ulid::Ulid, i64, i64)| {
                    b.0 != *id && b.1 < *max && *min < b.2 && meta.compaction.sources.contains(&b.0)
                };
                if meta.compaction.level > 1 && blocks.iter().any(|b| covers(&b)) {
                    seen_unmarked += 1;
                }
            }
            live.push(blocks.len());
        }
        let compacted = std::fs::read_to_string(&log)
            .expect("log")
            .matches("compacted")
            .count();
        eprintln!("round {round}: killed after {after:?}, live blocks {live:?}, {compacted} compactions so far");
    }
    eprintln!(
        "after the kills: {seen_partial} partial blocks, {seen_unmarked} outputs whose sources were not all marked"
    );

    // One clean pass in process, over what the kills left.
    let c = fx.compactor(&cfg).await;
    let report = c.run_once().await;
    assert!(!report.failed(), "{report:?}");
    for t in &tenants {
        let live = live_blocks(t).await;
        assert_eq!(
            live.iter().map(|b| (b.1, b.2)).collect::<Vec<_>>(),
            [(BASE, BASE + 6 * RANGE)],
            "{}",
            t.tenant()
        );
        let (index, listing) = hestia_bucket::BucketIndex::build(t).await.expect("index");
        assert!(index.block_deletion_marks.is_empty(), "{index:?}");
        assert!(listing.partial_blocks.is_empty(), "{listing:?}");
        assert_eq!(index.blocks.len(), 1);
        let (got, lines) = dump_live(&fx, t).await;
        assert_eq!(lines, count(&want));
        assert_eq!(got, want);
    }
    let work = cfg.compactor.data_dir(&cfg.server.data_dir);
    assert!(files_under(&work).is_empty(), "{:?}", files_under(&work));
}
