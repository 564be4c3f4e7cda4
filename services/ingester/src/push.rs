//! Reads the series of a Push in place: label names and values borrow from the request bytes,
//! and every series' labels sit in one vector of the request, so an existing series is found
//! without copying a string. Histograms and exemplars, rare on this path, go through prost.

use std::ops::Range;

use bytes::Bytes;
use hestia_model::{LabelPairs, Sample};
use hestia_proto::ingester as pb;
use hestia_remote_write::wire::{Reader, WT_I64, WT_LEN, WT_VARINT};
use hestia_remote_write::{decode_label, DecodeError};
use hestia_storage::{Exemplar, Histogram, SeriesAppend};
use prost::Message;

use crate::{histogram_from_pb, labels_from_pb, IngesterError};

/// One series of the request, its labels a range of [`Decoded::pairs`].
struct Series {
    labels: Range<usize>,
    samples: Vec<Sample>,
    histograms: Vec<(i64, Histogram)>,
    exemplars: Vec<Exemplar>,
}

/// The decoded series of one Push; [`Decoded::batch`] lends them to the storage.
#[derive(Default)]
pub(crate) struct Decoded<'a> {
    pairs: Vec<(&'a str, &'a str)>,
    series: Vec<Series>,
}

impl<'a> Decoded<'a> {
    /// Decodes each encoded `TimeSeries` of `timeseries`.
    pub(crate) fn new(timeseries: &'a [Bytes]) -> Result<Self, IngesterError> {
        let mut d = Decoded {
            pairs: Vec::with_capacity(timeseries.len() * 8),
            series: Vec::with_capacity(timeseries.len()),
        };
        for (i, ts) in timeseries.iter().enumerate() {
            d.decode_series(ts).map_err(|e| {
                IngesterError::InvalidArgument(format!("series {i} of the push: {e}"))
            })?;
        }
        Ok(d)
    }

    /// The series as storage appends, in request order (their samples move out).
    pub(crate) fn batch(&mut self) -> Result<Vec<SeriesAppend<LabelPairs<'_>>>, IngesterError> {
        let pairs = &self.pairs;
        self.series
            .iter_mut()
            .map(|s| {
                let labels = LabelPairs::new(&pairs[s.labels.clone()]).ok_or_else(|| {
                    IngesterError::InvalidArgument("labels not normalized".to_string())
                })?;
                Ok(SeriesAppend {
                    labels,
                    samples: std::mem::take(&mut s.samples),
                    histograms: std::mem::take(&mut s.histograms),
                    exemplars: std::mem::take(&mut s.exemplars),
                })
            })
            .collect()
    }

    fn decode_series(&mut self, buf: &'a [u8]) -> Result<(), DecodeError> {
        let start = self.pairs.len();
        let mut samples = Vec::new();
        let mut histograms = Vec::new();
        let mut exemplars = Vec::new();
        let mut r = Reader::new(buf);
        while !r.done() {
            let (field, wt) = r.key()?;
            match field {
                1 => {
                    r.expect(wt, WT_LEN)?;
                    let l = decode_label(r.bytes()?)?;
                    self.pairs.push((l.name, l.value));
                }
                2 => {
                    r.expect(wt, WT_LEN)?;
                    samples.push(decode_sample(r.bytes()?)?);
                }
                3 => {
                    r.expect(wt, WT_LEN)?;
                    let h = pb::Histogram::decode(r.bytes()?)
                        .map_err(|_| DecodeError::Protobuf("invalid histogram"))?;
                    histograms.push(histogram_from_pb(h));
                }
                4 => {
                    r.expect(wt, WT_LEN)?;
                    let e = pb::Exemplar::decode(r.bytes()?)
                        .map_err(|_| DecodeError::Protobuf("invalid exemplar"))?;
                    exemplars.push(Exemplar {
                        labels: labels_from_pb(e.labels),
                        t: e.timestamp_ms,
                        v: e.value,
                    });
                }
                _ => r.skip(wt)?,
            }
        }
        normalize(&mut self.pairs, start);
        self.series.push(Series {
            labels: start..self.pairs.len(),
            samples,
            histograms,
            exemplars,
        });
        Ok(())
    }
}

/// Makes `pairs[start..]` what `Labels::from_pairs` would build of it: sorted by name, the last
/// of equal names kept, empty values dropped. Distributors send it so already.
fn normalize(pairs: &mut Vec<(&str, &str)>, start: usize) {
    let tail = &mut pairs[start..];
    if tail.windows(2).all(|w| w[0].0 < w[1].0) && tail.iter().all(|(_, v)| !v.is_empty()) {
        return;
    }
    tail.sort_by(|a, b| a.0.cmp(b.0));
    let mut kept: Vec<(&str, &str)> = Vec::with_capacity(tail.len());
    for &p in tail.iter() {
        match kept.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => kept.push(p),
        }
    }
    kept.retain(|(_, v)| !v.is_empty());
    pairs.truncate(start);
    pairs.extend(kept);
}

fn decode_sample(buf: &[u8]) -> Result<Sample, DecodeError> {
    let mut s = Sample { t: 0, v: 0.0 };
    let mut r = Reader::new(buf);
    while !r.done() {
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect(wt, WT_VARINT)?;
                s.t = r.varint()? as i64;
            }
            2 => {
                r.expect(wt, WT_I64)?;
                s.v = f64::from_bits(r.fixed64()?);
            }
            _ => r.skip(wt)?,
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_model::Labels;

    fn label(name: &str, value: &str) -> pb::LabelPair {
        pb::LabelPair {
            name: name.into(),
            value: value.into(),
        }
    }

    fn encode(ts: &pb::TimeSeries) -> Bytes {
        Bytes::from(ts.encode_to_vec())
    }

    #[test]
    fn reads_what_prost_writes() {
        let series = [
            pb::TimeSeries {
                labels: vec![label("__name__", "up"), label("job", "node")],
                samples: vec![
                    pb::Sample {
                        timestamp_ms: -5,
                        value: 1.5,
                    },
                    pb::Sample {
                        timestamp_ms: 1_700_000_000_000,
                        value: f64::NAN,
                    },
                ],
                histograms: vec![pb::Histogram {
                    timestamp_ms: 7,
                    schema: 1,
                    count: 3.0,
                    sum: 2.0,
                    positive_spans: vec![pb::BucketSpan {
                        offset: 0,
                        length: 1,
                    }],
                    positive_counts: vec![3.0],
                    ..Default::default()
                }],
                exemplars: vec![pb::Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    timestamp_ms: 9,
                    value: 4.0,
                }],
            },
            // Unsorted, a repeated name (the last wins) and an empty value (dropped), as
            // `Labels::from_pairs` treats them.
            pb::TimeSeries {
                labels: vec![
                    label("job", "a"),
                    label("__name__", "x"),
                    label("job", "b"),
                    label("empty", ""),
                ],
                ..Default::default()
            },
        ];
        let bytes: Vec<Bytes> = series.iter().map(encode).collect();
        let mut decoded = Decoded::new(&bytes).unwrap();
        let batch = decoded.batch().unwrap();
        assert_eq!(batch.len(), 2);
        assert!(batch[0].labels == Labels::from_pairs([("__name__", "up"), ("job", "node")]));
        assert_eq!(batch[0].samples[0], Sample { t: -5, v: 1.5 });
        assert_eq!(batch[0].samples[1].t, 1_700_000_000_000);
        assert!(batch[0].samples[1].v.is_nan());
        assert_eq!(batch[0].histograms[0].0, 7);
        assert_eq!(batch[0].histograms[0].1.positive_buckets, vec![3.0]);
        assert_eq!(batch[0].exemplars[0].labels.get("trace_id"), Some("abc"));
        assert_eq!(batch[0].exemplars[0].t, 9);
        assert!(batch[1].labels == Labels::from_pairs([("__name__", "x"), ("job", "b")]));
        assert!(batch[1].samples.is_empty());
    }

    #[test]
    fn malformed_series_are_invalid_arguments() {
        let truncated = encode(&pb::TimeSeries {
            labels: vec![label("__name__", "up")],
            ..Default::default()
        });
        let truncated = truncated.slice(..truncated.len() - 1);
        let bad_utf8 = Bytes::from_static(&[0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe]);
        for bytes in [truncated, bad_utf8] {
            match Decoded::new(std::slice::from_ref(&bytes)) {
                Err(IngesterError::InvalidArgument(m)) => assert!(m.contains("series 0"), "{m}"),
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("decoded malformed bytes"),
            }
        }
    }
}
