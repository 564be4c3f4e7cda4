//! Query results and their Prometheus HTTP API JSON form.

use hestia_model::{Labels, Sample};
use serde::ser::{SerializeMap, SerializeSeq, SerializeTuple};
use serde::{Serialize, Serializer};

use crate::histogram::FloatHistogram;

/// A series with raw samples, as returned by a [`crate::Queryable`] and as a matrix element.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub floats: Vec<Sample>,
    pub histograms: Vec<(i64, FloatHistogram)>,
}

impl Series {
    pub fn new(labels: Labels) -> Self {
        Self {
            labels,
            floats: Vec::new(),
            histograms: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.floats.is_empty() && self.histograms.is_empty()
    }
}

/// One element of an instant vector: a float or a native histogram at `t`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: i64,
    pub f: f64,
    pub h: Option<FloatHistogram>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<Series>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// The outcome of a query: its value plus annotations (rendered as in Prometheus' API).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl QueryResult {
    /// The `data` object of a Prometheus `/api/v1/query{,_range}` response.
    pub fn data_json(&self) -> String {
        serde_json::to_string(&self.value).unwrap_or_default()
    }
}

impl Serialize for QueryResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// Formats a float as Prometheus does (`strconv.FormatFloat(f, 'f', -1, 64)` plus `+Inf`).
pub fn format_float(v: f64) -> String {
    PromFloat(v).to_string()
}

/// [`format_float`] as a `Display`, so JSON output writes it without allocating.
#[derive(Clone, Copy)]
struct PromFloat(f64);

impl std::fmt::Display for PromFloat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            let mut buf = ryu::Buffer::new();
            write_fixed(f, buf.format_finite(v))
        }
    }
}

/// Rewrites ryu's output (`1.5`, `15.0`, `1.5e-7`, `1e21`) in Go's `'f'` layout: no exponent,
/// no trailing `.0`. The digits are the same shortest round-trip digits either way.
fn write_fixed(f: &mut std::fmt::Formatter<'_>, s: &str) -> std::fmt::Result {
    let Some((mantissa, exp)) = s.split_once('e') else {
        return f.write_str(s.strip_suffix(".0").unwrap_or(s));
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exp: i64 = exp.parse().map_err(|_| std::fmt::Error)?;
    // The decimal point goes `point` digits into `int ++ frac`.
    let point = int.len() as i64 + exp;
    let digits = int.len() + frac.len();
    f.write_str(sign)?;
    if point <= 0 {
        f.write_str("0.")?;
        for _ in 0..-point {
            f.write_str("0")?;
        }
        f.write_str(int)?;
        f.write_str(frac)
    } else if point as usize >= digits {
        f.write_str(int)?;
        f.write_str(frac)?;
        for _ in 0..point as usize - digits {
            f.write_str("0")?;
        }
        Ok(())
    } else {
        let all = [int, frac].concat();
        let (a, b) = all.split_at(point as usize);
        f.write_str(a)?;
        f.write_str(".")?;
        f.write_str(b)
    }
}

impl Serialize for PromFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Go's `%g` (shortest representation, exponent form below 1e-4 and from 1e21 on).
pub fn format_go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        v.to_string()
    }
}

/// Relative comparison used by tests; NaN equals NaN, and values within `eps` match.
pub fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

struct Ts(i64);

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

struct Metric<'a>(&'a Labels);

impl Serialize for Metric<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0 {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

struct FPoint(i64, f64);

impl Serialize for FPoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&Ts(self.0))?;
        t.serialize_element(&PromFloat(self.1))?;
        t.end()
    }
}

struct HPoint<'a>(i64, &'a FloatHistogram);

impl Serialize for HPoint<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&Ts(self.0))?;
        t.serialize_element(&HistJson(self.1))?;
        t.end()
    }
}

struct HistJson<'a>(&'a FloatHistogram);

struct BucketJson(u8, f64, f64, f64);

impl Serialize for BucketJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.0)?;
        t.serialize_element(&PromFloat(self.1))?;
        t.serialize_element(&PromFloat(self.2))?;
        t.serialize_element(&PromFloat(self.3))?;
        t.end()
    }
}

impl Serialize for HistJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        let buckets: Vec<BucketJson> = h
            .buckets()
            .into_iter()
            .filter(|b| b.count != 0.0)
            .map(|b| {
                let rule = match (b.lower_inclusive, b.upper_inclusive) {
                    (false, true) => 0,
                    (true, false) => 1,
                    (false, false) => 2,
                    (true, true) => 3,
                };
                BucketJson(rule, b.lower, b.upper, b.count)
            })
            .collect();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("count", &PromFloat(h.count))?;
        m.serialize_entry("sum", &PromFloat(h.sum))?;
        if !buckets.is_empty() {
            m.serialize_entry("buckets", &buckets)?;
        }
        m.end()
    }
}

struct VecElem<'a>(&'a InstantSample);

impl Serialize for VecElem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metric", &Metric(&e.labels))?;
        match &e.h {
            Some(h) => m.serialize_entry("histogram", &HPoint(e.t, h))?,
            None => m.serialize_entry("value", &FPoint(e.t, e.f))?,
        }
        m.end()
    }
}

struct MatElem<'a>(&'a Series);

impl Serialize for MatElem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("metric", &Metric(&e.labels))?;
        if !e.floats.is_empty() {
            struct Points<'a>(&'a [Sample]);
            impl Serialize for Points<'_> {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_seq(self.0.iter().map(|p| FPoint(p.t, p.v)))
                }
            }
            m.serialize_entry("values", &Points(&e.floats))?;
        }
        if !e.histograms.is_empty() {
            let pts: Vec<HPoint> = e.histograms.iter().map(|(t, h)| HPoint(*t, h)).collect();
            m.serialize_entry("histograms", &pts)?;
        }
        m.end()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("resultType", self.type_name())?;
        match self {
            Value::Scalar { t, v } => m.serialize_entry("result", &FPoint(*t, *v))?,
            Value::String { t, v } => {
                struct SPoint<'a>(i64, &'a str);
                impl Serialize for SPoint<'_> {
                    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        let mut t = s.serialize_tuple(2)?;
                        t.serialize_element(&Ts(self.0))?;
                        t.serialize_element(self.1)?;
                        t.end()
                    }
                }
                m.serialize_entry("result", &SPoint(*t, v))?
            }
            Value::Vector(v) => {
                struct Elems<'a>(&'a [InstantSample]);
                impl Serialize for Elems<'_> {
                    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        let mut q = s.serialize_seq(Some(self.0.len()))?;
                        for e in self.0 {
                            q.serialize_element(&VecElem(e))?;
                        }
                        q.end()
                    }
                }
                m.serialize_entry("result", &Elems(v))?
            }
            Value::Matrix(v) => {
                struct Elems<'a>(&'a [Series]);
                impl Serialize for Elems<'_> {
                    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        let mut q = s.serialize_seq(Some(self.0.len()))?;
                        for e in self.0 {
                            q.serialize_element(&MatElem(e))?;
                        }
                        q.end()
                    }
                }
                m.serialize_entry("result", &Elems(v))?
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Significant digits of a fixed-notation number.
    fn significant(s: &str) -> String {
        let d: String = s.chars().filter(char::is_ascii_digit).collect();
        d.trim_start_matches('0').trim_end_matches('0').to_string()
    }

    /// Go's `FormatFloat(f, 'f', -1, 64)`: the shortest digits that read back as the same float
    /// (ties to even, as Go's Ryū does; Rust's `Display` rounds ties up), never an exponent.
    #[test]
    fn format_float_is_go_fixed_shortest() {
        // As Prometheus 2.42 prints these scalars.
        for (v, go) in [
            // Exactly halfway between the two shortest candidates.
            (1_690_060_720_831_323.0 + 0.25, "1690060720831323.2"),
            (0.1, "0.1"),
            (1e21, "1000000000000000000000"),
            (1.5e-7, "0.00000015"),
            (123456789012345678901234.0, "123456789012345690000000"),
            (-0.0, "-0"),
            (-15.0, "-15"),
            (0.35555555555555557, "0.35555555555555557"),
        ] {
            assert_eq!(format_float(v), go);
        }
        assert_eq!(format_float(5e-324), format!("0.{}5", "0".repeat(323)));
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Random bit patterns cover every exponent; scaled integers cover typical values.
            let v = if i % 2 == 0 {
                f64::from_bits(x)
            } else {
                (x % 1_000_000) as f64 / 1000.0
            };
            if !v.is_finite() {
                continue;
            }
            let ours = format_float(v);
            assert!(!ours.contains('e') && !ours.ends_with(".0"), "{ours}");
            assert_eq!(
                ours.parse::<f64>().ok(),
                Some(v),
                "{ours} reads back as {v:e}"
            );
            assert_eq!(
                significant(&ours).len(),
                significant(&v.to_string()).len(),
                "{ours} is not shortest"
            );
        }
    }

    #[test]
    fn vector_json() {
        let v = Value::Vector(vec![InstantSample {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            t: 1500,
            f: 1.0,
            h: None,
        }]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1.5,"1"]}]}"#
        );
        let s = Value::Scalar {
            t: 2000,
            v: f64::NEG_INFINITY,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"resultType":"scalar","result":[2,"-Inf"]}"#
        );
    }
}
