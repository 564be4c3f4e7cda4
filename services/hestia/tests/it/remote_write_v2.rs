//! Remote write 2.0 (`io.prometheus.write.v2.Request`) through `hestia all`: symbols, float
//! samples, a native histogram, an exemplar and metadata in; 204 with the `…-Written` headers;
//! the data back through the query API; partial refusals reported in the headers.

use crate::common::*;
use hestia_proto::write_v2 as v2;
use prost::Message;
use serde_json::json;

const CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// Interns strings into a request's symbol table (symbol 0 is the empty string).
struct Symbols(Vec<String>);

impl Symbols {
    fn new() -> Self {
        Self(vec![String::new()])
    }

    fn r(&mut self, s: &str) -> u32 {
        match self.0.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                self.0.push(s.to_string());
                (self.0.len() - 1) as u32
            }
        }
    }

    fn labels(&mut self, pairs: &[(&str, &str)]) -> Vec<u32> {
        pairs
            .iter()
            .flat_map(|(n, v)| [self.r(n), self.r(v)])
            .collect()
    }
}

struct Written {
    status: u16,
    body: String,
    samples: String,
    histograms: String,
    exemplars: String,
}

async fn write_v2(c: &reqwest::Client, base: &str, req: &v2::Request) -> Written {
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy");
    let r = c
        .post(format!("{base}/workspaces/{WS}/api/v1/remote_write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", CONTENT_TYPE)
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(body)
        .send()
        .await
        .expect("send");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<missing>")
            .to_string()
    };
    let (samples, histograms, exemplars) = (
        header("x-prometheus-remote-write-samples-written"),
        header("x-prometheus-remote-write-histograms-written"),
        header("x-prometheus-remote-write-exemplars-written"),
    );
    let status = r.status().as_u16();
    Written {
        status,
        body: r.text().await.unwrap_or_default(),
        samples,
        histograms,
        exemplars,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_0_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hestia = start_in_process(dir.path()).await;
    let base = format!("http://{}", hestia.addr);
    let api = format!("{base}/workspaces/{WS}/api/v1");
    let c = reqwest::Client::new();
    let t0 = (now_ms() / 1000 - 120) * 1000;

    let mut sym = Symbols::new();
    let counter = v2::TimeSeries {
        labels_refs: sym.labels(&[("__name__", "v2_requests_total"), ("job", "api")]),
        samples: (0..3)
            .map(|k| v2::Sample {
                value: 10.0 * k as f64,
                timestamp: t0 + k * 15_000,
                start_timestamp: t0 - 60_000,
            })
            .collect(),
        exemplars: vec![v2::Exemplar {
            labels_refs: sym.labels(&[("trace_id", "4bf92f3577b34da6")]),
            value: 20.0,
            timestamp: t0 + 30_000,
        }],
        metadata: Some(v2::Metadata {
            r#type: v2::metadata::MetricType::Counter as i32,
            help_ref: sym.r("Requests served."),
            unit_ref: 0,
        }),
        ..Default::default()
    };
    let histogram = v2::TimeSeries {
        labels_refs: sym.labels(&[("__name__", "v2_latency_seconds"), ("job", "api")]),
        histograms: vec![v2::Histogram {
            count: Some(v2::histogram::Count::CountInt(6)),
            sum: 4.5,
            schema: 0,
            zero_threshold: 1e-128,
            zero_count: Some(v2::histogram::ZeroCount::ZeroCountInt(1)),
            positive_spans: vec![v2::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_deltas: vec![2, 1],
            timestamp: t0 + 30_000,
            ..Default::default()
        }],
        ..Default::default()
    };
    let req = v2::Request {
        symbols: sym.0.clone(),
        timeseries: vec![counter, histogram],
    };
    let w = write_v2(&c, &base, &req).await;
    assert_eq!(w.status, 204, "{}", w.body);
    assert_eq!(
        (
            w.samples.as_str(),
            w.histograms.as_str(),
            w.exemplars.as_str()
        ),
        ("3", "1", "1")
    );

    let t = (t0 + 30_000) as f64 / 1000.0;
    let v = instant_query(&c, &base, WS, "v2_requests_total", t).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "20", "{v}");
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "api");
    let v = instant_query(&c, &base, WS, "histogram_count(v2_latency_seconds)", t).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "6", "{v}");
    let (s, v) = get_json(&c, &format!("{api}/metadata?metric=v2_requests_total")).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["data"]["v2_requests_total"],
        json!([{"type": "counter", "help": "Requests served.", "unit": ""}]),
        "{v}"
    );
    let (s, v) = get_json(
        &c,
        &format!(
            "{api}/query_exemplars?query=v2_requests_total&start={}&end={}",
            t0 / 1000,
            t0 / 1000 + 60
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"][0]["exemplars"][0]["labels"]["trace_id"], "4bf92f3577b34da6",
        "{v}"
    );

    // One invalid series (no metric name) among valid ones: 400, and the headers count what was
    // still written.
    let mut sym = Symbols::new();
    let req = v2::Request {
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: sym.labels(&[("job", "no_name")]),
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: t0 + 45_000,
                    start_timestamp: 0,
                }],
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: sym.labels(&[("__name__", "v2_requests_total"), ("job", "api")]),
                samples: vec![v2::Sample {
                    value: 35.0,
                    timestamp: t0 + 45_000,
                    start_timestamp: 0,
                }],
                ..Default::default()
            },
        ],
        symbols: sym.0,
    };
    let w = write_v2(&c, &base, &req).await;
    assert_eq!(w.status, 400, "{}", w.body);
    assert_eq!((w.samples.as_str(), w.histograms.as_str()), ("1", "0"));
    let v = instant_query(&c, &base, WS, "v2_requests_total", t + 15.0).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "35", "{v}");

    // Malformed 2.0 requests: a symbol reference out of range; samples and histograms together.
    let bad_ref = v2::Request {
        symbols: vec![String::new(), "__name__".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 7],
            samples: vec![v2::Sample {
                value: 1.0,
                timestamp: t0,
                start_timestamp: 0,
            }],
            ..Default::default()
        }],
    };
    let w = write_v2(&c, &base, &bad_ref).await;
    assert_eq!(w.status, 400);
    assert!(
        w.body.contains("symbol reference out of range"),
        "{}",
        w.body
    );
    let mut both = req.clone();
    both.timeseries[1].histograms = vec![v2::Histogram::default()];
    let w = write_v2(&c, &base, &both).await;
    assert_eq!(w.status, 400);
    assert!(w.body.contains("both samples and histograms"), "{}", w.body);

    hestia.shutdown().await.expect("shutdown");
}
