//! Float native histograms: exponential schemas (-4..=8) and custom buckets (schema -53).

use std::fmt;

/// The schema of native histograms with custom bucket boundaries (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
}

/// A run of consecutive buckets; `offset` is the gap to the previous span's end (or the first index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of custom buckets (schema -53 only); the last bucket extends to +Inf.
    pub custom_values: Vec<f64>,
}

/// One bucket with its boundaries, as rendered by the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
    pub index: i32,
}

/// The explicit counter reset hints seen while summing histograms: Prometheus warns when both
/// a reset and a non-reset went into one sum, whatever else (gauges) went in too.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ResetHints {
    reset: bool,
    not_reset: bool,
}

impl ResetHints {
    pub(crate) fn track(&mut self, h: &FloatHistogram) {
        match h.counter_reset_hint {
            CounterResetHint::CounterReset => self.reset = true,
            CounterResetHint::NotCounterReset => self.not_reset = true,
            CounterResetHint::Unknown | CounterResetHint::Gauge => {}
        }
    }

    pub(crate) fn conflict(&self) -> bool {
        self.reset && self.not_reset
    }
}

/// Why two histograms could not be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramError {
    /// Mixing exponential and custom-bucket schemas.
    MixedSchemas,
    /// Custom buckets with different boundaries.
    IncompatibleBounds,
}

/// Iterates `(index, count)` over spans and their buckets.
pub(crate) fn bucket_indexes<'a>(
    spans: &'a [Span],
    buckets: &'a [f64],
) -> impl Iterator<Item = (i32, f64)> + 'a {
    let mut idx = 0i32;
    let mut pos = 0usize;
    spans.iter().enumerate().flat_map(move |(si, s)| {
        if si == 0 {
            idx = s.offset;
        } else {
            idx += s.offset;
        }
        let start = idx;
        idx += s.length as i32;
        let b = pos;
        pos += s.length as usize;
        (0..s.length as usize)
            .filter_map(move |k| buckets.get(b + k).map(|c| (start + k as i32, *c)))
    })
}

/// Builds spans and buckets from `(index, count)` sorted by index; drops zero buckets.
pub(crate) fn spans_from_indexes(items: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::new();
    let mut next = 0i32;
    for &(i, c) in items {
        if c == 0.0 {
            continue;
        }
        match spans.last_mut() {
            Some(s) if i == next => s.length += 1,
            Some(_) => spans.push(Span {
                offset: i - next,
                length: 1,
            }),
            None => spans.push(Span {
                offset: i,
                length: 1,
            }),
        }
        buckets.push(c);
        next = i + 1;
    }
    (spans, buckets)
}

/// Upper bound of bucket `idx` in exponential `schema`.
pub(crate) fn exp_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = (idx as i64) << (-schema);
        if exp == 1024 {
            return f64::MAX;
        }
        if exp > 1024 {
            return f64::INFINITY;
        }
        return 2f64.powi(exp as i32);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = 2f64.powf(frac_idx as f64 / (1i64 << schema) as f64) / 2.0;
    let exp = (idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    frac * 2f64.powi(exp)
}

fn reduce_index(idx: i32, delta: i32) -> i32 {
    if delta <= 0 {
        return idx;
    }
    ((idx - 1) >> delta) + 1
}

fn merge(a: &mut Vec<(i32, f64)>, b: impl Iterator<Item = (i32, f64)>, sign: f64) {
    let mut map: std::collections::BTreeMap<i32, f64> = a.drain(..).collect();
    for (i, c) in b {
        *map.entry(i).or_insert(0.0) += sign * c;
    }
    a.extend(map);
}

impl FloatHistogram {
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    pub fn positive(&self) -> impl Iterator<Item = (i32, f64)> + '_ {
        bucket_indexes(&self.positive_spans, &self.positive_buckets)
    }

    pub fn negative(&self) -> impl Iterator<Item = (i32, f64)> + '_ {
        bucket_indexes(&self.negative_spans, &self.negative_buckets)
    }

    /// Positive buckets reduced to `schema` (which must not exceed ours).
    fn positive_at(&self, schema: i32) -> Vec<(i32, f64)> {
        reduce(self.positive(), self.schema - schema)
    }

    fn negative_at(&self, schema: i32) -> Vec<(i32, f64)> {
        reduce(self.negative(), self.schema - schema)
    }

    /// Converts to a lower resolution schema in place.
    pub fn reduce_resolution(&mut self, schema: i32) {
        if self.uses_custom_buckets() || schema >= self.schema {
            return;
        }
        let p = self.positive_at(schema);
        let n = self.negative_at(schema);
        self.schema = schema;
        (self.positive_spans, self.positive_buckets) = spans_from_indexes(&p);
        (self.negative_spans, self.negative_buckets) = spans_from_indexes(&n);
    }

    /// Removes empty buckets and normalizes spans.
    pub fn compact(&mut self) {
        let p: Vec<_> = self.positive().collect();
        let n: Vec<_> = self.negative().collect();
        (self.positive_spans, self.positive_buckets) = spans_from_indexes(&p);
        (self.negative_spans, self.negative_buckets) = spans_from_indexes(&n);
    }

    /// Maps custom buckets onto `bounds`, a subset of our bounds: each bucket goes to the
    /// first target bucket whose upper bound is at least its own.
    fn custom_buckets_onto(&self, bounds: &[f64]) -> Vec<(i32, f64)> {
        let mut out: Vec<(i32, f64)> = Vec::new();
        for (i, c) in self.positive() {
            let upper = self
                .custom_values
                .get(i as usize)
                .copied()
                .unwrap_or(f64::INFINITY);
            let j = bounds.partition_point(|b| *b < upper) as i32;
            match out.last_mut() {
                Some(l) if l.0 == j => l.1 += c,
                _ => out.push((j, c)),
            }
        }
        out
    }

    /// `self += sign * other`. Zero thresholds are widened to the larger one; custom buckets
    /// with different bounds are reconciled to their common bounds (returns true then).
    fn combine(&mut self, other: &FloatHistogram, sign: f64) -> Result<bool, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::MixedSchemas);
        }
        let mut reconciled = false;
        if self.uses_custom_buckets() {
            let mut p: Vec<(i32, f64)>;
            if self.custom_values == other.custom_values {
                p = self.positive().collect();
                merge(&mut p, other.positive(), sign);
            } else {
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|v| other.custom_values.contains(v))
                    .collect();
                p = self.custom_buckets_onto(&common);
                merge(&mut p, other.custom_buckets_onto(&common).into_iter(), sign);
                self.custom_values = common;
                reconciled = true;
            }
            (self.positive_spans, self.positive_buckets) = spans_from_indexes_keep(&p);
        } else {
            let schema = self.schema.min(other.schema);
            let mut p = self.positive_at(schema);
            let mut n = self.negative_at(schema);
            merge(&mut p, other.positive_at(schema).into_iter(), sign);
            merge(&mut n, other.negative_at(schema).into_iter(), sign);
            self.schema = schema;
            let mut zc = sign * other.zero_count;
            if other.zero_threshold > self.zero_threshold {
                self.zero_threshold = other.zero_threshold;
            }
            // Buckets inside a widened zero bucket merge into it.
            let zt = self.zero_threshold;
            let fold = |v: &mut Vec<(i32, f64)>, zc: &mut f64| {
                v.retain(|&(i, c)| {
                    if exp_bound(i, schema) <= zt {
                        *zc += c;
                        false
                    } else {
                        true
                    }
                })
            };
            let mut zself = self.zero_count;
            fold(&mut p, &mut zself);
            fold(&mut n, &mut zc);
            self.zero_count = zself + zc;
            (self.positive_spans, self.positive_buckets) = spans_from_indexes_keep(&p);
            (self.negative_spans, self.negative_buckets) = spans_from_indexes_keep(&n);
        }
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        self.counter_reset_hint = combined_hint(self.counter_reset_hint, other.counter_reset_hint);
        Ok(reconciled)
    }

    /// Adds `other`; `Ok(true)` means mismatched custom bounds were reconciled.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        self.combine(other, 1.0)
    }

    /// Subtracts `other`; `Ok(true)` means mismatched custom bounds were reconciled.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<bool, HistogramError> {
        self.combine(other, -1.0)
    }

    /// Multiplies every count and the sum by `f`.
    pub fn mul(&mut self, f: f64) {
        self.zero_count *= f;
        self.count *= f;
        self.sum *= f;
        self.positive_buckets.iter_mut().for_each(|b| *b *= f);
        self.negative_buckets.iter_mut().for_each(|b| *b *= f);
    }

    /// Divides every count and the sum by `f`; division by zero removes all buckets but the
    /// zero bucket (as in Prometheus).
    pub fn div(&mut self, f: f64) {
        self.zero_count /= f;
        self.count /= f;
        self.sum /= f;
        if f == 0.0 {
            self.positive_spans.clear();
            self.negative_spans.clear();
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|b| *b /= f);
        self.negative_buckets.iter_mut().for_each(|b| *b /= f);
    }

    /// Moves a running mean of `n - 1` histograms towards `h`, the `n`-th (avoids overflowing sums).
    pub fn update_mean(&mut self, h: &FloatHistogram, n: f64) -> Result<bool, HistogramError> {
        let mut left = h.clone();
        left.div(n);
        let mut right = self.clone();
        right.div(n);
        let r1 = left.sub(&right)?;
        let hint = self.counter_reset_hint;
        let r2 = self.add(&left)?;
        self.counter_reset_hint = combined_hint(hint, h.counter_reset_hint);
        Ok(r1 || r2)
    }

    /// Whether `self` (the later histogram) shows a counter reset relative to `prev`.
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() != prev.uses_custom_buckets() {
            return true;
        }
        if self.uses_custom_buckets() {
            if self.custom_values != prev.custom_values {
                let common: Vec<f64> = self
                    .custom_values
                    .iter()
                    .copied()
                    .filter(|v| prev.custom_values.contains(v))
                    .collect();
                return bucket_decreased(
                    &prev.custom_buckets_onto(&common),
                    &self.custom_buckets_onto(&common),
                );
            }
        } else if self.schema > prev.schema || self.zero_threshold < prev.zero_threshold {
            return true;
        }
        if self.zero_count < prev.zero_count && !self.uses_custom_buckets() {
            return true;
        }
        let schema = self.schema.min(prev.schema);
        bucket_decreased(&prev.positive_at(schema), &self.positive_at(schema))
            || bucket_decreased(&prev.negative_at(schema), &self.negative_at(schema))
    }

    /// All buckets in ascending order of their boundaries, for API output and quantiles.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        if self.uses_custom_buckets() {
            for (i, c) in self.positive() {
                let iu = i as usize;
                let lower = if iu == 0 {
                    f64::NEG_INFINITY
                } else {
                    self.custom_values
                        .get(iu - 1)
                        .copied()
                        .unwrap_or(f64::INFINITY)
                };
                let upper = self.custom_values.get(iu).copied().unwrap_or(f64::INFINITY);
                out.push(Bucket {
                    lower,
                    upper,
                    lower_inclusive: false,
                    upper_inclusive: true,
                    count: c,
                    index: i,
                });
            }
            return out;
        }
        let neg: Vec<_> = self.negative().collect();
        for &(i, c) in neg.iter().rev() {
            out.push(Bucket {
                lower: -exp_bound(i, self.schema),
                upper: -exp_bound(i - 1, self.schema),
                lower_inclusive: true,
                upper_inclusive: false,
                count: c,
                index: i,
            });
        }
        if self.zero_count != 0.0 {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
                index: 0,
            });
        }
        for (i, c) in self.positive() {
            out.push(Bucket {
                lower: exp_bound(i - 1, self.schema),
                upper: exp_bound(i, self.schema),
                lower_inclusive: false,
                upper_inclusive: true,
                count: c,
                index: i,
            });
        }
        out
    }

    /// Equality of the observable content (schema, counts, sum, non-empty buckets), within `eps`.
    pub fn approx_eq(&self, other: &FloatHistogram, eps: f64) -> bool {
        let close = |a: f64, b: f64| crate::value::almost_equal(a, b, eps);
        if self.schema != other.schema
            || !close(self.count, other.count)
            || !close(self.sum, other.sum)
            || !close(self.zero_count, other.zero_count)
            || (self.zero_threshold != other.zero_threshold
                && !close(self.zero_threshold, other.zero_threshold))
        {
            return false;
        }
        if self.uses_custom_buckets() && self.custom_values != other.custom_values {
            return false;
        }
        let eqb = |a: Vec<(i32, f64)>, b: Vec<(i32, f64)>| {
            let a: Vec<_> = a.into_iter().filter(|x| x.1 != 0.0).collect();
            let b: Vec<_> = b.into_iter().filter(|x| x.1 != 0.0).collect();
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && close(x.1, y.1))
        };
        eqb(self.positive().collect(), other.positive().collect())
            && eqb(self.negative().collect(), other.negative().collect())
    }
}

/// The hint of a sum: equal hints stay, gauges win, anything else becomes unknown.
fn combined_hint(a: CounterResetHint, b: CounterResetHint) -> CounterResetHint {
    use CounterResetHint::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Gauge, _) | (_, Gauge) => Gauge,
        _ => Unknown,
    }
}

fn spans_from_indexes_keep(items: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    // Keeps explicit zero buckets out of the result; counts that cancel out are dropped.
    spans_from_indexes(items)
}

fn reduce(it: impl Iterator<Item = (i32, f64)>, delta: i32) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::new();
    for (i, c) in it {
        let ni = reduce_index(i, delta);
        match out.last_mut() {
            Some(l) if l.0 == ni => l.1 += c,
            _ => out.push((ni, c)),
        }
    }
    out
}

fn bucket_decreased(prev: &[(i32, f64)], cur: &[(i32, f64)]) -> bool {
    let mut j = 0;
    for &(i, c) in prev {
        if c == 0.0 {
            continue;
        }
        while j < cur.len() && cur[j].0 < i {
            j += 1;
        }
        if j >= cur.len() || cur[j].0 != i || cur[j].1 < c {
            return true;
        }
    }
    false
}

impl FloatHistogram {
    /// Prometheus' `FloatHistogram.String()`, e.g. `{count:3, sum:5, (0.5,1]:1, (1,2]:2}`.
    pub fn prom_string(&self) -> String {
        let g = crate::value::format_go_g;
        let mut s = format!("{{count:{}, sum:{}", g(self.count), g(self.sum));
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            s.push_str(&format!(
                ", {}{},{}{}:{}",
                if b.lower_inclusive { '[' } else { '(' },
                g(b.lower),
                g(b.upper),
                if b.upper_inclusive { ']' } else { ')' },
                g(b.count)
            ));
        }
        s.push('}');
        s
    }
}

impl fmt::Display for FloatHistogram {
    /// Prometheus' test notation, e.g. `{{schema:0 count:3 sum:5 buckets:[1 2]}}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{{{schema:{} count:{} sum:{}",
            self.schema, self.count, self.sum
        )?;
        if self.zero_count != 0.0 {
            write!(
                f,
                " z_bucket:{} z_bucket_w:{}",
                self.zero_count, self.zero_threshold
            )?;
        }
        let p: Vec<_> = self.positive().collect();
        if !p.is_empty() {
            write!(
                f,
                " offset:{} buckets:{:?}",
                p[0].0,
                p.iter().map(|x| x.1).collect::<Vec<_>>()
            )?;
        }
        let n: Vec<_> = self.negative().collect();
        if !n.is_empty() {
            write!(
                f,
                " n_offset:{} n_buckets:{:?}",
                n[0].0,
                n.iter().map(|x| x.1).collect::<Vec<_>>()
            )?;
        }
        if self.uses_custom_buckets() {
            write!(f, " custom_values:{:?}", self.custom_values)?;
        }
        write!(f, " hint:{:?}}}}}", self.counter_reset_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, offset: i32, b: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            count: b.iter().sum(),
            positive_spans: vec![Span {
                offset,
                length: b.len() as u32,
            }],
            positive_buckets: b.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn bounds() {
        assert_eq!(exp_bound(0, 0), 1.0);
        assert_eq!(exp_bound(1, 0), 2.0);
        assert_eq!(exp_bound(-1, 0), 0.5);
        assert_eq!(exp_bound(1, -1), 4.0);
        assert!((exp_bound(1, 1) - 2f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn add_reduces_schema() {
        let mut a = h(1, 0, &[1.0, 2.0, 3.0]);
        let b = h(0, 0, &[1.0, 1.0]);
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        let got: Vec<_> = a.positive().collect();
        assert_eq!(got, vec![(0, 2.0), (1, 6.0)]);
    }
}
