//! Validation of native histograms and exemplars (Prometheus' `ValidateHistogram` rules, Mimir's
//! wording and error ids).

use hestia_remote_write::{HistogramRef, LabelRef};

use crate::validate::{series_text, validate_sample_time};
use crate::{Limits, ValidationError};

/// The custom-buckets schema (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// Exponential schemas Prometheus accepts.
pub const EXPONENTIAL_SCHEMAS: std::ops::RangeInclusive<i32> = -4..=8;
/// Prometheus' `ExemplarMaxLabelSetLength`: runes in all exemplar label names and values.
pub const EXEMPLAR_MAX_LABEL_SET_LENGTH: usize = 128;

/// A valid histogram's bucket counts, absolute (integer histograms' deltas resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketCounts {
    pub positive: Vec<f64>,
    pub negative: Vec<f64>,
}

fn invalid(h: &HistogramRef, labels: &[LabelRef<'_>], detail: String) -> ValidationError {
    ValidationError::InvalidNativeHistogram {
        detail,
        timestamp: h.timestamp,
        series: series_text(labels),
    }
}

/// Checks that spans after the first do not go backwards and describe exactly `buckets` buckets.
fn check_spans(spans: &[(i32, u32)], buckets: usize, side: &str) -> Result<(), String> {
    let mut want = 0usize;
    for (i, &(offset, length)) in spans.iter().enumerate() {
        if i > 0 && offset < 0 {
            return Err(format!(
                "{side} side: span number {} with offset {offset}: histogram has a span whose offset is negative",
                i + 1
            ));
        }
        want = want.saturating_add(length as usize);
    }
    if want != buckets {
        return Err(format!(
            "{side} side: spans need {want} buckets, have {buckets} buckets: histogram spans specify different number of buckets than provided"
        ));
    }
    Ok(())
}

/// Absolute counts of one side: deltas for integer histograms, counts for float ones.
fn side_counts(
    spans: &[(i32, u32)],
    deltas: &[i64],
    counts: &[f64],
    float: bool,
    side: &str,
) -> Result<Vec<f64>, String> {
    let out: Vec<f64> = if float {
        check_spans(spans, counts.len(), side)?;
        counts.to_vec()
    } else {
        check_spans(spans, deltas.len(), side)?;
        let mut acc = 0i64;
        deltas
            .iter()
            .map(|d| {
                acc = acc.wrapping_add(*d);
                acc as f64
            })
            .collect()
    };
    if let Some(c) = out.iter().find(|c| **c < 0.0) {
        return Err(format!(
            "{side} side: bucket has observation count {c}: histogram has a bucket whose observation count is negative"
        ));
    }
    Ok(out)
}

fn check_custom_buckets(h: &HistogramRef) -> Result<(), String> {
    if h.custom_values.is_empty() {
        return Err("custom buckets: histogram custom bounds are too few".into());
    }
    if h.custom_values.iter().any(|v| !v.is_finite()) {
        return Err("custom buckets: histogram custom bounds must be finite".into());
    }
    if h.custom_values.windows(2).any(|w| w[0] >= w[1]) {
        return Err(
            "custom buckets: histogram custom bounds must be in strictly increasing order".into(),
        );
    }
    if h.zero_count.as_f64() != 0.0 {
        return Err("custom buckets: must have zero count of 0".into());
    }
    if h.zero_threshold != 0.0 {
        return Err("custom buckets: must have zero threshold of 0".into());
    }
    if !h.negative_spans.is_empty() {
        return Err("custom buckets: must not have negative spans".into());
    }
    if !h.negative_deltas.is_empty() || !h.negative_counts.is_empty() {
        return Err("custom buckets: must not have negative buckets".into());
    }
    if h.positive_spans.first().is_some_and(|s| s.0 < 0) {
        return Err(
            "custom buckets: span number 1 with offset -1: histogram has a span whose offset is negative"
                .into(),
        );
    }
    let last_index = h
        .positive_spans
        .iter()
        .fold(-1i64, |end, s| end + i64::from(s.0) + i64::from(s.1));
    if last_index > h.custom_values.len() as i64 {
        return Err(format!(
            "custom buckets: {} buckets need {} custom bounds, have {}: histogram custom bounds are too few",
            last_index + 1,
            last_index,
            h.custom_values.len()
        ));
    }
    Ok(())
}

/// Validates one native histogram sample (schema, spans, bucket counts, observation count, age)
/// and returns its absolute bucket counts.
pub fn validate_histogram(
    labels: &[LabelRef<'_>],
    h: &HistogramRef,
    now_ms: i64,
    limits: &Limits,
) -> Result<BucketCounts, ValidationError> {
    if h.schema != CUSTOM_BUCKETS_SCHEMA && !EXPONENTIAL_SCHEMAS.contains(&h.schema) {
        return Err(ValidationError::InvalidNativeHistogramSchema {
            schema: h.schema,
            timestamp: h.timestamp,
            series: series_text(labels),
        });
    }
    validate_sample_time(labels, h.timestamp, now_ms, limits)?;
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        check_custom_buckets(h).map_err(|d| invalid(h, labels, d))?;
    } else if !h.custom_values.is_empty() {
        return Err(invalid(
            h,
            labels,
            "histogram with exponential schema must not have custom bounds".into(),
        ));
    }
    let float = h.is_float();
    let negative = side_counts(
        &h.negative_spans,
        &h.negative_deltas,
        &h.negative_counts,
        float,
        "negative",
    )
    .map_err(|d| invalid(h, labels, d))?;
    let positive = side_counts(
        &h.positive_spans,
        &h.positive_deltas,
        &h.positive_counts,
        float,
        "positive",
    )
    .map_err(|d| invalid(h, labels, d))?;
    let zero = h.zero_count.as_f64();
    if zero < 0.0 {
        return Err(invalid(
            h,
            labels,
            format!("zero bucket has observation count {zero}: histogram has a bucket whose observation count is negative"),
        ));
    }
    let observed = zero + positive.iter().sum::<f64>() + negative.iter().sum::<f64>();
    let count = h.count.as_f64();
    // Float sums are inexact; allow rounding in the last bits.
    let tolerance = if float { observed.abs() * 1e-9 } else { 0.0 };
    if observed > count + tolerance {
        return Err(invalid(
            h,
            labels,
            format!("{observed} observations found in buckets, but the Count field is {count}: histogram's observation count should be at least the number of observations found in the buckets"),
        ));
    }
    if !float && !h.sum.is_nan() && observed != count {
        return Err(invalid(
            h,
            labels,
            format!("{observed} observations found in buckets, but the Count field is {count}: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"),
        ));
    }
    Ok(BucketCounts { positive, negative })
}

/// Validates one exemplar as Mimir does: labels present and at most 128 runes, a timestamp, not
/// older than the sample age limit.
pub fn validate_exemplar(
    series: &[LabelRef<'_>],
    exemplar_labels: &[LabelRef<'_>],
    timestamp: i64,
    now_ms: i64,
    limits: &Limits,
) -> Result<(), ValidationError> {
    let text = || {
        let mut s = String::from("{");
        for (i, l) in exemplar_labels.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("{}={:?}", l.name, l.value));
        }
        s.push('}');
        s
    };
    if exemplar_labels.is_empty() {
        return Err(ValidationError::ExemplarLabelsMissing {
            timestamp,
            series: series_text(series),
        });
    }
    if timestamp == 0 {
        return Err(ValidationError::ExemplarTimestampMissing {
            series: series_text(series),
            labels: text(),
        });
    }
    let runes: usize = exemplar_labels
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum();
    if runes > EXEMPLAR_MAX_LABEL_SET_LENGTH {
        return Err(ValidationError::ExemplarLabelsTooLong {
            timestamp,
            series: series_text(series),
            labels: text(),
        });
    }
    let max_age = limits.reject_old_samples_max_age.as_millis() as i64;
    if timestamp < now_ms.saturating_sub(max_age) {
        return Err(ValidationError::ExemplarTooOld {
            timestamp,
            series: series_text(series),
            labels: text(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_remote_write::HistogramCount;

    const NOW: i64 = 10_000_000;

    fn series() -> Vec<LabelRef<'static>> {
        vec![LabelRef {
            name: "__name__",
            value: "h",
        }]
    }

    fn int_hist() -> HistogramRef {
        HistogramRef {
            count: HistogramCount::Int(6),
            sum: 10.0,
            schema: 1,
            zero_count: HistogramCount::Int(1),
            positive_spans: vec![(-2, 2), (1, 1)],
            positive_deltas: vec![1, 1, -1],
            negative_spans: vec![(0, 1)],
            negative_deltas: vec![1],
            timestamp: NOW,
            ..HistogramRef::default()
        }
    }

    fn err(h: &HistogramRef) -> String {
        validate_histogram(&series(), h, NOW, &Limits::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn valid_integer_float_and_custom() {
        let l = Limits::default();
        let got = validate_histogram(&series(), &int_hist(), NOW, &l).unwrap();
        assert_eq!(got.positive, vec![1.0, 2.0, 1.0]);
        assert_eq!(got.negative, vec![1.0]);
        let f = HistogramRef {
            count: HistogramCount::Float(3.5),
            zero_count: HistogramCount::Float(0.5),
            positive_spans: vec![(0, 2)],
            positive_counts: vec![1.0, 2.0],
            timestamp: NOW,
            ..HistogramRef::default()
        };
        assert!(validate_histogram(&series(), &f, NOW, &l).is_ok());
        let c = HistogramRef {
            count: HistogramCount::Int(3),
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![(0, 3)],
            positive_deltas: vec![1, 0, 0],
            custom_values: vec![0.5, 1.0],
            timestamp: NOW,
            ..HistogramRef::default()
        };
        assert!(validate_histogram(&series(), &c, NOW, &l).is_ok());
        let mut stale = int_hist();
        stale.sum = f64::from_bits(0x7ff0_0000_0000_0002);
        stale.count = HistogramCount::Int(9);
        assert!(
            validate_histogram(&series(), &stale, NOW, &l).is_ok(),
            "NaN sum lifts the equality check"
        );
    }

    #[test]
    fn invalid_histograms() {
        let mut h = int_hist();
        h.schema = 9;
        let e = validate_histogram(&series(), &h, NOW, &Limits::default()).unwrap_err();
        assert_eq!(e.reason(), "invalid_native_histogram_schema");
        assert_eq!(
            e.to_string(),
            "received a native histogram sample with an invalid schema: 9 \
             (err-mimir-invalid-native-histogram-schema), timestamp: 10000000 series: 'h{}'"
        );
        let mut h = int_hist();
        h.positive_spans[1].0 = -1;
        assert!(err(&h).contains(
            "positive side: span number 2 with offset -1: histogram has a span whose offset is negative"
        ));
        let mut h = int_hist();
        h.positive_deltas.pop();
        assert!(err(&h).contains("positive side: spans need 3 buckets, have 2 buckets"));
        let mut h = int_hist();
        h.negative_deltas = vec![-1];
        assert!(err(&h).contains("histogram has a bucket whose observation count is negative"));
        let mut h = int_hist();
        h.count = HistogramCount::Int(7);
        assert!(err(&h).contains("should equal the number of observations"));
        h.count = HistogramCount::Int(5);
        assert!(err(&h).contains("should be at least the number of observations"));
        let mut h = int_hist();
        h.timestamp = NOW - 3_601_000;
        let e = validate_histogram(&series(), &h, NOW, &Limits::default()).unwrap_err();
        assert_eq!(e.reason(), "sample_too_old");
        let c = HistogramRef {
            count: HistogramCount::Int(1),
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![(0, 4)],
            positive_deltas: vec![1, -1, 0, 0],
            custom_values: vec![0.5, 1.0],
            timestamp: NOW,
            ..HistogramRef::default()
        };
        assert!(err(&c).contains("histogram custom bounds are too few"));
        let c = HistogramRef {
            custom_values: vec![1.0, 0.5],
            ..c
        };
        assert!(err(&c).contains("strictly increasing"));
    }

    #[test]
    fn exemplars() {
        let l = Limits::default();
        let trace = [LabelRef {
            name: "trace_id",
            value: "abc",
        }];
        assert!(validate_exemplar(&series(), &trace, NOW, NOW, &l).is_ok());
        let e = validate_exemplar(&series(), &[], NOW, NOW, &l).unwrap_err();
        assert_eq!(e.reason(), "exemplar_labels_missing");
        let e = validate_exemplar(&series(), &trace, 0, NOW, &l).unwrap_err();
        assert_eq!(e.reason(), "exemplar_timestamp_invalid");
        let long = "x".repeat(121);
        let e = validate_exemplar(
            &series(),
            &[LabelRef {
                name: "trace_id",
                value: &long,
            }],
            NOW,
            NOW,
            &l,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "exemplar_labels_too_long");
        assert!(e.to_string().starts_with(
            "exemplar combined labelset exceeds 128 characters (err-mimir-exemplar-labels-too-long)"
        ));
        let e = validate_exemplar(&series(), &trace, NOW - 3_601_000, NOW, &l).unwrap_err();
        assert_eq!(e.reason(), "exemplar_too_old");
    }
}
