//! Synchronous evaluation of a parsed expression over pre-fetched series.
//!
//! Every node is evaluated for all steps of its context at once. Instant vectors are kept as
//! [`EvalSeries`] whose points sit exactly on step timestamps; per-step operators walk them with
//! cursors and write into a [`MatrixBuilder`] that deduplicates output label sets.

mod selector;
mod stats;

use std::collections::HashMap;
use std::time::Instant;

use hestia_model::{Labels, Sample};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr};

use crate::error::QueryError;
use crate::histogram::{CounterResetHint, FloatHistogram};
use crate::value::Series;

pub(crate) use selector::{selector_key, window, WindowCursor};
pub(crate) use stats::stats_selectors;

/// An instant-vector series over the steps of an evaluation context.
#[derive(Debug, Clone, Default)]
pub(crate) struct EvalSeries {
    pub labels: Labels,
    /// Set by name-dropping operations; the name is removed when evaluation finishes.
    pub drop_name: bool,
    pub floats: Vec<Sample>,
    pub hists: Vec<(i64, FloatHistogram)>,
}

impl EvalSeries {
    pub fn new(labels: Labels, drop_name: bool) -> Self {
        Self {
            labels,
            drop_name,
            floats: Vec::new(),
            hists: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.floats.is_empty() && self.hists.is_empty()
    }

    pub fn len(&self) -> usize {
        self.floats.len() + self.hists.len()
    }
}

/// A range vector: raw samples plus the window each step looks at.
#[derive(Debug, Clone)]
pub(crate) struct RangeVal {
    pub series: Vec<EvalSeries>,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl RangeVal {
    /// The reference (right, inclusive) end of the window evaluated at step `t`.
    pub fn window_end(&self, t: i64) -> i64 {
        self.at.unwrap_or(t) - self.offset
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<EvalSeries>),
    Range(RangeVal),
}

/// Steps of an evaluation: `start, start+interval, …, end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub start: i64,
    pub end: i64,
    pub interval: i64,
}

impl Ctx {
    pub fn steps(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        ((self.end - self.start) / self.interval.max(1)) as usize + 1
    }

    pub fn ts(&self, k: usize) -> i64 {
        self.start + k as i64 * self.interval
    }

    pub fn step_index(&self, t: i64) -> usize {
        ((t - self.start) / self.interval.max(1)) as usize
    }
}

/// Evaluation state shared by all nodes of one query.
pub(crate) struct Evaluator<'a> {
    pub data: &'a HashMap<usize, std::sync::Arc<Vec<Series>>>,
    pub lookback: i64,
    pub query_start: i64,
    pub query_end: i64,
    /// Step of a range query, 0 for instant queries.
    pub query_step: i64,
    pub default_sub_step: i64,
    pub max_samples: usize,
    pub deadline: Option<Instant>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    pub samples: usize,
    pub positions: &'a crate::pos::Positions,
    /// Selectors read as Prometheus' stats iterator would, by [`selector_key`].
    pub stats_selectors: &'a std::collections::HashSet<usize>,
    /// The histogram trim operators, by [`crate::trim::binary_key`].
    pub trims: &'a HashMap<usize, crate::trim::Trim>,
    /// String literals that were not valid UTF-8 in the query: (as parsed, as written).
    pub invalid_strings: &'a [(String, String)],
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
        None => 0,
    }
}

pub(crate) fn system_time_ms(t: &std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn at_ms(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

impl Evaluator<'_> {
    pub fn warn(&mut self, msg: String) {
        let m = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&m) {
            self.warnings.push(m);
        }
    }

    pub fn info(&mut self, msg: String) {
        let m = format!("PromQL info: {msg}");
        if !self.infos.contains(&m) {
            self.infos.push(m);
        }
    }

    /// Adds a warning pointing at `e` (rendered `PromQL warning: msg (line:col)`).
    pub fn warn_at(&mut self, msg: String, e: &Expr) {
        let m = self.with_pos(msg, e);
        self.warn(m);
    }

    pub fn info_at(&mut self, msg: String, e: &Expr) {
        let m = self.with_pos(msg, e);
        self.info(m);
    }

    /// Like [`Self::warn_at`] for a node recorded by address in [`crate::pos`].
    pub fn warn_key(&mut self, msg: String, key: usize) {
        let m = self.with_pos_key(msg, key);
        self.warn(m);
    }

    fn with_pos(&self, msg: String, e: &Expr) -> String {
        self.with_pos_key(msg, crate::pos::expr_key(e))
    }

    fn with_pos_key(&self, msg: String, key: usize) -> String {
        match self.positions.get(&key) {
            Some((l, c)) => format!("{msg} ({l}:{c})"),
            None => msg,
        }
    }

    /// Rejects label names that came from string literals with invalid UTF-8 escapes.
    pub fn check_label_name(&self, name: &str) -> Result<(), QueryError> {
        match self.invalid_strings.iter().find(|(p, _)| p == name) {
            Some((_, raw)) => Err(QueryError::exec(format!("invalid label name \"{raw}\""))),
            None => Ok(()),
        }
    }

    fn check_limits(&mut self, added: usize) -> Result<(), QueryError> {
        self.samples = self.samples.saturating_add(added);
        if self.samples > self.max_samples {
            return Err(QueryError::TooManySamples("query execution".into()));
        }
        if let Some(d) = self.deadline {
            if Instant::now() > d {
                return Err(QueryError::Timeout("query execution".into()));
            }
        }
        Ok(())
    }

    pub fn eval(&mut self, e: &Expr, ctx: &Ctx) -> Result<Val, QueryError> {
        let v = match e {
            Expr::NumberLiteral(n) => Val::Scalar(vec![n.val; ctx.steps()]),
            Expr::StringLiteral(s) => Val::Str(s.val.clone()),
            Expr::Paren(p) => self.eval(&p.expr, ctx)?,
            Expr::Unary(u) => match self.eval(&u.expr, ctx)? {
                Val::Scalar(mut v) => {
                    v.iter_mut().for_each(|x| *x = -*x);
                    Val::Scalar(v)
                }
                Val::Vector(mut m) => {
                    for s in &mut m {
                        s.drop_name = true;
                        s.floats.iter_mut().for_each(|p| p.v = -p.v);
                        s.hists.iter_mut().for_each(|(_, h)| {
                            h.mul(-1.0);
                            h.counter_reset_hint = CounterResetHint::Gauge;
                        });
                    }
                    Val::Vector(m)
                }
                _ => return Err(QueryError::exec(
                    "unary expression only allowed on expressions of type scalar or instant vector",
                )),
            },
            Expr::VectorSelector(vs) => {
                let m = self.eval_vector_selector(vs, ctx);
                Val::Vector(m)
            }
            Expr::MatrixSelector(ms) => Val::Range(self.eval_matrix_selector(ms, ctx)),
            Expr::Subquery(sq) => Val::Range(self.eval_subquery(sq, ctx)?),
            Expr::Binary(b) => crate::binary::eval_binary(self, b, ctx)?,
            Expr::Aggregate(a) => crate::aggregate::eval_aggregate(self, a, ctx)?,
            Expr::Call(c) => crate::functions::eval_call(self, c, ctx)?,
            Expr::Extension(_) => {
                return Err(QueryError::exec("extension expressions are not supported"))
            }
        };
        let n = match &v {
            Val::Vector(m) => m.iter().map(EvalSeries::len).sum(),
            Val::Range(r) => r.series.iter().map(EvalSeries::len).sum(),
            _ => 0,
        };
        self.check_limits(n)?;
        Ok(v)
    }

    /// Evaluates a subquery's inner expression on its own aligned steps.
    fn eval_subquery(&mut self, sq: &SubqueryExpr, ctx: &Ctx) -> Result<RangeVal, QueryError> {
        let offset = offset_ms(&sq.offset);
        let at = at_ms(&sq.at, self.query_start, self.query_end);
        let range = duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(duration_ms)
            .unwrap_or(self.default_sub_step)
            .max(1);
        let inner = subquery_ctx(ctx, range, offset, at, step);
        let series = match self.eval(&sq.expr, &inner)? {
            Val::Vector(m) => m,
            Val::Scalar(v) => {
                let mut s = EvalSeries::new(Labels::empty(), false);
                s.floats = v
                    .iter()
                    .enumerate()
                    .map(|(k, f)| Sample::new(inner.ts(k), *f))
                    .collect();
                vec![s]
            }
            _ => {
                return Err(QueryError::exec(
                    "subquery is only allowed on instant vector",
                ))
            }
        };
        // A sample may appear at several subquery steps and steps may skip samples, so stored
        // counter reset hints do not apply; resets are detected by comparing counts.
        let mut series = series;
        for s in &mut series {
            for (_, h) in &mut s.hists {
                if h.counter_reset_hint != CounterResetHint::Gauge {
                    h.counter_reset_hint = CounterResetHint::Unknown;
                }
            }
        }
        Ok(RangeVal {
            series,
            range,
            offset,
            at,
        })
    }
}

/// The inner steps of a subquery evaluated from `ctx`.
pub(crate) fn subquery_ctx(ctx: &Ctx, range: i64, offset: i64, at: Option<i64>, step: i64) -> Ctx {
    let (s, e) = match at {
        Some(a) => (a, a),
        None => (ctx.start, ctx.end),
    };
    let lo = s - offset - range;
    let mut start = step * (lo / step);
    if start <= lo {
        start += step;
    }
    Ctx {
        start,
        end: e - offset,
        interval: step,
    }
}

/// Accumulates per-step outputs into series, deduplicating label sets.
#[derive(Default)]
pub(crate) struct MatrixBuilder {
    pub series: Vec<EvalSeries>,
    index: HashMap<u64, Vec<usize>>,
}

impl MatrixBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn index_of(&mut self, labels: Labels, drop_name: bool) -> usize {
        let h = labels.hash64() ^ (drop_name as u64);
        let bucket = self.index.entry(h).or_default();
        for &i in bucket.iter() {
            if self.series[i].labels == labels && self.series[i].drop_name == drop_name {
                return i;
            }
        }
        let i = self.series.len();
        bucket.push(i);
        self.series.push(EvalSeries::new(labels, drop_name));
        i
    }

    pub fn push_f(&mut self, i: usize, t: i64, v: f64) {
        self.series[i].floats.push(Sample::new(t, v));
    }

    pub fn push_h(&mut self, i: usize, t: i64, h: FloatHistogram) {
        self.series[i].hists.push((t, h));
    }

    /// Whether series `i` already has a point at `t` (points are appended in time order).
    pub fn has_point(&self, i: usize, t: i64) -> bool {
        let s = &self.series[i];
        s.floats.last().is_some_and(|p| p.t == t) || s.hists.last().is_some_and(|p| p.0 == t)
    }

    pub fn finish(self) -> Vec<EvalSeries> {
        self.series.into_iter().filter(|s| !s.is_empty()).collect()
    }
}

/// One element of a vector at a given step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepPoint<'a> {
    pub sid: usize,
    pub f: f64,
    pub h: Option<&'a FloatHistogram>,
}

/// Walks a step-aligned matrix step by step.
pub(crate) struct StepCursor<'a> {
    m: &'a [EvalSeries],
    pos: Vec<(usize, usize)>,
}

impl<'a> StepCursor<'a> {
    pub fn new(m: &'a [EvalSeries]) -> Self {
        Self {
            m,
            pos: vec![(0, 0); m.len()],
        }
    }

    /// Fills `out` with the points at `t`; steps must be visited in increasing order.
    pub fn at(&mut self, t: i64, out: &mut Vec<StepPoint<'a>>) {
        out.clear();
        for (sid, s) in self.m.iter().enumerate() {
            let (fi, hi) = &mut self.pos[sid];
            while *fi < s.floats.len() && s.floats[*fi].t < t {
                *fi += 1;
            }
            if *fi < s.floats.len() && s.floats[*fi].t == t {
                out.push(StepPoint {
                    sid,
                    f: s.floats[*fi].v,
                    h: None,
                });
                continue;
            }
            while *hi < s.hists.len() && s.hists[*hi].0 < t {
                *hi += 1;
            }
            if *hi < s.hists.len() && s.hists[*hi].0 == t {
                out.push(StepPoint {
                    sid,
                    f: 0.0,
                    h: Some(&s.hists[*hi].1),
                });
            }
        }
    }
}
