//! Blocks promtool writes (`tsdb create-blocks-from openmetrics`) read back through
//! `BlockReader` with every series and sample, and compact into one block holding them all.

use std::collections::BTreeMap;
use std::fmt::Write;

use hestia_block::{compact, BlockMeta, BlockReader, CompactOptions, LocalDir, TENANT_LABEL};
use hestia_model::{Labels, MatchOp, Matcher, TenantId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{promtool, same_value};

#[tokio::test]
async fn hestia_reads_blocks_promtool_writes() {
    let mut rng = StdRng::seed_from_u64(11);
    // Timestamps in quarter seconds: exact in OpenMetrics' float seconds.
    let start = 1_700_000_000_000i64;
    let mut text = String::new();
    let mut want: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for family in 0..4 {
        let (name, kind) = match family % 2 {
            0 => (format!("req_{family}_total"), "counter"),
            _ => (format!("temp_{family}"), "gauge"),
        };
        writeln!(text, "# TYPE {} {kind}", name.trim_end_matches("_total")).unwrap();
        for i in 0..25 {
            let path = format!("/p{i} \"q\" \\x");
            let escaped = path.replace('\\', "\\\\").replace('"', "\\\"");
            let labels = Labels::from_pairs([
                ("__name__", name.clone()),
                ("path", path),
                ("zone", format!("z{}", i % 3)),
            ]);
            let mut t = start + rng.random_range(0..60) * 250;
            let mut v = 0.0f64;
            let samples = want.entry(labels).or_default();
            // Six hours: promtool cuts 2-hour blocks.
            while t < start + 6 * 3600 * 1000 {
                v += match kind {
                    "counter" => rng.random_range(0..1000) as f64 * 0.5,
                    _ => rng.random_range(-1e6..1e6),
                };
                let value = if kind == "gauge" && rng.random_range(0..50) == 0 {
                    f64::NAN
                } else {
                    v
                };
                writeln!(
                    text,
                    "{name}{{path=\"{escaped}\",zone=\"z{}\"}} {value:e} {}.{:03}",
                    i % 3,
                    t / 1000,
                    t % 1000
                )
                .unwrap();
                samples.push((t, value));
                t += 15_000 + rng.random_range(-8..8) * 250;
            }
        }
    }
    text.push_str("# EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.om");
    std::fs::write(&input, &text).unwrap();
    let out = dir.path().join("blocks");
    promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);

    let all = [Matcher::new(MatchOp::RegexMatch, "__name__", ".+").unwrap()];
    let mut got: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut blocks = 0;
    for e in std::fs::read_dir(&out).unwrap() {
        let r = BlockReader::open(LocalDir::new(e.unwrap().path()))
            .await
            .unwrap();
        assert!(
            r.meta().thanos.labels.is_empty(),
            "promtool writes no thanos section"
        );
        for s in r.select(&all, i64::MIN, i64::MAX).await.unwrap() {
            let samples = s.samples(i64::MIN, i64::MAX).unwrap();
            assert!(samples.histograms.is_empty());
            got.entry(s.labels).or_default().extend(samples.floats);
        }
        assert!(r.label_names().contains(&"zone"));
        // Walking the series section finds what the postings do.
        let selected = r.select(&[], i64::MIN, i64::MAX).await.unwrap();
        let mut walked = Vec::new();
        let mut from = None;
        loop {
            let b = r.series_batch(from, 7, i64::MIN, i64::MAX).await.unwrap();
            walked.extend(b.series);
            match b.next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        assert_eq!(walked, selected);
        blocks += 1;
    }
    assert!(blocks >= 3, "{blocks} blocks");
    check(&mut got, &want);

    // Compacted into one block (given a tenant, as backfill does), the samples are the same.
    let tenant = TenantId::parse("tenant-1").unwrap();
    let mut readers = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let dir = e.unwrap().path();
        let mut meta = BlockMeta::read_from_dir(&dir).unwrap();
        meta.thanos.labels = BTreeMap::from([(TENANT_LABEL.to_string(), "tenant-1".to_string())]);
        meta.write_to_dir(&dir).unwrap();
        readers.push(BlockReader::open(LocalDir::new(dir)).await.unwrap());
    }
    let merged = dir.path().join("merged");
    let (meta, stats) = compact(&readers, &merged, &CompactOptions::new(tenant))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.chunks_reencoded, 0);
    assert_eq!(meta.compaction.parents.len(), readers.len());
    let r = BlockReader::open(LocalDir::new(merged.join(meta.ulid.to_string())))
        .await
        .unwrap();
    let mut got: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for s in r.select(&all, i64::MIN, i64::MAX).await.unwrap() {
        got.insert(
            s.labels.clone(),
            s.samples(i64::MIN, i64::MAX).unwrap().floats,
        );
    }
    check(&mut got, &want);
}

fn check(got: &mut BTreeMap<Labels, Vec<(i64, f64)>>, want: &BTreeMap<Labels, Vec<(i64, f64)>>) {
    assert_eq!(got.len(), want.len());
    for ((gl, g), (wl, w)) in got.iter_mut().zip(want) {
        assert_eq!(gl, wl);
        g.sort_by_key(|s| s.0);
        assert_eq!(g.len(), w.len(), "{gl}");
        for (a, b) in g.iter().zip(w) {
            assert!(a.0 == b.0 && same_value(a.1, b.1), "{gl}: {a:?} != {b:?}");
        }
    }
}
