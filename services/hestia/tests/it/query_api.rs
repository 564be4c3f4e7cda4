//! The query API beyond evaluation: format_query, parse_query, remote read (both response types,
//! and Debian's Prometheus 2.42 reading through it), and AMP's query limits.

use crate::common::prometheus::Prometheus;
use crate::common::*;
use hestia_proto::prometheus as pb;
use prost::Message;
use serde_json::{json, Value};

/// Writes `rr_metric{i="0".."2"}` with 40 samples each, 15 s apart, ending a minute ago.
async fn load(client: &reqwest::Client, base: &str) -> (i64, Vec<(i64, f64)>) {
    let start = (now_ms() / 1000 - 11 * 60) * 1000 + 250;
    let samples: Vec<(i64, f64)> = (0..40)
        .map(|k| (start + k * 15_000, k as f64 * 1.5))
        .collect();
    let ts = (0..3)
        .map(|i| {
            series(
                &[("__name__", "rr_metric"), ("i", &i.to_string())],
                &samples,
            )
        })
        .collect();
    let (status, text) = remote_write(client, base, WS, encode(ts)).await;
    assert_eq!(status, 200, "{text}");
    (start, samples)
}

fn read_request(start: i64, end: i64, streamed: bool) -> Vec<u8> {
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![
                pb::LabelMatcher {
                    r#type: pb::label_matcher::Type::Eq as i32,
                    name: "__name__".into(),
                    value: "rr_metric".into(),
                },
                pb::LabelMatcher {
                    r#type: pb::label_matcher::Type::Re as i32,
                    name: "i".into(),
                    value: "0|2".into(),
                },
            ],
            hints: None,
        }],
        accepted_response_types: if streamed {
            vec![pb::read_request::ResponseType::StreamedXorChunks as i32]
        } else {
            vec![pb::read_request::ResponseType::Samples as i32]
        },
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

async fn post_read(client: &reqwest::Client, base: &str, body: Vec<u8>) -> reqwest::Response {
    client
        .post(format!("{base}/workspaces/{WS}/api/v1/read"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        // The query API gzips on request; remote read answers snappy or a stream regardless.
        .header("Accept-Encoding", "gzip")
        .body(body)
        .send()
        .await
        .expect("send")
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).expect("gzip");
    out
}

/// HTTP's `deflate` is the zlib format.
fn inflate(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(b), &mut out).expect("zlib");
    out
}

/// Splits a streamed remote-read body into its frames, checking each CRC32C.
fn frames(mut body: &[u8]) -> Vec<pb::ChunkedReadResponse> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = prost::encoding::decode_varint(&mut body).expect("frame length") as usize;
        let crc = u32::from_be_bytes(body[..4].try_into().expect("crc"));
        let msg = &body[4..4 + len];
        assert_eq!(crc32c::crc32c(msg), crc, "frame checksum");
        out.push(pb::ChunkedReadResponse::decode(msg).expect("frame"));
        body = &body[4 + len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_parse_read_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hestia = start_in_process(dir.path()).await;
    let base = format!("http://{}", hestia.addr);
    let api = format!("{base}/workspaces/{WS}/api/v1");
    let c = reqwest::Client::new();
    let (start, samples) = load(&c, &base).await;
    let end = samples.last().expect("samples").0;

    // format_query / parse_query, GET and form POST, as in api.md.
    let (s, v) = get_json(&c, &format!("{api}/format_query?query=foo/bar")).await;
    assert_eq!(
        (s, &v),
        (200, &json!({"status": "success", "data": "foo / bar"}))
    );
    let v: Value = c
        .post(format!("{api}/parse_query"))
        .form(&[("query", "foo/bar")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["data"]["type"], "binaryExpr");
    assert_eq!(v["data"]["rhs"]["matchers"][0]["value"], "bar");
    let (s, v) = get_json(&c, &format!("{api}/parse_query?query=sum(")).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["errorType"], "bad_data");

    // Compressed on request like Prometheus' API: the same JSON once decompressed.
    let range = [
        ("query", "rr_metric * 2".to_string()),
        ("start", (start / 1000).to_string()),
        ("end", (end / 1000).to_string()),
        ("step", "15".to_string()),
    ];
    let plain = c
        .get(format!("{api}/query_range"))
        .query(&range)
        .send()
        .await
        .expect("send");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.expect("body");
    assert!(plain.len() > 1000, "{}", plain.len());
    for (encoding, decode) in [
        ("gzip", gunzip as fn(&[u8]) -> Vec<u8>),
        ("deflate", inflate),
    ] {
        let r = c
            .get(format!("{api}/query_range"))
            .query(&range)
            .header("Accept-Encoding", encoding)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-encoding"], encoding);
        let body = r.bytes().await.expect("body");
        assert!(body.len() < plain.len() / 2, "{encoding}: {}", body.len());
        assert_eq!(decode(&body), plain.to_vec(), "{encoding}");
    }

    // Remote read, raw samples.
    let r = post_read(&c, &base, read_request(start, end, false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "snappy");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&r.bytes().await.expect("body"))
        .expect("snappy");
    let resp = pb::ReadResponse::decode(raw.as_slice()).expect("ReadResponse");
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 2, "i=0 and i=2");
    for s in ts {
        let got: Vec<(i64, f64)> = s.samples.iter().map(|x| (x.timestamp, x.value)).collect();
        assert_eq!(got, samples);
    }

    // Remote read, streamed XOR chunks (40 samples fit one chunk per series).
    let r = post_read(&c, &base, read_request(start, end, true)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let frames = frames(&r.bytes().await.expect("body"));
    let series: Vec<&pb::ChunkedSeries> = frames.iter().flat_map(|f| &f.chunked_series).collect();
    assert_eq!(series.len(), 2);
    for s in series {
        let mut got = Vec::new();
        for ch in &s.chunks {
            assert_eq!(ch.r#type, pb::chunk::Encoding::Xor as i32);
            got.extend(hestia_storage::xor::XorIter::new(&ch.data).expect("xor chunk"));
        }
        assert_eq!(got, samples);
    }
    let r = post_read(&c, &base, b"not snappy".to_vec()).await;
    assert_eq!(r.status(), 400);

    // AMP's query limits: 32 days between start and end, wherever the range comes from.
    let day = 86_400;
    let (s, v) = get_json(
        &c,
        &format!(
            "{api}/query_range?query=up&start=0&end={}&step=3600",
            33 * day
        ),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["error"],
        "the query time range exceeds the limit (query length: 33d, limit: 32d)"
    );
    let (s, v) = get_json(&c, &format!("{api}/query?query=rate(rr_metric[40d])")).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("limit: 32d"),
        "{v}"
    );
    let (s, v) = get_json(
        &c,
        &format!("{api}/query?query=max_over_time(rr_metric[20d:1h] offset 20d)"),
    )
    .await;
    assert_eq!(s, 200, "an old window shorter than the limit is fine: {v}");
    let big = "x".repeat((1 << 20) + 1);
    let r = c
        .post(format!("{api}/query"))
        .form(&[("query", big.as_str())])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"].as_str().unwrap_or("").contains("1048576 bytes"),
        "{v}"
    );

    // A real client: Prometheus 2.42 answers a query by reading from Hestia.
    let prom = Prometheus::start(
        &dir.path().join("prometheus"),
        &format!(
            "remote_read:\n  - url: {base}/workspaces/{WS}/api/v1/read\n    read_recent: true\n"
        ),
        &[],
    )
    .await;
    let t = end as f64 / 1000.0;
    let v = {
        let r = c
            .get(format!("{}/api/v1/query", prom.base()))
            .query(&[
                ("query", "sum(rr_metric)".to_string()),
                ("time", format!("{t:.3}")),
            ])
            .send()
            .await
            .expect("send");
        r.json::<Value>().await.expect("json")
    };
    assert_eq!(
        v["data"]["result"][0]["value"][1],
        json!((39.0 * 1.5 * 3.0).to_string()),
        "{v}"
    );

    hestia.shutdown().await.expect("shutdown");
}

/// AMP's "2,000,000 chunks per query", lowered to 5: a query whose selections fetch more chunks
/// than that is refused with 422 naming the limit; smaller ones still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hestia = start_in_process_with(dir.path(), |cfg| {
        cfg.querier.max_fetched_chunks_per_query = 5;
    })
    .await;
    let base = format!("http://{}", hestia.addr);
    let api = format!("{base}/workspaces/{WS}/api/v1");
    let c = reqwest::Client::new();
    let (_, samples) = load(&c, &base).await;
    let t = samples.last().expect("samples").0 as f64 / 1000.0;
    let more = (3..8)
        .map(|i| {
            series(
                &[("__name__", "rr_metric"), ("i", &i.to_string())],
                &samples,
            )
        })
        .collect();
    let (status, text) = remote_write(&c, &base, WS, encode(more)).await;
    assert_eq!(status, 200, "{text}");

    let (s, v) = get_json(
        &c,
        &format!("{api}/query?query=count(rr_metric{{i=~\"[0-4]\"}})&time={t}"),
    )
    .await;
    assert_eq!(
        (s, &v["data"]["result"][0]["value"][1]),
        (200, &json!("5")),
        "{v}"
    );
    let (s, v) = get_json(&c, &format!("{api}/query?query=count(rr_metric)&time={t}")).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
    assert_eq!(
        v["error"],
        "the query hit the max number of chunks limit (limit: 5 chunks)"
    );
    // The budget is per query: two selections of 3 chunks each exceed it together.
    let (s, v) = get_json(
        &c,
        &format!("{api}/query?query=count(rr_metric{{i=~\"[0-2]\"}}) %2B count(rr_metric{{i=~\"[3-5]\"}})&time={t}"),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    hestia.shutdown().await.expect("shutdown");
}
