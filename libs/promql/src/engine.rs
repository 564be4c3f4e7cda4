//! Query entry points: parse, plan the selects, fetch, evaluate, shape the result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hestia_model::{MatchOp, Matcher, METRIC_NAME};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Expr, VectorSelector};

use crate::error::QueryError;
use crate::eval::{
    at_ms, duration_ms, offset_ms, selector_key, subquery_ctx, window, Ctx, EvalSeries, Evaluator,
    Val,
};
use crate::value::{InstantSample, QueryResult, Series, Value};
use crate::{Queryable, SelectHints};

/// Engine settings; `Default` matches Prometheus' defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta: Duration,
    /// Maximum number of samples held during one query.
    pub max_samples: usize,
    /// Evaluation deadline per query (`None`: unlimited).
    pub timeout: Option<Duration>,
    /// Step of subqueries written without one (`x[5m:]`), Prometheus' global evaluation interval.
    pub default_subquery_step: Duration,
    /// Allows functions Prometheus gates behind `--enable-feature=promql-experimental-functions`.
    pub enable_experimental_functions: bool,
    /// Range queries producing more points per series than this are rejected (Prometheus API: 11,000).
    pub max_points_per_series: Option<u64>,
    /// Prometheus' `--enable-feature=type-and-unit-labels`: `__type__` and `__unit__` go
    /// wherever the metric name goes.
    pub enable_type_and_unit_labels: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Some(Duration::from_secs(120)),
            default_subquery_step: Duration::from_secs(60),
            enable_experimental_functions: false,
            max_points_per_series: Some(11_000),
            enable_type_and_unit_labels: false,
        }
    }
}

/// A PromQL engine. Cheap to share; holds no per-query state.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// One `select` the query needs.
struct Fetch {
    matchers: Vec<Matcher>,
    hints: SelectHints,
    keys: Vec<usize>,
}

/// One selector's read: its time range, and whether only the newest sample is used.
struct Need<'e> {
    vs: &'e VectorSelector,
    mint: i64,
    maxt: i64,
    latest_only: bool,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub async fn instant_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        ts_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        self.run(q, query, ts_ms, ts_ms, 0).await
    }

    pub async fn range_query(
        &self,
        q: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::bad(
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::bad(
                "end timestamp must not be before start time",
            ));
        }
        if let Some(max) = self.opts.max_points_per_series {
            if ((end_ms - start_ms) / step_ms) as u64 >= max {
                return Err(QueryError::bad(
                    "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
                ));
            }
        }
        self.run(q, query, start_ms, end_ms, step_ms).await
    }

    async fn run(
        &self,
        q: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        let parsed = parse(query, self.opts.enable_experimental_functions)?;
        let expr = &parsed.expr;
        let trims = crate::trim::locate(expr, &parsed.trims)?;
        let is_range = step > 0;
        if is_range {
            let t = match expr {
                e if matches!(unparen(e), Expr::StringLiteral(_)) => Some("string"),
                e if matches!(unparen(e), Expr::MatrixSelector(_) | Expr::Subquery(_)) => {
                    Some("range vector")
                }
                _ => None,
            };
            if let Some(t) = t {
                return Err(QueryError::bad(format!(
                    "invalid expression type \"{t}\" for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let ctx = Ctx {
            start,
            end,
            interval: if is_range { step } else { 1 },
        };

        // Plan and fetch every selector's data.
        let mut fetches: Vec<Fetch> = Vec::new();
        let mut by_matchers: HashMap<String, usize> = HashMap::new();
        let planner = Planner {
            lookback: duration_ms(&self.opts.lookback_delta),
            query_start: start,
            query_end: end,
            default_step: duration_ms(&self.opts.default_subquery_step),
        };
        let stats_selectors = crate::eval::stats_selectors(expr);
        let mut needs: Vec<Need> = Vec::new();
        planner.plan(expr, &ctx, &mut needs);
        for need in needs {
            let matchers = convert_matchers(need.vs)?;
            let key: String = matchers.iter().map(|m| format!("{m},")).collect();
            // The stats iterator derives histogram hints from the previous sample.
            let latest_only = need.latest_only && !stats_selectors.contains(&selector_key(need.vs));
            match by_matchers.get(&key) {
                Some(&i) => {
                    let h = &mut fetches[i].hints;
                    h.latest_only &= latest_only && h.mint == need.mint && h.maxt == need.maxt;
                    h.mint = h.mint.min(need.mint);
                    h.maxt = h.maxt.max(need.maxt);
                    fetches[i].keys.push(selector_key(need.vs));
                }
                None => {
                    by_matchers.insert(key, fetches.len());
                    fetches.push(Fetch {
                        matchers,
                        hints: SelectHints {
                            mint: need.mint,
                            maxt: need.maxt,
                            latest_only,
                        },
                        keys: vec![selector_key(need.vs)],
                    });
                }
            }
        }
        let mut data: HashMap<usize, Arc<Vec<Series>>> = HashMap::new();
        let deadline = self.opts.timeout.map(|t| started + t);
        // Every selector's data is fetched at once, concurrently.
        let fetched = futures::future::try_join_all(fetches.iter().map(|f| async move {
            match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    select_with_timeout(q, &f.matchers, &f.hints, left).await
                }
                None => q.select(&f.matchers, &f.hints).await,
            }
        }))
        .await?;
        for (f, series) in fetches.into_iter().zip(fetched) {
            let series = Arc::new(series);
            for k in f.keys {
                data.insert(k, series.clone());
            }
        }

        let positions = crate::pos::compute(&parsed.text, expr);
        let invalid_strings = invalid_utf8_literals(query);
        let mut ev = Evaluator {
            data: &data,
            lookback: duration_ms(&self.opts.lookback_delta),
            query_start: start,
            query_end: end,
            query_step: step,
            default_sub_step: duration_ms(&self.opts.default_subquery_step),
            max_samples: self.opts.max_samples,
            deadline,
            warnings: Vec::new(),
            infos: Vec::new(),
            samples: 0,
            positions: &positions,
            trims: &trims,
            stats_selectors: &stats_selectors,
            invalid_strings: &invalid_strings,
        };
        let val = ev.eval(expr, &ctx)?;
        let dropped: &[&str] = if self.opts.enable_type_and_unit_labels {
            &[METRIC_NAME, "__type__", "__unit__"]
        } else {
            &[METRIC_NAME]
        };
        let value = finish(val, &ctx, is_range, dropped)?;
        Ok(QueryResult {
            value,
            warnings: ev.warnings,
            infos: ev.infos,
        })
    }
}

async fn select_with_timeout(
    q: &dyn Queryable,
    matchers: &[Matcher],
    hints: &SelectHints,
    left: Duration,
) -> Result<Vec<Series>, QueryError> {
    if left.is_zero() {
        return Err(QueryError::Timeout("query execution".into()));
    }
    // The Queryable owns its own I/O deadlines; the evaluation deadline is checked afterwards.
    let r = q.select(matchers, hints).await?;
    Ok(r)
}

/// promql-parser decodes `\xNN` escapes as the character U+00NN, while Prometheus (Go) yields
/// the raw byte. Finds literals whose Go decoding is not UTF-8, as (parsed form, written form).
fn invalid_utf8_literals(query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let q = b[i];
        if q != b'"' && q != b'\'' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        let (mut bytes, mut parsed, mut has_x) = (Vec::new(), String::new(), false);
        while j < b.len() && b[j] != q {
            if b[j] == b'\\' && j + 1 < b.len() {
                let hex = query
                    .get(j + 2..j + 4)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (b[j + 1], hex) {
                    (b'x', Some(v)) => {
                        has_x = true;
                        bytes.push(v);
                        parsed.push(char::from(v));
                        j += 4;
                    }
                    (c, _) => {
                        bytes.extend_from_slice(&[b'\\', c]);
                        parsed.push(char::from(c));
                        j += 2;
                    }
                }
                continue;
            }
            let ch = query[j..].chars().next().unwrap_or(' ');
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            parsed.push(ch);
            j += ch.len_utf8();
        }
        if has_x && std::str::from_utf8(&bytes).is_err() {
            out.push((parsed, query[start..j.min(b.len())].to_string()));
        }
        i = j + 1;
    }
    out
}

fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// A parsed query: the AST, in which the histogram trim operators `</` and `>/` appear as `<=`
/// and `>=` (see [`crate::trim`]), the text it was parsed from, and which nodes are trims.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub expr: Expr,
    text: String,
    trims: Vec<(usize, crate::trim::Trim)>,
}

/// Parses a query and applies the checks promql-parser leaves to the engine.
pub fn parse(query: &str, experimental: bool) -> Result<Parsed, QueryError> {
    let rw = crate::trim::rewrite(query);
    let expr = promql_parser::parser::parse(&rw.text)
        .map_err(|e| QueryError::bad(format!("parse error: {e}")))?;
    crate::trim::locate(&expr, &rw.trims)?;
    if !experimental {
        if let Some(name) = find_experimental(&expr) {
            return Err(QueryError::bad(format!(
                "parse error: function {name:?} is not enabled"
            )));
        }
    }
    Ok(Parsed {
        expr,
        text: rw.text,
        trims: rw.trims,
    })
}

fn find_experimental(e: &Expr) -> Option<&'static str> {
    match e {
        Expr::Call(c) => {
            if c.func.experimental {
                return Some(c.func.name);
            }
            c.args.args.iter().find_map(|a| find_experimental(a))
        }
        Expr::Aggregate(a) => {
            if matches!(
                a.op.id(),
                promql_parser::parser::token::T_LIMITK
                    | promql_parser::parser::token::T_LIMIT_RATIO
            ) {
                return Some(if a.op.id() == promql_parser::parser::token::T_LIMITK {
                    "limitk"
                } else {
                    "limit_ratio"
                });
            }
            a.param
                .as_deref()
                .and_then(find_experimental)
                .or_else(|| find_experimental(&a.expr))
        }
        Expr::Unary(u) => find_experimental(&u.expr),
        Expr::Binary(b) => find_experimental(&b.lhs).or_else(|| find_experimental(&b.rhs)),
        Expr::Paren(p) => find_experimental(&p.expr),
        Expr::Subquery(s) => find_experimental(&s.expr),
        _ => None,
    }
}

/// Converts a selector's matchers (adding the metric name) to Hestia matchers.
fn convert_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::bad(
            "parse error: \"or\" in label matchers is not supported",
        ));
    }
    let mut has_name = false;
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        if m.name == METRIC_NAME {
            has_name = true;
        }
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| QueryError::bad(e.to_string()))?,
        );
    }
    if let (Some(n), false) = (&vs.name, has_name) {
        out.push(Matcher::equal(METRIC_NAME, n.clone()));
    }
    Ok(out)
}

struct Planner {
    lookback: i64,
    query_start: i64,
    query_end: i64,
    default_step: i64,
}

impl Planner {
    /// Collects every selector with the time range `[mint, maxt]` it reads.
    fn plan<'e>(&self, e: &'e Expr, ctx: &Ctx, out: &mut Vec<Need<'e>>) {
        match e {
            Expr::VectorSelector(vs) => {
                let (s, en) = self.bounds(&vs.at, ctx);
                let off = offset_ms(&vs.offset);
                out.push(Need {
                    vs,
                    mint: s - off - self.lookback + 1,
                    maxt: en - off,
                    // Evaluated at one time, it keeps the newest sample of the lookback window.
                    latest_only: s == en,
                });
            }
            Expr::MatrixSelector(ms) => {
                let (s, en) = self.bounds(&ms.vs.at, ctx);
                let off = offset_ms(&ms.vs.offset);
                out.push(Need {
                    vs: &ms.vs,
                    mint: s - off - duration_ms(&ms.range) + 1,
                    maxt: en - off,
                    latest_only: false,
                });
            }
            Expr::Subquery(sq) => {
                let at = at_ms(&sq.at, self.query_start, self.query_end);
                let step = sq
                    .step
                    .as_ref()
                    .map(duration_ms)
                    .unwrap_or(self.default_step)
                    .max(1);
                let inner =
                    subquery_ctx(ctx, duration_ms(&sq.range), offset_ms(&sq.offset), at, step);
                self.plan(&sq.expr, &inner, out);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.plan(p, ctx, out);
                }
                self.plan(&a.expr, ctx, out);
            }
            Expr::Unary(u) => self.plan(&u.expr, ctx, out),
            Expr::Binary(b) => {
                self.plan(&b.lhs, ctx, out);
                self.plan(&b.rhs, ctx, out);
            }
            Expr::Paren(p) => self.plan(&p.expr, ctx, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, ctx, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn bounds(&self, at: &Option<promql_parser::parser::AtModifier>, ctx: &Ctx) -> (i64, i64) {
        match at_ms(at, self.query_start, self.query_end) {
            Some(a) => (a, a),
            None => (ctx.start, ctx.end),
        }
    }
}

/// Applies pending name drops, rejects duplicate label sets and shapes the API value.
/// `dropped`: the labels removed from series whose metric name is dropped.
fn finish(val: Val, ctx: &Ctx, is_range: bool, dropped: &[&str]) -> Result<Value, QueryError> {
    match val {
        Val::Scalar(v) => {
            if is_range {
                let floats = v
                    .iter()
                    .enumerate()
                    .map(|(k, f)| hestia_model::Sample::new(ctx.ts(k), *f))
                    .collect();
                Ok(Value::Matrix(vec![Series {
                    labels: hestia_model::Labels::empty(),
                    floats,
                    histograms: Vec::new(),
                }]))
            } else {
                Ok(Value::Scalar {
                    t: ctx.start,
                    v: v.first().copied().unwrap_or(f64::NAN),
                })
            }
        }
        Val::Str(s) => Ok(Value::String { t: ctx.start, v: s }),
        Val::Vector(m) => {
            let m = cleanup(m, dropped)?;
            if is_range {
                let mut out: Vec<Series> = m
                    .into_iter()
                    .map(|s| Series {
                        labels: s.labels,
                        floats: s.floats,
                        histograms: s.hists,
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(Value::Matrix(out))
            } else {
                let mut out = Vec::with_capacity(m.len());
                for s in m {
                    if let Some(p) = s.floats.last() {
                        out.push(InstantSample {
                            labels: s.labels,
                            t: p.t,
                            f: p.v,
                            h: None,
                        });
                    } else if let Some((t, h)) = s.hists.into_iter().last() {
                        out.push(InstantSample {
                            labels: s.labels,
                            t,
                            f: 0.0,
                            h: Some(h),
                        });
                    }
                }
                Ok(Value::Vector(out))
            }
        }
        Val::Range(rv) => {
            let t = ctx.start;
            let end = rv.window_end(t);
            let mut out = Vec::new();
            for s in cleanup(rv.series, dropped)? {
                let (lo, hi) = window(&s.floats, |p| p.t, end, rv.range);
                let (hlo, hhi) = window(&s.hists, |p| p.0, end, rv.range);
                if lo == hi && hlo == hhi {
                    continue;
                }
                out.push(Series {
                    labels: s.labels,
                    floats: s.floats[lo..hi].to_vec(),
                    histograms: s.hists[hlo..hhi].to_vec(),
                });
            }
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            Ok(Value::Matrix(out))
        }
    }
}

fn cleanup(m: Vec<EvalSeries>, dropped: &[&str]) -> Result<Vec<EvalSeries>, QueryError> {
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(m.len());
    let mut out: Vec<EvalSeries> = Vec::with_capacity(m.len());
    for mut s in m {
        if s.drop_name {
            s.labels = s.labels.without(dropped);
            s.drop_name = false;
        }
        let h = s.labels.hash64();
        let bucket = seen.entry(h).or_default();
        if let Some(&i) = bucket.iter().find(|&&i| out[i].labels == s.labels) {
            // Series that became equal by losing their names merge unless they overlap in time.
            let dst = &mut out[i];
            let times: std::collections::HashSet<i64> = dst
                .floats
                .iter()
                .map(|p| p.t)
                .chain(dst.hists.iter().map(|p| p.0))
                .collect();
            if s.floats.iter().any(|p| times.contains(&p.t))
                || s.hists.iter().any(|p| times.contains(&p.0))
            {
                return Err(QueryError::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
            dst.floats.extend(s.floats);
            dst.floats.sort_by_key(|p| p.t);
            dst.hists.extend(s.hists);
            dst.hists.sort_by_key(|p| p.0);
            continue;
        }
        bucket.push(out.len());
        out.push(s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use hestia_model::{Labels, STALE_NAN_BITS};

    use super::*;
    use crate::error::ErrorKind;
    use crate::MemoryStorage;

    fn storage() -> MemoryStorage {
        let mut s = MemoryStorage::new();
        for (inst, step) in [("a", 1.0), ("b", 2.0)] {
            let l = Labels::from_pairs([
                ("__name__", "reqs_total"),
                ("job", "api"),
                ("instance", inst),
            ]);
            for k in 0..=10 {
                s.add_float(&l, k * 60_000, k as f64 * step * 60.0);
            }
        }
        let g = Labels::from_pairs([("__name__", "gauge")]);
        s.add_float(&g, 0, 1.0);
        s.add_float(&g, 60_000, f64::from_bits(STALE_NAN_BITS));
        s
    }

    fn run(q: &str, t: i64) -> Result<QueryResult, QueryError> {
        let s = storage();
        let e = Engine::new(EngineOptions::default());
        futures_lite(e.instant_query(&s, q, t))
    }

    /// Minimal executor: the engine's futures only await the in-memory storage.
    fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn query_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let s = storage();
        let e = Engine::new(EngineOptions::default());
        let f = e.instant_query(&s, "up", 0);
        assert_send(&f);
        let g = e.range_query(&s, "up", 0, 60_000, 15_000);
        assert_send(&g);
    }

    /// Records the hints of every select.
    struct Recorder {
        inner: MemoryStorage,
        hints: std::sync::Mutex<Vec<SelectHints>>,
    }

    #[async_trait::async_trait]
    impl Queryable for Recorder {
        async fn select(
            &self,
            matchers: &[Matcher],
            hints: &SelectHints,
        ) -> Result<Vec<Series>, QueryError> {
            self.hints.lock().expect("lock").push(*hints);
            self.inner.select(matchers, hints).await
        }
    }

    /// `latest_only` of each select of a query (instant at 600 s, or range 0..600 s by 60 s).
    fn latest_only(q: &str, range: bool) -> Vec<bool> {
        let r = Recorder {
            inner: storage(),
            hints: Default::default(),
        };
        let e = Engine::new(EngineOptions::default());
        let res = match range {
            false => futures_lite(e.instant_query(&r, q, 600_000)),
            true => futures_lite(e.range_query(&r, q, 0, 600_000, 60_000)),
        };
        res.expect("query");
        let hints = r.hints.into_inner().expect("lock");
        hints.iter().map(|h| h.latest_only).collect()
    }

    #[test]
    fn latest_only_for_selectors_evaluated_at_one_time() {
        assert_eq!(latest_only("reqs_total", false), [true]);
        assert_eq!(
            latest_only("sum(reqs_total offset 1m) + gauge", false),
            [true, true]
        );
        assert_eq!(latest_only("reqs_total @ 300", true), [true]);
        assert_eq!(latest_only("reqs_total", true), [false]);
        assert_eq!(latest_only("rate(reqs_total[5m])", false), [false]);
        assert_eq!(
            latest_only("max_over_time(reqs_total[5m:1m])", false),
            [false]
        );
        // One select serves both: one needs a window.
        assert_eq!(
            latest_only("reqs_total + rate(reqs_total[5m])", false),
            [false]
        );
        // One select serves both: they read at different times.
        assert_eq!(
            latest_only("reqs_total - reqs_total offset 1m", false),
            [false]
        );
        // The stats iterator compares each histogram with the one before.
        assert_eq!(latest_only("histogram_count(gauge)", false), [false]);
        // The newest sample decides; the same answer as with every sample.
        let r = run("reqs_total", 600_000).unwrap();
        assert_eq!(
            r.data_json(),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"reqs_total","instance":"a","job":"api"},"value":[600,"600"]},{"metric":{"__name__":"reqs_total","instance":"b","job":"api"},"value":[600,"1200"]}]}"#
        );
        assert!(run("gauge", 120_000)
            .unwrap()
            .data_json()
            .contains("\"result\":[]"));
    }

    #[test]
    fn rate_sum_and_json() {
        let r = run("sum by (job) (rate(reqs_total[5m]))", 600_000).unwrap();
        assert_eq!(
            r.data_json(),
            r#"{"resultType":"vector","result":[{"metric":{"job":"api"},"value":[600,"3"]}]}"#
        );
    }

    #[test]
    fn staleness_marker_ends_series() {
        let r = run("gauge", 30_000).unwrap();
        assert!(matches!(r.value, Value::Vector(ref v) if v.len() == 1));
        let r = run("gauge", 90_000).unwrap();
        assert!(matches!(r.value, Value::Vector(ref v) if v.is_empty()));
    }

    #[test]
    fn range_query_matrix_sorted() {
        let s = storage();
        let e = Engine::new(EngineOptions::default());
        let r = futures_lite(e.range_query(&s, "reqs_total offset 1m", 120_000, 240_000, 60_000))
            .unwrap();
        let Value::Matrix(m) = r.value else {
            panic!("not a matrix")
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels.get("instance"), Some("a"));
        assert_eq!(m[0].floats.len(), 3);
        assert_eq!(m[0].floats[0].v, 60.0);
    }

    /// A range query cuts each step's window from one fetch with cursors (and finds a counter's
    /// resets once); every step must equal the instant query at that time, which sees only its
    /// own window. Samples every 10 s, resets at random, steps that split windows anywhere.
    #[test]
    fn range_steps_equal_instant_queries() {
        let mut s = MemoryStorage::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for i in 0..3 {
            let l = Labels::from_pairs([("__name__", "c_total"), ("i", &i.to_string())]);
            let mut v = 0.0;
            for k in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v = if x.is_multiple_of(7) {
                    (x % 5) as f64
                } else {
                    v + (x % 11) as f64
                };
                s.add_float(&l, k * 10_000, v);
            }
        }
        let e = Engine::new(EngineOptions::default());
        for q in [
            "increase(c_total[1m])",
            "rate(c_total[45s])",
            "increase(c_total[10m])",
            "resets(c_total[2m])",
        ] {
            let r = futures_lite(e.range_query(&s, q, 30_000, 3_900_000, 37_000)).unwrap();
            let Value::Matrix(m) = r.value else {
                panic!("not a matrix")
            };
            let mut points = 0;
            for t in (30_000..=3_900_000).step_by(37_000) {
                let Value::Vector(v) = futures_lite(e.instant_query(&s, q, t)).unwrap().value
                else {
                    panic!("not a vector")
                };
                for sample in v {
                    let series = m.iter().find(|x| x.labels == sample.labels).unwrap();
                    let p = series.floats.iter().find(|p| p.t == t).unwrap();
                    assert_eq!(p.v.to_bits(), sample.f.to_bits(), "{q} at {t}");
                    points += 1;
                }
            }
            assert_eq!(
                points,
                m.iter().map(|s| s.floats.len()).sum::<usize>(),
                "{q}"
            );
            assert!(points > 300, "{q}: {points}");
        }
    }

    #[test]
    fn errors_have_kinds() {
        assert_eq!(run("sum(", 0).unwrap_err().kind(), ErrorKind::BadData);
        let s = storage();
        let e = Engine::new(EngineOptions {
            max_samples: 5,
            ..Default::default()
        });
        let err = futures_lite(e.instant_query(&s, "reqs_total[10m]", 600_000)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooManySamples);
        assert_eq!(
            err.to_string(),
            "query processing would load too many samples into memory in query execution"
        );
        let err = futures_lite(e.range_query(&s, "1", 10, 0, 1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadData);
    }

    #[test]
    fn vector_matching_group_left() {
        let r = run(
            "reqs_total * on (instance) group_left (job) (reqs_total{instance=\"a\"} * 0 + 1)",
            600_000,
        )
        .unwrap();
        let Value::Vector(v) = r.value else {
            panic!("not a vector")
        };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].f, 600.0);
        assert_eq!(v[0].labels.get("__name__"), None);
    }
}
