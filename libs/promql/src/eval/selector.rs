//! Instant and range vector selectors.

use hestia_model::{is_stale_nan, Sample};

use promql_parser::parser::{MatrixSelector, VectorSelector};

use super::{at_ms, duration_ms, offset_ms, Ctx, EvalSeries, Evaluator, RangeVal};
use crate::value::Series;

/// Identifies a selector node of the AST being evaluated (its address; the AST is not moved).
pub(crate) fn selector_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

impl Evaluator<'_> {
    pub(crate) fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        ctx: &Ctx,
    ) -> Vec<EvalSeries> {
        let Some(data) = self.data.get(&selector_key(vs)) else {
            return Vec::new();
        };
        let offset = offset_ms(&vs.offset);
        let at = at_ms(&vs.at, self.query_start, self.query_end);
        let n = ctx.steps();
        let lookback = self.lookback;
        let stats = self.stats_selectors.contains(&selector_key(vs));
        let mut out = Vec::with_capacity(data.len());
        for s in data.iter() {
            let derived;
            let s = if stats && !s.histograms.is_empty() {
                derived = Series {
                    labels: s.labels.clone(),
                    floats: s.floats.clone(),
                    histograms: super::stats::with_derived_hints(&s.histograms),
                };
                &derived
            } else {
                s
            };
            let mut es = EvalSeries::new(s.labels.clone(), false);
            if let Some(a) = at {
                if let Some((f, h)) = lookup(&s.floats, &s.histograms, a - offset, lookback) {
                    for k in 0..n {
                        match h {
                            Some(h) => es.hists.push((ctx.ts(k), h.clone())),
                            None => es.floats.push(Sample::new(ctx.ts(k), f)),
                        }
                    }
                }
            } else {
                let (mut fi, mut hi) = (0usize, 0usize);
                for k in 0..n {
                    let t = ctx.ts(k);
                    let r = t - offset;
                    while fi < s.floats.len() && s.floats[fi].t <= r {
                        fi += 1;
                    }
                    while hi < s.histograms.len() && s.histograms[hi].0 <= r {
                        hi += 1;
                    }
                    let fc = fi
                        .checked_sub(1)
                        .map(|i| &s.floats[i])
                        .filter(|p| p.t > r - lookback);
                    let hc = hi
                        .checked_sub(1)
                        .map(|i| &s.histograms[i])
                        .filter(|p| p.0 > r - lookback);
                    match (fc, hc) {
                        (Some(p), Some((ht, h))) => {
                            if *ht > p.t {
                                es.hists.push((t, h.clone()));
                            } else if !is_stale_nan(p.v) {
                                es.floats.push(Sample::new(t, p.v));
                            }
                        }
                        (Some(p), None) => {
                            if !is_stale_nan(p.v) {
                                es.floats.push(Sample::new(t, p.v));
                            }
                        }
                        (None, Some((_, h))) => es.hists.push((t, h.clone())),
                        (None, None) => {}
                    }
                }
            }
            if !es.is_empty() {
                out.push(es);
            }
        }
        out
    }

    /// Like [`Self::eval_vector_selector`] but each value is the sample's own timestamp (seconds).
    pub(crate) fn eval_vector_selector_timestamps(
        &mut self,
        vs: &VectorSelector,
        ctx: &Ctx,
    ) -> Vec<EvalSeries> {
        let Some(data) = self.data.get(&selector_key(vs)) else {
            return Vec::new();
        };
        let offset = offset_ms(&vs.offset);
        let at = at_ms(&vs.at, self.query_start, self.query_end);
        let mut out = Vec::new();
        for s in data.iter() {
            let mut es = EvalSeries::new(s.labels.clone(), false);
            for k in 0..ctx.steps() {
                let t = ctx.ts(k);
                let r = at.unwrap_or(t) - offset;
                if let Some(st) = lookup_time(&s.floats, &s.histograms, r, self.lookback) {
                    es.floats.push(Sample::new(t, st as f64 / 1000.0));
                }
            }
            if !es.is_empty() {
                out.push(es);
            }
        }
        out
    }

    /// Raw samples of a range selector (stale markers dropped); windows are cut per step later.
    pub(crate) fn eval_matrix_selector(&mut self, ms: &MatrixSelector, _ctx: &Ctx) -> RangeVal {
        let vs = &ms.vs;
        let offset = offset_ms(&vs.offset);
        let at = at_ms(&vs.at, self.query_start, self.query_end);
        let stats = self.stats_selectors.contains(&selector_key(vs));
        let series = match self.data.get(&selector_key(vs)) {
            Some(data) => data
                .iter()
                .map(|s| EvalSeries {
                    labels: s.labels.clone(),
                    drop_name: false,
                    // A plain copy unless there are stale markers to drop.
                    floats: if s.floats.iter().any(|p| is_stale_nan(p.v)) {
                        s.floats
                            .iter()
                            .filter(|p| !is_stale_nan(p.v))
                            .copied()
                            .collect()
                    } else {
                        s.floats.clone()
                    },
                    hists: if stats {
                        super::stats::with_derived_hints(&s.histograms)
                    } else {
                        s.histograms.clone()
                    },
                })
                .collect(),
            None => Vec::new(),
        };
        RangeVal {
            series,
            range: duration_ms(&ms.range),
            offset,
            at,
        }
    }
}

/// The latest sample in `(r - lookback, r]`, unless it is a staleness marker.
fn lookup<'a>(
    floats: &[Sample],
    hists: &'a [(i64, crate::histogram::FloatHistogram)],
    r: i64,
    lookback: i64,
) -> Option<(f64, Option<&'a crate::histogram::FloatHistogram>)> {
    let fi = floats.partition_point(|p| p.t <= r);
    let hi = hists.partition_point(|p| p.0 <= r);
    let fc = fi
        .checked_sub(1)
        .map(|i| &floats[i])
        .filter(|p| p.t > r - lookback);
    let hc = hi
        .checked_sub(1)
        .map(|i| &hists[i])
        .filter(|p| p.0 > r - lookback);
    match (fc, hc) {
        (Some(p), Some((ht, h))) if *ht > p.t => Some((0.0, Some(h))),
        (Some(p), _) => (!is_stale_nan(p.v)).then_some((p.v, None)),
        (None, Some((_, h))) => Some((0.0, Some(h))),
        (None, None) => None,
    }
}

fn lookup_time(
    floats: &[Sample],
    hists: &[(i64, crate::histogram::FloatHistogram)],
    r: i64,
    lookback: i64,
) -> Option<i64> {
    let fi = floats.partition_point(|p| p.t <= r);
    let hi = hists.partition_point(|p| p.0 <= r);
    let fc = fi
        .checked_sub(1)
        .map(|i| &floats[i])
        .filter(|p| p.t > r - lookback);
    let hc = hi
        .checked_sub(1)
        .map(|i| &hists[i])
        .filter(|p| p.0 > r - lookback);
    match (fc, hc) {
        (Some(p), Some((ht, _))) if *ht > p.t => Some(*ht),
        (Some(p), _) => (!is_stale_nan(p.v)).then_some(p.t),
        (None, Some((ht, _))) => Some(*ht),
        (None, None) => None,
    }
}

/// Indices `[lo, hi)` of points with `t` in `(end - range, end]`.
pub(crate) fn window<T>(pts: &[T], ts: impl Fn(&T) -> i64, end: i64, range: i64) -> (usize, usize) {
    let lo = pts.partition_point(|p| ts(p) <= end - range);
    let hi = pts.partition_point(|p| ts(p) <= end);
    (lo, hi.max(lo))
}

/// [`window`] for a sequence of window ends that never decreases: the bounds only move forward,
/// so cutting every step's window of a series costs one pass over its samples.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WindowCursor {
    lo: usize,
    hi: usize,
}

impl WindowCursor {
    pub(crate) fn advance<T>(
        &mut self,
        pts: &[T],
        ts: impl Fn(&T) -> i64,
        end: i64,
        range: i64,
    ) -> (usize, usize) {
        while self.lo < pts.len() && ts(&pts[self.lo]) <= end - range {
            self.lo += 1;
        }
        self.hi = self.hi.max(self.lo);
        while self.hi < pts.len() && ts(&pts[self.hi]) <= end {
            self.hi += 1;
        }
        (self.lo, self.hi)
    }
}
