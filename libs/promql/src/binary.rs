//! Binary operators: arithmetic, comparison, set operators and vector matching.

use std::collections::{HashMap, HashSet};

use hestia_model::{Labels, LabelsBuilder, METRIC_NAME};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, Expr, LabelModifier, VectorMatchCardinality};

use crate::error::QueryError;
use crate::eval::{Ctx, EvalSeries, Evaluator, MatrixBuilder, StepCursor, StepPoint, Val};
use crate::histogram::{FloatHistogram, HistogramError};
use crate::trim::Trim;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
    /// `</`, parsed as `<=` (see [`crate::trim`]).
    TrimUpper,
    /// `>/`, parsed as `>=`.
    TrimLower,
}

impl BinOp {
    fn from_token(id: u16) -> Option<Self> {
        Some(match id {
            T_ADD => BinOp::Add,
            T_SUB => BinOp::Sub,
            T_MUL => BinOp::Mul,
            T_DIV => BinOp::Div,
            T_MOD => BinOp::Mod,
            T_POW => BinOp::Pow,
            T_ATAN2 => BinOp::Atan2,
            T_EQLC => BinOp::Eq,
            T_NEQ => BinOp::Ne,
            T_GTR => BinOp::Gt,
            T_LSS => BinOp::Lt,
            T_GTE => BinOp::Ge,
            T_LTE => BinOp::Le,
            T_LAND => BinOp::And,
            T_LOR => BinOp::Or,
            T_LUNLESS => BinOp::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }

    fn is_trim(self) -> bool {
        matches!(self, BinOp::TrimUpper | BinOp::TrimLower)
    }

    /// Whether the result keeps the metric name (unless `bool` is given).
    fn keeps_name(self) -> bool {
        self.is_comparison() || self.is_trim()
    }

    fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Lt => "<",
            BinOp::Ge => ">=",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
            BinOp::TrimUpper => "</",
            BinOp::TrimLower => ">/",
        }
    }
}

/// Float op: `(value, keep)`.
#[inline]
pub(crate) fn float_op(op: BinOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinOp::Add => (l + r, true),
        BinOp::Sub => (l - r, true),
        BinOp::Mul => (l * r, true),
        BinOp::Div => (l / r, true),
        BinOp::Mod => (l % r, true),
        BinOp::Pow => (l.powf(r), true),
        BinOp::Atan2 => (l.atan2(r), true),
        BinOp::Eq => (l, l == r),
        BinOp::Ne => (l, l != r),
        BinOp::Gt => (l, l > r),
        BinOp::Lt => (l, l < r),
        BinOp::Ge => (l, l >= r),
        BinOp::Le => (l, l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => (l, true),
        // Trims are defined for histograms only; elem_op drops float operands.
        BinOp::TrimUpper | BinOp::TrimLower => (l, false),
    }
}

/// Result of an element-wise operation.
enum Elem {
    F(f64),
    H(FloatHistogram),
    Drop,
}

fn type_name(h: Option<&FloatHistogram>) -> &'static str {
    if h.is_some() {
        "histogram"
    } else {
        "float"
    }
}

/// One element-wise operation; `keep` is false for failed comparisons.
fn elem_op(
    ev: &mut Evaluator,
    e: &Expr,
    op: BinOp,
    (lf, lh): (f64, Option<&FloatHistogram>),
    (rf, rh): (f64, Option<&FloatHistogram>),
) -> (Elem, bool) {
    match (lh, rh) {
        (None, None) if !op.is_trim() => {
            let (v, keep) = float_op(op, lf, rf);
            (Elem::F(v), keep)
        }
        (Some(h), None) if op.is_trim() => {
            let t = if op == BinOp::TrimUpper {
                Trim::Upper
            } else {
                Trim::Lower
            };
            (Elem::H(crate::trim::apply(h, rf, t)), true)
        }
        (None, Some(h)) if op == BinOp::Mul => {
            let mut h = h.clone();
            h.mul(lf);
            h.compact();
            (Elem::H(h), true)
        }
        (Some(h), None) if op == BinOp::Mul || op == BinOp::Div => {
            let mut h = h.clone();
            if op == BinOp::Mul {
                h.mul(rf);
            } else {
                h.div(rf);
            }
            h.compact();
            (Elem::H(h), true)
        }
        (Some(a), Some(b)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let mut h = a.clone();
            let r = if op == BinOp::Add { h.add(b) } else { h.sub(b) };
            match r {
                Ok(reconciled) => {
                    if reconciled {
                        let what = if op == BinOp::Add {
                            "addition"
                        } else {
                            "subtraction"
                        };
                        ev.info_at(
                            format!("mismatched custom buckets were reconciled during {what}"),
                            e,
                        );
                    }
                    h.compact();
                    if op == BinOp::Sub {
                        h.counter_reset_hint = crate::histogram::CounterResetHint::Gauge;
                    }
                    (Elem::H(h), true)
                }
                Err(err) => {
                    histogram_error(ev, e, err);
                    (Elem::Drop, false)
                }
            }
        }
        (Some(a), Some(b)) if matches!(op, BinOp::Eq | BinOp::Ne) => {
            let eq = a.approx_eq(b, 0.0);
            (Elem::H(a.clone()), if op == BinOp::Eq { eq } else { !eq })
        }
        _ => {
            ev.info_at(
                format!(
                    "incompatible sample types encountered for binary operator {:?}: {} {} {}",
                    op.as_str(),
                    type_name(lh),
                    op.as_str(),
                    type_name(rh)
                ),
                e,
            );
            (Elem::Drop, false)
        }
    }
}

pub(crate) fn histogram_error(ev: &mut Evaluator, e: &Expr, err: HistogramError) {
    match err {
        HistogramError::MixedSchemas => ev.warn_at(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name \"\""
                .into(),
            e,
        ),
        HistogramError::IncompatibleBounds => ev.warn_at(
            "vector contains histograms with incompatible custom buckets for metric name \"\"".into(),
            e,
        ),
    }
}

pub(crate) fn eval_binary(
    ev: &mut Evaluator,
    b: &BinaryExpr,
    ctx: &Ctx,
) -> Result<Val, QueryError> {
    let op = match ev.trims.get(&crate::trim::binary_key(b)) {
        Some(Trim::Upper) => BinOp::TrimUpper,
        Some(Trim::Lower) => BinOp::TrimLower,
        None => BinOp::from_token(b.op.id())
            .ok_or_else(|| QueryError::exec(format!("unknown binary operator {}", b.op)))?,
    };
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, ctx)?;
    let rhs = ev.eval(&b.rhs, ctx)?;
    // Annotations point at the start of the expression, i.e. its left operand.
    let whole: &Expr = &b.lhs;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.iter()
                .zip(&r)
                .map(|(a, c)| {
                    let (v, keep) = float_op(op, *a, *c);
                    if op.is_comparison() {
                        if keep {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(l), Val::Scalar(r)) => Ok(Val::Vector(vector_scalar(
            ev,
            whole,
            op,
            l,
            &r,
            false,
            return_bool,
            ctx,
        ))),
        (Val::Scalar(l), Val::Vector(r)) => Ok(Val::Vector(vector_scalar(
            ev,
            whole,
            op,
            r,
            &l,
            true,
            return_bool,
            ctx,
        ))),
        (Val::Vector(l), Val::Vector(r)) => {
            if op.is_set() {
                Ok(Val::Vector(set_op(b, op, l, r, ctx)))
            } else {
                vector_vector(ev, whole, b, op, return_bool, l, r, ctx).map(Val::Vector)
            }
        }
        _ => Err(QueryError::exec(format!(
            "binary expression must contain only scalar and instant vector types: {}",
            b
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_scalar(
    ev: &mut Evaluator,
    e: &Expr,
    op: BinOp,
    m: Vec<EvalSeries>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
    ctx: &Ctx,
) -> Vec<EvalSeries> {
    let drop = return_bool || !op.keeps_name();
    let mut out = Vec::with_capacity(m.len());
    for series in m {
        let mut o = EvalSeries::new(series.labels, series.drop_name || drop);
        let mut fast = true;
        if series.hists.is_empty() && !op.is_trim() {
            o.floats.reserve(series.floats.len());
            for p in &series.floats {
                let sv = s[ctx.step_index(p.t)];
                let (l, r) = if swap { (sv, p.v) } else { (p.v, sv) };
                let (mut v, keep) = float_op(op, l, r);
                if op.is_comparison() {
                    v = p.v;
                }
                if return_bool {
                    o.floats
                        .push(hestia_model::Sample::new(p.t, if keep { 1.0 } else { 0.0 }));
                } else if keep {
                    o.floats.push(hestia_model::Sample::new(p.t, v));
                }
            }
        } else {
            fast = false;
        }
        if !fast {
            let mut pts: Vec<(i64, f64, Option<&FloatHistogram>)> = series
                .floats
                .iter()
                .map(|p| (p.t, p.v, None))
                .chain(series.hists.iter().map(|(t, h)| (*t, 0.0, Some(h))))
                .collect();
            pts.sort_by_key(|p| p.0);
            for (t, f, h) in pts {
                let sv = s[ctx.step_index(t)];
                let (l, r) = if swap {
                    ((sv, None), (f, h))
                } else {
                    ((f, h), (sv, None))
                };
                let (mut res, keep) = elem_op(ev, e, op, l, r);
                if matches!(res, Elem::Drop) {
                    continue;
                }
                if op.is_comparison() {
                    res = match h {
                        Some(h) => Elem::H(h.clone()),
                        None => Elem::F(f),
                    };
                }
                if return_bool {
                    o.floats
                        .push(hestia_model::Sample::new(t, if keep { 1.0 } else { 0.0 }));
                } else if keep {
                    match res {
                        Elem::F(v) => o.floats.push(hestia_model::Sample::new(t, v)),
                        Elem::H(h) => o.hists.push((t, h)),
                        Elem::Drop => {}
                    }
                }
            }
        }
        if !o.is_empty() {
            out.push(o);
        }
    }
    out
}

/// Computes the matching signature of every series.
fn signatures(m: &[EvalSeries], matching: Option<&LabelModifier>) -> Vec<u64> {
    m.iter().map(|s| signature(&s.labels, matching)).collect()
}

pub(crate) fn signature(l: &Labels, matching: Option<&LabelModifier>) -> u64 {
    match matching {
        Some(LabelModifier::Include(names)) => hestia_model_hash(
            l.iter()
                .filter(|x| names.labels.contains(&x.name))
                .map(|x| (x.name.as_str(), x.value.as_str())),
        ),
        Some(LabelModifier::Exclude(names)) => hestia_model_hash(
            l.iter()
                .filter(|x| x.name != METRIC_NAME && !names.labels.contains(&x.name))
                .map(|x| (x.name.as_str(), x.value.as_str())),
        ),
        None => hestia_model_hash(
            l.iter()
                .filter(|x| x.name != METRIC_NAME)
                .map(|x| (x.name.as_str(), x.value.as_str())),
        ),
    }
}

fn hestia_model_hash<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (n, v) in it {
        h.update(n.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

fn set_op(
    b: &BinaryExpr,
    op: BinOp,
    l: Vec<EvalSeries>,
    r: Vec<EvalSeries>,
    ctx: &Ctx,
) -> Vec<EvalSeries> {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let ls = signatures(&l, matching);
    let rs = signatures(&r, matching);
    let n = ctx.steps();
    // Which signatures each side has at each step.
    let present = |m: &[EvalSeries], sigs: &[u64]| -> Vec<HashSet<u64>> {
        let mut v: Vec<HashSet<u64>> = vec![HashSet::new(); n];
        for (s, sig) in m.iter().zip(sigs) {
            for p in &s.floats {
                v[ctx.step_index(p.t)].insert(*sig);
            }
            for (t, _) in &s.hists {
                v[ctx.step_index(*t)].insert(*sig);
            }
        }
        v
    };
    match op {
        BinOp::And | BinOp::Unless => {
            let rp = present(&r, &rs);
            let want = op == BinOp::And;
            let mut out = Vec::with_capacity(l.len());
            for (mut s, sig) in l.into_iter().zip(ls) {
                s.floats
                    .retain(|p| rp[ctx.step_index(p.t)].contains(&sig) == want);
                s.hists
                    .retain(|(t, _)| rp[ctx.step_index(*t)].contains(&sig) == want);
                if !s.is_empty() {
                    out.push(s);
                }
            }
            out
        }
        _ => {
            let lp = present(&l, &ls);
            let mut mb = MatrixBuilder::new();
            let mut lidx = Vec::with_capacity(l.len());
            for s in &l {
                lidx.push(mb.index_of(s.labels.clone(), s.drop_name));
            }
            let mut rest: Vec<EvalSeries> = Vec::new();
            for (mut s, sig) in r.into_iter().zip(rs) {
                s.floats.retain(|p| !lp[ctx.step_index(p.t)].contains(&sig));
                s.hists
                    .retain(|(t, _)| !lp[ctx.step_index(*t)].contains(&sig));
                if !s.is_empty() {
                    rest.push(s);
                }
            }
            for (s, i) in l.into_iter().zip(lidx) {
                merge_into(&mut mb.series[i], s);
            }
            for s in rest {
                let i = mb.index_of(s.labels.clone(), s.drop_name);
                merge_into(&mut mb.series[i], s);
            }
            mb.finish()
        }
    }
}

fn merge_into(dst: &mut EvalSeries, src: EvalSeries) {
    if dst.is_empty() {
        dst.floats = src.floats;
        dst.hists = src.hists;
        return;
    }
    dst.floats.extend(src.floats);
    dst.floats.sort_by_key(|p| p.t);
    dst.hists.extend(src.hists);
    dst.hists.sort_by_key(|p| p.0);
}

/// Prometheus' `Labels.String()`: `{a="b", c="d"}` including `__name__`.
pub(crate) fn labels_string(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{}={:?}", x.name, x.value));
    }
    s.push('}');
    s
}

fn match_labels(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(names)) => {
            let n: Vec<&str> = names.labels.iter().map(String::as_str).collect();
            l.keep_only(&n)
        }
        Some(LabelModifier::Exclude(names)) => {
            let mut n: Vec<&str> = names.labels.iter().map(String::as_str).collect();
            n.push(METRIC_NAME);
            l.without(&n)
        }
        None => l.without(&[METRIC_NAME]),
    }
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    card: &VectorMatchCardinality,
    matching: Option<&LabelModifier>,
) -> Labels {
    if let VectorMatchCardinality::OneToOne = card {
        return match matching {
            Some(LabelModifier::Include(names)) => {
                let n: Vec<&str> = names.labels.iter().map(String::as_str).collect();
                many.keep_only(&n)
            }
            Some(LabelModifier::Exclude(names)) => {
                let n: Vec<&str> = names.labels.iter().map(String::as_str).collect();
                many.without(&n)
            }
            None => many.clone(),
        };
    }
    let include = card.labels().map(|l| l.labels.as_slice()).unwrap_or(&[]);
    if include.is_empty() {
        return many.clone();
    }
    let mut b: LabelsBuilder = many.to_builder();
    for n in include {
        match one.get(n) {
            Some(v) => b.set(n.clone(), v),
            None => b.remove(n),
        };
    }
    b.build()
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    ev: &mut Evaluator,
    e: &Expr,
    b: &BinaryExpr,
    op: BinOp,
    return_bool: bool,
    l: Vec<EvalSeries>,
    r: Vec<EvalSeries>,
    ctx: &Ctx,
) -> Result<Vec<EvalSeries>, QueryError> {
    let one_to_one = VectorMatchCardinality::OneToOne;
    let card = b.modifier.as_ref().map(|m| &m.card).unwrap_or(&one_to_one);
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let swap = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swap { (&r, &l) } else { (&l, &r) };
    let many_sigs = signatures(many, matching);
    let one_sigs = signatures(one, matching);
    let drop = return_bool || !op.keeps_name();

    let mut mb = MatrixBuilder::new();
    let mut out_cache: HashMap<(usize, usize), usize> = HashMap::new();
    let mut mc = StepCursor::new(many);
    let mut oc = StepCursor::new(one);
    let (mut mp, mut opts): (Vec<StepPoint>, Vec<StepPoint>) = (Vec::new(), Vec::new());
    let mut one_by_sig: HashMap<u64, StepPoint> = HashMap::new();
    let mut matched: HashMap<u64, HashSet<u64>> = HashMap::new();
    // fill(), fill_left(), fill_right(): values standing in for a missing element of the one
    // side and of the many side.
    let (fill_one, fill_many) = match b.modifier.as_ref().map(|m| &m.fill_values) {
        Some(f) if swap => (f.lhs, f.rhs),
        Some(f) => (f.rhs, f.lhs),
        None => (None, None),
    };
    let filling = fill_one.is_some() || fill_many.is_some();
    // Unmatched elements to fill at a step: (from the many side, element).
    let mut unmatched: Vec<(bool, StepPoint)> = Vec::new();
    let mut hit: HashSet<u64> = HashSet::new();
    let mut filled_cache: HashMap<(bool, usize), usize> = HashMap::new();
    for k in 0..ctx.steps() {
        let t = ctx.ts(k);
        mc.at(t, &mut mp);
        oc.at(t, &mut opts);
        if !filling && (mp.is_empty() || opts.is_empty()) {
            continue;
        }
        unmatched.clear();
        hit.clear();
        one_by_sig.clear();
        for p in &opts {
            let sig = one_sigs[p.sid];
            if let Some(d) = one_by_sig.get(&sig) {
                let side = if swap { "left" } else { "right" };
                let (mut a, mut b) = (&one[p.sid].labels, &one[d.sid].labels);
                if b < a {
                    std::mem::swap(&mut a, &mut b);
                }
                return Err(QueryError::exec(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    labels_string(&match_labels(&one[p.sid].labels, matching)),
                    side,
                    labels_string(a),
                    labels_string(b),
                )));
            }
            one_by_sig.insert(sig, *p);
        }
        matched.clear();
        for p in &mp {
            let sig = many_sigs[p.sid];
            let Some(o) = one_by_sig.get(&sig) else {
                if fill_one.is_some() {
                    unmatched.push((true, *p));
                }
                continue;
            };
            hit.insert(sig);
            let (lv, rv) = if swap {
                ((o.f, o.h), (p.f, p.h))
            } else {
                ((p.f, p.h), (o.f, o.h))
            };
            let (res, keep) = elem_op(ev, e, op, lv, rv);
            if matches!(res, Elem::Drop) {
                continue;
            }
            // Duplicates on the many side are an error even when a comparison filters them.
            if matches!(card, VectorMatchCardinality::OneToOne) {
                if matched.contains_key(&sig) {
                    return Err(QueryError::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                matched.insert(sig, HashSet::new());
            }
            let res = if return_bool {
                Elem::F(if keep { 1.0 } else { 0.0 })
            } else if !keep {
                continue;
            } else {
                res
            };
            let key = (p.sid, o.sid);
            let oi = match out_cache.get(&key) {
                Some(i) => *i,
                None => {
                    let labels =
                        result_labels(&many[p.sid].labels, &one[o.sid].labels, card, matching);
                    let i = mb.index_of(labels, drop || many[p.sid].drop_name);
                    out_cache.insert(key, i);
                    i
                }
            };
            if !matches!(card, VectorMatchCardinality::OneToOne) {
                let set = matched.entry(sig).or_default();
                if !set.insert(oi as u64) {
                    return Err(QueryError::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
            }
            if mb.has_point(oi, t) {
                return Err(QueryError::exec(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
            match res {
                Elem::F(v) => mb.push_f(oi, t, v),
                Elem::H(h) => mb.push_h(oi, t, h),
                Elem::Drop => {}
            }
        }
        if fill_many.is_some() {
            for o in &opts {
                if !hit.contains(&one_sigs[o.sid]) {
                    unmatched.push((false, *o));
                }
            }
        }
        for &(from_many, p) in &unmatched {
            let fv = if from_many { fill_one } else { fill_many }.unwrap_or(f64::NAN);
            // The present element keeps its side: many is left unless group_right swapped them.
            let (lv, rv) = if from_many != swap {
                ((p.f, p.h), (fv, None))
            } else {
                ((fv, None), (p.f, p.h))
            };
            let (res, keep) = elem_op(ev, e, op, lv, rv);
            let res = match res {
                Elem::Drop => continue,
                _ if return_bool => Elem::F(if keep { 1.0 } else { 0.0 }),
                _ if !keep => continue,
                // A comparison keeps the left value, which may be the fill value.
                _ if op.is_comparison() && from_many == swap => Elem::F(fv),
                r => r,
            };
            let src = if from_many { &many[p.sid] } else { &one[p.sid] };
            let oi = match filled_cache.get(&(from_many, p.sid)) {
                Some(i) => *i,
                None => {
                    let labels = result_labels(&src.labels, &Labels::empty(), card, matching);
                    // Without a left element there is no name to keep.
                    let i = mb.index_of(labels, drop || src.drop_name || from_many == swap);
                    filled_cache.insert((from_many, p.sid), i);
                    i
                }
            };
            if mb.has_point(oi, t) {
                return Err(QueryError::exec(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
            match res {
                Elem::F(v) => mb.push_f(oi, t, v),
                Elem::H(h) => mb.push_h(oi, t, h),
                Elem::Drop => {}
            }
        }
    }
    Ok(mb.finish())
}
