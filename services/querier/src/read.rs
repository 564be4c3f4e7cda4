//! Remote read (`POST /api/v1/read`, reference/prometheus/remote_read_api.md): a snappy-compressed
//! `ReadRequest` in; either a snappy-compressed `ReadResponse` of raw samples or, when the client
//! accepts it, a stream of CRC-checked `ChunkedReadResponse` frames of XOR chunks.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hestia_chunkenc::xor::XorAppender;
use hestia_model::{MatchOp, Matcher, TenantId};
use hestia_promql::{FloatHistogram, SelectHints, Series};
use hestia_proto::prometheus as pb;
use prost::Message;

use crate::store::ChunkBudget;
use crate::{ApiError, Querier, TENANT_HEADER};

/// Largest decompressed read request accepted.
const MAX_DECODED_REQUEST_BYTES: usize = 4 << 20;
/// Samples per re-encoded chunk, as Prometheus cuts them.
const SAMPLES_PER_CHUNK: u16 = 120;
/// Frame size budget of the streamed response (Prometheus' default, 1 MB).
const MAX_FRAME_BYTES: usize = 1 << 20;
const STREAMED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// A remote-read failure: the protocol answers with plain text, not Prometheus' JSON envelope.
struct ReadError(StatusCode, String);

impl IntoResponse for ReadError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<ApiError> for ReadError {
    fn from(e: ApiError) -> Self {
        ReadError(e.kind.status(), e.message)
    }
}

fn bad_request(msg: impl Into<String>) -> ReadError {
    ReadError(StatusCode::BAD_REQUEST, msg.into())
}

pub async fn read(State(q): State<Arc<Querier>>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&q, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(q: &Querier, headers: &HeaderMap, body: &[u8]) -> Result<Response, ReadError> {
    let tenant = headers
        .get(TENANT_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad_request("missing tenant (X-Scope-OrgID)"))
        .and_then(|t| TenantId::parse(t).map_err(|e| bad_request(e.to_string())))?;
    let raw = hestia_remote_write::decompress(body, MAX_DECODED_REQUEST_BYTES)
        .map_err(|e| bad_request(e.to_string()))?;
    let req = pb::ReadRequest::decode(raw.as_slice())
        .map_err(|e| bad_request(format!("protobuf: {e}")))?;
    let mut queries = Vec::with_capacity(req.queries.len());
    for query in &req.queries {
        let matchers = query
            .matchers
            .iter()
            .map(from_pb_matcher)
            .collect::<Result<Vec<_>, _>>()?;
        if query.end_timestamp_ms - query.start_timestamp_ms
            > q.cfg.max_query_length.as_millis() as i64
        {
            return Err(bad_request(crate::api::query_length_error(
                query.end_timestamp_ms - query.start_timestamp_ms,
                q.cfg.max_query_length,
            )));
        }
        queries.push((matchers, query.start_timestamp_ms, query.end_timestamp_ms));
    }
    let streamed = req
        .accepted_response_types
        .contains(&(pb::read_request::ResponseType::StreamedXorChunks as i32));
    let mut results = Vec::with_capacity(queries.len());
    let chunks = ChunkBudget::new(q.cfg.max_fetched_chunks_per_query);
    for (matchers, start, end) in &queries {
        results.push(
            q.store
                .select(
                    &tenant,
                    matchers,
                    &SelectHints {
                        mint: *start,
                        maxt: *end,
                        latest_only: false,
                    },
                    &chunks,
                )
                .await
                .map_err(ApiError::from)?,
        );
    }
    if streamed {
        streamed_response(results)
    } else {
        samples_response(results)
    }
}

fn from_pb_matcher(m: &pb::LabelMatcher) -> Result<Matcher, ReadError> {
    use pb::label_matcher::Type;
    let op = match Type::try_from(m.r#type) {
        Ok(Type::Eq) => MatchOp::Equal,
        Ok(Type::Neq) => MatchOp::NotEqual,
        Ok(Type::Re) => MatchOp::RegexMatch,
        Ok(Type::Nre) => MatchOp::RegexNoMatch,
        Err(_) => return Err(bad_request(format!("unknown matcher type {}", m.r#type))),
    };
    Matcher::new(op, &m.name, &m.value).map_err(|e| bad_request(e.to_string()))
}

fn pb_labels(s: &Series) -> Vec<pb::Label> {
    s.labels
        .iter()
        .map(|l| pb::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

fn pb_spans(spans: &[hestia_promql::Span]) -> Vec<pb::BucketSpan> {
    spans
        .iter()
        .map(|s| pb::BucketSpan {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

fn pb_histogram(t: i64, h: &FloatHistogram) -> pb::Histogram {
    use hestia_promql::CounterResetHint as H;
    use pb::histogram::{Count, ResetHint, ZeroCount};
    let reset_hint = match h.counter_reset_hint {
        H::Unknown => ResetHint::Unknown,
        H::CounterReset => ResetHint::Yes,
        H::NotCounterReset => ResetHint::No,
        H::Gauge => ResetHint::Gauge,
    };
    pb::Histogram {
        count: Some(Count::CountFloat(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(ZeroCount::ZeroCountFloat(h.zero_count)),
        negative_spans: pb_spans(&h.negative_spans),
        negative_counts: h.negative_buckets.clone(),
        positive_spans: pb_spans(&h.positive_spans),
        positive_counts: h.positive_buckets.clone(),
        reset_hint: reset_hint as i32,
        timestamp: t,
        ..Default::default()
    }
}

fn samples_response(results: Vec<Vec<Series>>) -> Result<Response, ReadError> {
    let resp = pb::ReadResponse {
        results: results
            .iter()
            .map(|series| pb::QueryResult {
                timeseries: series
                    .iter()
                    .map(|s| pb::TimeSeries {
                        labels: pb_labels(s),
                        samples: s
                            .floats
                            .iter()
                            .map(|x| pb::Sample {
                                value: x.v,
                                timestamp: x.t,
                            })
                            .collect(),
                        histograms: s
                            .histograms
                            .iter()
                            .map(|(t, h)| pb_histogram(*t, h))
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&resp.encode_to_vec())
        .map_err(|e| ReadError(StatusCode::INTERNAL_SERVER_ERROR, format!("snappy: {e}")))?;
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    Ok(r)
}

/// XOR chunks of at most 120 samples for one series' float samples.
fn xor_chunks(s: &Series) -> Result<Vec<pb::Chunk>, ReadError> {
    let mut out = Vec::new();
    let mut app = XorAppender::new();
    let flush = |app: &mut XorAppender, out: &mut Vec<pb::Chunk>| {
        if !app.is_empty() {
            let full = std::mem::replace(app, XorAppender::new());
            out.push(pb::Chunk {
                min_time_ms: full.min_time(),
                max_time_ms: full.max_time(),
                r#type: pb::chunk::Encoding::Xor as i32,
                data: full.into_chunk().into_bytes().to_vec(),
            });
        }
    };
    for x in &s.floats {
        if app.num_samples() >= SAMPLES_PER_CHUNK {
            flush(&mut app, &mut out);
        }
        app.append(x.t, x.v)
            .map_err(|e| ReadError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    }
    flush(&mut app, &mut out);
    Ok(out)
}

/// Appends one frame: uvarint length, big-endian CRC32-Castagnoli of the message, the message.
fn put_frame(out: &mut Vec<u8>, msg: &pb::ChunkedReadResponse) {
    let bytes = msg.encode_to_vec();
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(&crc32c::crc32c(&bytes).to_be_bytes());
    out.extend_from_slice(&bytes);
}

fn streamed_response(results: Vec<Vec<Series>>) -> Result<Response, ReadError> {
    let mut out = Vec::new();
    for (index, series) in results.iter().enumerate() {
        let mut frame = pb::ChunkedReadResponse {
            chunked_series: Vec::new(),
            query_index: index as i64,
        };
        let mut frame_bytes = 0;
        for s in series {
            if s.floats.is_empty() {
                // Native-histogram chunks are not streamed yet; SAMPLES responses carry them.
                continue;
            }
            let labels = pb_labels(s);
            let labels_bytes: usize = labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 4)
                .sum();
            let mut current = pb::ChunkedSeries {
                labels: labels.clone(),
                chunks: Vec::new(),
            };
            for chunk in xor_chunks(s)? {
                let size = chunk.data.len() + 24;
                if frame_bytes + labels_bytes + size > MAX_FRAME_BYTES
                    && (!frame.chunked_series.is_empty() || !current.chunks.is_empty())
                {
                    if !current.chunks.is_empty() {
                        frame.chunked_series.push(std::mem::replace(
                            &mut current,
                            pb::ChunkedSeries {
                                labels: labels.clone(),
                                chunks: Vec::new(),
                            },
                        ));
                    }
                    put_frame(&mut out, &frame);
                    frame.chunked_series.clear();
                    frame_bytes = 0;
                }
                frame_bytes += size;
                current.chunks.push(chunk);
            }
            frame_bytes += labels_bytes;
            frame.chunked_series.push(current);
        }
        if !frame.chunked_series.is_empty() {
            put_frame(&mut out, &frame);
        }
    }
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(STREAMED_CONTENT_TYPE),
    );
    Ok(r)
}
