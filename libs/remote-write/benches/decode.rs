//! Remote-write decode cost per series: snappy decompression plus protobuf decoding of a
//! Prometheus-shaped request (10 labels and 1 sample per series, 2,000 series).
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hestia_proto::prometheus as pb;
use prost::Message;

fn request(series: usize) -> Vec<u8> {
    let ts = (0..series)
        .map(|i| pb::TimeSeries {
            labels: [
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
            ]
            .into_iter()
            .map(|(n, v)| pb::Label {
                name: n.into(),
                value: v,
            })
            .collect(),
            samples: vec![pb::Sample {
                value: i as f64,
                timestamp: 1_700_000_000_000 + i as i64,
            }],
            ..Default::default()
        })
        .collect();
    pb::WriteRequest {
        timeseries: ts,
        metadata: vec![],
    }
    .encode_to_vec()
}

fn bench(c: &mut Criterion) {
    const SERIES: usize = 2000;
    let raw = request(SERIES);
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("compress");
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("decode_per_series", |b| {
        b.iter(|| {
            let req = hestia_remote_write::decode_write_request(&raw).expect("decode");
            assert_eq!(req.series.len(), SERIES);
        })
    });
    g.bench_function("snappy_and_decode_per_series", |b| {
        b.iter(|| {
            let body = hestia_remote_write::decompress(&compressed, 64 << 20).expect("snappy");
            let req = hestia_remote_write::decode_write_request(&body).expect("decode");
            assert_eq!(req.series.len(), SERIES);
        })
    });
    g.bench_function("prost_decode_per_series", |b| {
        b.iter(|| {
            let req = pb::WriteRequest::decode(raw.as_slice()).expect("decode");
            assert_eq!(req.timeseries.len(), SERIES);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
