//! Retention in the ingester: each workspace's data wholly past its retentionPeriodInDays leaves
//! RocksDB (chunks, then idle series), durably, other workspaces untouched; with shipping on,
//! the shipper has already dropped every chunk that old and only stopped series are left.

use std::time::{Duration, Instant};

use hestia_config::BlocksConfig;
use hestia_ingester::retention;
use hestia_limits::Retentions;
use hestia_model::{Labels, Sample, TenantId};
use hestia_storage::{RejectReason, SeriesAppend};

use crate::shipper::{now_ms, samples_in, Node, Written, HOUR};

const DAY: i64 = 24 * HOUR;

fn total(written: &[Written], mint: i64, maxt: i64) -> usize {
    written
        .iter()
        .map(|w| {
            let inside = |t: i64| t >= mint && t <= maxt;
            w.floats.iter().filter(|x| inside(x.0)).count()
                + w.histograms.iter().filter(|x| inside(x.0)).count()
        })
        .sum()
}

/// A series sampled every hour over `[from, to)`, then idle.
fn stopped(node: &Node, t: &TenantId, name: &str, from: i64, to: i64) {
    let l = Labels::from_pairs([("__name__", name), ("job", "batch")]);
    let samples = (0..)
        .map(|i| from + i * HOUR)
        .take_while(|x| *x < to)
        .map(|x| Sample::new(x, 1.0))
        .collect();
    let r = node
        .db
        .append(t, &[SeriesAppend::floats(l, samples)])
        .unwrap();
    assert!(r.rejected.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_past_each_workspace_retention_leaves_the_ingester() {
    let node = Node::new();
    let t = |s: &str| TenantId::parse(s).unwrap();
    let (short, long, unknown) = (t("acct_ws-short"), t("acct_ws-long"), t("dev-workspace"));
    let retentions = Retentions::new();
    retentions.set(&short, 1);
    retentions.set(&long, 150);
    let now = now_ms();
    let cutoff = now - DAY;
    let mut written = Vec::new();
    for tenant in [&short, &long, &unknown] {
        written.push(node.write(tenant, 10, 1, now - 3 * DAY, now));
        stopped(&node, tenant, "batch_done", now - 3 * DAY, now - 2 * DAY);
    }
    // The stopped series leave memory (series_idle_timeout 1 h).
    node.db.checkpoint().unwrap();
    assert_eq!(node.db.evict_idle().unwrap(), 3);

    let started = Instant::now();
    let report = retention::apply_once(&node.db, &retentions, now)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(report.tenants, 2, "{report:?}");
    assert_eq!(report.series_deleted, 1, "{report:?}");
    // 11 series × 2 days in chunks of 120 samples at 30 s (1 h), and the stopped series'.
    assert!(report.chunks_deleted >= 11 * 47, "{report:?}");
    eprintln!(
        "retention pass: {report:?} in {took:?} ({} samples per tenant)",
        total(&written[0], i64::MIN, i64::MAX)
    );

    let check = |node: &Node| {
        let count =
            |tenant: &TenantId, mint: i64, maxt: i64| samples_in(&node.db, tenant, mint, maxt);
        // Only the chunks reaching the cutoff (at most 1 h of samples) are left before it.
        assert_eq!(count(&short, i64::MIN, cutoff - HOUR), 0);
        assert_eq!(count(&short, cutoff, now), total(&written[0], cutoff, now));
        let names = node
            .db
            .label_values(&short, "__name__", &[], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(
            names,
            ["node_cpu", "rpc_seconds"],
            "the stopped series is gone"
        );
        for (i, tenant) in [(1, &long), (2, &unknown)] {
            assert_eq!(
                count(tenant, i64::MIN, i64::MAX),
                total(&written[i], i64::MIN, i64::MAX) + 24,
                "{tenant} keeps everything"
            );
        }
    };
    check(&node);
    // Older samples are refused from now on.
    let late = SeriesAppend::floats(
        written[0][0].labels.clone(),
        vec![Sample::new(cutoff - 1, 1.0)],
    );
    let r = node.db.append(&short, &[late]).unwrap();
    assert_eq!(r.rejected[0].reason, RejectReason::OutOfBounds);

    // Nothing comes back after a crash, and a second pass finds nothing more.
    let node = node.restart();
    check(&node);
    let again = retention::apply_once(&node.db, &retentions, now)
        .await
        .unwrap();
    assert_eq!(
        (again.chunks_deleted, again.series_deleted),
        (0, 0),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_follows_retention_changes_until_stopped() {
    let node = Node::new();
    let tenant = TenantId::parse("acct_ws-later").unwrap();
    let now = now_ms();
    node.write(&tenant, 5, 0, now - 3 * DAY, now - 2 * DAY);
    stopped(&node, &tenant, "recent", now - HOUR / 2, now);
    let retentions = Retentions::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(retention::run_every(
        node.db.clone(),
        retentions.clone(),
        Duration::from_millis(100),
        async move {
            let _ = stopped.await;
        },
    ));
    let old = || samples_in(&node.db, &tenant, i64::MIN, now - 2 * DAY);
    let before = old();
    // No workspace known yet: everything is kept.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(old(), before);
    // The workspace's retention arrives (the control plane's watch): the next pass applies it.
    retentions.set(&tenant, 1);
    let t0 = Instant::now();
    while old() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{} samples left",
            old()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(samples_in(&node.db, &tenant, now - HOUR, now), 1);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shipping_ingester_keeps_only_stopped_series_past_retention() {
    let node = Node::new();
    let tenant = TenantId::parse("acct_ws-ship").unwrap();
    let now = now_ms();
    let written = node.write(&tenant, 10, 0, now - 30 * HOUR, now);
    stopped(
        &node,
        &tenant,
        "batch_done",
        now - 30 * HOUR,
        now - 26 * HOUR,
    );
    let cfg = BlocksConfig {
        retain_after_upload: Duration::from_secs(1),
        ..BlocksConfig::default()
    };
    let shipper = node.shipper(node.fs_bucket(), cfg.clone(), Duration::ZERO);
    let first = shipper.ship_once().await;
    assert!(first.blocks_shipped >= 13, "{first:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = shipper.ship_once().await;
    assert!(second.chunks_dropped > 0, "{second:?}");
    node.db.checkpoint().unwrap();
    assert_eq!(node.db.evict_idle().unwrap(), 1);

    // While uploads succeed the shipper holds at most `held_while_shipping` (16 h here), under
    // the workspace's 1 day: every chunk that old is already gone...
    assert!(retention::held_while_shipping(&cfg, Duration::ZERO) < Duration::from_secs(86_400));
    let retentions = Retentions::new();
    retentions.set(&tenant, 1);
    let report = retention::apply_once(&node.db, &retentions, now)
        .await
        .unwrap();
    assert_eq!(report.chunks_deleted, 0, "{report:?}");
    // ...but a series that stopped keeps its labels and idle postings until retention.
    assert_eq!(report.series_deleted, 1, "{report:?}");
    let names = node
        .db
        .label_values(&tenant, "__name__", &[], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(names, ["node_cpu"]);
    let through = node
        .db
        .ship_state(&tenant)
        .unwrap()
        .shipped_through
        .unwrap();
    assert_eq!(
        samples_in(&node.db, &tenant, through, now),
        total(&written, through, now),
        "what is not shipped yet stays"
    );
}
