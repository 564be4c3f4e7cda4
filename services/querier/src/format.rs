//! `/api/v1/format_query` and `/api/v1/parse_query`: the expression pretty-printed, and its syntax
//! tree in the JSON shape Prometheus' web UI reads (Prometheus' `translateAST`).

use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::ast::{AtModifier, LabelModifier, Offset, VectorMatchCardinality};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, VectorSelector};
use serde_json::{json, Value};

use crate::params::Params;
use crate::ApiError;

async fn parsed(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Expr, ApiError> {
    let p = Params::from_request(&method, &uri, &headers, body).await?;
    let query = p.get("query").ok_or_else(|| {
        ApiError::invalid_param(
            "query",
            "unknown position: parse error: no expression found in input",
        )
    })?;
    hestia_promql::parse(query, true)
        .map(|p| p.expr)
        .map_err(|e| ApiError::invalid_param("query", e))
}

pub async fn format_query(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let expr = parsed(method, uri, headers, body).await?;
    Ok(Json(json!({"status": "success", "data": expr.prettify()})).into_response())
}

pub async fn parse_query(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let expr = parsed(method, uri, headers, body).await?;
    Ok(Json(json!({"status": "success", "data": translate(&expr)})).into_response())
}

fn labels(l: &promql_parser::label::Labels) -> Value {
    json!(l.labels)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

/// `timestamp` (ms) and `startOrEnd` of an `@` modifier.
fn at(a: &Option<AtModifier>) -> (Value, Value) {
    match a {
        None => (Value::Null, Value::Null),
        Some(AtModifier::Start) => (Value::Null, json!("start")),
        Some(AtModifier::End) => (Value::Null, json!("end")),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            };
            (json!(ms), Value::Null)
        }
    }
}

/// The selector's matchers with the metric name last, as Prometheus' parser orders them.
fn matchers(vs: &VectorSelector) -> Value {
    let one = |name: &str, op: &MatchOp, value: &str| {
        let t = match op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        };
        json!({"type": t, "name": name, "value": value})
    };
    let Matchers {
        matchers,
        or_matchers,
    } = &vs.matchers;
    let mut out: Vec<Value> = matchers
        .iter()
        .map(|m| one(&m.name, &m.op, &m.value))
        .collect();
    out.extend(
        or_matchers
            .iter()
            .flatten()
            .map(|m| one(&m.name, &m.op, &m.value)),
    );
    if let Some(name) = &vs.name {
        if !matchers.iter().any(|m| m.name == "__name__") {
            out.push(one("__name__", &MatchOp::Equal, name));
        }
    }
    Value::Array(out)
}

fn value_type(t: &ValueType) -> &'static str {
    match t {
        ValueType::Vector => "vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "matrix",
        ValueType::String => "string",
    }
}

fn is_vector(e: &Expr) -> bool {
    matches!(e.value_type(), ValueType::Vector)
}

/// Prometheus' `translateAST`.
pub fn translate(e: &Expr) -> Value {
    match e {
        Expr::Aggregate(a) => {
            let (grouping, without) = match &a.modifier {
                None => (json!([]), false),
                Some(LabelModifier::Include(l)) => (labels(l), false),
                Some(LabelModifier::Exclude(l)) => (labels(l), true),
            };
            json!({
                "type": "aggregation",
                "op": a.op.to_string(),
                "expr": translate(&a.expr),
                "param": a.param.as_deref().map(translate),
                "grouping": grouping,
                "without": without,
            })
        }
        Expr::Binary(b) => {
            let both_vectors = is_vector(&b.lhs) && is_vector(&b.rhs);
            let matching = match &b.modifier {
                Some(m) if both_vectors => {
                    let (card, include) = match &m.card {
                        VectorMatchCardinality::OneToOne => ("one-to-one", json!([])),
                        VectorMatchCardinality::ManyToOne(l) => ("many-to-one", labels(l)),
                        VectorMatchCardinality::OneToMany(l) => ("one-to-many", labels(l)),
                        VectorMatchCardinality::ManyToMany => ("many-to-many", json!([])),
                    };
                    let (on, matched) = match &m.matching {
                        None => (false, json!([])),
                        Some(LabelModifier::Include(l)) => (true, labels(l)),
                        Some(LabelModifier::Exclude(l)) => (false, labels(l)),
                    };
                    json!({"card": card, "labels": matched, "on": on, "include": include})
                }
                None if both_vectors => {
                    let card = if b.op.is_set_operator() {
                        "many-to-many"
                    } else {
                        "one-to-one"
                    };
                    json!({"card": card, "labels": [], "on": false, "include": []})
                }
                _ => Value::Null,
            };
            json!({
                "type": "binaryExpr",
                "op": b.op.to_string(),
                "lhs": translate(&b.lhs),
                "rhs": translate(&b.rhs),
                "matching": matching,
                "bool": b.modifier.as_ref().is_some_and(|m| m.return_bool),
            })
        }
        Expr::Call(c) => json!({
            "type": "call",
            "func": {
                "name": c.func.name,
                "argTypes": c.func.arg_types.iter().map(value_type).collect::<Vec<_>>(),
                "variadic": c.func.variadic,
                "returnType": value_type(&c.func.return_type),
            },
            "args": c.args.args.iter().map(|a| translate(a)).collect::<Vec<_>>(),
        }),
        Expr::MatrixSelector(m) => {
            let (timestamp, start_or_end) = at(&m.vs.at);
            json!({
                "type": "matrixSelector",
                "name": m.vs.name.clone().unwrap_or_default(),
                "range": m.range.as_millis() as i64,
                "offset": offset_ms(&m.vs.offset),
                "matchers": matchers(&m.vs),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::Subquery(s) => {
            let (timestamp, start_or_end) = at(&s.at);
            json!({
                "type": "subquery",
                "expr": translate(&s.expr),
                "range": s.range.as_millis() as i64,
                "offset": offset_ms(&s.offset),
                "step": s.step.map(|d| d.as_millis() as i64).unwrap_or(0),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::NumberLiteral(n) => {
            json!({"type": "numberLiteral", "val": hestia_promql::format_float(n.val)})
        }
        Expr::Paren(p) => json!({"type": "parenExpr", "expr": translate(&p.expr)}),
        Expr::StringLiteral(s) => json!({"type": "stringLiteral", "val": s.val}),
        Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": translate(&u.expr)}),
        Expr::VectorSelector(vs) => {
            let (timestamp, start_or_end) = at(&vs.at);
            json!({
                "type": "vectorSelector",
                "name": vs.name.clone().unwrap_or_default(),
                "offset": offset_ms(&vs.offset),
                "matchers": matchers(vs),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::Extension(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ast(q: &str) -> Value {
        translate(&hestia_promql::parse(q, true).expect("parses").expr)
    }

    #[test]
    fn api_md_example() {
        let v = ast("foo/bar");
        assert_eq!(v["type"], "binaryExpr");
        assert_eq!(v["op"], "/");
        assert_eq!(v["bool"], false);
        assert_eq!(
            v["matching"],
            json!({"card": "one-to-one", "include": [], "labels": [], "on": false})
        );
        assert_eq!(
            v["lhs"],
            json!({
                "matchers": [{"name": "__name__", "type": "=", "value": "foo"}],
                "name": "foo", "offset": 0, "startOrEnd": null, "timestamp": null,
                "type": "vectorSelector"
            })
        );
    }

    #[test]
    fn modifiers_and_nodes() {
        let v = ast("sum without (a) (rate(x{b=~\"c.*\"}[5m] offset -1m @ 10)) > bool on (d) group_left (e) y");
        assert_eq!(v["bool"], true);
        assert_eq!(
            v["matching"],
            json!({"card": "many-to-one", "labels": ["d"], "on": true, "include": ["e"]})
        );
        let agg = &v["lhs"];
        assert_eq!(agg["type"], "aggregation");
        assert_eq!(agg["without"], true);
        assert_eq!(agg["grouping"], json!(["a"]));
        assert_eq!(agg["param"], Value::Null);
        let call = &agg["expr"];
        assert_eq!(call["func"]["name"], "rate");
        assert_eq!(call["func"]["argTypes"], json!(["matrix"]));
        let ms = &call["args"][0];
        assert_eq!(ms["type"], "matrixSelector");
        assert_eq!(ms["range"], 300_000);
        assert_eq!(ms["offset"], -60_000);
        assert_eq!(ms["timestamp"], 10_000);
        assert_eq!(
            ms["matchers"][0],
            json!({"type": "=~", "name": "b", "value": "c.*"})
        );
        assert_eq!(ms["matchers"][1]["name"], "__name__");
        // Scalar operands have no vector matching.
        assert_eq!(ast("1 + 2")["matching"], Value::Null);
        assert_eq!(ast("x and y")["matching"]["card"], "many-to-many");
        let sub = &ast("max_over_time(x[5m:1m] @ end())")["args"][0];
        assert_eq!(
            (&sub["type"], &sub["step"], &sub["startOrEnd"]),
            (&json!("subquery"), &json!(60_000), &json!("end"))
        );
        assert_eq!(ast("-x")["type"], "unaryExpr");
        assert_eq!(ast("+Inf")["val"], "+Inf");
        assert_eq!(ast("\"s\"")["type"], "stringLiteral");
    }
}
