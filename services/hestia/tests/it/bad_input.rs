//! Bad remote-write and query input gets the right status and message, valid series of a
//! partially invalid request are still stored, and the server keeps serving.

use crate::common::*;

#[tokio::test]
async fn bad_input_is_refused_precisely_and_nothing_valid_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let hestia = start_in_process(dir.path()).await;
    let base = format!("http://{}", hestia.addr);
    let c = reqwest::Client::new();
    let now = now_ms();
    let good = encode(vec![series(
        &[("__name__", "ok_metric"), ("job", "a")],
        &[(now, 1.0)],
    )]);
    let url = format!("{base}/workspaces/{WS}/api/v1/remote_write");

    // Wrong Content-Encoding / Content-Type → 415.
    let r = c
        .post(&url)
        .header("Content-Encoding", "gzip")
        .header("Content-Type", "application/x-protobuf")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("snappy"));
    let r = c
        .post(&url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/json")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .post(&url)
        .header("Content-Encoding", "snappy")
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        )
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // Not snappy; snappy but not protobuf.
    let (s, m) = remote_write(&c, &base, WS, b"\xff\xff\xff\xff\xff\xff".to_vec()).await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("snappy"), "{m}");
    let junk = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\xff\x0fgarbage")
        .unwrap();
    let (s, m) = remote_write(&c, &base, WS, junk).await;
    assert_eq!(s, 400);
    assert!(m.contains("protobuf"), "{m}");

    // Compressed body over 1 MB → 413.
    let big: Vec<u8> = (0..1_100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (s, m) = remote_write(&c, &base, WS, big).await;
    assert_eq!(s, 413, "{m}");

    // A snappy header declaring 1 GiB → 400 before allocating.
    let mut lie = vec![0x80, 0x80, 0x80, 0x80, 0x04];
    lie.extend_from_slice(b"\x00abc");
    let (s, m) = remote_write(&c, &base, WS, lie).await;
    assert_eq!(s, 400);
    assert!(m.contains("exceeds the limit"), "{m}");

    // Invalid series next to valid ones: 400 with the message, valid ones stored.
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("job", "nameless")], "sample missing metric name"),
        (&[("__name__", "m"), ("job", "")], "empty value for label"),
        (&[("__name__", "m"), ("", "x")], "invalid label"),
        (
            &[("__name__", "m"), ("a", "1"), ("a", "2")],
            "duplicate label name",
        ),
        (
            &[("__name__", "m"), ("b", "1"), ("a", "2")],
            "labels not sorted",
        ),
    ];
    for (i, (labels, want)) in cases.iter().enumerate() {
        let job = format!("valid-{i}");
        let body = encode(vec![
            series(labels, &[(now, 1.0)]),
            series(
                &[("__name__", "partial_ok"), ("job", &job)],
                &[(now, i as f64)],
            ),
        ]);
        let (s, m) = remote_write(&c, &base, WS, body).await;
        assert_eq!(s, 400, "{labels:?}");
        assert!(m.contains(want), "{labels:?}: {m}");
    }
    let q = instant_query(&c, &base, WS, "count(partial_ok)", now as f64 / 1000.0).await;
    assert_eq!(
        q["data"]["result"][0]["value"][1],
        cases.len().to_string(),
        "{q}"
    );

    // A good write still works afterwards.
    let (s, m) = remote_write(&c, &base, WS, good).await;
    assert_eq!(s, 200, "{m}");

    // Malformed PromQL → 400 bad_data; unknown workspace id format → 404.
    let (s, body) = get_json(
        &c,
        &format!("{base}/workspaces/{WS}/api/v1/query?query=sum("),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(body["errorType"], "bad_data");
    assert_eq!(body["status"], "error");
    let (s, _) = get_json(
        &c,
        &format!("{base}/workspaces/not-a-workspace/api/v1/query?query=up"),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = remote_write(&c, &base, "ws-..", encode(vec![])).await;
    assert_eq!(s, 404);
    let (s, body) = get_json(
        &c,
        &format!("{base}/workspaces/{WS}/api/v1/query_range?query=up&start=10&end=1&step=1"),
    )
    .await;
    assert_eq!(s, 400, "{body}");

    // Still serving.
    let r = c.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = metrics_text(&c, &base).await;
    assert!(
        metrics.contains("hestia_discarded_samples_total{reason=\"missing_metric_name\""),
        "metrics exposition lacks discard reasons"
    );
    hestia.shutdown().await.unwrap();
}

#[tokio::test]
async fn workspaces_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let hestia = start_in_process(dir.path()).await;
    let base = format!("http://{}", hestia.addr);
    let c = reqwest::Client::new();
    let now = now_ms();
    let other = "ws-00000000-0000-4000-8000-000000000002";
    let (s, _) = remote_write(
        &c,
        &base,
        WS,
        encode(vec![series(
            &[("__name__", "iso"), ("ws", "one")],
            &[(now, 1.0)],
        )]),
    )
    .await;
    assert_eq!(s, 200);
    let q = instant_query(&c, &base, other, "iso", now as f64 / 1000.0).await;
    assert_eq!(q["data"]["result"].as_array().map(Vec::len), Some(0), "{q}");
    let (_, labels) = get_json(
        &c,
        &format!("{base}/workspaces/{other}/api/v1/label/ws/values"),
    )
    .await;
    assert_eq!(labels["data"], serde_json::json!([]));
    let q = instant_query(&c, &base, WS, "iso", now as f64 / 1000.0).await;
    assert_eq!(q["data"]["result"][0]["metric"]["ws"], "one");
    // A client cannot pick another tenant through the internal header.
    let r = c
        .get(format!("{base}/workspaces/{other}/api/v1/query"))
        .query(&[
            ("query", "iso"),
            ("time", &(now as f64 / 1000.0).to_string()),
        ])
        .header("X-Scope-OrgID", WS)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"]["result"].as_array().map(Vec::len), Some(0));
    hestia.shutdown().await.unwrap();
}
