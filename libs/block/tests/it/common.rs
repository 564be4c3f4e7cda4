//! Test data and helpers shared by the modules.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hestia_block::{
    histogram_chunks, symbols_of, xor_chunks, BlockMeta, BlockOptions, BlockSource, BlockWriter,
    DEFAULT_CHUNK_SAMPLES,
};
use hestia_chunkenc::{CounterResetHint, Histogram, Span};
use hestia_model::{Labels, TenantId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub struct Series {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, Histogram)>,
}

fn histogram(rng: &mut StdRng, n: u32, float: bool) -> Histogram {
    let f = f64::from(n);
    let mut positive_buckets: Vec<f64> = (0..5).map(|i| f * f64::from(i + 1)).collect();
    let mut negative_buckets = vec![f * 2.0];
    if float {
        positive_buckets.iter_mut().for_each(|b| *b *= 0.5);
        negative_buckets.iter_mut().for_each(|b| *b *= 0.25);
    }
    let zero_count = if float { f * 0.75 } else { f };
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 2,
        zero_threshold: 2f64.powi(-128),
        zero_count,
        count: zero_count
            + positive_buckets.iter().sum::<f64>()
            + negative_buckets.iter().sum::<f64>(),
        sum: f * rng.random_range(10.0..20.0),
        positive_spans: vec![
            Span {
                offset: -1,
                length: 2,
            },
            Span {
                offset: 3,
                length: 3,
            },
        ],
        negative_spans: vec![Span {
            offset: 2,
            length: 1,
        }],
        positive_buckets,
        negative_buckets,
        custom_values: vec![],
    }
}

/// `n` series sorted by labels over `[start, start + span_ms)`: floats with stale markers and
/// NaN/±Inf; every tenth series an integer histogram (a float histogram with `float_hists`).
pub fn random_series(
    seed: u64,
    n: usize,
    start: i64,
    span_ms: i64,
    float_hists: bool,
) -> Vec<Series> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<Series> = (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", format!("hestia_test_{}", i % 5)),
                ("job", format!("job \"{}\"\\x", i % 3)),
                ("instance", format!("10.0.{}.{}:9100", i / 200, i % 200)),
            ]);
            let is_hist = i % 10 == 9;
            let mut t = start + rng.random_range(0..15_000i64);
            let mut v: f64 = rng.random_range(-1e3..1e3);
            let (mut floats, mut histograms) = (Vec::new(), Vec::new());
            let mut j = 0u32;
            while t < start + span_ms {
                if is_hist {
                    histograms.push((t, histogram(&mut rng, j, float_hists)));
                } else {
                    let x = match rng.random_range(0..100) {
                        0 => f64::from_bits(STALE_NAN_BITS),
                        1 => f64::INFINITY,
                        2 => -0.0,
                        3 => 1.5e-300,
                        _ => {
                            v += rng.random_range(-5.0..20.0);
                            v
                        }
                    };
                    floats.push((t, x));
                }
                j += 1;
                t += 15_000 + rng.random_range(-50..50);
            }
            Series {
                labels,
                floats,
                histograms,
            }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

pub fn write_block(parent: &Path, series: &[Series]) -> BlockMeta {
    let opts = BlockOptions {
        tenant: TenantId::parse("tenant-1").unwrap(),
        ingester: Some("ingester-a1".into()),
        source: BlockSource::Ingester,
        time_range: None,
    };
    let mut w =
        BlockWriter::new(parent, opts, symbols_of(series.iter().map(|s| &s.labels))).unwrap();
    for s in series {
        let mut chunks = xor_chunks(&s.floats, DEFAULT_CHUNK_SAMPLES).unwrap();
        chunks.extend(histogram_chunks(&s.histograms, DEFAULT_CHUNK_SAMPLES).unwrap());
        w.add_series(&s.labels, &chunks).unwrap();
    }
    w.finish().unwrap()
}

/// Runs promtool; panics with its output unless it succeeds.
pub fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is installed (make deps installs package prometheus)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A label set as Go's `labels.Labels.String()` prints it (values quoted like `strconv.Quote`;
/// the test data is printable ASCII).
pub fn go_labels(l: &Labels) -> String {
    let pairs: Vec<String> = l
        .iter()
        .map(|l| {
            let v = l.value.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{}=\"{v}\"", l.name)
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Whether two samples are the same: equal bits, or both NaN (text has no NaN payloads).
pub fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Parses `{labels} value timestamp` lines of `promtool tsdb dump` (labels may hold spaces).
pub fn parse_dump(out: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut got: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in out.lines() {
        let (rest, t) = line.rsplit_once(' ').expect("timestamp");
        let (labels, v) = rest.rsplit_once(' ').expect("value");
        let v: f64 = v.parse().unwrap_or_else(|_| panic!("value in {line}"));
        got.entry(labels.to_string())
            .or_default()
            .push((t.parse().expect("timestamp"), v));
    }
    got
}
