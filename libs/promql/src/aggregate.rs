//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, …) with `by`/`without`.

use std::collections::HashMap;

use hestia_model::{Labels, LabelsBuilder, Sample, METRIC_NAME};
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::error::QueryError;
use crate::eval::{Ctx, EvalSeries, Evaluator, MatrixBuilder, StepCursor, StepPoint, Val};
use crate::histogram::{FloatHistogram, ResetHints};
use crate::value::format_float;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
}

impl AggOp {
    fn from_token(id: u16) -> Option<Self> {
        Some(match id {
            T_SUM => AggOp::Sum,
            T_AVG => AggOp::Avg,
            T_COUNT => AggOp::Count,
            T_MIN => AggOp::Min,
            T_MAX => AggOp::Max,
            T_GROUP => AggOp::Group,
            T_STDDEV => AggOp::Stddev,
            T_STDVAR => AggOp::Stdvar,
            T_TOPK => AggOp::Topk,
            T_BOTTOMK => AggOp::Bottomk,
            T_COUNT_VALUES => AggOp::CountValues,
            T_QUANTILE => AggOp::Quantile,
            T_LIMITK => AggOp::Limitk,
            T_LIMIT_RATIO => AggOp::LimitRatio,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Count => "count",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::CountValues => "count_values",
            AggOp::Quantile => "quantile",
            AggOp::Limitk => "limitk",
            AggOp::LimitRatio => "limit_ratio",
        }
    }
}

/// Neumaier-compensated summation step, as in Prometheus.
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The output labels of a group.
/// With delayed name removal the name still partitions `by (__name__)` groups; the group
/// inherits a pending name drop from its members.
fn group_labels(l: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(names)) => {
            let n: Vec<&str> = names.labels.iter().map(String::as_str).collect();
            l.keep_only(&n)
        }
        Some(LabelModifier::Exclude(names)) => {
            let mut n: Vec<&str> = names.labels.iter().map(String::as_str).collect();
            n.push(METRIC_NAME);
            l.without(&n)
        }
        None => Labels::empty(),
    }
}

#[derive(Debug, Clone, Default)]
struct Group {
    seen: bool,
    count: f64,
    has_float: bool,
    has_hist: bool,
    value: f64,
    comp: f64,
    mean: f64,
    incremental: bool,
    hist: Option<FloatHistogram>,
    /// Kahan compensation of the histogram sum field.
    hist_sum_comp: f64,
    /// Running mean for `avg`, used when the plain sum overflows.
    hist_mean: Option<FloatHistogram>,
    hist_failed: bool,
    reconciled: bool,
    hints: ResetHints,
    values: Vec<f64>,
}

pub(crate) fn eval_aggregate(
    ev: &mut Evaluator,
    a: &AggregateExpr,
    ctx: &Ctx,
) -> Result<Val, QueryError> {
    let op = AggOp::from_token(a.op.id())
        .ok_or_else(|| QueryError::exec(format!("unknown aggregation {}", a.op)))?;
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ctx)?),
        None => None,
    };
    let input = match ev.eval(&a.expr, ctx)? {
        Val::Vector(m) => m,
        _ => return Err(QueryError::exec("aggregation expects an instant vector")),
    };
    let modifier = a.modifier.as_ref();
    match op {
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio => {
            let p = match param {
                Some(Val::Scalar(v)) => v,
                _ => {
                    return Err(QueryError::exec(format!(
                        "expected scalar parameter for {}",
                        op.name()
                    )))
                }
            };
            select_k(ev, a, op, &p, input, ctx)
        }
        AggOp::CountValues => {
            let label = match param {
                Some(Val::Str(s)) => s,
                _ => {
                    return Err(QueryError::exec(
                        "expected string parameter for count_values",
                    ))
                }
            };
            ev.check_label_name(&label)?;
            count_values(&label, input, modifier, ctx)
        }
        _ => {
            let q = match (op, param) {
                (AggOp::Quantile, Some(Val::Scalar(v))) => v,
                (AggOp::Quantile, _) => {
                    return Err(QueryError::exec("expected scalar parameter for quantile"))
                }
                _ => Vec::new(),
            };
            if op == AggOp::Quantile {
                if let Some(bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
                    ev.warn_at(
                        format!(
                            "quantile value should be between 0 and 1, got {}",
                            fmt_g(*bad)
                        ),
                        a.param.as_deref().unwrap_or(&a.expr),
                    );
                }
            }
            simple(ev, a, op, &q, input, modifier, ctx)
        }
    }
}

/// Go's `%g`-like rendering used in annotation texts.
pub(crate) fn fmt_g(v: f64) -> String {
    crate::value::format_go_g(v)
}

/// Assigns every input series to an output group.
fn grouping(
    input: &[EvalSeries],
    modifier: Option<&LabelModifier>,
) -> (Vec<usize>, Vec<Labels>, Vec<bool>) {
    let mut ids = Vec::with_capacity(input.len());
    let mut labels: Vec<Labels> = Vec::new();
    let mut drops: Vec<bool> = Vec::new();
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    for s in input {
        let gl = group_labels(&s.labels, modifier);
        let h = gl.hash64();
        let bucket = index.entry(h).or_default();
        let id = match bucket.iter().find(|&&g| labels[g] == gl) {
            Some(&g) => g,
            None => {
                labels.push(gl);
                drops.push(false);
                bucket.push(labels.len() - 1);
                labels.len() - 1
            }
        };
        let keeps_name = matches!(modifier, Some(LabelModifier::Include(n)) if n.labels.iter().any(|x| x == METRIC_NAME));
        drops[id] |= s.drop_name && keeps_name;
        ids.push(id);
    }
    (ids, labels, drops)
}

fn simple(
    ev: &mut Evaluator,
    a: &AggregateExpr,
    op: AggOp,
    q: &[f64],
    input: Vec<EvalSeries>,
    modifier: Option<&LabelModifier>,
    ctx: &Ctx,
) -> Result<Val, QueryError> {
    let (gids, glabels, gdrops) = grouping(&input, modifier);
    let mut out: Vec<EvalSeries> = glabels
        .into_iter()
        .zip(gdrops)
        .map(|(l, d)| EvalSeries::new(l, d))
        .collect();
    let mut groups: Vec<Group> = vec![Group::default(); out.len()];
    let mut touched: Vec<usize> = Vec::new();
    let mut cur = StepCursor::new(&input);
    let mut pts: Vec<StepPoint> = Vec::new();
    let mut ignored_hist = false;
    for k in 0..ctx.steps() {
        let t = ctx.ts(k);
        cur.at(t, &mut pts);
        touched.clear();
        for p in &pts {
            let gi = gids[p.sid];
            let g = &mut groups[gi];
            if !g.seen {
                *g = Group {
                    seen: true,
                    value: if matches!(op, AggOp::Min | AggOp::Max) {
                        f64::NAN
                    } else {
                        0.0
                    },
                    ..Default::default()
                };
                g.values.clear();
                touched.push(gi);
            }
            accumulate(op, g, p, &mut ignored_hist);
        }
        for &gi in &touched {
            let g = &mut groups[gi];
            g.seen = false;
            let qv = q.get(k).copied().unwrap_or(f64::NAN);
            match finish(op, g, qv) {
                Some(Ok(v)) => out[gi].floats.push(Sample::new(t, v)),
                Some(Err(h)) => out[gi].hists.push((t, h)),
                None => {}
            }
            if g.has_float && g.has_hist && matches!(op, AggOp::Sum | AggOp::Avg) {
                ev.warn_at(
                    "encountered a mix of histograms and floats for aggregation".into(),
                    &a.expr,
                );
            } else if g.hints.conflict() {
                ev.warn_at(
                    "conflicting counter resets during histogram aggregation".into(),
                    &a.expr,
                );
            } else if g.reconciled && !g.hist_failed {
                ev.info_at(
                    "mismatched custom buckets were reconciled during aggregation".into(),
                    &a.expr,
                );
            } else if g.hist_failed {
                ev.warn_at(
                    "vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"\"".into(),
                    &a.expr,
                );
            }
        }
    }
    if ignored_hist {
        ev.info_at(
            format!("ignored histogram in {} aggregation", op.name()),
            &a.expr,
        );
    }
    Ok(Val::Vector(
        out.into_iter().filter(|s| !s.is_empty()).collect(),
    ))
}

fn accumulate(op: AggOp, g: &mut Group, p: &StepPoint, ignored_hist: &mut bool) {
    match p.h {
        Some(h) => {
            g.has_hist = true;
            match op {
                AggOp::Sum | AggOp::Avg => {
                    g.count += 1.0;
                    g.hints.track(h);
                    if op == AggOp::Avg {
                        match &mut g.hist_mean {
                            None => g.hist_mean = Some(h.clone()),
                            Some(m) => {
                                let _ = m.update_mean(h, g.count);
                            }
                        }
                    }
                    match &mut g.hist {
                        None => g.hist = Some(h.clone()),
                        Some(acc) => {
                            let before = acc.sum;
                            match acc.add(h) {
                                Ok(r) => g.reconciled |= r,
                                Err(_) => g.hist_failed = true,
                            }
                            (acc.sum, g.hist_sum_comp) = kahan_inc(h.sum, before, g.hist_sum_comp);
                        }
                    }
                }
                AggOp::Count | AggOp::Group => g.count += 1.0,
                _ => *ignored_hist = true,
            }
        }
        None => {
            let f = p.f;
            g.has_float = true;
            match op {
                AggOp::Sum => {
                    g.count += 1.0;
                    (g.value, g.comp) = kahan_inc(f, g.value, g.comp);
                }
                AggOp::Avg => {
                    g.count += 1.0;
                    if g.count == 1.0 {
                        g.value = f;
                        g.comp = 0.0;
                        return;
                    }
                    if !g.incremental {
                        let (nv, nc) = kahan_inc(f, g.value, g.comp);
                        if !nv.is_infinite() {
                            (g.value, g.comp) = (nv, nc);
                            return;
                        }
                        g.incremental = true;
                        g.mean = g.value / (g.count - 1.0);
                        g.comp /= g.count - 1.0;
                    }
                    if g.mean.is_infinite() {
                        if f.is_infinite() && (g.mean > 0.0) == (f > 0.0) {
                            return;
                        }
                        if !f.is_infinite() && !f.is_nan() {
                            return;
                        }
                    }
                    let cur = g.mean + g.comp;
                    (g.mean, g.comp) = kahan_inc(f / g.count - cur / g.count, g.mean, g.comp);
                }
                AggOp::Count | AggOp::Group => g.count += 1.0,
                AggOp::Min => {
                    g.count += 1.0;
                    if g.value > f || g.value.is_nan() {
                        g.value = f;
                    }
                }
                AggOp::Max => {
                    g.count += 1.0;
                    if g.value < f || g.value.is_nan() {
                        g.value = f;
                    }
                }
                AggOp::Stddev | AggOp::Stdvar => {
                    g.count += 1.0;
                    let delta = f - g.mean;
                    g.mean += delta / g.count;
                    g.value += delta * (f - g.mean);
                }
                AggOp::Quantile => g.values.push(f),
                _ => {}
            }
        }
    }
}

/// The group's result: `Ok(float)`, `Err(histogram)`, or nothing.
fn finish(op: AggOp, g: &mut Group, q: f64) -> Option<Result<f64, FloatHistogram>> {
    match op {
        AggOp::Sum | AggOp::Avg => {
            if g.has_float && g.has_hist {
                return None;
            }
            if g.has_hist {
                if g.hist_failed {
                    return None;
                }
                let mut h = g.hist.take()?;
                if g.hist_sum_comp.is_finite() {
                    h.sum += g.hist_sum_comp;
                }
                if op == AggOp::Avg {
                    h.div(g.count);
                    if !(h.count.is_finite() && h.sum.is_finite()) {
                        if let Some(m) = g.hist_mean.take() {
                            h = m;
                        }
                    }
                }
                g.hist_mean = None;
                h.compact();
                return Some(Err(h));
            }
            if op == AggOp::Sum {
                Some(Ok(g.value + g.comp))
            } else if g.incremental {
                Some(Ok(g.mean + g.comp))
            } else {
                Some(Ok(g.value / g.count + g.comp / g.count))
            }
        }
        AggOp::Count => Some(Ok(g.count)),
        AggOp::Group => Some(Ok(1.0)),
        AggOp::Min | AggOp::Max => g.has_float.then_some(Ok(g.value)),
        AggOp::Stddev | AggOp::Stdvar => {
            if !g.has_float {
                return None;
            }
            let v = g.value / g.count;
            Some(Ok(if op == AggOp::Stddev { v.sqrt() } else { v }))
        }
        AggOp::Quantile => {
            if !g.has_float {
                return None;
            }
            Some(Ok(quantile(q, &mut g.values)))
        }
        _ => None,
    }
}

/// Prometheus' `quantile` over a set of floats (sorted in place).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| {
        if a.is_nan() {
            std::cmp::Ordering::Less
        } else if b.is_nan() {
            std::cmp::Ordering::Greater
        } else {
            a.total_cmp(b)
        }
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn select_k(
    ev: &mut Evaluator,
    a: &AggregateExpr,
    op: AggOp,
    param: &[f64],
    input: Vec<EvalSeries>,
    ctx: &Ctx,
) -> Result<Val, QueryError> {
    let modifier = a.modifier.as_ref();
    let (gids, glabels, _) = grouping(&input, modifier);
    let mut out: Vec<EvalSeries> = input
        .iter()
        .map(|s| EvalSeries::new(s.labels.clone(), s.drop_name))
        .collect();
    let mut order: Vec<usize> = Vec::new();
    let mut emitted = vec![false; input.len()];
    let mut per_group: Vec<Vec<(usize, f64, Option<&FloatHistogram>)>> =
        vec![Vec::new(); glabels.len()];
    let mut group_order: Vec<usize> = Vec::new();
    let mut cur = StepCursor::new(&input);
    let mut pts: Vec<StepPoint> = Vec::new();
    let mut ignored_hist = false;
    for k in 0..ctx.steps() {
        let t = ctx.ts(k);
        let p = param.get(k).copied().unwrap_or(f64::NAN);
        let mut kk = 0usize;
        let mut ratio = 0.0;
        match op {
            AggOp::LimitRatio => {
                if p.is_nan() {
                    return Err(QueryError::exec("Ratio value is NaN"));
                }
                ratio = p;
                if !(-1.0..=1.0).contains(&p) {
                    ratio = p.clamp(-1.0, 1.0);
                    ev.warn_at(
                        format!(
                            "ratio value should be between -1 and 1, got {}, capping to {}",
                            fmt_g(p),
                            fmt_g(ratio)
                        ),
                        a.param.as_deref().unwrap_or(&a.expr),
                    );
                }
                if ratio == 0.0 {
                    continue;
                }
            }
            _ => {
                if p.is_nan() {
                    return Err(QueryError::exec("Parameter value is NaN"));
                }
                if p < 1.0 {
                    continue;
                }
                kk = if p >= usize::MAX as f64 {
                    usize::MAX
                } else {
                    p as usize
                };
            }
        }
        cur.at(t, &mut pts);
        group_order.clear();
        for pt in &pts {
            let g = gids[pt.sid];
            if per_group[g].is_empty() {
                group_order.push(g);
            }
            per_group[g].push((pt.sid, pt.f, pt.h));
        }
        for &g in &group_order {
            let mut items = std::mem::take(&mut per_group[g]);
            let chosen: Vec<(usize, f64, Option<&FloatHistogram>)> = match op {
                AggOp::Topk | AggOp::Bottomk => {
                    let before = items.len();
                    items.retain(|x| x.2.is_none());
                    if items.len() != before {
                        ignored_hist = true;
                    }
                    let top = op == AggOp::Topk;
                    items.sort_by(|x, y| {
                        let (a, b) = (x.1, y.1);
                        // NaN always sorts last.
                        match (a.is_nan(), b.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if top => b.total_cmp(&a),
                            _ => a.total_cmp(&b),
                        }
                    });
                    items.truncate(kk);
                    items
                }
                AggOp::Limitk => {
                    items.truncate(kk);
                    items
                }
                _ => items
                    .into_iter()
                    .filter(|x| {
                        let r = ratio_of(&input[x.0].labels);
                        if ratio >= 0.0 {
                            r < ratio
                        } else {
                            r >= 1.0 + ratio
                        }
                    })
                    .collect(),
            };
            for (sid, f, h) in chosen {
                if !emitted[sid] {
                    emitted[sid] = true;
                    order.push(sid);
                }
                match h {
                    Some(h) => out[sid].hists.push((t, h.clone())),
                    None => out[sid].floats.push(Sample::new(t, f)),
                }
            }
        }
    }
    if ignored_hist {
        ev.info_at(
            format!("ignored histogram in {} aggregation", op.name()),
            &a.expr,
        );
    }
    let mut slots: Vec<Option<EvalSeries>> = out.into_iter().map(Some).collect();
    Ok(Val::Vector(
        order.into_iter().filter_map(|i| slots[i].take()).collect(),
    ))
}

/// A stable pseudo-random position in [0, 1) of a series, for `limit_ratio`.
fn ratio_of(l: &Labels) -> f64 {
    (l.hash64() as f64) / (u64::MAX as f64)
}

fn count_values(
    label: &str,
    input: Vec<EvalSeries>,
    modifier: Option<&LabelModifier>,
    ctx: &Ctx,
) -> Result<Val, QueryError> {
    if !is_valid_label_name(label) {
        return Err(QueryError::exec(format!("invalid label name {label:?}")));
    }
    let base: Vec<Labels> = input
        .iter()
        .map(|s| group_labels(&s.labels, modifier))
        .collect();
    let mut mb = MatrixBuilder::new();
    let mut cur = StepCursor::new(&input);
    let mut pts: Vec<StepPoint> = Vec::new();
    let mut counts: Vec<(usize, f64)> = Vec::new();
    for k in 0..ctx.steps() {
        let t = ctx.ts(k);
        cur.at(t, &mut pts);
        counts.clear();
        for p in &pts {
            let v = match p.h {
                Some(h) => h.prom_string(),
                None => format_float(p.f),
            };
            let mut b: LabelsBuilder = base[p.sid].to_builder();
            b.set(label, v);
            let i = mb.index_of(b.build(), false);
            match counts.iter_mut().find(|c| c.0 == i) {
                Some(c) => c.1 += 1.0,
                None => counts.push((i, 1.0)),
            }
        }
        for &(i, c) in &counts {
            mb.push_f(i, t, c);
        }
    }
    Ok(Val::Vector(mb.finish()))
}

pub(crate) fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty() && std::str::from_utf8(s.as_bytes()).is_ok()
}
