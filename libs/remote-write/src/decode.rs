use std::ops::Range;

use crate::wire::{idx, repeated, zigzag, Reader, WT_I64, WT_LEN, WT_VARINT};
use crate::DecodeError;

/// A decoded `prometheus.WriteRequest` borrowing from the decompressed body.
#[derive(Debug, Default)]
pub struct WriteRequest<'a> {
    pub series: Vec<SeriesRef>,
    labels: Vec<LabelRef<'a>>,
    samples: Vec<SampleRef>,
    histograms: Vec<HistogramRef>,
    exemplars: Vec<ExemplarRef>,
    /// Labels of all exemplars, flat.
    exemplar_labels: Vec<LabelRef<'a>>,
    pub metadata: Vec<MetadataRef<'a>>,
}

/// One `TimeSeries`, as ranges into the request's flat label, sample, histogram and exemplar
/// vectors.
#[derive(Debug, Clone)]
pub struct SeriesRef {
    labels: Range<u32>,
    samples: Range<u32>,
    histograms: Range<u32>,
    exemplars: Range<u32>,
}

/// A `oneof` count of a native histogram: integer histograms send `_int`, float ones `_float`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistogramCount {
    Int(u64),
    Float(f64),
}

impl HistogramCount {
    pub fn as_f64(self) -> f64 {
        match self {
            Self::Int(n) => n as f64,
            Self::Float(f) => f,
        }
    }
}

/// A decoded `prometheus.Histogram`, fields as on the wire (integer buckets as deltas).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRef {
    pub count: HistogramCount,
    pub sum: f64,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: HistogramCount,
    /// (offset, length) pairs.
    pub negative_spans: Vec<(i32, u32)>,
    pub negative_deltas: Vec<i64>,
    pub negative_counts: Vec<f64>,
    pub positive_spans: Vec<(i32, u32)>,
    pub positive_deltas: Vec<i64>,
    pub positive_counts: Vec<f64>,
    /// 0 unknown, 1 yes, 2 no, 3 gauge.
    pub reset_hint: u8,
    pub timestamp: i64,
    /// Custom bucket bounds (field 16 of newer protos, schema -53).
    pub custom_values: Vec<f64>,
}

impl Default for HistogramRef {
    fn default() -> Self {
        Self {
            count: HistogramCount::Int(0),
            sum: 0.0,
            schema: 0,
            zero_threshold: 0.0,
            zero_count: HistogramCount::Int(0),
            negative_spans: Vec::new(),
            negative_deltas: Vec::new(),
            negative_counts: Vec::new(),
            positive_spans: Vec::new(),
            positive_deltas: Vec::new(),
            positive_counts: Vec::new(),
            reset_hint: 0,
            timestamp: 0,
            custom_values: Vec::new(),
        }
    }
}

impl HistogramRef {
    /// Whether this is a float histogram (its count is the float variant).
    pub fn is_float(&self) -> bool {
        matches!(self.count, HistogramCount::Float(_))
    }
}

/// A decoded `prometheus.Exemplar`; its labels are in [`WriteRequest::exemplar_labels`].
#[derive(Debug, Clone)]
pub struct ExemplarRef {
    pub(crate) labels: Range<u32>,
    pub value: f64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRef {
    pub value: f64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    Stateset,
}

impl MetricType {
    fn from_wire(v: u64) -> Self {
        match v {
            1 => Self::Counter,
            2 => Self::Gauge,
            3 => Self::Histogram,
            4 => Self::GaugeHistogram,
            5 => Self::Summary,
            6 => Self::Info,
            7 => Self::Stateset,
            _ => Self::Unknown,
        }
    }

    /// The name Prometheus' metadata API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::Stateset => "stateset",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataRef<'a> {
    pub kind: MetricType,
    pub metric_family_name: &'a str,
    pub help: &'a str,
    pub unit: &'a str,
}

impl<'a> WriteRequest<'a> {
    pub fn labels(&self, s: &SeriesRef) -> &[LabelRef<'a>] {
        &self.labels[s.labels.start as usize..s.labels.end as usize]
    }

    pub fn samples(&self, s: &SeriesRef) -> &[SampleRef] {
        &self.samples[s.samples.start as usize..s.samples.end as usize]
    }

    /// Native histogram samples of a series.
    pub fn histograms(&self, s: &SeriesRef) -> &[HistogramRef] {
        &self.histograms[s.histograms.start as usize..s.histograms.end as usize]
    }

    pub fn exemplars(&self, s: &SeriesRef) -> &[ExemplarRef] {
        &self.exemplars[s.exemplars.start as usize..s.exemplars.end as usize]
    }

    pub fn exemplar_labels(&self, e: &ExemplarRef) -> &[LabelRef<'a>] {
        &self.exemplar_labels[e.labels.start as usize..e.labels.end as usize]
    }

    pub fn total_samples(&self) -> usize {
        self.samples.len()
    }

    pub fn total_histograms(&self) -> usize {
        self.histograms.len()
    }

    pub fn total_exemplars(&self) -> usize {
        self.exemplars.len()
    }
}

/// Decodes a decompressed `prometheus.WriteRequest`. Unknown fields are skipped, as protobuf requires.
pub fn decode_write_request(buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    let mut req = WriteRequest::default();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_LEN)?;
                let body = r.bytes()?;
                decode_series(body, &mut req)?;
            }
            3 => {
                r.expect(wt, WT_LEN)?;
                let body = r.bytes()?;
                req.metadata.push(decode_metadata(body)?);
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(req)
}

fn decode_series<'a>(buf: &'a [u8], req: &mut WriteRequest<'a>) -> Result<(), DecodeError> {
    let (l0, s0, h0, e0) = (
        req.labels.len(),
        req.samples.len(),
        req.histograms.len(),
        req.exemplars.len(),
    );
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_LEN)?;
                let body = r.bytes()?;
                req.labels.push(decode_label(body)?);
            }
            2 => {
                r.expect(wt, WT_LEN)?;
                let body = r.bytes()?;
                req.samples.push(decode_sample(body)?);
            }
            3 => {
                r.expect(wt, WT_LEN)?;
                let body = r.bytes()?;
                decode_exemplar(body, req)?;
            }
            4 => {
                r.expect(wt, WT_LEN)?;
                let body = r.bytes()?;
                req.histograms.push(decode_histogram(body)?);
            }
            _ => r.skip(wt)?,
        }
    }
    req.series.push(SeriesRef {
        labels: idx(l0)?..idx(req.labels.len())?,
        samples: idx(s0)?..idx(req.samples.len())?,
        histograms: idx(h0)?..idx(req.histograms.len())?,
        exemplars: idx(e0)?..idx(req.exemplars.len())?,
    });
    Ok(())
}

fn decode_exemplar<'a>(buf: &'a [u8], req: &mut WriteRequest<'a>) -> Result<(), DecodeError> {
    let l0 = req.exemplar_labels.len();
    let mut r = Reader::new(buf);
    let (mut value, mut timestamp) = (0.0, 0);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_LEN)?;
                let body = r.bytes()?;
                req.exemplar_labels.push(decode_label(body)?);
            }
            2 => {
                r.expect(wt, WT_I64)?;
                value = f64::from_bits(r.fixed64()?);
            }
            3 => {
                r.expect(wt, WT_VARINT)?;
                timestamp = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    req.exemplars.push(ExemplarRef {
        labels: idx(l0)?..idx(req.exemplar_labels.len())?,
        value,
        timestamp,
    });
    Ok(())
}

fn decode_span(buf: &[u8]) -> Result<(i32, u32), DecodeError> {
    let mut r = Reader::new(buf);
    let (mut offset, mut length) = (0i32, 0u32);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_VARINT)?;
                offset = i32::try_from(zigzag(r.varint()?))
                    .map_err(|_| DecodeError::Protobuf("span offset overflows int32"))?;
            }
            2 => {
                r.expect(wt, WT_VARINT)?;
                length = u32::try_from(r.varint()?)
                    .map_err(|_| DecodeError::Protobuf("span length overflows uint32"))?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((offset, length))
}

pub(crate) fn decode_histogram(buf: &[u8]) -> Result<HistogramRef, DecodeError> {
    let mut r = Reader::new(buf);
    let mut h = HistogramRef::default();
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_VARINT)?;
                h.count = HistogramCount::Int(r.varint()?);
            }
            2 => {
                r.expect(wt, WT_I64)?;
                h.count = HistogramCount::Float(f64::from_bits(r.fixed64()?));
            }
            3 => {
                r.expect(wt, WT_I64)?;
                h.sum = f64::from_bits(r.fixed64()?);
            }
            4 => {
                r.expect(wt, WT_VARINT)?;
                h.schema = i32::try_from(zigzag(r.varint()?))
                    .map_err(|_| DecodeError::Protobuf("schema overflows sint32"))?;
            }
            5 => {
                r.expect(wt, WT_I64)?;
                h.zero_threshold = f64::from_bits(r.fixed64()?);
            }
            6 => {
                r.expect(wt, WT_VARINT)?;
                h.zero_count = HistogramCount::Int(r.varint()?);
            }
            7 => {
                r.expect(wt, WT_I64)?;
                h.zero_count = HistogramCount::Float(f64::from_bits(r.fixed64()?));
            }
            8 | 11 => {
                r.expect(wt, WT_LEN)?;
                let span = decode_span(r.bytes()?)?;
                if field == 8 {
                    h.negative_spans.push(span);
                } else {
                    h.positive_spans.push(span);
                }
            }
            9 | 12 => {
                let v = if field == 9 {
                    &mut h.negative_deltas
                } else {
                    &mut h.positive_deltas
                };
                repeated(&mut r, wt, WT_VARINT, |r| {
                    v.push(zigzag(r.varint()?));
                    Ok(())
                })?;
            }
            10 | 13 | 16 => {
                let v = match field {
                    10 => &mut h.negative_counts,
                    13 => &mut h.positive_counts,
                    _ => &mut h.custom_values,
                };
                repeated(&mut r, wt, WT_I64, |r| {
                    v.push(f64::from_bits(r.fixed64()?));
                    Ok(())
                })?;
            }
            14 => {
                r.expect(wt, WT_VARINT)?;
                h.reset_hint = u8::try_from(r.varint()?).unwrap_or(0).min(3);
            }
            15 => {
                r.expect(wt, WT_VARINT)?;
                h.timestamp = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(h)
}

/// A `Label` message (name 1, value 2), borrowed from `buf`; Hestia's internal `LabelPair` has
/// the same layout.
#[inline]
pub fn decode_label(buf: &[u8]) -> Result<LabelRef<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let mut l = LabelRef {
        name: "",
        value: "",
    };
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_LEN)?;
                l.name = r.string()?;
            }
            2 => {
                r.expect(wt, WT_LEN)?;
                l.value = r.string()?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(l)
}

#[inline]
fn decode_sample(buf: &[u8]) -> Result<SampleRef, DecodeError> {
    let mut r = Reader::new(buf);
    let mut s = SampleRef {
        value: 0.0,
        timestamp: 0,
    };
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_I64)?;
                s.value = f64::from_bits(r.fixed64()?);
            }
            2 => {
                r.expect(wt, WT_VARINT)?;
                s.timestamp = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(s)
}

fn decode_metadata(buf: &[u8]) -> Result<MetadataRef<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let mut m = MetadataRef {
        kind: MetricType::Unknown,
        metric_family_name: "",
        help: "",
        unit: "",
    };
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_VARINT)?;
                m.kind = MetricType::from_wire(r.varint()?);
            }
            2 => {
                r.expect(wt, WT_LEN)?;
                m.metric_family_name = r.string()?;
            }
            4 => {
                r.expect(wt, WT_LEN)?;
                m.help = r.string()?;
            }
            5 => {
                r.expect(wt, WT_LEN)?;
                m.unit = r.string()?;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_proto::prometheus as pb;
    use prost::Message;

    fn sample_request() -> pb::WriteRequest {
        pb::WriteRequest {
            timeseries: vec![
                pb::TimeSeries {
                    labels: vec![
                        pb::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        pb::Label {
                            name: "job".into(),
                            value: "prometheus".into(),
                        },
                    ],
                    samples: vec![
                        pb::Sample {
                            value: 1.0,
                            timestamp: 1000,
                        },
                        pb::Sample {
                            value: f64::from_bits(0x7ff0_0000_0000_0002),
                            timestamp: 2000,
                        },
                        pb::Sample {
                            value: -3.5,
                            timestamp: -7,
                        },
                    ],
                    exemplars: vec![pb::Exemplar {
                        labels: vec![],
                        value: 1.0,
                        timestamp: 5,
                    }],
                    histograms: vec![pb::Histogram {
                        sum: 2.0,
                        schema: 3,
                        ..Default::default()
                    }],
                },
                pb::TimeSeries {
                    labels: vec![pb::Label {
                        name: "__name__".into(),
                        value: "ü".into(),
                    }],
                    samples: vec![],
                    ..Default::default()
                },
            ],
            metadata: vec![pb::MetricMetadata {
                r#type: pb::metric_metadata::MetricType::Counter as i32,
                metric_family_name: "http_requests_total".into(),
                help: "Requests.".into(),
                unit: "".into(),
            }],
        }
    }

    #[test]
    fn matches_prost() {
        let bytes = sample_request().encode_to_vec();
        let req = decode_write_request(&bytes).unwrap();
        assert_eq!(req.series.len(), 2);
        let s0 = &req.series[0];
        assert_eq!(
            req.labels(s0),
            &[
                LabelRef {
                    name: "__name__",
                    value: "up"
                },
                LabelRef {
                    name: "job",
                    value: "prometheus"
                }
            ]
        );
        let samples = req.samples(s0);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[1].value.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(samples[2].timestamp, -7);
        assert_eq!(req.histograms(s0).len(), 1);
        assert_eq!(req.histograms(s0)[0].schema, 3);
        assert_eq!(req.histograms(s0)[0].sum, 2.0);
        assert_eq!(req.exemplars(s0).len(), 1);
        assert_eq!(req.exemplars(s0)[0].timestamp, 5);
        assert!(req.exemplar_labels(&req.exemplars(s0)[0]).is_empty());
        assert_eq!(req.labels(&req.series[1])[0].value, "ü");
        assert!(req.samples(&req.series[1]).is_empty());
        assert_eq!(req.metadata[0].kind, MetricType::Counter);
        assert_eq!(req.metadata[0].metric_family_name, "http_requests_total");
    }

    #[test]
    fn histograms_and_exemplars_match_prost() {
        let h = pb::Histogram {
            count: Some(pb::histogram::Count::CountInt(12)),
            sum: -1.5,
            schema: -4,
            zero_threshold: 0.001,
            zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(2)),
            negative_spans: vec![pb::BucketSpan {
                offset: -3,
                length: 2,
            }],
            negative_deltas: vec![1, -1],
            positive_spans: vec![
                pb::BucketSpan {
                    offset: 5,
                    length: 1,
                },
                pb::BucketSpan {
                    offset: 2,
                    length: 2,
                },
            ],
            positive_deltas: vec![4, -2, 3],
            reset_hint: pb::histogram::ResetHint::No as i32,
            timestamp: 1234,
            ..Default::default()
        };
        let fh = pb::Histogram {
            count: Some(pb::histogram::Count::CountFloat(2.5)),
            zero_count: Some(pb::histogram::ZeroCount::ZeroCountFloat(0.5)),
            positive_spans: vec![pb::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_counts: vec![1.0, 1.0],
            timestamp: -5,
            ..Default::default()
        };
        let mut body = pb::WriteRequest {
            timeseries: vec![pb::TimeSeries {
                labels: vec![pb::Label {
                    name: "__name__".into(),
                    value: "h".into(),
                }],
                exemplars: vec![pb::Exemplar {
                    labels: vec![pb::Label {
                        name: "trace_id".into(),
                        value: "abc".into(),
                    }],
                    value: 0.25,
                    timestamp: 99,
                }],
                histograms: vec![h, fh],
                ..Default::default()
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        let req = decode_write_request(&body).unwrap();
        let s = &req.series[0];
        let hs = req.histograms(s);
        assert_eq!(hs[0].count, HistogramCount::Int(12));
        assert_eq!(hs[0].zero_count, HistogramCount::Int(2));
        assert_eq!((hs[0].schema, hs[0].sum, hs[0].timestamp), (-4, -1.5, 1234));
        assert_eq!(hs[0].negative_spans, vec![(-3, 2)]);
        assert_eq!(hs[0].negative_deltas, vec![1, -1]);
        assert_eq!(hs[0].positive_spans, vec![(5, 1), (2, 2)]);
        assert_eq!(hs[0].positive_deltas, vec![4, -2, 3]);
        assert_eq!(hs[0].reset_hint, 2);
        assert!(hs[1].is_float());
        assert_eq!(hs[1].zero_count, HistogramCount::Float(0.5));
        assert_eq!(hs[1].positive_counts, vec![1.0, 1.0]);
        assert_eq!(hs[1].timestamp, -5);
        let e = &req.exemplars(s)[0];
        assert_eq!((e.value, e.timestamp), (0.25, 99));
        assert_eq!(req.exemplar_labels(e)[0].value, "abc");
        assert_eq!(req.total_exemplars(), 1);

        // custom_values (field 16, packed doubles) from newer protos, inside a histogram appended
        // to the series: TimeSeries field 4.
        let mut custom = vec![0x20, 0x69]; // schema = -53 (zigzag 105)
        custom.extend_from_slice(&[0x82, 0x01, 16]);
        custom.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
        custom.extend_from_slice(&2.0f64.to_bits().to_le_bytes());
        let mut series = vec![0x22, custom.len() as u8];
        series.extend_from_slice(&custom);
        body.clear();
        body.push(0x0a);
        body.push(series.len() as u8);
        body.extend_from_slice(&series);
        let req = decode_write_request(&body).unwrap();
        let h = &req.histograms(&req.series[0])[0];
        assert_eq!(h.schema, -53);
        assert_eq!(h.custom_values, vec![1.0, 2.0]);
    }

    #[test]
    fn empty_body_is_an_empty_request() {
        let req = decode_write_request(&[]).unwrap();
        assert!(req.series.is_empty());
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        let bytes = sample_request().encode_to_vec();
        for cut in 1..bytes.len() {
            let _ = decode_write_request(&bytes[..cut]);
        }
        assert!(decode_write_request(b"\x0a\xff\xff\xff\xff\x0f").is_err());
        assert!(decode_write_request(b"not protobuf at all").is_err());
        assert_eq!(
            decode_write_request(b"\x0a\x04\x0a\x02\x0a\x02").map(|_| ()),
            Err(DecodeError::Protobuf(
                "length-delimited field overruns its message"
            ))
        );
    }

    #[test]
    fn invalid_utf8() {
        // TimeSeries{labels: [Label{name: 0xff}]}
        let bytes = [0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff];
        assert_eq!(
            decode_write_request(&bytes).map(|_| ()),
            Err(DecodeError::Utf8)
        );
    }
}
