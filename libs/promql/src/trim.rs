//! The native-histogram trim operators `</` (trim upper) and `>/` (trim lower).
//!
//! promql-parser does not know them, so [`rewrite`] runs its lexer over the query first: a `<` or
//! `>` token immediately followed by `/` is exactly what Prometheus' lexer reads as TRIM_UPPER or
//! TRIM_LOWER (strings and comments are single tokens or none, so they are never touched). Each
//! one is rewritten to `<=` or `>=`: same length, so error and annotation positions stay valid,
//! and same precedence and left associativity, as Prometheus' grammar lists the trims with the
//! comparison operators. The rewritten operators are remembered by their rank among the
//! comparison operators in source order, which is also the in-order rank of their nodes in the
//! AST; [`locate`] turns the ranks into node addresses for the evaluator.

use std::collections::HashMap;

use lrpar::{Lexeme, Lexer};
use promql_parser::parser::token::{
    T_DIV, T_EQLC, T_GTE, T_GTR, T_LEFT_BRACE, T_LSS, T_LTE, T_NEQ, T_RIGHT_BRACE,
};
use promql_parser::parser::{BinaryExpr, Expr};

use crate::error::QueryError;
use crate::histogram::{spans_from_indexes, FloatHistogram};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trim {
    /// `</`: keeps the observations below the threshold.
    Upper,
    /// `>/`: keeps the observations above the threshold.
    Lower,
}

impl Trim {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trim::Upper => "</",
            Trim::Lower => ">/",
        }
    }
}

/// A query with its trim operators replaced by comparisons, and the replaced operators as
/// `(rank among comparison operators, trim)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rewritten {
    pub text: String,
    pub trims: Vec<(usize, Trim)>,
}

fn is_comparison(id: u16) -> bool {
    matches!(id, T_EQLC | T_NEQ | T_LSS | T_LTE | T_GTR | T_GTE)
}

/// Rewrites `</` and `>/` outside strings and comments. A query the lexer rejects is returned
/// unchanged, for the parser to report.
pub(crate) fn rewrite(query: &str) -> Rewritten {
    let unchanged = || Rewritten {
        text: query.to_string(),
        trims: Vec::new(),
    };
    if !query.contains("</") && !query.contains(">/") {
        return unchanged();
    }
    let Ok(lx) = promql_parser::parser::lexer(query) else {
        return unchanged();
    };
    let toks: Vec<(u16, usize, usize)> = lx
        .iter()
        .filter_map(|l| l.ok())
        .map(|l| (l.tok_id(), l.span().start(), l.span().end()))
        .collect();
    let mut bytes = query.as_bytes().to_vec();
    let mut trims = Vec::new();
    let (mut rank, mut braces) = (0usize, 0usize);
    for (i, &(id, start, end)) in toks.iter().enumerate() {
        match id {
            T_LEFT_BRACE => braces += 1,
            T_RIGHT_BRACE => braces = braces.saturating_sub(1),
            // `!=` inside braces is a label matcher, not a binary operator.
            _ if braces > 0 || !is_comparison(id) => {}
            _ => {
                let slash = toks
                    .get(i + 1)
                    .is_some_and(|&(n, s, _)| n == T_DIV && s == end);
                if slash {
                    let trim = if id == T_LSS {
                        Trim::Upper
                    } else {
                        Trim::Lower
                    };
                    if matches!(id, T_LSS | T_GTR) {
                        bytes[start + 1] = b'=';
                        trims.push((rank, trim));
                    }
                }
                rank += 1;
            }
        }
    }
    match String::from_utf8(bytes) {
        // Only ASCII bytes were replaced by ASCII bytes.
        Ok(text) => Rewritten { text, trims },
        Err(_) => unchanged(),
    }
}

/// The trim operators' nodes, keyed by the address of their [`BinaryExpr`] in `expr`, which must
/// not move afterwards. Rejects modifiers that only comparisons take.
pub(crate) fn locate(
    expr: &Expr,
    trims: &[(usize, Trim)],
) -> Result<HashMap<usize, Trim>, QueryError> {
    let mut out = HashMap::new();
    if trims.is_empty() {
        return Ok(out);
    }
    let mut rank = 0usize;
    walk(expr, &mut rank, &mut |b, r| {
        if let Some((_, t)) = trims.iter().find(|(k, _)| *k == r) {
            out.insert(binary_key(b), *t);
        }
    });
    if let Some(t) = find_bool(expr, &out) {
        return Err(QueryError::bad(format!(
            "parse error: bool modifier can only be used on comparison operators, not on {}",
            t.as_str()
        )));
    }
    Ok(out)
}

pub(crate) fn binary_key(b: &BinaryExpr) -> usize {
    b as *const BinaryExpr as usize
}

/// Visits the comparison nodes in source order with their rank.
fn walk<'a>(e: &'a Expr, rank: &mut usize, f: &mut impl FnMut(&'a BinaryExpr, usize)) {
    match e {
        Expr::Binary(b) => {
            walk(&b.lhs, rank, f);
            if is_comparison(b.op.id()) {
                f(b, *rank);
                *rank += 1;
            }
            walk(&b.rhs, rank, f);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, rank, f);
            }
            walk(&a.expr, rank, f);
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, rank, f)),
        Expr::Unary(u) => walk(&u.expr, rank, f),
        Expr::Paren(p) => walk(&p.expr, rank, f),
        Expr::Subquery(s) => walk(&s.expr, rank, f),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

fn find_bool(e: &Expr, trims: &HashMap<usize, Trim>) -> Option<Trim> {
    let mut found = None;
    walk(e, &mut 0, &mut |b, _| {
        if found.is_none() && b.modifier.as_ref().is_some_and(|m| m.return_bool) {
            found = trims.get(&binary_key(b)).copied();
        }
    });
    found
}

/// One bucket's part that survives the trim: `(kept count, lower, upper)`, the bounds narrowed
/// to the threshold where the bucket was cut.
type Kept = (f64, f64, f64);

/// Applies a trim to `h` with threshold `x`. Interpolation in a cut bucket is exponential for
/// the regular buckets of exponential schemas and linear elsewhere. When anything was removed,
/// count is the sum of the kept buckets and sum is estimated from them.
pub(crate) fn apply(h: &FloatHistogram, x: f64, t: Trim) -> FloatHistogram {
    let mut out = h.clone();
    let mut removed = false;
    let (mut count, mut sum) = (0.0, 0.0);
    let mut keep = |c: f64, (k, lo, hi): Kept, value: fn(f64, f64) -> f64| -> f64 {
        let kept = c * k;
        if c != 0.0 && k < 1.0 {
            removed = true;
        }
        if kept != 0.0 {
            count += kept;
            sum += kept * value(lo, hi);
        }
        kept
    };
    if h.uses_custom_buckets() {
        let cv = &h.custom_values;
        let items: Vec<(i32, f64)> = h
            .positive()
            .map(|(i, c)| {
                let iu = i as usize;
                let l = if iu == 0 {
                    f64::NEG_INFINITY
                } else {
                    cv.get(iu - 1).copied().unwrap_or(f64::INFINITY)
                };
                let u = cv.get(iu).copied().unwrap_or(f64::INFINITY);
                (i, keep(c, custom_bucket(l, u, x, t), custom_value))
            })
            .collect();
        (out.positive_spans, out.positive_buckets) = spans_from_indexes(&items);
    } else {
        let s = h.schema;
        let neg: Vec<(i32, f64)> = h
            .negative()
            .map(|(i, c)| {
                let (l, u) = (
                    -crate::histogram::exp_bound(i, s),
                    -crate::histogram::exp_bound(i - 1, s),
                );
                (i, keep(c, cut(l, u, x, t, exp_fraction), exp_value))
            })
            .collect();
        // The zero bucket extends only to the side(s) that have populated buckets.
        let has_neg = h.negative_buckets.iter().any(|c| *c != 0.0);
        let has_pos = h.positive_buckets.iter().any(|c| *c != 0.0);
        let w = h.zero_threshold;
        let (zl, zu) = match (has_neg, has_pos) {
            (false, true) => (0.0, w),
            (true, false) => (-w, 0.0),
            _ => (-w, w),
        };
        out.zero_count = keep(h.zero_count, cut(zl, zu, x, t, linear_fraction), mean);
        let pos: Vec<(i32, f64)> = h
            .positive()
            .map(|(i, c)| {
                let (l, u) = (
                    crate::histogram::exp_bound(i - 1, s),
                    crate::histogram::exp_bound(i, s),
                );
                (i, keep(c, cut(l, u, x, t, exp_fraction), exp_value))
            })
            .collect();
        (out.negative_spans, out.negative_buckets) = spans_from_indexes(&neg);
        (out.positive_spans, out.positive_buckets) = spans_from_indexes(&pos);
    }
    if !removed {
        // Nothing was removed: the result is the input, down to its exact sum and count.
        return h.clone();
    }
    out.count = count;
    out.sum = sum;
    out
}

/// The fraction of a bucket `[l, u]` below `x` (with `l < x < u`).
fn linear_fraction(l: f64, u: f64, x: f64) -> f64 {
    (x - l) / (u - l)
}

fn exp_fraction(l: f64, u: f64, x: f64) -> f64 {
    let (ll, lu) = (l.abs().log2(), u.abs().log2());
    (x.abs().log2() - ll) / (lu - ll)
}

/// The kept part of a bucket with bounds `l < u`.
fn cut(l: f64, u: f64, x: f64, t: Trim, below: fn(f64, f64, f64) -> f64) -> Kept {
    match t {
        Trim::Upper if u <= x => (1.0, l, u),
        Trim::Upper if l >= x => (0.0, l, u),
        Trim::Upper => (below(l, u, x), l, x),
        Trim::Lower if u <= x => (0.0, l, u),
        Trim::Lower if l >= x => (1.0, l, u),
        Trim::Lower => (1.0 - below(l, u, x), x, u),
    }
}

fn mean(lo: f64, hi: f64) -> f64 {
    (lo + hi) / 2.0
}

/// Geometric mean of an exponential bucket; the overflow buckets count as ±Inf.
fn exp_value(lo: f64, hi: f64) -> f64 {
    if hi.is_infinite() {
        hi
    } else if lo.is_infinite() {
        lo
    } else {
        lo.signum() * (lo * hi).sqrt()
    }
}

/// The kept part of custom bucket `(l, u]`. Observations in the lowest bucket `(-Inf, u]` count
/// as -Inf unless `u > 0`, when the bucket is taken as `[0, u]` (but still drops out of a trim
/// lower below zero); observations in the overflow bucket `(l, +Inf]` count as +Inf.
fn custom_bucket(l: f64, u: f64, x: f64, t: Trim) -> Kept {
    let none = (0.0, l, u);
    match t {
        Trim::Upper => {
            if u <= x {
                (1.0, l, u)
            } else if u == f64::INFINITY {
                none
            } else if l == f64::NEG_INFINITY {
                if u > 0.0 {
                    if x <= 0.0 {
                        none
                    } else {
                        (x / u, 0.0, x)
                    }
                } else if x == f64::NEG_INFINITY {
                    none
                } else {
                    (1.0, l, x)
                }
            } else if l >= x {
                none
            } else {
                (linear_fraction(l, u, x), l, x)
            }
        }
        Trim::Lower => {
            if u <= x {
                none
            } else if l == f64::NEG_INFINITY {
                if x == f64::NEG_INFINITY {
                    (1.0, l, u)
                } else if u != f64::INFINITY && u > 0.0 && x >= 0.0 {
                    ((u - x) / u, x, u)
                } else {
                    none
                }
            } else if l >= x {
                (1.0, l, u)
            } else if u == f64::INFINITY {
                (1.0, x, u)
            } else {
                (1.0 - linear_fraction(l, u, x), x, u)
            }
        }
    }
}

/// The value each observation of a kept custom bucket part is estimated at: the lower bound of
/// the overflow bucket, the upper bound of a non-positive lowest bucket, else the middle (the
/// positive lowest bucket starting at zero).
fn custom_value(lo: f64, hi: f64) -> f64 {
    match (lo == f64::NEG_INFINITY, hi == f64::INFINITY) {
        (true, true) => 0.0,
        (false, true) => lo,
        (true, false) if hi > 0.0 => hi / 2.0,
        (true, false) => hi,
        (false, false) => mean(lo, hi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trims_of(q: &str) -> (String, Vec<(usize, Trim)>) {
        let r = rewrite(q);
        (r.text, r.trims)
    }

    #[test]
    fn rewrites_both_operators_with_and_without_spaces() {
        assert_eq!(
            trims_of("a</b"),
            ("a<=b".to_string(), vec![(0, Trim::Upper)])
        );
        assert_eq!(
            trims_of("a >/ 1 </ 2"),
            (
                "a >= 1 <= 2".to_string(),
                vec![(0, Trim::Lower), (1, Trim::Upper)]
            )
        );
    }

    #[test]
    fn ranks_count_every_comparison_outside_braces() {
        let (text, trims) = trims_of(r#"a{x!="1"} > 1 and (b </ 3) == c >/ 4"#);
        assert_eq!(text, r#"a{x!="1"} > 1 and (b <= 3) == c >= 4"#);
        assert_eq!(trims, vec![(1, Trim::Upper), (3, Trim::Lower)]);
    }

    #[test]
    fn leaves_strings_comments_and_other_operators_alone() {
        for q in [
            r#"label_replace(a, "x", "</", "y", ">/")"#,
            "a{x=\"</\"} # a </ b\n",
            "a <= b >= c < d > e / f",
            "a < /b/",
        ] {
            let (text, trims) = trims_of(q);
            assert_eq!(text, q);
            assert!(trims.is_empty(), "{q}");
        }
        assert_eq!(trims_of("a{x=`</`}").0, "a{x=`</`}");
    }

    fn located(q: &str) -> Vec<(String, Trim)> {
        let r = rewrite(q);
        let expr = promql_parser::parser::parse(&r.text).expect("parses");
        let map = locate(&expr, &r.trims).expect("no bool");
        let mut out = Vec::new();
        walk(&expr, &mut 0, &mut |b, _| {
            if let Some(t) = map.get(&binary_key(b)) {
                out.push((b.rhs.to_string(), *t));
            }
        });
        out
    }

    #[test]
    fn locates_nodes_with_comparison_precedence() {
        // `a </ 1 + 2`: `+` binds tighter, so the trim's right operand is `1 + 2`.
        assert_eq!(located("a </ 1 + 2"), vec![("1 + 2".into(), Trim::Upper)]);
        // Left associative with the comparisons: `(a > 1) </ 2`.
        assert_eq!(located("a > 1 </ 2"), vec![("2".into(), Trim::Upper)]);
        assert_eq!(
            located("sum(a >/ 0.1) </ 0.5 and topk(1, b) < 3"),
            vec![("0.1".into(), Trim::Lower), ("0.5".into(), Trim::Upper)]
        );
        // `or` binds looser.
        assert_eq!(
            located("a </ 1 or b >/ 2"),
            vec![("1".into(), Trim::Upper), ("2".into(), Trim::Lower)]
        );
    }

    #[test]
    fn rejects_bool_on_trims() {
        let r = rewrite("a </ bool 1");
        let expr = promql_parser::parser::parse(&r.text).expect("parses");
        assert!(locate(&expr, &r.trims).is_err());
    }

    fn custom(cv: &[f64], buckets: &[f64]) -> FloatHistogram {
        let items: Vec<(i32, f64)> = buckets
            .iter()
            .enumerate()
            .map(|(i, c)| (i as i32, *c))
            .collect();
        let (spans, buckets) = spans_from_indexes(&items);
        FloatHistogram {
            schema: crate::histogram::CUSTOM_BUCKETS_SCHEMA,
            count: buckets.iter().sum(),
            sum: 33.0,
            positive_spans: spans,
            positive_buckets: buckets,
            custom_values: cv.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn custom_buckets_interpolate_linearly() {
        let h = custom(&[5.0], &[1.0, 100.0]);
        let r = apply(&h, 2.0, Trim::Upper);
        assert!((r.count - 0.4).abs() < 1e-12 && (r.sum - 0.4).abs() < 1e-12);
        let r = apply(&h, 2.0, Trim::Lower);
        assert!((r.count - 100.6).abs() < 1e-12 && (r.sum - 502.1).abs() < 1e-9);
        // Nothing removed: the input comes back unchanged.
        assert_eq!(apply(&h, 0.0, Trim::Lower), h);
    }
}
