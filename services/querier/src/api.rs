//! Handlers of the Prometheus HTTP API (reference/prometheus/api.md).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hestia_model::{Labels, TenantId};
use hestia_promql::{QueryResult, Value};
use serde_json::{json, Map};
use tracing::Instrument;

use crate::metrics;
use crate::params::{Params, MAX_TIME, MIN_TIME};
use crate::store::ChunkBudget;
use crate::{ApiError, Querier, TenantQueryable, TENANT_HEADER};

/// Prometheus refuses range queries that would return more points than this per series.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

type ApiResult = Result<Response, ApiError>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn tenant(headers: &HeaderMap) -> Result<TenantId, ApiError> {
    let v = headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_data("missing tenant (X-Scope-OrgID)"))?;
    TenantId::parse(v).map_err(|e| ApiError::bad_data(e.to_string()))
}

fn success(data: serde_json::Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

pub(crate) fn labels_json(l: &Labels) -> serde_json::Value {
    let mut m = Map::with_capacity(l.len());
    for x in l {
        m.insert(x.name.clone(), serde_json::Value::String(x.value.clone()));
    }
    serde_json::Value::Object(m)
}

/// A duration as Prometheus prints one (`32d`, `1h30m`, `0s`).
fn format_duration(ms: i64) -> String {
    const UNITS: [(&str, i64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if ms <= 0 {
        return "0s".to_string();
    }
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// The error for a query reading a longer time range than `querier.max_query_length` allows.
pub(crate) fn query_length_error(length_ms: i64, limit: Duration) -> String {
    format!(
        "the query time range exceeds the limit (query length: {}, limit: {})",
        format_duration(length_ms),
        format_duration(limit.as_millis() as i64)
    )
}

/// Refuses selections longer than the query-length limit (plus the lookback window an instant
/// selector adds), wherever in the expression they come from (ranges, subqueries, offsets).
struct LimitedQueryable<'a> {
    inner: TenantQueryable<'a>,
    max_length_ms: i64,
    slack_ms: i64,
}

#[async_trait::async_trait]
impl hestia_promql::Queryable for LimitedQueryable<'_> {
    async fn select(
        &self,
        matchers: &[hestia_model::Matcher],
        hints: &hestia_promql::SelectHints,
    ) -> Result<Vec<hestia_promql::Series>, hestia_promql::QueryError> {
        let length = hints.maxt.saturating_sub(hints.mint);
        if length > self.max_length_ms.saturating_add(self.slack_ms) {
            return Err(hestia_promql::QueryError::BadData(query_length_error(
                length,
                Duration::from_millis(self.max_length_ms as u64),
            )));
        }
        self.inner.select(matchers, hints).await
    }
}

fn limited<'a>(q: &'a Querier, tenant: &'a TenantId) -> LimitedQueryable<'a> {
    LimitedQueryable {
        inner: TenantQueryable {
            store: &q.store,
            tenant,
            chunks: ChunkBudget::new(q.cfg.max_fetched_chunks_per_query),
        },
        max_length_ms: q.cfg.max_query_length.as_millis() as i64,
        slack_ms: q.cfg.lookback_delta.as_millis() as i64,
    }
}

fn query_response(mut res: QueryResult, limit: usize) -> Result<Response, ApiError> {
    if limit > 0 {
        let truncated = match &mut res.value {
            Value::Vector(v) if v.len() > limit => {
                v.truncate(limit);
                true
            }
            Value::Matrix(m) if m.len() > limit => {
                m.truncate(limit);
                true
            }
            _ => false,
        };
        if truncated {
            res.warnings
                .push(format!("results truncated due to limit of {limit} series"));
        }
    }
    // Written straight to bytes: a range result can hold millions of points.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        status: &'static str,
        data: &'a Value,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: &'a Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        infos: &'a Vec<String>,
    }
    // About 30 bytes per float point and 100 per series label set, to avoid regrowing.
    let size_hint = match &res.value {
        Value::Matrix(m) => m.iter().map(|s| 100 + 30 * s.floats.len()).sum(),
        Value::Vector(v) => v.len() * 130,
        _ => 128,
    };
    let mut body = Vec::with_capacity(size_hint);
    serde_json::to_writer(
        &mut body,
        &Body {
            status: "success",
            data: &res.value,
            warnings: &res.warnings,
            infos: &res.infos,
        },
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The effective deadline: the request's `timeout`, capped by the configured one.
fn deadline(q: &Querier, p: &Params) -> Result<Duration, ApiError> {
    let cap = q.cfg.timeout;
    Ok(match p.duration("timeout")? {
        Some(ms) if ms > 0 => cap.min(Duration::from_millis(ms as u64)),
        _ => cap,
    })
}

async fn run_query<F>(
    kind: &'static str,
    tenant: &TenantId,
    timeout: Duration,
    fut: F,
) -> Result<QueryResult, ApiError>
where
    F: std::future::Future<Output = Result<QueryResult, hestia_promql::QueryError>>,
{
    let start = Instant::now();
    let res = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ApiError {
            kind: crate::ApiErrorType::Timeout,
            message: "query timed out in query execution".to_string(),
        }),
    };
    metrics::QUERY_DURATION
        .with_label_values(&[kind])
        .observe(start.elapsed().as_secs_f64());
    let outcome = match &res {
        Ok(_) => "success",
        Err(e) => match e.kind {
            crate::ApiErrorType::BadData => "bad_data",
            crate::ApiErrorType::Execution => "execution",
            crate::ApiErrorType::Timeout => "timeout",
            _ => "error",
        },
    };
    metrics::QUERIES
        .with_label_values(&[tenant.as_str(), kind, outcome])
        .inc();
    res
}

fn query_param(p: &Params) -> Result<&str, ApiError> {
    p.get("query").ok_or_else(|| {
        ApiError::invalid_param(
            "query",
            "unknown position: parse error: no expression found in input",
        )
    })
}

pub async fn query(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, body).await?;
    let tenant = tenant(&headers)?;
    let expr = query_param(&p)?;
    let ts = p.time_or("time", now_ms())?;
    let limit = p.limit("limit")?;
    let timeout = deadline(&q, &p)?;
    let span = tracing::info_span!("query", tenant = %tenant, query = expr);
    let queryable = limited(&q, &tenant);
    let res = run_query(
        "instant",
        &tenant,
        timeout,
        q.engine
            .instant_query(&queryable, expr, ts)
            .instrument(span),
    )
    .await?;
    query_response(res, limit)
}

pub async fn query_range(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, body).await?;
    let tenant = tenant(&headers)?;
    let expr = query_param(&p)?;
    let start = p.time("start")?;
    let end = p.time("end")?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = p
        .duration("step")?
        .ok_or_else(|| ApiError::invalid_param("step", "cannot parse \"\" to a valid duration"))?;
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let limit = p.limit("limit")?;
    let timeout = deadline(&q, &p)?;
    if end - start > q.cfg.max_query_length.as_millis() as i64 {
        return Err(ApiError::bad_data(query_length_error(
            end - start,
            q.cfg.max_query_length,
        )));
    }
    let span = tracing::info_span!("query_range", tenant = %tenant, query = expr);
    let queryable = limited(&q, &tenant);
    let res = run_query(
        "range",
        &tenant,
        timeout,
        q.engine
            .range_query(&queryable, expr, start, end, step)
            .instrument(span),
    )
    .await?;
    query_response(res, limit)
}

fn time_range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.time_or("start", MIN_TIME)?;
    let end = p.time_or("end", MAX_TIME)?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

fn truncate<T>(mut v: Vec<T>, limit: usize) -> (Vec<T>, Option<String>) {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        return (
            v,
            Some(format!("results truncated due to limit of {limit}")),
        );
    }
    (v, None)
}

fn with_warning(data: serde_json::Value, warning: Option<String>) -> Response {
    match warning {
        None => success(data),
        Some(w) => {
            Json(json!({"status": "success", "data": data, "warnings": [w]})).into_response()
        }
    }
}

pub async fn series(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, body).await?;
    let tenant = tenant(&headers)?;
    let sets = p.match_sets()?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(&p)?;
    let mut all = Vec::new();
    for m in &sets {
        all.extend(q.store.series(&tenant, m, start, end).await?);
    }
    all.sort();
    all.dedup();
    let (all, warning) = truncate(all, p.limit("limit")?);
    Ok(with_warning(
        serde_json::Value::Array(all.iter().map(labels_json).collect()),
        warning,
    ))
}

pub async fn labels(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, body).await?;
    let tenant = tenant(&headers)?;
    let (start, end) = time_range(&p)?;
    let sets = p.match_sets()?;
    let mut names = Vec::new();
    if sets.is_empty() {
        names = q.store.label_names(&tenant, &[], start, end).await?;
    } else {
        for m in &sets {
            names.extend(q.store.label_names(&tenant, m, start, end).await?);
        }
        names.sort();
        names.dedup();
    }
    let (names, warning) = truncate(names, p.limit("limit")?);
    Ok(with_warning(json!(names), warning))
}

fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

pub async fn label_values(
    State(q): State<Arc<Querier>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let p = Params::from_request(&Method::GET, &uri, &headers, Body::empty()).await?;
    let tenant = tenant(&headers)?;
    if !is_valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (start, end) = time_range(&p)?;
    let sets = p.match_sets()?;
    let mut values = Vec::new();
    if sets.is_empty() {
        values = q
            .store
            .label_values(&tenant, &name, &[], start, end)
            .await?;
    } else {
        for m in &sets {
            values.extend(q.store.label_values(&tenant, &name, m, start, end).await?);
        }
        values.sort();
        values.dedup();
    }
    let (values, warning) = truncate(values, p.limit("limit")?);
    Ok(with_warning(json!(values), warning))
}

pub async fn metadata(State(q): State<Arc<Querier>>, uri: Uri, headers: HeaderMap) -> ApiResult {
    let p = Params::from_request(&Method::GET, &uri, &headers, Body::empty()).await?;
    let tenant = tenant(&headers)?;
    let limit = p.limit("limit")?;
    let limit_per_metric = p.limit("limit_per_metric")?;
    let items = q
        .store
        .ingesters
        .metadata(&tenant, p.get("metric"), limit_per_metric)
        .await?;
    let mut out: Map<String, serde_json::Value> = Map::new();
    for m in items {
        if limit > 0 && out.len() >= limit && !out.contains_key(&m.metric_family_name) {
            continue;
        }
        let entry = out
            .entry(m.metric_family_name.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(list) = entry {
            if limit_per_metric == 0 || list.len() < limit_per_metric {
                list.push(json!({"type": m.r#type, "help": m.help, "unit": m.unit}));
            }
        }
    }
    Ok(success(serde_json::Value::Object(out)))
}

pub async fn buildinfo() -> Response {
    success(json!({
        "application": "Hestia",
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("HESTIA_GIT_REVISION").unwrap_or("unknown"),
        "branch": "main",
        "buildUser": "hestia",
        "buildDate": "",
        "goVersion": "none (Rust)",
        "features": {
            "remote_write": "true",
            "prometheus_api": "true",
        },
    }))
}
