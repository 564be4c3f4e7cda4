use std::ops::Range;

use crate::DecodeError;

/// A decoded `prometheus.WriteRequest` borrowing from the decompressed body.
#[derive(Debug, Default)]
pub struct WriteRequest<'a> {
    pub series: Vec<SeriesRef>,
    labels: Vec<LabelRef<'a>>,
    samples: Vec<SampleRef>,
    histograms: Vec<&'a [u8]>,
    pub metadata: Vec<MetadataRef<'a>>,
    /// Exemplars seen (not yet stored by Hestia; counted so they are never dropped silently).
    pub exemplars: usize,
}

/// One `TimeSeries`, as ranges into the request's flat label, sample and histogram vectors.
#[derive(Debug, Clone)]
pub struct SeriesRef {
    labels: Range<u32>,
    samples: Range<u32>,
    histograms: Range<u32>,
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

    /// Raw encoded `prometheus.Histogram` messages of a series (native histograms).
    pub fn histograms(&self, s: &SeriesRef) -> &[&'a [u8]] {
        &self.histograms[s.histograms.start as usize..s.histograms.end as usize]
    }

    pub fn total_samples(&self) -> usize {
        self.samples.len()
    }

    pub fn total_histograms(&self) -> usize {
        self.histograms.len()
    }
}

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_I32: u8 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline]
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(DecodeError::Protobuf("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::Protobuf("varint overflow"))
    }

    #[inline]
    fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let k = self.varint()?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(DecodeError::Protobuf("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    #[inline]
    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let end = self.pos + 8;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::Protobuf("truncated fixed64"))?;
        self.pos = end;
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Protobuf(
                "length-delimited field overruns its message",
            ))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn string(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8)
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), DecodeError> {
        match wire_type {
            WT_VARINT => {
                self.varint()?;
            }
            WT_I64 => {
                self.fixed64()?;
            }
            WT_LEN => {
                self.bytes()?;
            }
            WT_I32 => {
                let end = self.pos + 4;
                if end > self.buf.len() {
                    return Err(DecodeError::Protobuf("truncated fixed32"));
                }
                self.pos = end;
            }
            _ => return Err(DecodeError::Protobuf("unsupported wire type")),
        }
        Ok(())
    }

    #[inline]
    fn expect(&self, got: u8, want: u8) -> Result<(), DecodeError> {
        if got == want {
            Ok(())
        } else {
            Err(DecodeError::Protobuf(
                "unexpected wire type for a known field",
            ))
        }
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

fn idx(n: usize) -> Result<u32, DecodeError> {
    u32::try_from(n).map_err(|_| DecodeError::Protobuf("too many elements"))
}

fn decode_series<'a>(buf: &'a [u8], req: &mut WriteRequest<'a>) -> Result<(), DecodeError> {
    let (l0, s0, h0) = (req.labels.len(), req.samples.len(), req.histograms.len());
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
                r.bytes()?;
                req.exemplars += 1;
            }
            4 => {
                r.expect(wt, WT_LEN)?;
                req.histograms.push(r.bytes()?);
            }
            _ => r.skip(wt)?,
        }
    }
    req.series.push(SeriesRef {
        labels: idx(l0)?..idx(req.labels.len())?,
        samples: idx(s0)?..idx(req.samples.len())?,
        histograms: idx(h0)?..idx(req.histograms.len())?,
    });
    Ok(())
}

#[inline]
fn decode_label(buf: &[u8]) -> Result<LabelRef<'_>, DecodeError> {
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
        let h = pb::Histogram::decode(req.histograms(s0)[0]).unwrap();
        assert_eq!(h.schema, 3);
        assert_eq!(req.exemplars, 1);
        assert_eq!(req.labels(&req.series[1])[0].value, "ü");
        assert!(req.samples(&req.series[1]).is_empty());
        assert_eq!(req.metadata[0].kind, MetricType::Counter);
        assert_eq!(req.metadata[0].metric_family_name, "http_requests_total");
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
