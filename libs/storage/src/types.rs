//! Values passed in and out of [`crate::Tsdb`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hestia_model::{LabelPairs, Labels, Sample, TenantId};

use crate::histogram::Histogram;
use crate::xor::XorSeek;

/// The label set of a [`SeriesAppend`]: owned [`Labels`], or [`LabelPairs`] borrowed from a
/// request (an existing series is then found without copying a string).
pub trait SeriesLabels {
    /// Appends `Labels::write_key` of the set.
    fn write_key(&self, out: &mut Vec<u8>);
    fn metric_name(&self) -> Option<&str>;
    fn to_labels(&self) -> Labels;
}

impl SeriesLabels for Labels {
    fn write_key(&self, out: &mut Vec<u8>) {
        Labels::write_key(self, out)
    }
    fn metric_name(&self) -> Option<&str> {
        Labels::metric_name(self)
    }
    fn to_labels(&self) -> Labels {
        self.clone()
    }
}

impl SeriesLabels for LabelPairs<'_> {
    fn write_key(&self, out: &mut Vec<u8>) {
        LabelPairs::write_key(self, out)
    }
    fn metric_name(&self) -> Option<&str> {
        LabelPairs::metric_name(self)
    }
    fn to_labels(&self) -> Labels {
        LabelPairs::to_labels(self)
    }
}

/// Samples for one series, in timestamp order. Floats are applied before histograms, as
/// Prometheus' remote-write handler does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeriesAppend<L = Labels> {
    pub labels: L,
    pub samples: Vec<Sample>,
    pub histograms: Vec<(i64, Histogram)>,
    pub exemplars: Vec<Exemplar>,
}

impl SeriesAppend {
    /// A series with float samples only.
    pub fn floats(labels: Labels, samples: Vec<Sample>) -> Self {
        Self {
            labels,
            samples,
            ..Self::default()
        }
    }
}

impl<L> SeriesAppend<L> {
    pub(crate) fn has_data(&self) -> bool {
        !(self.samples.is_empty() && self.histograms.is_empty() && self.exemplars.is_empty())
    }
}

/// An exemplar: a trace reference attached to one sample of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A series and its exemplars in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesExemplars {
    pub labels: Labels,
    pub exemplars: Vec<Exemplar>,
}

/// Why samples were refused (Prometheus semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Older than the series' newest sample, and the tenant has no out-of-order window.
    OutOfOrder,
    /// Older than the series' newest sample by more than the tenant's out-of-order window (or a
    /// native histogram older than the newest sample: those are never taken out of order).
    TooOld,
    /// Same timestamp as the newest sample but a different value.
    DuplicateTimestamp,
    /// A new series over the tenant's series limit ([`AppendLimits::max_series`]).
    SeriesLimit,
    /// A new series over its metric name's limit ([`AppendLimits::max_series_per_metric`]).
    MetricSeriesLimit,
    /// Older than the tenant's min valid time: its time range was cut into a block
    /// ([`crate::Tsdb::set_min_valid_time`]).
    OutOfBounds,
}

impl RejectReason {
    /// A per-tenant quota, not bad data: the sender should slow down or ask for more (429).
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            RejectReason::SeriesLimit | RejectReason::MetricSeriesLimit
        )
    }
}

/// A tenant's rules for one append.
///
/// `max_series` and `max_series_per_metric` cap the active series a tenant may have on this
/// database (0: no cap). A series is active while its newest sample is within
/// `TsdbOptions::active_series_window` of now. New series over a cap are refused with all their
/// samples; existing series always append.
///
/// `out_of_order_window_ms` (0: none, Prometheus' default) accepts float samples up to that much
/// older than their series' newest sample (Prometheus' `out_of_order_time_window`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendLimits {
    pub max_series: usize,
    pub max_series_per_metric: usize,
    pub out_of_order_window_ms: i64,
}

impl AppendLimits {
    /// Whether new series are counted against a cap.
    pub fn caps_series(&self) -> bool {
        self.max_series > 0 || self.max_series_per_metric > 0
    }
}

impl RejectReason {
    /// Mimir's error id.
    pub fn error_id(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "err-mimir-sample-out-of-order",
            RejectReason::TooOld => "err-mimir-sample-too-old",
            RejectReason::DuplicateTimestamp => "err-mimir-sample-duplicate-timestamp",
            RejectReason::SeriesLimit => "err-mimir-max-series-per-user",
            RejectReason::MetricSeriesLimit => "err-mimir-max-series-per-metric",
            RejectReason::OutOfBounds => "err-mimir-sample-out-of-bounds",
        }
    }

    /// The `reason` label of Mimir's `cortex_discarded_samples_total`.
    pub fn discard_reason(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "sample-out-of-order",
            RejectReason::TooOld => "sample-too-old",
            RejectReason::DuplicateTimestamp => "new-value-for-timestamp",
            RejectReason::SeriesLimit => "per_user_series_limit",
            RejectReason::MetricSeriesLimit => "per_metric_series_limit",
            RejectReason::OutOfBounds => "sample-out-of-bounds",
        }
    }

    /// Prometheus' storage error text.
    pub fn prometheus_error(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "out of order sample",
            RejectReason::TooOld => "too old sample",
            RejectReason::DuplicateTimestamp => "duplicate sample for timestamp",
            RejectReason::SeriesLimit => "per-user series limit exceeded",
            RejectReason::MetricSeriesLimit => "per-metric series limit exceeded",
            RejectReason::OutOfBounds => "out of bounds",
        }
    }
}

impl fmt::Display for RejectReason {
    /// Mimir's wording, with its error id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            RejectReason::OutOfOrder => {
                "the sample has been rejected because another sample with a more recent timestamp \
                 has already been ingested and out-of-order samples are not allowed"
            }
            RejectReason::TooOld => {
                "the sample has been rejected because another sample with a more recent timestamp \
                 has already been ingested and this sample is beyond the out-of-order time window"
            }
            RejectReason::DuplicateTimestamp => {
                "the sample has been rejected because another sample with the same timestamp, but a \
                 different value, has already been ingested"
            }
            RejectReason::SeriesLimit => "per-user series limit exceeded",
            RejectReason::MetricSeriesLimit => "per-metric series limit exceeded",
            RejectReason::OutOfBounds => {
                "the sample has been rejected because its timestamp is too old"
            }
        };
        write!(f, "{msg} ({})", self.error_id())
    }
}

/// A block shipped to the object store whose range `[min_t, max_t)` is still in RocksDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippedBlock {
    pub min_t: i64,
    pub max_t: i64,
    /// The block's ULID.
    pub block: u128,
    /// When the upload completed (Unix ms).
    pub uploaded_at_ms: i64,
}

/// The block shipper's persisted state of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipState {
    /// Appends below it are refused ([`RejectReason::OutOfBounds`]); `i64::MIN` when unset.
    pub min_valid_time: i64,
    /// Every range below it was shipped or had no samples; `None` before the first range.
    pub shipped_through: Option<i64>,
    /// Shipped blocks whose chunks were not dropped yet, by time.
    pub blocks: Vec<ShippedBlock>,
}

/// One series' samples in a time range, in-order and out-of-order data merged: each list
/// sorted by time with unique timestamps, no timestamp in both.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, Histogram)>,
}

/// Samples of one input series refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index into the `SeriesAppend` slice given to `append`.
    pub series_index: usize,
    pub reason: RejectReason,
    pub count: usize,
    /// Timestamp of the first refused sample.
    pub first_timestamp: i64,
}

impl Rejection {
    /// Mimir's full message for this series, e.g. `the sample has been rejected because … (err-mimir-
    /// sample-out-of-order). The affected sample has timestamp 1970-01-01T00:00:01Z and is from
    /// series {__name__="up", job="a"}`.
    pub fn message(&self, labels: &Labels) -> String {
        format!("{self} and is from series {}", series_in_braces(labels))
    }
}

/// A series as Mimir's error messages show it: `{__name__="up", job="a"}`.
pub fn series_in_braces(labels: &Labels) -> String {
    let mut series = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            series.push_str(", ");
        }
        series.push_str(&format!("{}={:?}", l.name, l.value));
    }
    series.push('}');
    series
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}. The affected sample has timestamp {}",
            self.reason,
            format_rfc3339_millis(self.first_timestamp)
        )
    }
}

/// Outcome of one `append` call. Everything counted here is durable when it is returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendResult {
    pub samples_appended: usize,
    /// Exact repeats of a stored sample, accepted without being stored again.
    pub samples_duplicate: usize,
    /// Samples stored within the out-of-order window (also counted in `samples_appended`).
    pub samples_out_of_order: usize,
    pub series_created: usize,
    pub rejected: Vec<Rejection>,
    pub exemplars_appended: usize,
    /// Exemplars not newer than their series' newest exemplar (Prometheus drops them too).
    pub exemplars_out_of_order: usize,
}

impl AppendResult {
    pub fn samples_rejected(&self) -> usize {
        self.rejected.iter().map(|r| r.count).sum()
    }
}

/// How a chunk's samples are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEncoding {
    /// Float samples, Prometheus' XOR format ([`crate::xor`]).
    Xor,
    /// Native histograms ([`crate::histogram`]).
    Histogram,
}

/// One encoded chunk covering `[min_t, max_t]`.
#[derive(Debug, Clone)]
pub struct ChunkData {
    pub encoding: ChunkEncoding,
    pub min_t: i64,
    pub max_t: i64,
    pub data: Bytes,
    /// Where decoding may start instead of the first sample (XOR chunks built in memory).
    pub seeks: Option<Arc<[XorSeek]>>,
}

/// Chunks are equal when their samples are: seek points only speed up reading.
impl PartialEq for ChunkData {
    fn eq(&self, other: &Self) -> bool {
        (self.encoding, self.min_t, self.max_t, &self.data)
            == (other.encoding, other.min_t, other.max_t, &other.data)
    }
}

impl Eq for ChunkData {}

/// A series and its chunks in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesChunks {
    pub labels: Labels,
    pub chunks: Vec<ChunkData>,
}

/// Prometheus metric types as the metadata API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    /// Parses the API name; anything unrecognised is `Unknown`.
    pub fn parse(s: &str) -> Self {
        match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(b: u8) -> Option<Self> {
        const ALL: [MetricType; 8] = [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::GaugeHistogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet,
            MetricType::Unknown,
        ];
        ALL.get(b as usize).copied()
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata of one metric family, as sent in remote-write requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricMetadata {
    pub metric_family_name: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// Head statistics of one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStats {
    pub tenant: TenantId,
    /// Series in memory.
    pub series: usize,
    /// Series on disk only: idle for `TsdbOptions::series_idle_timeout`.
    pub idle_series: usize,
    /// Series with a sample within `TsdbOptions::active_series_window` of now.
    pub active_series: usize,
    pub samples_appended: u64,
    pub samples_duplicate: u64,
    /// Refused out-of-order samples (no window, or older than it).
    pub samples_out_of_order: u64,
    /// Samples accepted within the out-of-order window (also in `samples_appended`).
    pub samples_out_of_order_appended: u64,
    pub samples_duplicate_timestamp: u64,
}

/// Statistics of the whole head, for the ingester's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadStats {
    pub tenants: Vec<TenantStats>,
    pub series: usize,
    pub samples_appended: u64,
    /// WAL bytes written since the last checkpoint.
    pub wal_bytes: u64,
    pub checkpoints: u64,
}

/// Formats milliseconds since the epoch like Go's `time.RFC3339Nano` in UTC (trailing zeros of the
/// fraction dropped), as Mimir prints sample timestamps.
pub(crate) fn format_rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if millis != 0 {
        let frac = format!("{millis:03}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339_millis(1_700_000_000_120),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(
            format_rfc3339_millis(951_782_400_001),
            "2000-02-29T00:00:00.001Z"
        );
        assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn mimir_messages() {
        let r = Rejection {
            series_index: 0,
            reason: RejectReason::OutOfOrder,
            count: 2,
            first_timestamp: 1000,
        };
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        assert_eq!(
            r.message(&labels),
            "the sample has been rejected because another sample with a more recent timestamp has \
             already been ingested and out-of-order samples are not allowed \
             (err-mimir-sample-out-of-order). The affected sample has timestamp \
             1970-01-01T00:00:01Z and is from series {__name__=\"up\", job=\"a\"}"
        );
        assert_eq!(
            RejectReason::DuplicateTimestamp.prometheus_error(),
            "duplicate sample for timestamp"
        );
    }

    #[test]
    fn metric_types() {
        for b in 0..8u8 {
            let t = MetricType::from_u8(b).unwrap();
            assert_eq!(t.to_u8(), b);
            assert_eq!(MetricType::parse(t.as_str()), t);
        }
        assert_eq!(MetricType::from_u8(8), None);
    }
}
