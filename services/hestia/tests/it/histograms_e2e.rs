//! Native histograms and exemplars end to end through `hestia all`: remote write (integer, float
//! and custom-bucket histograms, a histogram stale marker, exemplars), the query API's histogram
//! JSON, `histogram_quantile`/`histogram_count`/`rate` over native histograms, and
//! `/api/v1/query_exemplars`.

use crate::common::*;
use hestia_proto::prometheus as pb;
use prost::Message;

fn labels(pairs: &[(&str, &str)]) -> Vec<pb::Label> {
    pairs
        .iter()
        .map(|(n, v)| pb::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn span(offset: i32, length: u32) -> pb::BucketSpan {
    pb::BucketSpan { offset, length }
}

/// Integer histogram after `i` scrapes: buckets (0.5,1], (1,2], (2,4] grow by 2, 1, 1.
fn int_hist(t: i64, i: u64) -> pb::Histogram {
    let i = i as i64;
    pb::Histogram {
        count: Some(pb::histogram::Count::CountInt(4 * i as u64)),
        sum: 3.5 * i as f64,
        schema: 0,
        zero_threshold: 1e-128,
        zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(0)),
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![2 * i, -i, 0],
        reset_hint: pb::histogram::ResetHint::No as i32,
        timestamp: t,
        ..Default::default()
    }
}

fn float_hist(t: i64) -> pb::Histogram {
    pb::Histogram {
        count: Some(pb::histogram::Count::CountFloat(3.0)),
        sum: 2.5,
        schema: 1,
        zero_count: Some(pb::histogram::ZeroCount::ZeroCountFloat(0.0)),
        positive_spans: vec![span(0, 2)],
        positive_counts: vec![1.0, 2.0],
        reset_hint: pb::histogram::ResetHint::Gauge as i32,
        timestamp: t,
        ..Default::default()
    }
}

/// A request with one series whose histograms are raw bytes (so fields newer than our prost
/// types, like `custom_values` = 16, can be sent).
fn raw_request(series_labels: &[(&str, &str)], histograms: &[Vec<u8>]) -> Vec<u8> {
    let mut ts = pb::TimeSeries {
        labels: labels(series_labels),
        ..Default::default()
    }
    .encode_to_vec();
    for h in histograms {
        ts.push(0x22); // field 4, length-delimited
        prost::encoding::encode_varint(h.len() as u64, &mut ts);
        ts.extend_from_slice(h);
    }
    let mut req = vec![0x0a]; // field 1
    prost::encoding::encode_varint(ts.len() as u64, &mut req);
    req.extend_from_slice(&ts);
    snap::raw::Encoder::new()
        .compress_vec(&req)
        .expect("snappy")
}

/// A custom-bucket histogram: bounds 1, 5 (+Inf implied), counts 1, 2, 1.
fn custom_hist(t: i64) -> Vec<u8> {
    let mut h = pb::Histogram {
        count: Some(pb::histogram::Count::CountInt(4)),
        sum: 12.0,
        schema: -53,
        zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(0)),
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![1, 1, -1],
        timestamp: t,
        ..Default::default()
    }
    .encode_to_vec();
    h.extend_from_slice(&[0x82, 0x01, 16]); // field 16, packed, 2 doubles
    h.extend_from_slice(&1.0f64.to_le_bytes());
    h.extend_from_slice(&5.0f64.to_le_bytes());
    h
}

fn result(v: &serde_json::Value) -> &Vec<serde_json::Value> {
    v["data"]["result"].as_array().expect("result array")
}

fn scalar_of(v: &serde_json::Value) -> f64 {
    let r = result(v);
    assert_eq!(r.len(), 1, "{v}");
    r[0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("float")
}

#[tokio::test]
async fn native_histograms_and_exemplars_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let hestia = start_in_process(dir.path()).await;
    let base = format!("http://{}", hestia.addr);
    let c = reqwest::Client::new();
    // Whole seconds so the query time lands exactly on the last sample.
    let now = now_ms() / 1000 * 1000;
    let t0 = now - 19 * 15_000;

    // 20 integer histograms with exemplars, one request per scrape as Prometheus sends them.
    for i in 0..20u64 {
        let t = t0 + i as i64 * 15_000;
        let ts = pb::TimeSeries {
            labels: labels(&[("__name__", "rpc_seconds"), ("job", "e2e")]),
            histograms: vec![int_hist(t, i + 1)],
            exemplars: vec![pb::Exemplar {
                labels: labels(&[("trace_id", &format!("trace{i}"))]),
                value: 0.75,
                timestamp: t,
            }],
            ..Default::default()
        };
        let (s, m) = remote_write(&c, &base, WS, encode(vec![ts])).await;
        assert_eq!(s, 200, "{m}");
    }
    // A float gauge histogram, and a series that ends with a histogram stale marker.
    let gone = |t: i64, stale: bool| pb::TimeSeries {
        labels: labels(&[("__name__", "gone"), ("job", "e2e")]),
        histograms: vec![pb::Histogram {
            sum: if stale {
                f64::from_bits(0x7ff0_0000_0000_0002)
            } else {
                1.0
            },
            ..float_hist(t)
        }],
        ..Default::default()
    };
    let fh = pb::TimeSeries {
        labels: labels(&[("__name__", "gauge_hist")]),
        histograms: vec![float_hist(now)],
        ..Default::default()
    };
    let body = encode(vec![
        fh,
        gone(now - 30_000, false),
        gone(now - 15_000, true),
    ]);
    let (s, m) = remote_write(&c, &base, WS, body).await;
    assert_eq!(s, 200, "{m}");
    let (s, m) = remote_write(
        &c,
        &base,
        WS,
        raw_request(&[("__name__", "nhcb")], &[custom_hist(now)]),
    )
    .await;
    assert_eq!(s, 200, "{m}");

    // Invalid histograms are refused with Mimir's messages; re-sends are idempotent.
    let mut bad = int_hist(now, 1);
    bad.schema = 9;
    let ts = pb::TimeSeries {
        labels: labels(&[("__name__", "bad_hist")]),
        histograms: vec![bad],
        ..Default::default()
    };
    let (s, m) = remote_write(&c, &base, WS, encode(vec![ts])).await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("invalid schema: 9"), "{m}");
    let mut bad = int_hist(now, 1);
    bad.positive_deltas.pop();
    let ts = pb::TimeSeries {
        labels: labels(&[("__name__", "bad_hist")]),
        histograms: vec![bad],
        ..Default::default()
    };
    let (s, m) = remote_write(&c, &base, WS, encode(vec![ts])).await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("spans need 3 buckets, have 2 buckets"), "{m}");
    let again = pb::TimeSeries {
        labels: labels(&[("__name__", "rpc_seconds"), ("job", "e2e")]),
        histograms: vec![int_hist(now, 20)],
        ..Default::default()
    };
    let (s, m) = remote_write(&c, &base, WS, encode(vec![again])).await;
    assert_eq!(s, 200, "exact re-send: {m}");

    let t_s = now as f64 / 1000.0;
    // The histogram JSON of /api/v1/query.
    let v = instant_query(&c, &base, WS, "rpc_seconds", t_s).await;
    let r = result(&v);
    assert_eq!(r.len(), 1, "{v}");
    assert!(r[0].get("value").is_none(), "{v}");
    let h = &r[0]["histogram"];
    assert_eq!(h[0].as_f64(), Some(t_s), "{v}");
    assert_eq!(h[1]["count"], "80", "{v}");
    assert_eq!(h[1]["sum"], "70", "{v}");
    assert_eq!(
        h[1]["buckets"],
        serde_json::json!([
            [0, "0.5", "1", "40"],
            [0, "1", "2", "20"],
            [0, "2", "4", "20"]
        ]),
        "{v}"
    );
    let v = instant_query(&c, &base, WS, "gauge_hist", t_s).await;
    assert_eq!(result(&v)[0]["histogram"][1]["count"], "3", "{v}");
    let v = instant_query(&c, &base, WS, "gone", t_s).await;
    assert!(result(&v).is_empty(), "stale marker ends the series: {v}");
    let v = instant_query(&c, &base, WS, "histogram_quantile(0.5, nhcb)", t_s).await;
    let q = scalar_of(&v);
    assert!(q > 1.0 && q <= 5.0, "custom buckets: {v}");

    // Functions over native histograms through the HTTP API.
    let v = instant_query(&c, &base, WS, "histogram_count(rpc_seconds)", t_s).await;
    assert_eq!(scalar_of(&v), 80.0);
    let v = instant_query(
        &c,
        &base,
        WS,
        "histogram_quantile(0.5, rate(rpc_seconds[5m]))",
        t_s,
    )
    .await;
    // Half of the observations are in (0.5, 1]: the median is that bucket's upper bound.
    assert!((scalar_of(&v) - 1.0).abs() < 1e-9, "{v}");
    let v = instant_query(&c, &base, WS, "histogram_count(rate(rpc_seconds[5m]))", t_s).await;
    let per_second = scalar_of(&v);
    assert!(
        (per_second - 4.0 / 15.0).abs() < 0.03,
        "4 observations per 15 s: {v}"
    );

    // query_range returns `histograms`.
    let r = c
        .get(format!("{base}/workspaces/{WS}/api/v1/query_range"))
        .query(&[
            ("query", "rpc_seconds"),
            ("start", &format!("{:.3}", t_s - 30.0)),
            ("end", &format!("{t_s:.3}")),
            ("step", "15"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let hs = v["data"]["result"][0]["histograms"]
        .as_array()
        .expect("histograms");
    assert_eq!(hs.len(), 3, "{v}");
    assert_eq!(hs[2][1]["count"], "80");

    // Exemplars of every selector in the expression.
    let url = format!("{base}/workspaces/{WS}/api/v1/query_exemplars");
    let r = c
        .get(&url)
        .query(&[
            (
                "query",
                "histogram_quantile(0.9, sum by (le) (rate(rpc_seconds{job=\"e2e\"}[5m])))",
            ),
            ("start", &format!("{:.3}", (t0 as f64 / 1000.0) + 14.0)),
            ("end", &format!("{t_s:.3}")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["status"], "success");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "{v}");
    assert_eq!(
        data[0]["seriesLabels"],
        serde_json::json!({"__name__": "rpc_seconds", "job": "e2e"})
    );
    let ex = data[0]["exemplars"].as_array().unwrap();
    assert_eq!(ex.len(), 19, "the first exemplar is before start: {v}");
    assert_eq!(ex[0]["labels"], serde_json::json!({"trace_id": "trace1"}));
    assert_eq!(ex[0]["value"], "0.75");
    assert_eq!(
        ex[18]["timestamp"].as_f64(),
        Some(t_s),
        "timestamps are float seconds: {v}"
    );
    let r = c
        .post(&url)
        .form(&[("query", "gauge_hist")])
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"], serde_json::json!([]), "{v}");
    let (s, v) = get_json(&c, &format!("{url}?query=rate(")).await;
    assert_eq!((s, &v["errorType"]), (400, &serde_json::json!("bad_data")));

    hestia.shutdown().await.unwrap();
}
