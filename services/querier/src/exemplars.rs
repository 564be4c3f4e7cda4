//! `GET|POST /api/v1/query_exemplars`: exemplars of every series selected anywhere in a PromQL
//! expression (Prometheus' `parser.ExtractSelectors`), in Prometheus' response format.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hestia_model::{MatchOp, Matcher};
use hestia_promql::format_float;
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use serde_json::json;

use crate::api::{labels_json, tenant};
use crate::params::{Params, MAX_TIME, MIN_TIME};
use crate::store::from_pb_labels;
use crate::{ApiError, Querier};

pub async fn query_exemplars(
    State(q): State<Arc<Querier>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::from_request(&method, &uri, &headers, body).await?;
    let tenant = tenant(&headers)?;
    let query = p.get("query").ok_or_else(|| {
        ApiError::invalid_param(
            "query",
            "unknown position: parse error: no expression found in input",
        )
    })?;
    let start = p.time_or("start", MIN_TIME)?;
    let end = p.time_or("end", MAX_TIME)?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start timestamp",
        ));
    }
    let expr = parser::parse(query).map_err(|e| ApiError::invalid_param("query", e))?;
    let mut sets = Vec::new();
    extract_selectors(&expr, &mut sets)?;
    if sets.is_empty() {
        return Ok(Json(json!({"status": "success", "data": []})).into_response());
    }
    let found = q
        .store
        .ingesters
        .exemplars(&tenant, &sets, start, end)
        .await?;
    let data: Vec<serde_json::Value> = found
        .into_iter()
        .map(|(series, exemplars)| {
            let exemplars: Vec<serde_json::Value> = exemplars
                .into_iter()
                .map(|e| {
                    json!({
                        "labels": labels_json(&from_pb_labels(e.labels)),
                        "value": format_float(e.value),
                        "timestamp": e.timestamp_ms as f64 / 1000.0,
                    })
                })
                .collect();
            json!({"seriesLabels": labels_json(&series), "exemplars": exemplars})
        })
        .collect();
    Ok(Json(json!({"status": "success", "data": data})).into_response())
}

/// Appends the matcher sets of every vector and matrix selector in `expr`; a selector with `or`
/// groups contributes one set per group.
fn extract_selectors(expr: &Expr, out: &mut Vec<Vec<Matcher>>) -> Result<(), ApiError> {
    match expr {
        Expr::VectorSelector(vs) => selector_sets(vs, out)?,
        Expr::MatrixSelector(ms) => selector_sets(&ms.vs, out)?,
        Expr::Aggregate(a) => {
            extract_selectors(&a.expr, out)?;
            if let Some(p) = &a.param {
                extract_selectors(p, out)?;
            }
        }
        Expr::Unary(u) => extract_selectors(&u.expr, out)?,
        Expr::Binary(b) => {
            extract_selectors(&b.lhs, out)?;
            extract_selectors(&b.rhs, out)?;
        }
        Expr::Paren(p) => extract_selectors(&p.expr, out)?,
        Expr::Subquery(s) => extract_selectors(&s.expr, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                extract_selectors(a, out)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

fn selector_sets(vs: &VectorSelector, out: &mut Vec<Vec<Matcher>>) -> Result<(), ApiError> {
    let name = vs
        .name
        .as_ref()
        .map(|n| Matcher::equal(hestia_model::METRIC_NAME, n.clone()));
    let groups: Vec<&Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty() {
        vec![&vs.matchers.matchers]
    } else {
        vs.matchers.or_matchers.iter().collect()
    };
    for g in groups {
        let mut set: Vec<Matcher> = name.iter().cloned().collect();
        for m in g {
            let op = match m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(_) => MatchOp::RegexMatch,
                PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
            };
            set.push(
                Matcher::new(op, m.name.clone(), m.value.clone())
                    .map_err(|e| ApiError::invalid_param("query", e.to_string()))?,
            );
        }
        out.push(set);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(q: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        extract_selectors(&parser::parse(q).unwrap(), &mut out).unwrap();
        out.iter()
            .map(|s| {
                s.iter()
                    .map(|m| format!("{}:{}", m.name, m.value))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn selectors_of_an_expression() {
        assert_eq!(
            sets("histogram_quantile(0.9, sum by (le) (rate(h{job=\"a\"}[5m]))) / up"),
            vec![
                vec!["__name__:h".to_string(), "job:a".to_string()],
                vec!["__name__:up".to_string()]
            ]
        );
        assert_eq!(sets("1 + 2"), Vec::<Vec<String>>::new());
        assert_eq!(
            sets("max_over_time(x[1h:5m] offset 1m)"),
            vec![vec!["__name__:x".to_string()]]
        );
        assert_eq!(sets("{a=\"1\" or b=\"2\"}").len(), 2);
    }
}
