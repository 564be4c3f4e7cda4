//! Remote write 2.0 decode cost per series, on the same request shape as `decode.rs` (10 labels
//! and 1 sample per series, 2,000 series), with the symbols table a 2.0 sender would build.
use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

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
    #[prost(message, optional, tag = "5")]
    metadata: Option<Metadata>,
}
#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}
#[derive(Clone, PartialEq, Message)]
struct Metadata {
    #[prost(int32, tag = "1")]
    r#type: i32,
}

fn request(series: usize) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut sym = |s: String| {
        *index.entry(s.clone()).or_insert_with(|| {
            symbols.push(s);
            (symbols.len() - 1) as u32
        })
    };
    let ts: Vec<TimeSeries> = (0..series)
        .map(|i| {
            let labels = [
                ("__name__", format!("http_requests_total_{}", i % 50)),
                ("cluster", "prod-eu-1".to_string()),
                ("container", "api".to_string()),
                ("endpoint", "http".to_string()),
                ("instance", format!("10.0.{}.{}:8080", i / 250, i % 250)),
                ("job", "kubernetes-pods".to_string()),
                ("method", ["GET", "POST", "PUT"][i % 3].to_string()),
                ("namespace", "default".to_string()),
                ("pod", format!("api-7d9f8b6c5-{i:05}")),
                ("status", ["200", "404", "500"][i % 3].to_string()),
            ];
            TimeSeries {
                labels_refs: labels
                    .into_iter()
                    .flat_map(|(n, v)| [sym(n.to_string()), sym(v)])
                    .collect(),
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: 1_700_000_000_000 + i as i64,
                }],
                metadata: Some(Metadata { r#type: 1 }),
            }
        })
        .collect();
    Request {
        symbols,
        timeseries: ts,
    }
    .encode_to_vec()
}

fn bench(c: &mut Criterion) {
    const SERIES: usize = 2000;
    let raw = request(SERIES);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("compress");
    let mut g = c.benchmark_group("remote_write_v2");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("decode_per_series", |b| {
        b.iter(|| {
            let req = hestia_remote_write::decode_write_request_v2(&raw).expect("decode");
            assert_eq!(req.series.len(), SERIES);
        })
    });
    g.bench_function("snappy_and_decode_per_series", |b| {
        b.iter(|| {
            let body = hestia_remote_write::decompress(&compressed, 64 << 20).expect("snappy");
            let req = hestia_remote_write::decode_write_request_v2(&body).expect("decode");
            assert_eq!(req.series.len(), SERIES);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
