//! An in-memory [`Queryable`] for tests and small embedded uses.

use std::collections::HashMap;
use std::sync::OnceLock;

use hestia_model::{Labels, MatchOp, Matcher, Sample, METRIC_NAME};

use crate::error::QueryError;
use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::value::Series;
use crate::{Queryable, SelectHints};

/// Series kept sorted by labels; samples appended in time order.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    series: Vec<Series>,
    /// Positions of the series of each metric name, built on the first read after a series was
    /// added.
    by_name: OnceLock<HashMap<String, Vec<usize>>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, labels: &Labels) -> &mut Series {
        let i = match self.series.binary_search_by(|s| s.labels.cmp(labels)) {
            Ok(i) => i,
            Err(i) => {
                self.series.insert(i, Series::new(labels.clone()));
                self.by_name = OnceLock::new();
                i
            }
        };
        &mut self.series[i]
    }

    /// Adds a float sample; a sample at an existing timestamp replaces the old one.
    pub fn add_float(&mut self, labels: &Labels, t: i64, v: f64) {
        let s = self.entry(labels);
        s.histograms.retain(|(ht, _)| *ht != t);
        match s.floats.binary_search_by(|p| p.t.cmp(&t)) {
            Ok(i) => s.floats[i].v = v,
            Err(i) => s.floats.insert(i, Sample::new(t, v)),
        }
    }

    /// Adds a native histogram sample. Like Prometheus' TSDB, a histogram appended right after
    /// another one without a reset reads back as `NotCounterReset` unless it has a hint already.
    pub fn add_histogram(&mut self, labels: &Labels, t: i64, mut h: FloatHistogram) {
        let s = self.entry(labels);
        let last_f = s.floats.last().map(|p| p.t);
        if let Some((pt, prev)) = s.histograms.last() {
            if *pt < t
                && last_f.is_none_or(|ft| ft < *pt)
                && h.counter_reset_hint == CounterResetHint::Unknown
            {
                // A detected reset starts a new chunk, whose first sample reads back as unknown.
                h.counter_reset_hint = if h.detect_reset(prev) {
                    CounterResetHint::Unknown
                } else {
                    CounterResetHint::NotCounterReset
                };
            }
        }
        s.floats.retain(|p| p.t != t);
        match s.histograms.binary_search_by(|p| p.0.cmp(&t)) {
            Ok(i) => s.histograms[i].1 = h,
            Err(i) => s.histograms.insert(i, (t, h)),
        }
    }

    pub fn clear(&mut self) {
        self.series.clear();
        self.by_name = OnceLock::new();
    }

    pub fn series(&self) -> &[Series] {
        &self.series
    }
}

fn matches(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

#[async_trait::async_trait]
impl Queryable for MemoryStorage {
    async fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, QueryError> {
        let (mint, maxt) = (hints.mint, hints.maxt);
        let mut out = Vec::new();
        // An equality matcher on the metric name narrows the candidates through the index.
        let by_name = matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
            .map(|m| {
                let index = self.by_name.get_or_init(|| {
                    let mut ix: HashMap<String, Vec<usize>> = HashMap::new();
                    for (i, s) in self.series.iter().enumerate() {
                        let name = s.labels.metric_name().unwrap_or("");
                        ix.entry(name.to_string()).or_default().push(i);
                    }
                    ix
                });
                index.get(&m.value).map(Vec::as_slice).unwrap_or(&[])
            });
        let candidates: Box<dyn Iterator<Item = &Series>> = match by_name {
            Some(ids) => Box::new(ids.iter().map(|&i| &self.series[i])),
            None => Box::new(self.series.iter()),
        };
        for s in candidates {
            if !matches(&s.labels, matchers) {
                continue;
            }
            let lo = s.floats.partition_point(|p| p.t < mint);
            let hi = s.floats.partition_point(|p| p.t <= maxt);
            let hlo = s.histograms.partition_point(|p| p.0 < mint);
            let hhi = s.histograms.partition_point(|p| p.0 <= maxt);
            if lo == hi && hlo == hhi {
                continue;
            }
            let (mut floats, mut histograms) = (&s.floats[lo..hi], &s.histograms[hlo..hhi]);
            if hints.latest_only {
                // Returns exactly what the hint allows, so the engine's tests prove it is enough.
                let newest_float = floats.last().map(|p| p.t);
                let newest_histogram = histograms.last().map(|h| h.0);
                if newest_float > newest_histogram {
                    (floats, histograms) = (&floats[floats.len() - 1..], &[]);
                } else {
                    (floats, histograms) = (&[], &histograms[histograms.len() - 1..]);
                }
            }
            out.push(Series {
                labels: s.labels.clone(),
                floats: floats.to_vec(),
                histograms: histograms.to_vec(),
            });
        }
        Ok(out)
    }
}
