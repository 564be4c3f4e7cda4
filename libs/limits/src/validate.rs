use hestia_remote_write::{LabelRef, MetadataRef};

use crate::Limits;

/// Why a series, sample or metadata entry was refused. `Display` gives the message returned to
/// the sender (Mimir/Cortex wording); `reason` the `reason` label of the discarded-samples metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("sample missing metric name")]
    MissingMetricName,
    #[error("sample invalid metric name: {0:?}")]
    InvalidMetricName(String),
    #[error("sample invalid label: {label:?} metric {series:?}")]
    InvalidLabel { label: String, series: String },
    #[error("sample with empty value for label {label:?} metric {series:?}")]
    EmptyLabelValue { label: String, series: String },
    #[error("series has too many labels (actual: {actual}, limit: {limit}) series: '{series}'")]
    TooManyLabels {
        actual: usize,
        limit: usize,
        series: String,
    },
    #[error("label name too long: {label:?} metric: {series:?}")]
    LabelNameTooLong { label: String, series: String },
    #[error("label value too long: {value:?} metric: {series:?}")]
    LabelValueTooLong { value: String, series: String },
    #[error("duplicate label name: {label:?} metric: {series:?}")]
    DuplicateLabelName { label: String, series: String },
    #[error("labels not sorted: {label:?} metric: {series:?}")]
    LabelsNotSorted { label: String, series: String },
    #[error("received a sample whose timestamp is too far in the past, timestamp: {timestamp} series: '{series}'")]
    TooOld { timestamp: i64, series: String },
    #[error("received a sample whose timestamp is too far in the future, timestamp: {timestamp} series: '{series}'")]
    TooNew { timestamp: i64, series: String },
    #[error("received a native histogram sample with an invalid schema: {schema} (err-mimir-invalid-native-histogram-schema), timestamp: {timestamp} series: '{series}'")]
    InvalidNativeHistogramSchema {
        schema: i32,
        timestamp: i64,
        series: String,
    },
    #[error("received an invalid native histogram sample: {detail} (err-mimir-invalid-native-histogram), timestamp: {timestamp} series: '{series}'")]
    InvalidNativeHistogram {
        detail: String,
        timestamp: i64,
        series: String,
    },
    #[error("exemplar missing labels (err-mimir-exemplar-labels-missing), timestamp: {timestamp} series: {series} labels: {{}}")]
    ExemplarLabelsMissing { timestamp: i64, series: String },
    #[error("exemplar missing timestamp (err-mimir-exemplar-timestamp-invalid), timestamp: 0 series: {series} labels: {labels}")]
    ExemplarTimestampMissing { series: String, labels: String },
    #[error("exemplar combined labelset exceeds 128 characters (err-mimir-exemplar-labels-too-long), timestamp: {timestamp} series: {series} labels: {labels}")]
    ExemplarLabelsTooLong {
        timestamp: i64,
        series: String,
        labels: String,
    },
    #[error("received an exemplar whose timestamp is too far in the past (err-mimir-exemplar-too-old), timestamp: {timestamp} series: {series} labels: {labels}")]
    ExemplarTooOld {
        timestamp: i64,
        series: String,
        labels: String,
    },
    #[error("metadata missing metric name")]
    MetadataMissingMetricName,
    #[error(
        "metadata for metric {metric:?} is {length} bytes long, over the limit of {limit} bytes"
    )]
    MetadataTooLong {
        metric: String,
        length: usize,
        limit: usize,
    },
}

impl ValidationError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingMetricName => "missing_metric_name",
            Self::InvalidMetricName(_) => "metric_name_invalid",
            Self::InvalidLabel { .. } => "label_invalid",
            Self::EmptyLabelValue { .. } => "label_value_empty",
            Self::TooManyLabels { .. } => "max_label_names_per_series",
            Self::LabelNameTooLong { .. } => "label_name_too_long",
            Self::LabelValueTooLong { .. } => "label_value_too_long",
            Self::DuplicateLabelName { .. } => "duplicate_label_names",
            Self::LabelsNotSorted { .. } => "labels_not_sorted",
            Self::TooOld { .. } => "sample_too_old",
            Self::TooNew { .. } => "sample_too_new",
            Self::InvalidNativeHistogramSchema { .. } => "invalid_native_histogram_schema",
            Self::InvalidNativeHistogram { .. } => "invalid_native_histogram",
            Self::ExemplarLabelsMissing { .. } => "exemplar_labels_missing",
            Self::ExemplarTimestampMissing { .. } => "exemplar_timestamp_invalid",
            Self::ExemplarLabelsTooLong { .. } => "exemplar_labels_too_long",
            Self::ExemplarTooOld { .. } => "exemplar_too_old",
            Self::MetadataMissingMetricName => "metadata_missing_metric_name",
            Self::MetadataTooLong { .. } => "metadata_too_long",
        }
    }
}

/// Messages quote at most this many bytes of user input, as Cortex does (`%.200q`).
const QUOTE_MAX: usize = 200;

fn clip(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return s.to_string();
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub(crate) fn series_text(labels: &[LabelRef<'_>]) -> String {
    let name = labels
        .iter()
        .find(|l| l.name == "__name__")
        .map(|l| l.value);
    let mut out = String::from(name.unwrap_or(""));
    out.push('{');
    let mut first = true;
    for l in labels.iter().filter(|l| l.name != "__name__") {
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(l.name);
        out.push_str("=\"");
        out.push_str(l.value);
        out.push('"');
    }
    out.push('}');
    clip(&out)
}

fn metric_name<'a>(labels: &[LabelRef<'a>]) -> &'a str {
    labels
        .iter()
        .find(|l| l.name == "__name__")
        .map(|l| l.value)
        .unwrap_or("")
}

fn is_valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Validates one series' label set as the remote-write spec and AMP's quotas require: a valid
/// metric name, valid non-empty names, non-empty values, names unique and sorted, lengths and
/// count within the limits.
pub fn validate_labels(labels: &[LabelRef<'_>], limits: &Limits) -> Result<(), ValidationError> {
    let name = metric_name(labels);
    if name.is_empty() {
        return Err(ValidationError::MissingMetricName);
    }
    if !is_valid_metric_name(name) {
        return Err(ValidationError::InvalidMetricName(clip(name)));
    }
    if labels.len() > limits.max_label_names_per_series {
        return Err(ValidationError::TooManyLabels {
            actual: labels.len(),
            limit: limits.max_label_names_per_series,
            series: series_text(labels),
        });
    }
    let mut prev: Option<&str> = None;
    for l in labels {
        if !is_valid_label_name(l.name) {
            return Err(ValidationError::InvalidLabel {
                label: clip(l.name),
                series: clip(name),
            });
        }
        if l.name.len() > limits.max_label_name_length {
            return Err(ValidationError::LabelNameTooLong {
                label: clip(l.name),
                series: clip(name),
            });
        }
        if l.value.is_empty() {
            return Err(ValidationError::EmptyLabelValue {
                label: clip(l.name),
                series: clip(name),
            });
        }
        if l.value.len() > limits.max_label_value_length {
            return Err(ValidationError::LabelValueTooLong {
                value: clip(l.value),
                series: clip(name),
            });
        }
        if let Some(p) = prev {
            if p == l.name {
                return Err(ValidationError::DuplicateLabelName {
                    label: clip(l.name),
                    series: clip(name),
                });
            }
            if p > l.name {
                return Err(ValidationError::LabelsNotSorted {
                    label: clip(l.name),
                    series: clip(name),
                });
            }
        }
        prev = Some(l.name);
    }
    Ok(())
}

/// Validates a sample timestamp (ms) against the receiver's clock `now_ms`.
pub fn validate_sample_time(
    labels: &[LabelRef<'_>],
    timestamp: i64,
    now_ms: i64,
    limits: &Limits,
) -> Result<(), ValidationError> {
    let max_age = limits.reject_old_samples_max_age.as_millis() as i64;
    if timestamp < now_ms.saturating_sub(max_age) {
        return Err(ValidationError::TooOld {
            timestamp,
            series: series_text(labels),
        });
    }
    let grace = limits.creation_grace_period.as_millis() as i64;
    if timestamp > now_ms.saturating_add(grace) {
        return Err(ValidationError::TooNew {
            timestamp,
            series: series_text(labels),
        });
    }
    Ok(())
}

/// Validates one metadata entry.
pub fn validate_metadata(m: &MetadataRef<'_>, limits: &Limits) -> Result<(), ValidationError> {
    if m.metric_family_name.is_empty() {
        return Err(ValidationError::MetadataMissingMetricName);
    }
    let length = m.metric_family_name.len() + m.help.len() + m.unit.len();
    if length > limits.max_metadata_length {
        return Err(ValidationError::MetadataTooLong {
            metric: clip(m.metric_family_name),
            length,
            limit: limits.max_metadata_length,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<LabelRef<'a>> {
        pairs
            .iter()
            .map(|&(name, value)| LabelRef { name, value })
            .collect()
    }

    #[test]
    fn valid_series() {
        let limits = Limits::default();
        assert_eq!(
            validate_labels(&l(&[("__name__", "up"), ("job", "x")]), &limits),
            Ok(())
        );
    }

    #[test]
    fn rejections_and_messages() {
        let limits = Limits::default();
        let e = validate_labels(&l(&[("job", "x")]), &limits).unwrap_err();
        assert_eq!(e.to_string(), "sample missing metric name");
        let e = validate_labels(&l(&[("__name__", "up"), ("job", "")]), &limits).unwrap_err();
        assert_eq!(e.reason(), "label_value_empty");
        let e = validate_labels(&l(&[("", "x"), ("__name__", "up")]), &limits).unwrap_err();
        assert_eq!(e.reason(), "label_invalid");
        let e = validate_labels(&l(&[("__name__", "up"), ("b", "1"), ("a", "2")]), &limits)
            .unwrap_err();
        assert_eq!(e.to_string(), "labels not sorted: \"a\" metric: \"up\"");
        let e = validate_labels(&l(&[("__name__", "up"), ("a", "1"), ("a", "2")]), &limits)
            .unwrap_err();
        assert_eq!(e.reason(), "duplicate_label_names");
        let e = validate_labels(&l(&[("__name__", "1up")]), &limits).unwrap_err();
        assert_eq!(e.reason(), "metric_name_invalid");
        let long = "v".repeat(2049);
        let e = validate_labels(&l(&[("__name__", "up"), ("a", &long)]), &limits).unwrap_err();
        assert_eq!(e.reason(), "label_value_too_long");
        assert!(e.to_string().len() < 300, "user input is clipped");
    }

    #[test]
    fn too_many_labels() {
        let limits = Limits {
            max_label_names_per_series: 2,
            ..Limits::default()
        };
        let e = validate_labels(&l(&[("__name__", "up"), ("a", "1"), ("b", "2")]), &limits)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "series has too many labels (actual: 3, limit: 2) series: 'up{a=\"1\", b=\"2\"}'"
        );
    }

    #[test]
    fn sample_age() {
        let limits = Limits::default();
        let s = l(&[("__name__", "up")]);
        let now = 10_000_000;
        assert!(validate_sample_time(&s, now - 3_599_000, now, &limits).is_ok());
        assert_eq!(
            validate_sample_time(&s, now - 3_601_000, now, &limits)
                .unwrap_err()
                .reason(),
            "sample_too_old"
        );
        assert_eq!(
            validate_sample_time(&s, now + 601_000, now, &limits)
                .unwrap_err()
                .reason(),
            "sample_too_new"
        );
    }

    #[test]
    fn metadata() {
        let limits = Limits::default();
        let m = MetadataRef {
            kind: hestia_remote_write::MetricType::Counter,
            metric_family_name: "x",
            help: &"h".repeat(1024),
            unit: "",
        };
        assert_eq!(
            validate_metadata(&m, &limits).unwrap_err().reason(),
            "metadata_too_long"
        );
    }
}
