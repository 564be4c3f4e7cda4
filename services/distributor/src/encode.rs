//! The push to ingesters, encoded once: each validated series is written as a protobuf
//! `TimeSeries` straight from the borrowed request labels into one buffer, and each ingester's
//! `PushRequest` is the concatenation of its series' bytes. Building a message per ingester
//! cloned every label string once per replica; allocation was most of the distributor's CPU.

use std::ops::Range;

use hestia_proto::ingester as pb;
use hestia_remote_write::LabelRef;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

/// A validated request, ready to be split among ingesters: series with their ring tokens, and
/// metadata by metric-name token.
#[derive(Default)]
pub(crate) struct Batch {
    /// Every series as an encoded `TimeSeries` message, back to back.
    encoded: Vec<u8>,
    /// Each series' bytes in `encoded`.
    series: Vec<Range<usize>>,
    pub metadata: Vec<pb::MetricMetadata>,
    /// `series.len() + metadata.len()` tokens, series first.
    pub tokens: Vec<u32>,
}

fn len_field(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_bytes_field(buf: &mut Vec<u8>, tag: u32, b: &[u8]) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(b.len() as u64, buf);
    buf.extend_from_slice(b);
}

impl Batch {
    #[cfg(test)]
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Appends a series (`TimeSeries` fields: labels 1, samples 2, histograms 3, exemplars 4).
    pub fn push_series(
        &mut self,
        labels: &[LabelRef<'_>],
        samples: &[pb::Sample],
        histograms: &[pb::Histogram],
        exemplars: &[pb::Exemplar],
    ) {
        let buf = &mut self.encoded;
        let start = buf.len();
        for l in labels {
            let len = len_field(l.name.len()) + len_field(l.value.len());
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            put_bytes_field(buf, 1, l.name.as_bytes());
            put_bytes_field(buf, 2, l.value.as_bytes());
        }
        for s in samples {
            // Sample: timestamp_ms = 1 (varint), value = 2 (fixed64).
            let len = 1 + encoded_len_varint(s.timestamp_ms as u64) + 1 + 8;
            encode_key(2, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            encode_key(1, WireType::Varint, buf);
            encode_varint(s.timestamp_ms as u64, buf);
            encode_key(2, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&s.value.to_le_bytes());
        }
        for h in histograms {
            prost::encoding::message::encode(3, h, buf);
        }
        for e in exemplars {
            prost::encoding::message::encode(4, e, buf);
        }
        self.series.push(start..buf.len());
    }

    /// The `PushRequest` (tenant 1, timeseries 2, metadata 3) of the batch items `items`:
    /// series indexes first, then `num_series() + metadata index`.
    pub fn request(&self, tenant: &str, items: &[u32]) -> Vec<u8> {
        let split = items.partition_point(|&i| (i as usize) < self.series.len());
        let (series, metadata) = items.split_at(split);
        let size: usize = series
            .iter()
            .map(|&i| len_field(self.series[i as usize].len()))
            .sum();
        let mut buf = Vec::with_capacity(len_field(tenant.len()) + size + 64);
        put_bytes_field(&mut buf, 1, tenant.as_bytes());
        for &i in series {
            put_bytes_field(&mut buf, 2, &self.encoded[self.series[i as usize].clone()]);
        }
        for &i in metadata {
            let m = &self.metadata[i as usize - self.series.len()];
            prost::encoding::message::encode(3, m, &mut buf);
        }
        buf
    }

    /// Series `i` decoded again (tests).
    #[cfg(test)]
    pub fn series(&self, i: usize) -> pb::TimeSeries {
        use prost::Message;
        pb::TimeSeries::decode(&self.encoded[self.series[i].clone()])
            .expect("encoded by push_series")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn requests_decode_as_prost_messages() {
        let mut b = Batch::default();
        let labels = [
            LabelRef {
                name: "__name__",
                value: "up",
            },
            LabelRef {
                name: "job",
                value: "x\u{e9}",
            },
        ];
        let samples = [
            pb::Sample {
                timestamp_ms: -5,
                value: f64::NAN,
            },
            pb::Sample {
                timestamp_ms: 1_700_000_000_000,
                value: 0.0,
            },
        ];
        let exemplar = pb::Exemplar {
            labels: vec![pb::LabelPair {
                name: "trace_id".into(),
                value: "abc".into(),
            }],
            timestamp_ms: 7,
            value: 1.5,
        };
        b.push_series(&labels, &samples, &[], std::slice::from_ref(&exemplar));
        b.push_series(&labels[..1], &samples[1..], &[], &[]);
        b.metadata.push(pb::MetricMetadata {
            metric_family_name: "up".into(),
            r#type: "gauge".into(),
            help: "h".into(),
            unit: String::new(),
        });
        let req = pb::PushRequest::decode(&b.request("t1", &[1, 2])[..]).unwrap();
        assert_eq!(req.tenant, "t1");
        assert_eq!(req.timeseries.len(), 1);
        assert_eq!(req.timeseries[0].labels.len(), 1);
        assert_eq!(req.metadata[0].metric_family_name, "up");
        let req = pb::PushRequest::decode(&b.request("t1", &[0, 1])[..]).unwrap();
        let ts = &req.timeseries[0];
        assert_eq!(ts.labels[1].value, "x\u{e9}");
        assert_eq!(ts.samples[0].timestamp_ms, -5);
        assert!(ts.samples[0].value.is_nan());
        assert_eq!(ts.samples[1], samples[1]);
        assert_eq!(ts.exemplars, vec![exemplar]);
        assert!(req.metadata.is_empty());
    }
}
