//! Request parameters of the Prometheus HTTP API: GET query strings and form-encoded POST bodies,
//! Prometheus' timestamp and duration formats, and `match[]` series selectors.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Uri};
use chrono::DateTime;
use hestia_model::{MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{self, Expr};

use crate::ApiError;

/// Largest form body accepted for a POSTed query (AMP: 1 MB per query request).
pub const MAX_FORM_BYTES: usize = 1 << 20;

/// Parameters from the query string and, for form POSTs, the body; repeated keys are kept.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub async fn from_request(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if method == Method::POST && is_form {
            let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
                .await
                .map_err(|_| {
                    ApiError::bad_data(format!(
                        "query request body exceeds the limit of {MAX_FORM_BYTES} bytes"
                    ))
                })?;
            pairs.extend(form_urlencoded::parse(&bytes).into_owned());
        }
        Ok(Self(pairs))
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The first value of `name`, when present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A timestamp parameter in ms, or `default` when absent.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_time(v).map_err(|e| ApiError::invalid_param(name, e)),
        }
    }

    /// A required timestamp parameter in ms.
    pub fn time(&self, name: &str) -> Result<i64, ApiError> {
        let v = self.get(name).unwrap_or("");
        parse_time(v).map_err(|e| ApiError::invalid_param(name, e))
    }

    /// A duration parameter in ms (Prometheus duration or float seconds), when present.
    pub fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| parse_duration(v).map_err(|e| ApiError::invalid_param(name, e)))
            .transpose()
    }

    /// A non-negative integer parameter (`limit`), 0 when absent.
    pub fn limit(&self, name: &str) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(0),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        name,
                        format!("cannot parse {v:?} to a non-negative integer"),
                    )
                }),
        }
    }

    /// Every `match[]` selector as a list of matchers.
    pub fn match_sets(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        self.all("match[]").map(parse_selector).collect()
    }
}

/// Minimum and maximum timestamps Prometheus uses for open ranges (ms).
pub const MIN_TIME: i64 = -9_223_309_901_257_974;
pub const MAX_TIME: i64 = 9_223_309_901_257_974;

/// Parses `<rfc3339 | unix_timestamp>` into milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let ms = (f * 1000.0).round();
            if ms >= MIN_TIME as f64 && ms <= MAX_TIME as f64 {
                return Ok(ms as i64);
            }
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    // Prometheus' own formatting of its min/max times, sent by some clients.
    match s {
        "0001-01-01T00:00:00Z" => return Ok(MIN_TIME),
        "9999-12-31T23:59:59Z" => return Ok(MAX_TIME),
        _ => {}
    }
    Err(format!("cannot parse {s:?} to a valid timestamp"))
}

/// Parses a Prometheus duration (`1h30m`, `5m`, `250ms`, `2d`, `1w`, `1y`) or float seconds into ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid duration");
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !f.is_finite() || ms.abs() > i64::MAX as f64 {
            return Err(err());
        }
        return Ok(ms as i64);
    }
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(err());
    }
    let mut total: i64 = 0;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err());
        }
        let n: i64 = s[start..i].parse().map_err(|_| err())?;
        let unit_start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult: i64 = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(err()),
        };
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(total)
}

/// Parses a series selector (`up{job="x"}`) into matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, ApiError> {
    let bad = |e: String| ApiError::invalid_param("match[]", e);
    let expr = parser::parse(s).map_err(bad)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(bad(format!("{s:?} is not a series selector")));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(bad(
            "\"or\" in series selectors is not supported".to_string()
        ));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(hestia_model::METRIC_NAME, name.clone()));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| bad(e.to_string()))?,
        );
    }
    if out.iter().all(|m| m.matches_empty()) {
        return Err(bad(
            "match[] must contain at least one non-empty matcher".to_string()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(parse_time("1435781451").unwrap(), 1_435_781_451_000);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
        assert!(parse_time("NaN").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), 15_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn selectors() {
        let m = parse_selector("up{job=~\"a|b\"}").unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[1].matches("a") && !m[1].matches("c"));
        assert!(parse_selector("{job=~\".*\"}").is_err());
        assert!(parse_selector("sum(up)").is_err());
        assert!(parse_selector("up{").is_err());
    }

    #[test]
    fn repeated_params() {
        let p = Params::from_pairs(&[("match[]", "a"), ("match[]", "b"), ("limit", "x")]);
        assert_eq!(p.all("match[]").count(), 2);
        assert!(p.limit("limit").is_err());
    }
}
