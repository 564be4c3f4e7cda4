//! Remote write 2.0 (`io.prometheus.write.v2.Request`) decoding.
//!
//! Like the 1.0 decoder, nothing is copied: symbols borrow from the body and every series'
//! labels, samples, histograms and exemplars live in flat vectors of the request. Label
//! references are resolved while decoding, so a decoded request offers the same view as a 1.0
//! one ([`FlatWriteRequest`]) and the distributor's pipeline after decoding serves both.
//! Native histograms are decoded by the 1.0 decoder: the 2.0 `Histogram` message has the 1.0
//! field numbers (1–16) and only adds the start timestamp (17), which it skips.

use std::collections::HashSet;
use std::ops::Range;

use crate::decode::decode_histogram;
use crate::wire::{idx, Reader, WT_I64, WT_LEN, WT_VARINT};
use crate::{
    DecodeError, ExemplarRef, HistogramRef, LabelRef, MetadataRef, MetricType, SampleRef,
    WriteRequest,
};

/// A decoded `io.prometheus.write.v2.Request` borrowing from the decompressed body.
#[derive(Debug, Default)]
pub struct WriteRequestV2<'a> {
    pub series: Vec<SeriesV2>,
    labels: Vec<LabelRef<'a>>,
    samples: Vec<SampleRef>,
    /// `Sample.start_timestamp` of each sample (0: not set), parallel to `samples`.
    start_timestamps: Vec<i64>,
    histograms: Vec<HistogramRef>,
    exemplars: Vec<ExemplarRef>,
    exemplar_labels: Vec<LabelRef<'a>>,
    /// The first type, help and unit given for each metric name (2.0 repeats them per series).
    pub metadata: Vec<MetadataRef<'a>>,
}

/// One `TimeSeries`, as ranges into the request's flat vectors.
#[derive(Debug, Clone)]
pub struct SeriesV2 {
    labels: Range<u32>,
    samples: Range<u32>,
    histograms: Range<u32>,
    exemplars: Range<u32>,
    pub metric_type: MetricType,
    /// The deprecated `TimeSeries.created_timestamp` (field 6), 0 when absent; newer senders
    /// put it on each sample instead (see [`WriteRequestV2::start_timestamps`]).
    pub created_timestamp: i64,
}

impl<'a> WriteRequestV2<'a> {
    pub fn labels(&self, s: &SeriesV2) -> &[LabelRef<'a>] {
        &self.labels[s.labels.start as usize..s.labels.end as usize]
    }

    pub fn samples(&self, s: &SeriesV2) -> &[SampleRef] {
        &self.samples[s.samples.start as usize..s.samples.end as usize]
    }

    /// Start (created) timestamps of the series' samples, 0 where unset.
    pub fn start_timestamps(&self, s: &SeriesV2) -> &[i64] {
        &self.start_timestamps[s.samples.start as usize..s.samples.end as usize]
    }

    pub fn histograms(&self, s: &SeriesV2) -> &[HistogramRef] {
        &self.histograms[s.histograms.start as usize..s.histograms.end as usize]
    }

    pub fn exemplars(&self, s: &SeriesV2) -> &[ExemplarRef] {
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

/// The view of a decoded request the push pipeline needs, for 1.0 and 2.0 alike.
pub trait FlatWriteRequest<'a> {
    type Series;
    fn series(&self) -> &[Self::Series];
    fn labels(&self, s: &Self::Series) -> &[LabelRef<'a>];
    fn samples(&self, s: &Self::Series) -> &[SampleRef];
    fn histograms(&self, s: &Self::Series) -> &[HistogramRef];
    fn exemplars(&self, s: &Self::Series) -> &[ExemplarRef];
    fn exemplar_labels(&self, e: &ExemplarRef) -> &[LabelRef<'a>];
    fn metadata(&self) -> &[MetadataRef<'a>];
    fn total_samples(&self) -> usize;
    fn total_histograms(&self) -> usize;
    fn total_exemplars(&self) -> usize;
}

impl<'a> FlatWriteRequest<'a> for WriteRequest<'a> {
    type Series = crate::SeriesRef;
    fn series(&self) -> &[Self::Series] {
        &self.series
    }
    fn labels(&self, s: &Self::Series) -> &[LabelRef<'a>] {
        WriteRequest::labels(self, s)
    }
    fn samples(&self, s: &Self::Series) -> &[SampleRef] {
        WriteRequest::samples(self, s)
    }
    fn histograms(&self, s: &Self::Series) -> &[HistogramRef] {
        WriteRequest::histograms(self, s)
    }
    fn exemplars(&self, s: &Self::Series) -> &[ExemplarRef] {
        WriteRequest::exemplars(self, s)
    }
    fn exemplar_labels(&self, e: &ExemplarRef) -> &[LabelRef<'a>] {
        WriteRequest::exemplar_labels(self, e)
    }
    fn metadata(&self) -> &[MetadataRef<'a>] {
        &self.metadata
    }
    fn total_samples(&self) -> usize {
        WriteRequest::total_samples(self)
    }
    fn total_histograms(&self) -> usize {
        WriteRequest::total_histograms(self)
    }
    fn total_exemplars(&self) -> usize {
        WriteRequest::total_exemplars(self)
    }
}

impl<'a> FlatWriteRequest<'a> for WriteRequestV2<'a> {
    type Series = SeriesV2;
    fn series(&self) -> &[Self::Series] {
        &self.series
    }
    fn labels(&self, s: &Self::Series) -> &[LabelRef<'a>] {
        WriteRequestV2::labels(self, s)
    }
    fn samples(&self, s: &Self::Series) -> &[SampleRef] {
        WriteRequestV2::samples(self, s)
    }
    fn histograms(&self, s: &Self::Series) -> &[HistogramRef] {
        WriteRequestV2::histograms(self, s)
    }
    fn exemplars(&self, s: &Self::Series) -> &[ExemplarRef] {
        WriteRequestV2::exemplars(self, s)
    }
    fn exemplar_labels(&self, e: &ExemplarRef) -> &[LabelRef<'a>] {
        WriteRequestV2::exemplar_labels(self, e)
    }
    fn metadata(&self) -> &[MetadataRef<'a>] {
        &self.metadata
    }
    fn total_samples(&self) -> usize {
        WriteRequestV2::total_samples(self)
    }
    fn total_histograms(&self) -> usize {
        WriteRequestV2::total_histograms(self)
    }
    fn total_exemplars(&self) -> usize {
        WriteRequestV2::total_exemplars(self)
    }
}

fn err(m: &'static str) -> DecodeError {
    DecodeError::Protobuf(m)
}

/// Decodes a decompressed `io.prometheus.write.v2.Request`. Unknown fields are skipped; symbol
/// references are checked (in range, label references in pairs, symbol 0 the empty string).
pub fn decode_write_request_v2(buf: &[u8]) -> Result<WriteRequestV2<'_>, DecodeError> {
    // Symbols may follow the series that use them, so series are decoded in a second pass.
    let mut symbols: Vec<&str> = Vec::new();
    let mut series_bodies: Vec<&[u8]> = Vec::new();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            4 => {
                r.expect(wt, WT_LEN)?;
                symbols.push(std::str::from_utf8(r.bytes()?).map_err(|_| DecodeError::Utf8)?);
            }
            5 => {
                r.expect(wt, WT_LEN)?;
                series_bodies.push(r.bytes()?);
            }
            _ => r.skip(wt)?,
        }
    }
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(err(
            "remote write 2.0: the first symbol must be the empty string",
        ));
    }
    let mut req = WriteRequestV2 {
        series: Vec::with_capacity(series_bodies.len()),
        ..Default::default()
    };
    let mut refs = Vec::new();
    let mut described = HashSet::new();
    for body in series_bodies {
        decode_series(body, &symbols, &mut refs, &mut described, &mut req)?;
    }
    Ok(req)
}

fn symbol<'a>(symbols: &[&'a str], r: u32) -> Result<&'a str, DecodeError> {
    symbols
        .get(r as usize)
        .copied()
        .ok_or(err("remote write 2.0: symbol reference out of range"))
}

fn push_labels<'a>(
    refs: &[u32],
    symbols: &[&'a str],
    out: &mut Vec<LabelRef<'a>>,
) -> Result<(), DecodeError> {
    if !refs.len().is_multiple_of(2) {
        return Err(err("remote write 2.0: labels_refs has an odd length"));
    }
    for pair in refs.chunks_exact(2) {
        out.push(LabelRef {
            name: symbol(symbols, pair[0])?,
            value: symbol(symbols, pair[1])?,
        });
    }
    Ok(())
}

fn decode_series<'a>(
    buf: &'a [u8],
    symbols: &[&'a str],
    refs: &mut Vec<u32>,
    described: &mut HashSet<&'a str>,
    req: &mut WriteRequestV2<'a>,
) -> Result<(), DecodeError> {
    let (s0, h0, e0) = (req.samples.len(), req.histograms.len(), req.exemplars.len());
    let mut metadata: Option<(MetricType, &'a str, &'a str)> = None;
    let mut created_timestamp = 0;
    refs.clear();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => r.uint32s(wt, refs)?,
            2 => {
                r.expect(wt, WT_LEN)?;
                let (sample, start) = decode_sample(r.bytes()?)?;
                req.samples.push(sample);
                req.start_timestamps.push(start);
            }
            3 => {
                r.expect(wt, WT_LEN)?;
                req.histograms.push(decode_histogram(r.bytes()?)?);
            }
            4 => {
                r.expect(wt, WT_LEN)?;
                let e = decode_exemplar(r.bytes()?, symbols, &mut req.exemplar_labels)?;
                req.exemplars.push(e);
            }
            5 => {
                r.expect(wt, WT_LEN)?;
                metadata = Some(decode_metadata(r.bytes()?, symbols)?);
            }
            6 => {
                r.expect(wt, WT_VARINT)?;
                created_timestamp = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    if req.samples.len() > s0 && req.histograms.len() > h0 {
        return Err(err(
            "remote write 2.0: a series must not carry both samples and histograms",
        ));
    }
    let l0 = req.labels.len();
    push_labels(refs, symbols, &mut req.labels)?;
    let (kind, help, unit) = metadata.unwrap_or((MetricType::Unknown, "", ""));
    let name = req.labels[l0..]
        .iter()
        .find(|l| l.name == "__name__")
        .map_or("", |l| l.value);
    let has_metadata = kind != MetricType::Unknown || !help.is_empty() || !unit.is_empty();
    if has_metadata && described.insert(name) {
        req.metadata.push(MetadataRef {
            kind,
            metric_family_name: name,
            help,
            unit,
        });
    }
    req.series.push(SeriesV2 {
        labels: idx(l0)?..idx(req.labels.len())?,
        samples: idx(s0)?..idx(req.samples.len())?,
        histograms: idx(h0)?..idx(req.histograms.len())?,
        exemplars: idx(e0)?..idx(req.exemplars.len())?,
        metric_type: kind,
        created_timestamp,
    });
    Ok(())
}

#[inline]
fn decode_sample(buf: &[u8]) -> Result<(SampleRef, i64), DecodeError> {
    let mut r = Reader::new(buf);
    let mut s = SampleRef {
        value: 0.0,
        timestamp: 0,
    };
    let mut start = 0;
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
            3 => {
                r.expect(wt, WT_VARINT)?;
                start = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((s, start))
}

fn decode_exemplar<'a>(
    buf: &'a [u8],
    symbols: &[&'a str],
    labels: &mut Vec<LabelRef<'a>>,
) -> Result<ExemplarRef, DecodeError> {
    let mut refs = Vec::new();
    let mut e = ExemplarRef {
        labels: 0..0,
        value: 0.0,
        timestamp: 0,
    };
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => r.uint32s(wt, &mut refs)?,
            2 => {
                r.expect(wt, WT_I64)?;
                e.value = f64::from_bits(r.fixed64()?);
            }
            3 => {
                r.expect(wt, WT_VARINT)?;
                e.timestamp = r.varint()? as i64;
            }
            _ => r.skip(wt)?,
        }
    }
    let l0 = labels.len();
    push_labels(&refs, symbols, labels)?;
    e.labels = idx(l0)?..idx(labels.len())?;
    Ok(e)
}

/// 2.0's numbering is 1.0's, with 0 meaning unspecified instead of unknown.
fn metric_type(v: u64) -> MetricType {
    match v {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::Stateset,
        _ => MetricType::Unknown,
    }
}

fn decode_metadata<'a>(
    buf: &'a [u8],
    symbols: &[&'a str],
) -> Result<(MetricType, &'a str, &'a str), DecodeError> {
    let (mut kind, mut help, mut unit) = (MetricType::Unknown, 0, 0);
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_VARINT)?;
                kind = metric_type(r.varint()?);
            }
            3 | 4 => {
                r.expect(wt, WT_VARINT)?;
                let v = u32::try_from(r.varint()?).map_err(|_| err("uint32 field out of range"))?;
                if field == 3 {
                    help = v;
                } else {
                    unit = v;
                }
            }
            _ => r.skip(wt)?,
        }
    }
    Ok((kind, symbol(symbols, help)?, symbol(symbols, unit)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    // The 2.0 schema, hand-written (hestia-proto carries only 1.0).
    #[derive(Clone, PartialEq, Message)]
    struct Request {
        #[prost(string, repeated, tag = "4")]
        symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct TimeSeries {
        #[prost(uint32, repeated, tag = "1")]
        labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        histograms: Vec<Histogram>,
        #[prost(message, repeated, tag = "4")]
        exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        metadata: Option<Metadata>,
        #[prost(int64, tag = "6")]
        created_timestamp: i64,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Sample {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(int64, tag = "2")]
        timestamp: i64,
        #[prost(int64, tag = "3")]
        start_timestamp: i64,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Exemplar {
        #[prost(uint32, repeated, tag = "1")]
        labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        value: f64,
        #[prost(int64, tag = "3")]
        timestamp: i64,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Metadata {
        #[prost(int32, tag = "1")]
        r#type: i32,
        #[prost(uint32, tag = "3")]
        help_ref: u32,
        #[prost(uint32, tag = "4")]
        unit_ref: u32,
    }
    #[derive(Clone, PartialEq, Message)]
    struct Histogram {
        #[prost(uint64, tag = "1")]
        count_int: u64,
        #[prost(double, tag = "3")]
        sum: f64,
        #[prost(sint32, tag = "4")]
        schema: i32,
        #[prost(int64, tag = "15")]
        timestamp: i64,
        #[prost(double, repeated, tag = "16")]
        custom_values: Vec<f64>,
    }

    fn symbols() -> Vec<String> {
        [
            "",
            "__name__",
            "http_requests_total",
            "job",
            "api",
            "Requests.",
            "trace_id",
            "abc",
            "rps",
        ]
        .map(String::from)
        .to_vec()
    }

    fn request() -> Request {
        Request {
            symbols: symbols(),
            timeseries: vec![
                TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![
                        Sample {
                            value: 1.5,
                            timestamp: 1000,
                            start_timestamp: 500,
                        },
                        Sample {
                            value: f64::from_bits(0x7ff0_0000_0000_0002),
                            timestamp: 2000,
                            start_timestamp: 0,
                        },
                    ],
                    exemplars: vec![Exemplar {
                        labels_refs: vec![6, 7],
                        value: 0.25,
                        timestamp: 1000,
                    }],
                    metadata: Some(Metadata {
                        r#type: 1,
                        help_ref: 5,
                        unit_ref: 0,
                    }),
                    created_timestamp: 400,
                    ..Default::default()
                },
                TimeSeries {
                    labels_refs: vec![1, 8],
                    histograms: vec![Histogram {
                        count_int: 3,
                        sum: 2.5,
                        schema: 3,
                        timestamp: 3000,
                        custom_values: vec![1.0],
                    }],
                    metadata: Some(Metadata::default()),
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn decodes_everything() {
        let bytes = request().encode_to_vec();
        let req = decode_write_request_v2(&bytes).unwrap();
        assert_eq!(req.series.len(), 2);
        let s0 = &req.series[0];
        assert_eq!(
            req.labels(s0),
            [
                LabelRef {
                    name: "__name__",
                    value: "http_requests_total"
                },
                LabelRef {
                    name: "job",
                    value: "api"
                }
            ]
        );
        let samples = req.samples(s0);
        assert_eq!((samples[0].value, samples[0].timestamp), (1.5, 1000));
        assert_eq!(samples[1].value.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(req.start_timestamps(s0), [500, 0]);
        assert_eq!(
            (s0.created_timestamp, s0.metric_type),
            (400, MetricType::Counter)
        );
        let e = &req.exemplars(s0)[0];
        assert_eq!((e.value, e.timestamp), (0.25, 1000));
        assert_eq!(req.exemplar_labels(e)[0].value, "abc");
        assert_eq!(
            req.metadata,
            [MetadataRef {
                kind: MetricType::Counter,
                metric_family_name: "http_requests_total",
                help: "Requests.",
                unit: "",
            }]
        );

        let s1 = &req.series[1];
        assert_eq!(req.labels(s1)[0].value, "rps");
        assert!(req.samples(s1).is_empty());
        let h = &req.histograms(s1)[0];
        assert_eq!((h.schema, h.sum, h.timestamp), (3, 2.5, 3000));
        assert_eq!(
            (
                req.total_samples(),
                req.total_histograms(),
                req.total_exemplars()
            ),
            (2, 1, 1)
        );
    }

    #[test]
    fn flat_view_matches_for_both_versions() {
        fn names<'a, R: FlatWriteRequest<'a>>(r: &R) -> Vec<String> {
            r.series()
                .iter()
                .flat_map(|s| {
                    r.labels(s)
                        .iter()
                        .map(|l| format!("{}={}", l.name, l.value))
                })
                .collect()
        }
        let v2 = request().encode_to_vec();
        let v1 = hestia_proto::prometheus::WriteRequest {
            timeseries: vec![hestia_proto::prometheus::TimeSeries {
                labels: vec![
                    hestia_proto::prometheus::Label {
                        name: "__name__".into(),
                        value: "http_requests_total".into(),
                    },
                    hestia_proto::prometheus::Label {
                        name: "job".into(),
                        value: "api".into(),
                    },
                ],
                ..Default::default()
            }],
            metadata: vec![],
        }
        .encode_to_vec();
        let a = decode_write_request_v2(&v2).unwrap();
        let b = crate::decode_write_request(&v1).unwrap();
        assert_eq!(names(&a)[..2], names(&b)[..]);
    }

    #[test]
    fn metadata_once_per_metric_name() {
        let mut r = request();
        let again = r.timeseries[0].clone();
        r.timeseries.push(again);
        let bytes = r.encode_to_vec();
        let req = decode_write_request_v2(&bytes).unwrap();
        assert_eq!((req.series.len(), req.metadata.len()), (3, 1));
        assert_eq!(req.series[2].metric_type, MetricType::Counter);
    }

    #[test]
    fn symbols_after_series_and_unpacked_refs() {
        // Series first, symbols last; labels_refs as unpacked varints (field 1, wire type 0).
        let mut ts = vec![0x08, 1, 0x08, 2];
        ts.extend([0x12, 0x09, 0x09]);
        ts.extend(7.0f64.to_le_bytes());
        let mut buf = vec![0x2a, ts.len() as u8];
        buf.extend(&ts);
        for s in ["", "__name__", "up"] {
            buf.extend([0x22, s.len() as u8]);
            buf.extend(s.as_bytes());
        }
        let req = decode_write_request_v2(&buf).unwrap();
        assert_eq!(req.labels(&req.series[0])[0].value, "up");
        assert_eq!(req.samples(&req.series[0])[0].value, 7.0);
    }

    #[test]
    fn validation_errors() {
        let bad = |f: fn(&mut Request)| {
            let mut r = request();
            f(&mut r);
            decode_write_request_v2(&r.encode_to_vec()).map(|_| ())
        };
        let msg = |m: &'static str| Err(DecodeError::Protobuf(m));
        assert_eq!(
            bad(|r| r.timeseries[0].labels_refs.push(1)),
            msg("remote write 2.0: labels_refs has an odd length")
        );
        assert_eq!(
            bad(|r| r.timeseries[0].labels_refs[1] = 99),
            msg("remote write 2.0: symbol reference out of range")
        );
        assert_eq!(
            bad(|r| r.timeseries[0].exemplars[0].labels_refs[0] = 99),
            msg("remote write 2.0: symbol reference out of range")
        );
        assert_eq!(
            bad(|r| r.timeseries[0].metadata.as_mut().unwrap().unit_ref = 99),
            msg("remote write 2.0: symbol reference out of range")
        );
        assert_eq!(
            bad(|r| r.symbols[0] = "x".into()),
            msg("remote write 2.0: the first symbol must be the empty string")
        );
        assert_eq!(
            bad(|r| r.timeseries[1].samples.push(Sample::default())),
            msg("remote write 2.0: a series must not carry both samples and histograms")
        );
        assert_eq!(
            bad(|r| r.symbols.clear()),
            msg("remote write 2.0: symbol reference out of range")
        );
        assert!(decode_write_request_v2(&[]).unwrap().series.is_empty());
    }

    #[test]
    fn truncations_never_panic() {
        let bytes = request().encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = decode_write_request_v2(&bytes[..cut]);
        }
        assert_eq!(
            decode_write_request_v2(&[0x22, 0x01, 0xff]).map(|_| ()),
            Err(DecodeError::Utf8)
        );
    }
}
