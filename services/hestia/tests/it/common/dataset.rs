//! A deterministic, Prometheus-like data set: gauges, counters with resets, classic histograms,
//! `up`, and short-lived counters that end with a stale marker. Written as one remote-write request
//! per scrape timestamp, so any receiver sees every series in time order.

use hestia_proto::prometheus as pb;

/// Prometheus' staleness marker (a signalling NaN).
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// Bucket bounds of the classic histogram.
pub const LES: [&str; 8] = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"];
const LE_BOUNDS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, f64::INFINITY];

/// Series per (job, instance) pair: gauge, 2 counters, 8 buckets + sum + count, up.
pub const SERIES_PER_INSTANCE: usize = 14;

pub struct Spec {
    pub jobs: usize,
    pub instances_per_job: usize,
    /// Short-lived `hd_churn` series (each lives for part of the range, then goes stale).
    pub churn_series: usize,
    /// First scrape time (ms); scrapes every `interval_ms`, offset so they never fall on whole seconds.
    pub start_ms: i64,
    pub interval_ms: i64,
    pub scrapes: usize,
    pub seed: u64,
}

/// SplitMix64: a small deterministic generator (no dependency, same sequence everywhere).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

struct SeriesData {
    labels: Vec<pb::Label>,
    /// One optional value per scrape.
    values: Vec<Option<f64>>,
}

pub struct Dataset {
    series: Vec<SeriesData>,
    pub timestamps: Vec<i64>,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<pb::Label> {
    let mut v: Vec<pb::Label> = pairs
        .iter()
        .map(|(n, v)| pb::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

impl Dataset {
    pub fn generate(spec: &Spec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let n = spec.scrapes;
        let timestamps: Vec<i64> = (0..n as i64)
            .map(|k| spec.start_ms + k * spec.interval_ms + 123)
            .collect();
        let mut series = Vec::new();
        for j in 0..spec.jobs {
            let job = format!("job{j}");
            for i in 0..spec.instances_per_job {
                let instance = format!("host{i}:9100");
                let base = [("job", job.as_str()), ("instance", instance.as_str())];
                let with = |name: &str, extra: &[(&str, &str)]| {
                    let mut p = vec![("__name__", name)];
                    p.extend_from_slice(&base);
                    p.extend_from_slice(extra);
                    labels(&p)
                };
                // Gauge: a wave plus noise, sometimes negative.
                let phase = rng.f64() * 6.0;
                let amp = 10.0 + rng.f64() * 50.0;
                let values = (0..n)
                    .map(|k| Some(amp * ((k as f64) / 7.0 + phase).sin() + rng.f64() * 5.0))
                    .collect();
                series.push(SeriesData {
                    labels: with("hd_gauge", &[]),
                    values,
                });
                // Counters with occasional resets. Resets keep a third of the value, so no window
                // starts near a counter's zero point: Prometheus 2.42 and 3.x extrapolate
                // `rate` differently there (3.x caps at half a scrape interval before the zero
                // point, 2.42 after).
                for code in ["200", "500"] {
                    let mut v = 1000.0 + rng.f64() * 1000.0;
                    let scale = if code == "200" { 20.0 } else { 2.0 };
                    let values = (0..n)
                        .map(|_| {
                            if rng.below(70) == 0 {
                                v = (v / 3.0).floor();
                            } else {
                                v += (rng.f64() * scale).floor();
                            }
                            Some(v)
                        })
                        .collect();
                    series.push(SeriesData {
                        labels: with("hd_requests_total", &[("code", code)]),
                        values,
                    });
                }
                // Classic histogram: cumulative buckets, sum and count, reset together (to a
                // third, for the reason above), starting from earlier observations.
                let mut counts = [0f64; 8];
                let mut sum = 0.0;
                let spread = 0.2 + rng.f64();
                let observe = |rng: &mut Rng, counts: &mut [f64; 8], sum: &mut f64| {
                    let obs = -spread * (1.0 - rng.f64()).ln();
                    *sum += obs;
                    for (c, bound) in counts.iter_mut().zip(LE_BOUNDS) {
                        if obs <= bound {
                            *c += 1.0;
                        }
                    }
                };
                for _ in 0..600 {
                    observe(&mut rng, &mut counts, &mut sum);
                }
                let mut per_scrape: Vec<([f64; 8], f64)> = Vec::with_capacity(n);
                for _ in 0..n {
                    if rng.below(90) == 0 {
                        for c in counts.iter_mut() {
                            *c = (*c / 3.0).floor();
                        }
                        sum /= 3.0;
                    }
                    for _ in 0..rng.below(12) {
                        observe(&mut rng, &mut counts, &mut sum);
                    }
                    per_scrape.push((counts, sum));
                }
                for (b, le) in LES.iter().enumerate() {
                    series.push(SeriesData {
                        labels: with("hd_latency_seconds_bucket", &[("le", le)]),
                        values: per_scrape.iter().map(|(c, _)| Some(c[b])).collect(),
                    });
                }
                series.push(SeriesData {
                    labels: with("hd_latency_seconds_sum", &[]),
                    values: per_scrape.iter().map(|(_, s)| Some(*s)).collect(),
                });
                series.push(SeriesData {
                    labels: with("hd_latency_seconds_count", &[]),
                    values: per_scrape.iter().map(|(c, _)| Some(c[7])).collect(),
                });
                let values = (0..n)
                    .map(|_| Some(if rng.below(40) == 0 { 0.0 } else { 1.0 }))
                    .collect();
                series.push(SeriesData {
                    labels: with("up", &[]),
                    values,
                });
            }
        }
        // Short-lived series: alive for a stretch, then a stale marker.
        for c in 0..spec.churn_series {
            let pod = format!("pod{c}");
            let job = format!("job{}", c % spec.jobs.max(1));
            let from = rng.below(n as u64) as usize;
            let len = 4 + rng.below((n / 2).max(1) as u64) as usize;
            let to = (from + len).min(n);
            let mut v = 500.0 + rng.f64() * 100.0;
            let values = (0..n)
                .map(|k| {
                    if k >= from && k < to {
                        v += rng.f64() * 3.0;
                        Some(v)
                    } else if k == to {
                        Some(f64::from_bits(STALE_NAN))
                    } else {
                        None
                    }
                })
                .collect();
            series.push(SeriesData {
                labels: labels(&[("__name__", "hd_churn"), ("job", &job), ("pod", &pod)]),
                values,
            });
        }
        Self { series, timestamps }
    }

    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    pub fn num_samples(&self) -> usize {
        self.series
            .iter()
            .map(|s| s.values.iter().filter(|v| v.is_some()).count())
            .sum()
    }

    /// The whole data set in OpenMetrics text (`promtool tsdb create-blocks-from openmetrics`'s
    /// input), series after series. Stale markers become plain NaNs: the text format has no way
    /// to carry the marker's bits.
    pub fn openmetrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for s in &self.series {
            let name = s
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map_or("", |l| l.value.as_str());
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|l| l.name != "__name__")
                .map(|l| format!("{}=\"{}\"", l.name, l.value))
                .collect();
            for (k, v) in s.values.iter().enumerate() {
                let Some(v) = v else { continue };
                let value = match *v {
                    v if v.is_nan() => "NaN".to_string(),
                    v if v == f64::INFINITY => "+Inf".to_string(),
                    v if v == f64::NEG_INFINITY => "-Inf".to_string(),
                    v => format!("{v:?}"),
                };
                let t = self.timestamps[k];
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {value} {}.{:03}",
                    labels.join(","),
                    t.div_euclid(1000),
                    t.rem_euclid(1000)
                );
            }
        }
        out.push_str("# EOF\n");
        out
    }

    /// The snappy-compressed remote-write request of scrape `k`.
    pub fn request(&self, k: usize) -> Vec<u8> {
        let t = self.timestamps[k];
        let timeseries = self
            .series
            .iter()
            .filter_map(|s| {
                s.values[k].map(|value| pb::TimeSeries {
                    labels: s.labels.clone(),
                    samples: vec![pb::Sample {
                        value,
                        timestamp: t,
                    }],
                    ..Default::default()
                })
            })
            .collect();
        super::encode(timeseries)
    }
}
