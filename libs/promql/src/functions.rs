//! PromQL functions.

use std::collections::HashMap;

use hestia_model::{Labels, LabelsBuilder, Sample, METRIC_NAME};
use promql_parser::parser::{Call, Expr};

use crate::aggregate::{fmt_g, kahan_inc, quantile};
use crate::error::QueryError;
use crate::eval::{
    Ctx, EvalSeries, Evaluator, MatrixBuilder, RangeVal, StepCursor, StepPoint, Val, WindowCursor,
};
use crate::histogram::{Bucket, CounterResetHint, FloatHistogram, ResetHints};

/// The samples of one series inside one step's window.
pub(crate) struct Window<'a> {
    pub floats: &'a [Sample],
    pub hists: &'a [(i64, FloatHistogram)],
    /// Exclusive start and inclusive end of the window (ms).
    pub start: i64,
    pub end: i64,
    pub range: i64,
    /// Step timestamp (ms) and index.
    pub t: i64,
    pub k: usize,
    /// Index of the series in the range vector.
    pub series: usize,
    /// With [`over_windows_with_resets`]: the indices (into `floats`) of the window's samples
    /// lower than the sample before them.
    pub resets: &'a [usize],
}

/// Output of a range function for one window.
pub(crate) enum Out {
    F(f64),
    H(FloatHistogram),
}

fn arg(c: &Call, i: usize) -> Result<&Expr, QueryError> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| QueryError::bad(format!("missing argument {} to {}", i + 1, c.func.name)))
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn scalar_arg(ev: &mut Evaluator, c: &Call, i: usize, ctx: &Ctx) -> Result<Vec<f64>, QueryError> {
    match ev.eval(arg(c, i)?, ctx)? {
        Val::Scalar(v) => Ok(v),
        _ => Err(QueryError::exec(format!(
            "expected scalar argument {} to {}",
            i + 1,
            c.func.name
        ))),
    }
}

fn string_arg(ev: &mut Evaluator, c: &Call, i: usize, ctx: &Ctx) -> Result<String, QueryError> {
    match ev.eval(arg(c, i)?, ctx)? {
        Val::Str(s) => Ok(s),
        _ => Err(QueryError::exec(format!(
            "expected string argument {} to {}",
            i + 1,
            c.func.name
        ))),
    }
}

fn vector_arg(
    ev: &mut Evaluator,
    c: &Call,
    i: usize,
    ctx: &Ctx,
) -> Result<Vec<EvalSeries>, QueryError> {
    match ev.eval(arg(c, i)?, ctx)? {
        Val::Vector(v) => Ok(v),
        _ => Err(QueryError::exec(format!(
            "expected instant vector argument {} to {}",
            i + 1,
            c.func.name
        ))),
    }
}

fn range_arg(ev: &mut Evaluator, c: &Call, i: usize, ctx: &Ctx) -> Result<RangeVal, QueryError> {
    match ev.eval(arg(c, i)?, ctx)? {
        Val::Range(r) => Ok(r),
        _ => Err(QueryError::exec(format!(
            "expected range vector argument {} to {}",
            i + 1,
            c.func.name
        ))),
    }
}

/// Applies `f` to every series' window at every step.
fn over_windows(
    ev: &mut Evaluator,
    rv: &RangeVal,
    ctx: &Ctx,
    keep_name: bool,
    f: impl FnMut(&mut Evaluator, &Labels, &Window) -> Option<Out>,
) -> Vec<EvalSeries> {
    windows(ev, rv, ctx, keep_name, false, f)
}

/// [`over_windows`] with [`Window::resets`] filled in: a counter's resets are found once per
/// series, so a long window (`increase(x[1h])` at a 1 m step) costs O(1) per step, not O(samples).
fn over_windows_with_resets(
    ev: &mut Evaluator,
    rv: &RangeVal,
    ctx: &Ctx,
    keep_name: bool,
    f: impl FnMut(&mut Evaluator, &Labels, &Window) -> Option<Out>,
) -> Vec<EvalSeries> {
    windows(ev, rv, ctx, keep_name, true, f)
}

fn windows(
    ev: &mut Evaluator,
    rv: &RangeVal,
    ctx: &Ctx,
    keep_name: bool,
    find_resets: bool,
    mut f: impl FnMut(&mut Evaluator, &Labels, &Window) -> Option<Out>,
) -> Vec<EvalSeries> {
    let mut out = Vec::with_capacity(rv.series.len());
    // Absolute indices into the series' floats; rebased per window into `window_resets`.
    let mut resets: Vec<usize> = Vec::new();
    let mut window_resets: Vec<usize> = Vec::new();
    for (si, s) in rv.series.iter().enumerate() {
        let mut o = EvalSeries::new(s.labels.clone(), s.drop_name || !keep_name);
        resets.clear();
        if find_resets {
            resets.extend((1..s.floats.len()).filter(|&j| s.floats[j].v < s.floats[j - 1].v));
        }
        // Window ends grow with the step, so the windows are cut incrementally.
        let (mut fc, mut hc) = (WindowCursor::default(), WindowCursor::default());
        let (mut rlo, mut rhi) = (0, 0);
        for k in 0..ctx.steps() {
            let t = ctx.ts(k);
            let end = rv.window_end(t);
            let (flo, fhi) = fc.advance(&s.floats, |p| p.t, end, rv.range);
            let (hlo, hhi) = hc.advance(&s.hists, |p| p.0, end, rv.range);
            if flo == fhi && hlo == hhi {
                continue;
            }
            // Resets inside the window: after its first sample, before its end.
            while rlo < resets.len() && resets[rlo] <= flo {
                rlo += 1;
            }
            rhi = rhi.max(rlo);
            while rhi < resets.len() && resets[rhi] < fhi {
                rhi += 1;
            }
            window_resets.clear();
            window_resets.extend(resets[rlo..rhi].iter().map(|j| j - flo));
            let w = Window {
                floats: &s.floats[flo..fhi],
                hists: &s.hists[hlo..hhi],
                start: end - rv.range,
                end,
                range: rv.range,
                t,
                k,
                series: si,
                resets: &window_resets,
            };
            match f(ev, &s.labels, &w) {
                Some(Out::F(v)) => o.floats.push(Sample::new(t, v)),
                Some(Out::H(h)) => o.hists.push((t, h)),
                None => {}
            }
        }
        if !o.is_empty() {
            out.push(o);
        }
    }
    out
}

/// Applies `f` to every float sample; histograms are dropped silently.
fn map_floats(
    m: Vec<EvalSeries>,
    drop_name: bool,
    mut f: impl FnMut(i64, f64) -> Option<f64>,
) -> Vec<EvalSeries> {
    m.into_iter()
        .filter_map(|mut s| {
            s.hists.clear();
            s.floats = s
                .floats
                .into_iter()
                .filter_map(|p| f(p.t, p.v).map(|v| Sample::new(p.t, v)))
                .collect();
            s.drop_name |= drop_name;
            (!s.is_empty()).then_some(s)
        })
        .collect()
}

/// Applies `f` to every histogram sample; floats are dropped silently.
fn map_hists(m: Vec<EvalSeries>, mut f: impl FnMut(&FloatHistogram) -> f64) -> Vec<EvalSeries> {
    m.into_iter()
        .filter_map(|s| {
            let mut o = EvalSeries::new(s.labels, true);
            o.floats = s.hists.iter().map(|(t, h)| Sample::new(*t, f(h))).collect();
            (!o.is_empty()).then_some(o)
        })
        .collect()
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn metric_name(l: &Labels) -> &str {
    l.get(METRIC_NAME).unwrap_or("")
}

pub(crate) fn eval_call(ev: &mut Evaluator, c: &Call, ctx: &Ctx) -> Result<Val, QueryError> {
    let name = c.func.name;
    let first = c.args.args.first().map(|b| b.as_ref());
    let v = match name {
        "time" => Val::Scalar(
            (0..ctx.steps())
                .map(|k| ctx.ts(k) as f64 / 1000.0)
                .collect(),
        ),
        "pi" => Val::Scalar(vec![std::f64::consts::PI; ctx.steps()]),
        "start" => Val::Scalar(vec![ev.query_start as f64 / 1000.0; ctx.steps()]),
        "end" => Val::Scalar(vec![ev.query_end as f64 / 1000.0; ctx.steps()]),
        "step" => Val::Scalar(vec![ev.query_step as f64 / 1000.0; ctx.steps()]),
        "range" => Val::Scalar(vec![
            (ev.query_end - ev.query_start) as f64 / 1000.0;
            ctx.steps()
        ]),
        "min_of" | "max_of" => {
            let a = scalar_arg(ev, c, 0, ctx)?;
            let b = scalar_arg(ev, c, 1, ctx)?;
            let f = if name == "min_of" { go_min } else { go_max };
            Val::Scalar(a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect())
        }
        "vector" => {
            let v = scalar_arg(ev, c, 0, ctx)?;
            let mut s = EvalSeries::new(Labels::empty(), false);
            s.floats = v
                .iter()
                .enumerate()
                .map(|(k, f)| Sample::new(ctx.ts(k), *f))
                .collect();
            Val::Vector(vec![s])
        }
        "scalar" => {
            let m = vector_arg(ev, c, 0, ctx)?;
            let mut out = vec![f64::NAN; ctx.steps()];
            let mut cnt = vec![0u32; ctx.steps()];
            for s in &m {
                for p in &s.floats {
                    let k = ctx.step_index(p.t);
                    out[k] = p.v;
                    cnt[k] += 1;
                }
            }
            for (o, n) in out.iter_mut().zip(&cnt) {
                if *n != 1 {
                    *o = f64::NAN;
                }
            }
            Val::Scalar(out)
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sin" | "cos"
        | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh" | "acosh"
        | "atanh" | "deg" | "rad" | "sgn" => {
            let f: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => f64::to_degrees,
                "rad" => f64::to_radians,
                _ => |v: f64| {
                    if v > 0.0 {
                        1.0
                    } else if v < 0.0 {
                        -1.0
                    } else {
                        v
                    }
                },
            };
            let m = vector_arg(ev, c, 0, ctx)?;
            Val::Vector(map_floats(m, true, |_, v| Some(f(v))))
        }
        "round" => {
            let m = vector_arg(ev, c, 0, ctx)?;
            let to = if c.args.len() > 1 {
                scalar_arg(ev, c, 1, ctx)?
            } else {
                vec![1.0; ctx.steps()]
            };
            Val::Vector(map_floats(m, true, |t, v| {
                let inv = 1.0 / to[ctx.step_index(t)];
                Some((v * inv + 0.5).floor() / inv)
            }))
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let m = vector_arg(ev, c, 0, ctx)?;
            let a = scalar_arg(ev, c, 1, ctx)?;
            let b = if name == "clamp" {
                scalar_arg(ev, c, 2, ctx)?
            } else {
                Vec::new()
            };
            Val::Vector(map_floats(m, true, |t, v| {
                let k = ctx.step_index(t);
                match name {
                    "clamp" => {
                        let (lo, hi) = (a[k], b[k]);
                        if hi < lo {
                            None
                        } else {
                            Some(go_max(lo, go_min(hi, v)))
                        }
                    }
                    "clamp_min" => Some(go_max(a[k], v)),
                    _ => Some(go_min(a[k], v)),
                }
            }))
        }
        "timestamp" => {
            let m = match first.map(unwrap_parens) {
                Some(Expr::VectorSelector(vs)) => ev.eval_vector_selector_timestamps(vs, ctx),
                _ => vector_arg(ev, c, 0, ctx)?
                    .into_iter()
                    .map(|s| {
                        let mut o = EvalSeries::new(s.labels, s.drop_name);
                        o.floats = s
                            .floats
                            .iter()
                            .map(|p| p.t)
                            .chain(s.hists.iter().map(|p| p.0))
                            .map(|t| Sample::new(t, t as f64 / 1000.0))
                            .collect();
                        o.floats.sort_by_key(|p| p.t);
                        o
                    })
                    .collect(),
            };
            Val::Vector(
                m.into_iter()
                    .map(|mut s| {
                        s.drop_name = true;
                        s
                    })
                    .collect(),
            )
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => {
            let m = if c.args.is_empty() {
                let mut s = EvalSeries::new(Labels::empty(), false);
                s.floats = (0..ctx.steps())
                    .map(|k| Sample::new(ctx.ts(k), ctx.ts(k) as f64 / 1000.0))
                    .collect();
                vec![s]
            } else {
                vector_arg(ev, c, 0, ctx)?
            };
            Val::Vector(map_floats(m, true, |_, v| Some(date_part(name, v))))
        }
        "label_replace" => label_replace(ev, c, ctx)?,
        "label_join" => label_join(ev, c, ctx)?,
        "sort" | "sort_desc" => {
            sort_warning(ev, c);
            let mut m: Vec<EvalSeries> = vector_arg(ev, c, 0, ctx)?
                .into_iter()
                .filter(|s| !s.floats.is_empty())
                .map(|mut s| {
                    s.hists.clear();
                    s
                })
                .collect();
            let desc = name == "sort_desc";
            m.sort_by(|a, b| {
                let av = a.floats.first().map(|p| p.v).unwrap_or(f64::NAN);
                let bv = b.floats.first().map(|p| p.v).unwrap_or(f64::NAN);
                match (av.is_nan(), bv.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if desc => bv.total_cmp(&av),
                    _ => av.total_cmp(&bv),
                }
            });
            Val::Vector(m)
        }
        "sort_by_label" | "sort_by_label_desc" => {
            sort_warning(ev, c);
            let mut m = vector_arg(ev, c, 0, ctx)?;
            let mut names = Vec::new();
            for i in 1..c.args.len() {
                names.push(string_arg(ev, c, i, ctx)?);
            }
            let desc = name == "sort_by_label_desc";
            m.sort_by(|a, b| {
                let mut o = std::cmp::Ordering::Equal;
                for n in &names {
                    o = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if o != std::cmp::Ordering::Equal {
                        break;
                    }
                }
                if o == std::cmp::Ordering::Equal {
                    o = a.labels.cmp(&b.labels);
                }
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Val::Vector(m)
        }
        "absent" => {
            let m = vector_arg(ev, c, 0, ctx)?;
            let labels = absent_labels(first);
            let mut present = vec![false; ctx.steps()];
            for s in &m {
                for p in &s.floats {
                    present[ctx.step_index(p.t)] = true;
                }
                for (t, _) in &s.hists {
                    present[ctx.step_index(*t)] = true;
                }
            }
            let mut o = EvalSeries::new(labels, false);
            for (k, p) in present.iter().enumerate() {
                if !p {
                    o.floats.push(Sample::new(ctx.ts(k), 1.0));
                }
            }
            Val::Vector(if o.is_empty() { vec![] } else { vec![o] })
        }
        "absent_over_time" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let labels = absent_labels(first.map(unwrap_parens));
            let mut present = vec![false; ctx.steps()];
            for s in over_windows(ev, &rv, ctx, true, |_, _, _| Some(Out::F(1.0))) {
                for p in &s.floats {
                    present[ctx.step_index(p.t)] = true;
                }
            }
            let mut o = EvalSeries::new(labels, false);
            for (k, p) in present.iter().enumerate() {
                if !p {
                    o.floats.push(Sample::new(ctx.ts(k), 1.0));
                }
            }
            Val::Vector(if o.is_empty() { vec![] } else { vec![o] })
        }
        "histogram_count" => Val::Vector(map_hists(vector_arg(ev, c, 0, ctx)?, |h| h.count)),
        "histogram_sum" => Val::Vector(map_hists(vector_arg(ev, c, 0, ctx)?, |h| h.sum)),
        "histogram_avg" => Val::Vector(map_hists(vector_arg(ev, c, 0, ctx)?, |h| h.sum / h.count)),
        "histogram_stddev" => Val::Vector(map_hists(vector_arg(ev, c, 0, ctx)?, |h| {
            hist_variance(h).sqrt()
        })),
        "histogram_stdvar" => Val::Vector(map_hists(vector_arg(ev, c, 0, ctx)?, hist_variance)),
        "histogram_fraction" | "histogram_quantile" | "histogram_quantiles" => {
            histogram_estimate(ev, c, ctx)?
        }
        _ => return range_function(ev, c, ctx),
    };
    Ok(v)
}

fn sort_warning(ev: &mut Evaluator, c: &Call) {
    if ev.query_step > 0 {
        ev.warn_key(
            "sort is ineffective for range queries since results are always ordered by labels"
                .into(),
            c as *const Call as usize,
        );
    }
}

fn range_function(ev: &mut Evaluator, c: &Call, ctx: &Ctx) -> Result<Val, QueryError> {
    let name = c.func.name;
    let a0 = arg(c, 0)?;
    let v = match name {
        "rate" | "increase" | "delta" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let counter = name != "delta";
            let is_rate = name == "rate";
            let mut not_counter: Vec<String> = Vec::new();
            // The name check is done once per series.
            let mut checked = None;
            let out = over_windows_with_resets(ev, &rv, ctx, false, |ev, l, w| {
                if counter
                    && w.hists.is_empty()
                    && w.floats.len() > 1
                    && checked.replace(w.series) != Some(w.series)
                {
                    let n = metric_name(l);
                    let counter_like = ["_total", "_sum", "_count", "_bucket"]
                        .iter()
                        .any(|s| n.ends_with(s));
                    if !counter_like && !not_counter.iter().any(|x| x == n) {
                        not_counter.push(n.to_string());
                    }
                }
                extrapolated_rate(ev, a0, l, w, counter, is_rate)
            });
            for n in not_counter {
                ev.info_at(
                    format!("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"),
                    a0,
                );
            }
            out
        }
        "irate" | "idelta" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let is_rate = name == "irate";
            over_windows(ev, &rv, ctx, false, |ev, l, w| {
                instant_value(ev, a0, l, w, is_rate)
            })
        }
        "sum_over_time" | "avg_over_time" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let avg = name == "avg_over_time";
            over_windows(ev, &rv, ctx, false, |ev, l, w| {
                if !w.floats.is_empty() && !w.hists.is_empty() {
                    ev.warn_at(
                        format!(
                            "encountered a mix of histograms and floats for metric name {:?}",
                            metric_name(l)
                        ),
                        a0,
                    );
                    return None;
                }
                if !w.hists.is_empty() {
                    let mut acc = w.hists[0].1.clone();
                    let mut comp = 0.0;
                    let mut hints = ResetHints::default();
                    hints.track(&acc);
                    for (_, h) in &w.hists[1..] {
                        let before = acc.sum;
                        hints.track(h);
                        let r = acc.add(h);
                        (acc.sum, comp) = kahan_inc(h.sum, before, comp);
                        if r == Ok(true) {
                            ev.info_at(
                                "mismatched custom buckets were reconciled during aggregation"
                                    .into(),
                                a0,
                            );
                        }
                        if r.is_err() {
                            ev.warn_at(
                                format!(
                                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                                    metric_name(l)
                                ),
                                a0,
                            );
                            return None;
                        }
                    }
                    if hints.conflict() {
                        ev.warn_at(
                            "conflicting counter resets during histogram aggregation".into(),
                            a0,
                        );
                    }
                    if comp.is_finite() {
                        acc.sum += comp;
                    }
                    if avg {
                        acc.div(w.hists.len() as f64);
                        if !(acc.count.is_finite() && acc.sum.is_finite()) {
                            // The sum overflowed: use an incremental mean instead, and
                            // for the sum field the compensated float mean.
                            let mut m = w.hists[0].1.clone();
                            for (i, (_, h)) in w.hists.iter().enumerate().skip(1) {
                                let _ = m.update_mean(h, (i + 1) as f64);
                            }
                            let sums: Vec<Sample> = w
                                .hists
                                .iter()
                                .map(|(t, h)| Sample::new(*t, h.sum))
                                .collect();
                            m.sum = avg_floats(&sums);
                            acc = m;
                        }
                    }
                    acc.compact();
                    return Some(Out::H(acc));
                }
                Some(Out::F(if avg {
                    avg_floats(w.floats)
                } else {
                    sum_floats(w.floats)
                }))
            })
        }
        "count_over_time" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            over_windows(ev, &rv, ctx, false, |_, _, w| {
                Some(Out::F((w.floats.len() + w.hists.len()) as f64))
            })
        }
        "present_over_time" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            over_windows(ev, &rv, ctx, false, |_, _, _| Some(Out::F(1.0)))
        }
        "last_over_time" | "first_over_time" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let last = name == "last_over_time";
            over_windows(ev, &rv, ctx, true, |_, _, w| {
                let f = if last {
                    w.floats.last()
                } else {
                    w.floats.first()
                };
                let h = if last {
                    w.hists.last()
                } else {
                    w.hists.first()
                };
                match (f, h) {
                    (Some(f), Some((ht, h))) => {
                        if (*ht > f.t) == last {
                            Some(Out::H(h.clone()))
                        } else {
                            Some(Out::F(f.v))
                        }
                    }
                    (Some(f), None) => Some(Out::F(f.v)),
                    (None, Some((_, h))) => Some(Out::H(h.clone())),
                    (None, None) => None,
                }
            })
        }
        "ts_of_last_over_time" | "ts_of_first_over_time" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let last = name == "ts_of_last_over_time";
            over_windows(ev, &rv, ctx, false, |_, _, w| {
                let ft = if last {
                    w.floats.last()
                } else {
                    w.floats.first()
                }
                .map(|p| p.t);
                let ht = if last {
                    w.hists.last()
                } else {
                    w.hists.first()
                }
                .map(|p| p.0);
                let t = match (ft, ht) {
                    (Some(a), Some(b)) => {
                        if last {
                            a.max(b)
                        } else {
                            a.min(b)
                        }
                    }
                    (Some(a), None) | (None, Some(a)) => a,
                    (None, None) => return None,
                };
                Some(Out::F(t as f64 / 1000.0))
            })
        }
        "min_over_time"
        | "max_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "mad_over_time"
        | "ts_of_min_over_time"
        | "ts_of_max_over_time" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let mut ignored: Vec<String> = Vec::new();
            let out = over_windows(ev, &rv, ctx, false, |_, l, w| {
                if w.floats.is_empty() {
                    return None;
                }
                if !w.hists.is_empty() && !ignored.iter().any(|n| n == metric_name(l)) {
                    ignored.push(metric_name(l).to_string());
                }
                let fl = w.floats;
                Some(Out::F(match name {
                    "min_over_time" => {
                        fl.iter()
                            .fold(f64::NAN, |m, p| if m > p.v || m.is_nan() { p.v } else { m })
                    }
                    "max_over_time" => {
                        fl.iter()
                            .fold(f64::NAN, |m, p| if m < p.v || m.is_nan() { p.v } else { m })
                    }
                    "ts_of_min_over_time" | "ts_of_max_over_time" => {
                        let max = name == "ts_of_max_over_time";
                        let mut best = fl[0];
                        for p in &fl[1..] {
                            if (max && (p.v >= best.v || best.v.is_nan()))
                                || (!max && (p.v <= best.v || best.v.is_nan()))
                            {
                                best = *p;
                            }
                        }
                        best.t as f64 / 1000.0
                    }
                    "mad_over_time" if fl.iter().any(|p| p.v.is_nan()) => f64::NAN,
                    "mad_over_time" => {
                        let mut v: Vec<f64> = fl.iter().map(|p| p.v).collect();
                        let med = quantile(0.5, &mut v);
                        let mut d: Vec<f64> = fl.iter().map(|p| (p.v - med).abs()).collect();
                        quantile(0.5, &mut d)
                    }
                    _ => {
                        let var = variance(fl);
                        if name == "stddev_over_time" {
                            var.sqrt()
                        } else {
                            var
                        }
                    }
                }))
            });
            for n in ignored {
                ev.info_at(
                    format!("ignored histograms in a range containing both floats and histograms for metric name {n:?}"),
                    a0,
                );
            }
            out
        }
        "quantile_over_time" => {
            let q = scalar_arg(ev, c, 0, ctx)?;
            let a1 = arg(c, 1)?;
            let rv = range_arg(ev, c, 1, ctx)?;
            if let Some(bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                ev.warn_at(
                    format!(
                        "quantile value should be between 0 and 1, got {}",
                        fmt_g(*bad)
                    ),
                    arg(c, 0)?,
                );
            }
            let mut ignored = Vec::new();
            let out = over_windows(ev, &rv, ctx, false, |_, l, w| {
                if w.floats.is_empty() {
                    return None;
                }
                note_mixed(&mut ignored, l, w);
                let mut v: Vec<f64> = w.floats.iter().map(|p| p.v).collect();
                Some(Out::F(quantile(q[w.k], &mut v)))
            });
            ignored_info(ev, ignored, a1);
            out
        }
        "changes" | "resets" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let resets = name == "resets";
            over_windows(ev, &rv, ctx, false, |_, _, w| {
                Some(Out::F(changes_or_resets(w, resets)))
            })
        }
        "deriv" | "predict_linear" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let d = if name == "predict_linear" {
                scalar_arg(ev, c, 1, ctx)?
            } else {
                Vec::new()
            };
            let mut ignored: Vec<String> = Vec::new();
            let out = over_windows(ev, &rv, ctx, false, |_, l, w| {
                if !w.hists.is_empty()
                    && !w.floats.is_empty()
                    && !ignored.iter().any(|n| n == metric_name(l))
                {
                    ignored.push(metric_name(l).to_string());
                }
                if w.floats.len() < 2 {
                    return None;
                }
                if name == "deriv" {
                    let (slope, _) = linear_regression(w.floats, w.floats[0].t);
                    Some(Out::F(slope))
                } else {
                    let (slope, icpt) = linear_regression(w.floats, w.t);
                    Some(Out::F(slope * d[w.k] + icpt))
                }
            });
            for n in ignored {
                ev.info_at(
                    format!("ignored histograms in a range containing both floats and histograms for metric name {n:?}"),
                    a0,
                );
            }
            out
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let rv = range_arg(ev, c, 0, ctx)?;
            let sf = scalar_arg(ev, c, 1, ctx)?;
            let tf = scalar_arg(ev, c, 2, ctx)?;
            if let Some(bad) = sf.iter().find(|v| **v <= 0.0 || **v >= 1.0) {
                return Err(QueryError::exec(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                    fmt_g(*bad)
                )));
            }
            if let Some(bad) = tf.iter().find(|v| **v <= 0.0 || **v >= 1.0) {
                return Err(QueryError::exec(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                    fmt_g(*bad)
                )));
            }
            let mut ignored = Vec::new();
            let out = over_windows(ev, &rv, ctx, false, |_, l, w| {
                if w.floats.len() < 2 {
                    return None;
                }
                note_mixed(&mut ignored, l, w);
                Some(Out::F(holt_winters(w.floats, sf[w.k], tf[w.k])))
            });
            ignored_info(ev, ignored, a0);
            out
        }
        _ => {
            return Err(QueryError::bad(format!(
                "function {:?} is not supported",
                name
            )));
        }
    };
    Ok(Val::Vector(v))
}

/// Remembers metric names whose window mixes floats and (ignored) histograms.
fn note_mixed(names: &mut Vec<String>, l: &Labels, w: &Window) {
    if !w.hists.is_empty() && !w.floats.is_empty() && !names.iter().any(|n| n == metric_name(l)) {
        names.push(metric_name(l).to_string());
    }
}

fn ignored_info(ev: &mut Evaluator, names: Vec<String>, e: &Expr) {
    for n in names {
        ev.info_at(
            format!("ignored histograms in a range containing both floats and histograms for metric name {n:?}"),
            e,
        );
    }
}

pub(crate) fn sum_floats(fl: &[Sample]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in fl {
        (sum, c) = kahan_inc(p.v, sum, c);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

fn avg_floats(fl: &[Sample]) -> f64 {
    let (mut sum, mut count) = (fl[0].v, 1.0f64);
    let (mut mean, mut kc) = (0.0f64, 0.0f64);
    let mut incremental = false;
    for (i, p) in fl[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(p.v, sum, kc);
            if !ns.is_infinite() {
                (sum, kc) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            kc /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, kc) = kahan_inc(p.v / count, q * mean, q * kc);
    }
    if incremental {
        mean + kc
    } else {
        sum / count + kc / count
    }
}

fn variance(fl: &[Sample]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in fl {
        count += 1.0;
        let delta = p.v - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (p.v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

fn linear_regression(fl: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init = fl[0].v;
    let mut const_y = true;
    for (i, p) in fl.iter().enumerate() {
        if const_y && i > 0 && p.v != init {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn holt_winters(fl: &[Sample], sf: f64, tf: f64) -> f64 {
    let (mut s0, mut s1) = (0.0, fl[0].v);
    let mut b = fl[1].v - fl[0].v;
    for (i, p) in fl.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let x = sf * p.v;
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    s1
}

fn changes_or_resets(w: &Window, resets: bool) -> f64 {
    // Merge floats and histograms in time order.
    let (mut i, mut j) = (0, 0);
    let mut prev: Option<(f64, Option<&FloatHistogram>)> = None;
    let mut n = 0.0;
    while i < w.floats.len() || j < w.hists.len() {
        let cur = if j >= w.hists.len() || (i < w.floats.len() && w.floats[i].t < w.hists[j].0) {
            i += 1;
            (w.floats[i - 1].v, None)
        } else {
            j += 1;
            (0.0, Some(&w.hists[j - 1].1))
        };
        if let Some(p) = prev {
            let hit = match (p, cur) {
                ((pf, None), (cf, None)) => {
                    if resets {
                        cf < pf
                    } else {
                        cf != pf && !(cf.is_nan() && pf.is_nan())
                    }
                }
                ((_, Some(ph)), (_, Some(ch))) => {
                    if resets {
                        ch.detect_reset(ph)
                    } else {
                        !ch.approx_eq(ph, 0.0)
                    }
                }
                _ => true,
            };
            if hit {
                n += 1.0;
            }
        }
        prev = Some(cur);
    }
    n
}

fn extrapolated_rate(
    ev: &mut Evaluator,
    a0: &Expr,
    l: &Labels,
    w: &Window,
    counter: bool,
    is_rate: bool,
) -> Option<Out> {
    if !w.floats.is_empty() && !w.hists.is_empty() {
        ev.warn_at(
            format!(
                "encountered a mix of histograms and floats for metric name {:?}",
                metric_name(l)
            ),
            a0,
        );
        return None;
    }
    let (first_t, last_t, n1, mut result_f, mut result_h);
    if w.hists.len() > 1 {
        n1 = w.hists.len() - 1;
        first_t = w.hists[0].0;
        last_t = w.hists[n1].0;
        result_f = 0.0;
        result_h = Some(histogram_rate(ev, a0, l, w.hists, counter)?);
    } else if w.floats.len() > 1 {
        n1 = w.floats.len() - 1;
        first_t = w.floats[0].t;
        last_t = w.floats[n1].t;
        result_f = w.floats[n1].v - w.floats[0].v;
        result_h = None;
        if counter {
            // In sample order, as Prometheus adds them.
            for &j in w.resets {
                result_f += w.floats[j - 1].v;
            }
        }
    } else {
        return None;
    }
    let range_start = w.start;
    let range_end = w.end;
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_dur = sampled / n1 as f64;
    let threshold = avg_dur * 1.1;
    if to_start >= threshold {
        to_start = avg_dur / 2.0;
    }
    // Counters cannot be negative: do not extrapolate below the zero point of the first value
    // (for histograms, of their count).
    let (first_v, delta) = match &result_h {
        Some(h) => (w.hists[0].1.count, h.count),
        None => (w.floats[0].v, result_f),
    };
    if counter && delta > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_dur / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= w.range as f64 / 1000.0;
    }
    match result_h.as_mut() {
        Some(h) => {
            h.mul(factor);
            Some(Out::H(result_h.take()?))
        }
        None => {
            result_f *= factor;
            Some(Out::F(result_f))
        }
    }
}

fn histogram_rate(
    ev: &mut Evaluator,
    a0: &Expr,
    l: &Labels,
    hs: &[(i64, FloatHistogram)],
    counter: bool,
) -> Option<FloatHistogram> {
    let prev = &hs[0].1;
    let last = &hs[hs.len() - 1].1;
    if counter
        && (prev.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        ev.warn_at(
            format!(
                "this native histogram metric is not a counter: {:?}",
                metric_name(l)
            ),
            a0,
        );
    }
    if !counter
        && (prev.counter_reset_hint != CounterResetHint::Gauge
            || last.counter_reset_hint != CounterResetHint::Gauge)
    {
        ev.warn_at(
            format!(
                "this native histogram metric is not a gauge: {:?}",
                metric_name(l)
            ),
            a0,
        );
    }
    // A counter reset between the first two samples makes the first one irrelevant, including
    // its bucket layout (it may even use the other kind of schema).
    let empty;
    let mut prev = prev;
    if counter && hs.len() > 1 && hs[1].1.detect_reset(prev) {
        empty = FloatHistogram {
            schema: hs[1].1.schema,
            custom_values: hs[1].1.custom_values.clone(),
            ..Default::default()
        };
        prev = &empty;
    }
    // Counters may not mix schema kinds anywhere, gauges (delta) only between the ends.
    let mixed = |h: &FloatHistogram| h.uses_custom_buckets() != prev.uses_custom_buckets();
    if mixed(last) || (counter && hs[1..].iter().any(|(_, h)| mixed(h))) {
        mixed_schema_warning(ev, a0, l);
        return None;
    }
    let mut res = last.clone();
    match res.sub(prev) {
        Ok(true) => ev.info_at(
            "mismatched custom buckets were reconciled during subtraction".into(),
            a0,
        ),
        Ok(false) => {}
        Err(_) => {
            mixed_schema_warning(ev, a0, l);
            return None;
        }
    }
    if counter {
        for (_, h) in &hs[1..] {
            if h.detect_reset(prev) {
                match res.add(prev) {
                    Ok(true) => ev.info_at(
                        "mismatched custom buckets were reconciled during addition".into(),
                        a0,
                    ),
                    Ok(false) => {}
                    Err(_) => {
                        mixed_schema_warning(ev, a0, l);
                        return None;
                    }
                }
            }
            prev = h;
        }
    }
    res.counter_reset_hint = CounterResetHint::Gauge;
    res.compact();
    Some(res)
}

fn mixed_schema_warning(ev: &mut Evaluator, e: &Expr, l: &Labels) {
    ev.warn_at(
        format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
            metric_name(l)
        ),
        e,
    );
}

fn instant_value(
    ev: &mut Evaluator,
    a0: &Expr,
    l: &Labels,
    w: &Window,
    is_rate: bool,
) -> Option<Out> {
    // The last two samples of either type, in time order.
    let mut ss: Vec<(i64, f64, Option<&FloatHistogram>)> = Vec::with_capacity(4);
    for p in &w.floats[w.floats.len().saturating_sub(2)..] {
        ss.push((p.t, p.v, None));
    }
    for (t, h) in &w.hists[w.hists.len().saturating_sub(2)..] {
        ss.push((*t, 0.0, Some(h)));
    }
    ss.sort_by_key(|s| s.0);
    if ss.len() < 2 {
        return None;
    }
    let last = ss[ss.len() - 1];
    let prev = ss[ss.len() - 2];
    let dt = last.0 - prev.0;
    let out = match (prev.2, last.2) {
        (None, None) => {
            let v = if is_rate && last.1 < prev.1 {
                last.1
            } else {
                last.1 - prev.1
            };
            if dt == 0 {
                return None;
            }
            Out::F(if is_rate { v / (dt as f64 / 1000.0) } else { v })
        }
        (Some(ph), Some(lh)) => {
            let mut r = lh.clone();
            if is_rate
                && (ph.counter_reset_hint == CounterResetHint::Gauge
                    || lh.counter_reset_hint == CounterResetHint::Gauge)
            {
                ev.warn_at(
                    format!(
                        "this native histogram metric is not a counter: {:?}",
                        metric_name(l)
                    ),
                    a0,
                );
            }
            if !is_rate
                && (ph.counter_reset_hint != CounterResetHint::Gauge
                    || lh.counter_reset_hint != CounterResetHint::Gauge)
            {
                ev.warn_at(
                    format!(
                        "this native histogram metric is not a gauge: {:?}",
                        metric_name(l)
                    ),
                    a0,
                );
            }
            if !is_rate || !lh.detect_reset(ph) {
                match r.sub(ph) {
                    Ok(true) => ev.info_at(
                        "mismatched custom buckets were reconciled during subtraction".into(),
                        a0,
                    ),
                    Ok(false) => {}
                    Err(_) => {
                        mixed_schema_warning(ev, a0, l);
                        return None;
                    }
                }
            }
            r.counter_reset_hint = CounterResetHint::Gauge;
            if dt == 0 {
                return None;
            }
            if is_rate {
                r.div(dt as f64 / 1000.0);
            }
            r.compact();
            Out::H(r)
        }
        _ => {
            ev.warn_at(
                format!(
                    "encountered a mix of histograms and floats for metric name {:?}",
                    metric_name(l)
                ),
                a0,
            );
            return None;
        }
    };
    Some(out)
}

fn absent_labels(e: Option<&Expr>) -> Labels {
    let vs = match e {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = LabelsBuilder::new();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name.as_str()) {
            b.set(m.name.clone(), m.value.clone());
            has.push(&m.name);
        } else {
            b.remove(&m.name);
        }
    }
    b.build()
}

fn label_replace(ev: &mut Evaluator, c: &Call, ctx: &Ctx) -> Result<Val, QueryError> {
    let m = vector_arg(ev, c, 0, ctx)?;
    let dst = string_arg(ev, c, 1, ctx)?;
    let repl = string_arg(ev, c, 2, ctx)?;
    let src = string_arg(ev, c, 3, ctx)?;
    let re_s = string_arg(ev, c, 4, ctx)?;
    let re = regex::RegexBuilder::new(&format!("^(?s:{re_s})$"))
        .size_limit(hestia_model::MAX_REGEX_SIZE)
        .build()
        .map_err(|e| {
            QueryError::exec(format!(
                "invalid regular expression in label_replace(): {re_s}: {e}"
            ))
        })?;
    ev.check_label_name(&dst)?;
    if !valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut mb = MatrixBuilder::new();
    for s in m {
        let v = s.labels.get(&src).unwrap_or("");
        let (labels, drop) = match re.captures(v) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(&repl, &mut res);
                let mut b = s.labels.to_builder();
                b.set(dst.clone(), res);
                (b.build(), s.drop_name && dst != METRIC_NAME)
            }
            None => (s.labels, s.drop_name),
        };
        add_series(&mut mb, labels, drop, s.floats, s.hists)?;
    }
    Ok(Val::Vector(mb.finish()))
}

fn add_series(
    mb: &mut MatrixBuilder,
    labels: Labels,
    drop: bool,
    floats: Vec<Sample>,
    hists: Vec<(i64, FloatHistogram)>,
) -> Result<(), QueryError> {
    let i = mb.index_of(labels, drop);
    let dst = &mut mb.series[i];
    if dst.is_empty() {
        dst.floats = floats;
        dst.hists = hists;
        return Ok(());
    }
    let mut seen: std::collections::HashSet<i64> = dst.floats.iter().map(|p| p.t).collect();
    seen.extend(dst.hists.iter().map(|p| p.0));
    if floats.iter().any(|p| seen.contains(&p.t)) || hists.iter().any(|p| seen.contains(&p.0)) {
        return Err(QueryError::exec(
            "vector cannot contain metrics with the same labelset",
        ));
    }
    dst.floats.extend(floats);
    dst.floats.sort_by_key(|p| p.t);
    dst.hists.extend(hists);
    dst.hists.sort_by_key(|p| p.0);
    Ok(())
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

fn label_join(ev: &mut Evaluator, c: &Call, ctx: &Ctx) -> Result<Val, QueryError> {
    let m = vector_arg(ev, c, 0, ctx)?;
    let dst = string_arg(ev, c, 1, ctx)?;
    let sep = string_arg(ev, c, 2, ctx)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.len() {
        srcs.push(string_arg(ev, c, i, ctx)?);
    }
    ev.check_label_name(&dst)?;
    if !valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut mb = MatrixBuilder::new();
    for s in m {
        let v: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
        let mut b = s.labels.to_builder();
        b.set(dst.clone(), v.join(&sep));
        let drop = s.drop_name && dst != METRIC_NAME;
        add_series(&mut mb, b.build(), drop, s.floats, s.hists)?;
    }
    Ok(Val::Vector(mb.finish()))
}

/// Natural ordering: digit runs compare numerically.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let o = ab[i].cmp(&bb[j]);
            if o != Ordering::Equal {
                return o;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn date_part(name: &str, v: f64) -> f64 {
    if v.is_nan() || v.is_infinite() {
        return v;
    }
    let secs = v.floor() as i64;
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
        "days_in_month" => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as f64
        }
        "hour" => (sod / 3600) as f64,
        _ => ((sod % 3600) / 60) as f64,
    }
}

fn hist_variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in h.buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let d = val - mean;
        (var, c) = kahan_inc(b.count * d * d, var, c);
    }
    (var + c) / h.count
}

/// Bucket-based fraction estimate shared by native and classic histograms. Buckets are in
/// ascending order; `linear` selects linear interpolation (custom/classic buckets).
fn fraction_of(
    lower: f64,
    upper: f64,
    buckets: &[Bucket],
    total: f64,
    linear: bool,
    no_neg: bool,
    no_pos: bool,
) -> f64 {
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lr, mut ur) = (0.0, 0.0, 0.0);
    let (mut ls, mut us) = (false, false);
    for b in buckets {
        let mut b = *b;
        let mut zero = false;
        if !linear && b.lower <= 0.0 && b.upper >= 0.0 {
            zero = true;
            if no_neg && !no_pos {
                b.lower = 0.0;
            } else if no_pos && !no_neg {
                b.upper = 0.0;
            }
        }
        if linear && b.lower == f64::NEG_INFINITY && b.upper > 0.0 {
            b.lower = 0.0;
        }
        let interp = |v: f64| -> f64 {
            if b.lower == f64::NEG_INFINITY {
                // No interpolation within an infinitely wide bucket.
                return rank + b.count;
            }
            if b.upper == f64::INFINITY {
                return rank;
            }
            if linear || zero {
                return rank + b.count * (v - b.lower) / (b.upper - b.lower);
            }
            let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
            let f = if v > 0.0 {
                (lv - ll) / (lu - ll)
            } else {
                1.0 - ((lv - lu) / (ll - lu))
            };
            rank + b.count * f
        };
        if !ls && b.lower >= lower {
            lr = rank;
            ls = true;
        }
        if !us && b.lower >= upper {
            ur = rank;
            us = true;
        }
        if ls && us {
            break;
        }
        if !ls && b.lower < lower && b.upper > lower {
            lr = interp(lower);
            ls = true;
        }
        if !us && b.lower < upper && b.upper > upper {
            ur = interp(upper);
            us = true;
        }
        if ls && us {
            break;
        }
        rank += b.count;
    }
    // Unset bounds lie above all buckets; NaN observations (count minus buckets) are excluded.
    if !ls {
        lr = rank;
    }
    if !us {
        ur = rank;
    }
    lr = lr.min(total);
    ur = ur.min(total);
    (ur - lr) / total
}

fn hist_fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    fraction_of(
        lower,
        upper,
        &h.buckets(),
        h.count,
        h.uses_custom_buckets(),
        h.negative_buckets.is_empty(),
        h.positive_buckets.is_empty(),
    )
}

/// Classic buckets (upper bound, cumulative count) as non-cumulative buckets.
fn classic_buckets(cum: &[(f64, f64)]) -> Vec<Bucket> {
    let mut out = Vec::with_capacity(cum.len());
    let mut prev = (f64::NEG_INFINITY, 0.0);
    for &(ub, c) in cum {
        out.push(Bucket {
            lower: prev.0,
            upper: ub,
            lower_inclusive: false,
            upper_inclusive: true,
            count: c - prev.1,
            index: 0,
        });
        prev = (ub, c);
    }
    out
}

/// Sorts, coalesces and makes monotonic classic buckets; returns whether counts were fixed.
fn prepare_classic(buckets: &mut Vec<(f64, f64)>) -> Option<bool> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return None,
    }
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match co.last_mut() {
            Some(l) if l.0 == ub => l.1 += c,
            _ => co.push((ub, c)),
        }
    }
    let mut forced = false;
    let mut prev = co[0].1;
    for b in co.iter_mut().skip(1) {
        let cur = b.1;
        if cur == prev {
            continue;
        }
        if crate::value::almost_equal(prev, cur, 1e-12) {
            b.1 = prev;
            continue;
        }
        if cur < prev {
            b.1 = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    *buckets = co;
    Some(forced)
}

/// Quantile of a native histogram.
pub(crate) fn hist_quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let mut buckets = h.buckets();
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    if !forward {
        buckets.reverse();
    }
    let mut count = 0.0;
    let mut bucket = None;
    for b in buckets {
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        bucket = Some(b);
        if count >= rank {
            break;
        }
    }
    let Some(mut b) = bucket else {
        return f64::NAN;
    };
    if !h.uses_custom_buckets() && b.lower < 0.0 && b.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            b.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            b.upper = 0.0;
        }
    } else if h.uses_custom_buckets() {
        if b.lower == f64::NEG_INFINITY {
            if b.upper <= 0.0 {
                return b.upper;
            }
            b.lower = 0.0;
        } else if b.upper == f64::INFINITY {
            return b.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        // Beyond all non-NaN observations.
        return if h.sum.is_nan() { f64::NAN } else { b.upper };
    }
    if forward {
        rank -= count - b.count;
    } else {
        rank = count - rank;
    }
    let fraction = rank / b.count;
    if h.uses_custom_buckets() || (b.lower <= 0.0 && b.upper >= 0.0) {
        return b.lower + (b.upper - b.lower) * fraction;
    }
    let ll = b.lower.abs().log2();
    let lu = b.upper.abs().log2();
    if b.lower > 0.0 {
        return (ll + (lu - ll) * fraction).exp2();
    }
    -(lu + (ll - lu) * (1.0 - fraction)).exp2()
}

/// Classic-bucket quantile over prepared buckets.
fn bucket_quantile(q: f64, co: &[(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if co.len() < 2 {
        return f64::NAN;
    }
    let obs = co[co.len() - 1].1;
    if obs == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * obs;
    let idx = co[..co.len() - 1].partition_point(|b| b.1 < rank);
    if idx == co.len() - 1 {
        return co[co.len() - 2].0;
    }
    if idx == 0 && co[0].0 <= 0.0 {
        return co[0].0;
    }
    let (mut start, end, mut count) = (0.0, co[idx].0, co[idx].1);
    if idx > 0 {
        start = co[idx - 1].0;
        count -= co[idx - 1].1;
        rank -= co[idx - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Label value of a quantile in `histogram_quantiles` output (`0.5`, `1.0`, `NaN`).
fn quantile_label(q: f64) -> String {
    if q.is_finite() && q.fract() == 0.0 {
        format!("{q:.1}")
    } else {
        crate::value::format_float(q)
    }
}

enum Estimate {
    Quantiles(Vec<Vec<f64>>),
    Fraction(Vec<f64>, Vec<f64>),
}

/// `histogram_quantile`, `histogram_quantiles` and `histogram_fraction` over classic buckets
/// (grouped by all labels but `le`) and native histograms.
fn histogram_estimate(ev: &mut Evaluator, c: &Call, ctx: &Ctx) -> Result<Val, QueryError> {
    let name = c.func.name;
    let (est, vec_idx, qlabel) = match name {
        "histogram_quantile" => (
            Estimate::Quantiles(vec![scalar_arg(ev, c, 0, ctx)?]),
            1,
            None,
        ),
        "histogram_quantiles" => {
            let label = string_arg(ev, c, 1, ctx)?;
            let mut qs = Vec::new();
            for i in 2..c.args.len() {
                qs.push(scalar_arg(ev, c, i, ctx)?);
            }
            (Estimate::Quantiles(qs), 0, Some(label))
        }
        _ => (
            Estimate::Fraction(scalar_arg(ev, c, 0, ctx)?, scalar_arg(ev, c, 1, ctx)?),
            2,
            None,
        ),
    };
    let input_expr = arg(c, vec_idx)?;
    let m = vector_arg(ev, c, vec_idx, ctx)?;
    if let Estimate::Quantiles(qs) = &est {
        for (i, q) in qs.iter().enumerate() {
            if let Some(bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                let pe = arg(c, if qlabel.is_some() { i + 2 } else { 0 })?;
                ev.warn_at(
                    format!(
                        "quantile value should be between 0 and 1, got {}",
                        fmt_g(*bad)
                    ),
                    pe,
                );
                break;
            }
        }
    }
    let nq = match &est {
        Estimate::Quantiles(q) => q.len(),
        Estimate::Fraction(..) => 1,
    };
    // Classic buckets are grouped by all labels except `le`.
    let mut group_of: Vec<Option<(usize, f64)>> = Vec::with_capacity(m.len());
    let mut groups: Vec<Labels> = Vec::new();
    let mut gindex: HashMap<Labels, usize> = HashMap::new();
    for s in &m {
        if s.floats.is_empty() {
            group_of.push(None);
            continue;
        }
        let le = s.labels.get("le").unwrap_or("");
        let Some(ub) = parse_le(le) else {
            ev.warn_at(
                format!(
                    "bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                    le,
                    metric_name(&s.labels)
                ),
                input_expr,
            );
            group_of.push(None);
            continue;
        };
        let key = s.labels.without(&["le"]);
        let g = match gindex.get(&key) {
            Some(g) => *g,
            None => {
                groups.push(key.clone());
                gindex.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        group_of.push(Some((g, ub)));
    }
    let out_labels = |base: &Labels, qi: usize, qv: f64| -> Labels {
        match (&qlabel, &est) {
            (Some(l), Estimate::Quantiles(_)) => {
                let _ = qi;
                let mut b = base.to_builder();
                b.set(l.clone(), quantile_label(qv));
                b.build()
            }
            _ => base.clone(),
        }
    };
    let mut mb = MatrixBuilder::new();
    let mut cur = StepCursor::new(&m);
    let mut pts: Vec<StepPoint> = Vec::new();
    let mut buckets: Vec<Vec<(f64, f64)>> = vec![Vec::new(); groups.len()];
    let mut forced_names: Vec<String> = Vec::new();
    for k in 0..ctx.steps() {
        let t = ctx.ts(k);
        cur.at(t, &mut pts);
        for b in buckets.iter_mut() {
            b.clear();
        }
        for p in &pts {
            if p.h.is_none() {
                if let Some((g, ub)) = group_of[p.sid] {
                    buckets[g].push((ub, p.f));
                }
            }
        }
        for p in &pts {
            let Some(h) = p.h else { continue };
            let labels = &m[p.sid].labels;
            if let Some(g) = gindex.get(labels) {
                if !buckets[*g].is_empty() {
                    ev.warn_at(
                        format!(
                            "vector contains a mix of classic and native histograms for metric name {:?}",
                            metric_name(labels)
                        ),
                        input_expr,
                    );
                    buckets[*g].clear();
                    continue;
                }
            }
            for qi in 0..nq {
                let (v, qv) = match &est {
                    Estimate::Quantiles(qs) => (hist_quantile(qs[qi][k], h), qs[qi][k]),
                    Estimate::Fraction(lo, hi) => (hist_fraction(lo[k], hi[k], h), 0.0),
                };
                if h.sum.is_nan() {
                    let what = match (&est, v.is_nan()) {
                        (Estimate::Fraction(..), _) => "histogram_fraction has NaN observations, which are excluded from all fractions",
                        (_, true) => "histogram_quantile has NaN observations, result is NaN",
                        (_, false) => "histogram_quantile has NaN observations, result is skewed higher",
                    };
                    ev.info_at(
                        format!("input to {what} for metric name {:?}", metric_name(labels)),
                        input_expr,
                    );
                }
                let i = mb.index_of(out_labels(labels, qi, qv), true);
                if mb.has_point(i, t) {
                    return Err(QueryError::exec(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
                mb.push_f(i, t, v);
            }
        }
        for (g, b) in buckets.iter_mut().enumerate() {
            if b.is_empty() {
                continue;
            }
            let prepared = prepare_classic(b);
            if prepared == Some(true) {
                let n = metric_name(&groups[g]).to_string();
                if !forced_names.contains(&n) {
                    forced_names.push(n);
                }
            }
            for qi in 0..nq {
                let (v, qv) = match (&est, prepared) {
                    (Estimate::Quantiles(qs), None) => (f64::NAN, qs[qi][k]),
                    (Estimate::Quantiles(qs), Some(_)) => {
                        (bucket_quantile(qs[qi][k], b), qs[qi][k])
                    }
                    (Estimate::Fraction(..), None) => (f64::NAN, 0.0),
                    (Estimate::Fraction(lo, hi), Some(_)) => {
                        let total = b.last().map(|x| x.1).unwrap_or(0.0);
                        let mut bs = classic_buckets(b);
                        if let Some(first) = bs.first_mut() {
                            if first.upper > 0.0 {
                                first.lower = 0.0;
                            }
                        }
                        (
                            fraction_of(lo[k], hi[k], &bs, total, true, false, false),
                            0.0,
                        )
                    }
                };
                let i = mb.index_of(out_labels(&groups[g], qi, qv), true);
                if mb.has_point(i, t) {
                    return Err(QueryError::exec(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
                mb.push_f(i, t, v);
            }
        }
    }
    for n in forced_names {
        ev.info_at(
            format!("input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {n:?}"),
            input_expr,
        );
    }
    Ok(Val::Vector(mb.finish()))
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        t => t.parse::<f64>().ok(),
    }
}
