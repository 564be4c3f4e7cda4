//! Prometheus reads histograms through its `HistogramStatsIterator` when only their count and
//! sum are needed (`histogram_count`, `histogram_sum` or `histogram_avg` above a selector, with no
//! subquery, `histogram_quantile` or `histogram_fraction` in between). That iterator derives a
//! counter reset hint for every sample whose stored hint is unknown by comparing it with the
//! previous sample, which makes conflicting hints (and their warning) visible to aggregations.

use std::collections::HashSet;

use promql_parser::parser::Expr;

use super::selector_key;
use crate::histogram::{CounterResetHint, FloatHistogram};

/// The selectors Prometheus would read through the stats iterator, by [`selector_key`].
pub(crate) fn stats_selectors(e: &Expr) -> HashSet<usize> {
    let mut out = HashSet::new();
    walk(e, false, &mut out);
    out
}

/// `stats`: a count/sum/avg function is above, and nothing needing buckets or a subquery.
fn walk(e: &Expr, stats: bool, out: &mut HashSet<usize>) {
    match e {
        // Each operand of a binary expression is considered on its own.
        Expr::Binary(b) => {
            walk(&b.lhs, false, out);
            walk(&b.rhs, false, out);
        }
        Expr::Call(c) => {
            let stats = match c.func.name {
                "histogram_count" | "histogram_sum" | "histogram_avg" => true,
                "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => {
                    return c.args.args.iter().for_each(|a| walk_blocked(a, out));
                }
                _ => stats,
            };
            c.args.args.iter().for_each(|a| walk(a, stats, out));
        }
        Expr::Subquery(s) => walk_blocked(&s.expr, out),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, stats, out);
            }
            walk(&a.expr, stats, out);
        }
        Expr::Unary(u) => walk(&u.expr, stats, out),
        Expr::Paren(p) => walk(&p.expr, stats, out),
        Expr::VectorSelector(vs) => {
            if stats {
                out.insert(selector_key(vs));
            }
        }
        Expr::MatrixSelector(ms) => {
            if stats {
                out.insert(selector_key(&ms.vs));
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Below a blocker only binary operands start afresh.
fn walk_blocked(e: &Expr, out: &mut HashSet<usize>) {
    match e {
        Expr::Binary(_) => walk(e, false, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk_blocked(a, out)),
        Expr::Subquery(s) => walk_blocked(&s.expr, out),
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk_blocked(p, out);
            }
            walk_blocked(&a.expr, out);
        }
        Expr::Unary(u) => walk_blocked(&u.expr, out),
        Expr::Paren(p) => walk_blocked(&p.expr, out),
        _ => {}
    }
}

/// The samples with unknown hints resolved against their predecessor, as the stats iterator
/// reads them. Gauge histograms keep their hint.
pub(crate) fn with_derived_hints(hists: &[(i64, FloatHistogram)]) -> Vec<(i64, FloatHistogram)> {
    let mut out: Vec<(i64, FloatHistogram)> = hists.to_vec();
    for i in 1..out.len() {
        if out[i].1.counter_reset_hint == CounterResetHint::Unknown {
            out[i].1.counter_reset_hint = if hists[i].1.detect_reset(&hists[i - 1].1) {
                CounterResetHint::CounterReset
            } else {
                CounterResetHint::NotCounterReset
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(q: &str) -> usize {
        let e = promql_parser::parser::parse(q).expect("parses");
        stats_selectors(&e).len()
    }

    #[test]
    fn detects_stats_only_selectors() {
        assert_eq!(count("histogram_count(sum(a))"), 1);
        assert_eq!(count("histogram_sum(rate(a[5m]))"), 1);
        assert_eq!(count("sum(a)"), 0);
        assert_eq!(count("histogram_count(increase(a[40m:9m]))"), 0);
        assert_eq!(
            count("histogram_count(a unless histogram_quantile(0.5, a) < 3)"),
            0
        );
        assert_eq!(count("histogram_quantile(0.5, histogram_count(a))"), 0);
    }
}
