//! `promtool tsdb analyze` and `promtool tsdb dump` accept Hestia's blocks, and dump the samples
//! that were written.

use crate::common::{go_labels, parse_dump, promtool, random_series, same_value, write_block};

const START: i64 = 1_700_000_000_000;
const SPAN: i64 = 2 * 3600 * 1000;

#[test]
fn promtool_analyzes_and_dumps_hestia_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let series = random_series(7, 300, START, SPAN, false);
    let meta = write_block(dir.path(), &series);
    let parent = dir.path().to_str().unwrap();
    let ulid = meta.ulid.to_string();

    let analysis = promtool(&["tsdb", "analyze", "--extended", parent, &ulid]);
    assert!(
        analysis.contains(&format!("Block ID: {ulid}")),
        "{analysis}"
    );
    assert!(analysis.contains("Series: 300"), "{analysis}");

    // promtool 2.42's dump opens the directory as a database and needs its WAL directory.
    std::fs::create_dir(dir.path().join("wal")).unwrap();
    let (mint, maxt) = (START + 600_000, START + SPAN - 600_000);
    let out = promtool(&[
        "tsdb",
        "dump",
        &format!("--min-time={mint}"),
        &format!("--max-time={maxt}"),
        parent,
    ]);
    let got = parse_dump(&out);
    let mut floats = 0;
    for s in &series {
        let key = go_labels(&s.labels);
        let want: Vec<(i64, f64)> = s
            .floats
            .iter()
            .copied()
            .filter(|x| x.0 >= mint && x.0 <= maxt)
            .collect();
        if !s.histograms.is_empty() {
            // promtool 2.42's dump prints float samples only.
            assert!(!got.contains_key(&key), "{key}");
            continue;
        }
        let g = got
            .get(&key)
            .unwrap_or_else(|| panic!("{key} missing from the dump"));
        assert_eq!(g.len(), want.len(), "{key}");
        for (a, b) in g.iter().zip(&want) {
            assert!(a.0 == b.0 && same_value(a.1, b.1), "{key}: {a:?} != {b:?}");
        }
        floats += want.len();
    }
    assert_eq!(
        got.len(),
        series.iter().filter(|s| s.histograms.is_empty()).count()
    );
    assert!(floats > 100_000, "{floats} samples compared");
}

/// promtool 2.42 predates float histogram chunks: it still analyzes a block holding some and
/// dumps its float samples, printing nothing for histogram series.
#[test]
fn promtool_accepts_blocks_with_float_histogram_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let series = random_series(8, 40, START, SPAN, true);
    let meta = write_block(dir.path(), &series);
    let parent = dir.path().to_str().unwrap();
    let analysis = promtool(&[
        "tsdb",
        "analyze",
        "--extended",
        parent,
        &meta.ulid.to_string(),
    ]);
    assert!(analysis.contains("Series: 40"), "{analysis}");
    std::fs::create_dir(dir.path().join("wal")).unwrap();
    let got = parse_dump(&promtool(&["tsdb", "dump", parent]));
    let floats: usize = series.iter().map(|s| s.floats.len()).sum();
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), floats);
    assert!(meta.stats.num_histogram_samples > 0);
}
