use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use hestia_config::QuerierConfig;
use hestia_proto::prometheus as pb;
use hestia_querier::BlockStore;
use prost::Message;
use serde_json::Value;

use crate::harness::*;

fn strings(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// `(job label, values)` of each series of a matrix or vector result.
fn result_series(v: &Value) -> Vec<(String, Vec<f64>)> {
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {v}"))
        .iter()
        .map(|s| {
            let points: Vec<&Value> = match s.get("values") {
                Some(vs) => vs.as_array().unwrap().iter().collect(),
                None => vec![&s["value"]],
            };
            (
                s["metric"]["job"].as_str().unwrap_or_default().to_string(),
                points
                    .iter()
                    .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
                    .collect(),
            )
        })
        .collect()
}

fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

#[tokio::test]
async fn tenants_see_only_their_own_blocks() {
    let env = Env::new();
    let (a, b) = (tenant("tenant-a"), tenant("tenant-b"));
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    let mut sa = series("cpu", "a-job", 3, range.0, range.1, 60_000, 0.0);
    sa.extend(series("only_a", "a-job", 2, range.0, range.1, 60_000, 0.0));
    let mut sb = series("cpu", "b-job", 2, range.0, range.1, 60_000, 1e6);
    sb.extend(series("only_b", "b-job", 2, range.0, range.1, 60_000, 0.0));
    env.ship(&a, "ingester-1", range, &sa).await;
    env.ship(&b, "ingester-1", range, &sb).await;
    env.write_index(&a).await;
    env.write_index(&b).await;
    let blocks = BlockStore::start(env.bucket.clone(), env.options());
    let app = router(QuerierConfig::default(), blocks).await;

    let t = start + HOUR;
    for (me, job, names, n_cpu, base) in [
        (&a, "a-job", ["cpu", "only_a"], 3, 0.0),
        (&b, "b-job", ["cpu", "only_b"], 2, 1e6),
    ] {
        let (status, v) = get(
            &app,
            me,
            "/api/v1/query_range",
            &[
                ("query", "cpu".into()),
                ("start", secs(t)),
                ("end", secs(t + 600_000)),
                ("step", "60".into()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let got = result_series(&v);
        assert_eq!(got.len(), n_cpu, "{v}");
        for (k, (j, values)) in got.iter().enumerate() {
            assert_eq!(j, job);
            let want: Vec<f64> = (0..=10)
                .map(|i| base + k as f64 + ((t + i * 60_000) / 1000) as f64)
                .collect();
            assert_eq!(values, &want);
        }
        // Bounded to old times: the ring has no ingesters to ask about recent ones.
        let old = [("start", secs(start)), ("end", secs(start + HOUR))];
        let mut all = old.to_vec();
        all.push(("match[]", "{__name__=~\".+\"}".to_string()));
        let (_, v) = get(&app, me, "/api/v1/label/__name__/values", &old).await;
        assert_eq!(strings(&v), names);
        let (_, v) = get(&app, me, "/api/v1/label/job/values", &all).await;
        assert_eq!(strings(&v), [job]);
        let (_, v) = get(&app, me, "/api/v1/labels", &old).await;
        assert_eq!(strings(&v), ["__name__", "instance", "job"]);
        let (_, v) = get(&app, me, "/api/v1/series", &all).await;
        let jobs: BTreeSet<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["job"].as_str().unwrap())
            .collect();
        assert_eq!(jobs, BTreeSet::from([job]));
        let other = if job == "a-job" { "only_b" } else { "only_a" };
        let (_, v) = get(
            &app,
            me,
            "/api/v1/query",
            &[("query", format!("count({other})")), ("time", secs(t))],
        )
        .await;
        assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
    }
    // Each tenant's queries opened only its own blocks.
    for t in [&a, &b] {
        let headers = std::fs::read_dir(env.header_dir().join(t.as_str())).unwrap();
        assert_eq!(headers.count(), 1);
    }
    let listed: Vec<_> = env
        .store
        .take()
        .into_iter()
        .filter(|op| op.kind == "list")
        .collect();
    assert_eq!(
        listed.len(),
        2,
        "the test's index builds list; queries never: {listed:?}"
    );
}

#[tokio::test]
async fn ranges_reaching_into_the_ingesters_window_ask_them() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let blocks = BlockStore::start(env.bucket.clone(), env.options());
    let app = router(QuerierConfig::default(), blocks).await;
    let now = hestia_ring::now_ms();
    // The ring has no ingesters: a read that needs them fails, one that does not succeeds.
    let (status, v) = get(&app, &a, "/api/v1/query", &[("query", "up".into())]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let (status, v) = get(
        &app,
        &a,
        "/api/v1/query",
        &[("query", "up".into()), ("time", secs(now - 14 * HOUR))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn replica_blocks_dedup_to_one_sample_per_timestamp() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    let s = series("up", "node", 2, range.0, range.1, 15_000, 0.0);
    // RF = 3: each replica ships the same range; a fourth block overlaps the second half.
    for i in 1..=3 {
        env.ship(&a, &format!("ingester-{i}"), range, &s).await;
    }
    let half = series("up", "node", 2, start + HOUR, start + 3 * HOUR, 15_000, 0.0);
    env.ship(&a, "ingester-4", (start + HOUR, start + 3 * HOUR), &half)
        .await;
    env.write_index(&a).await;
    let blocks = BlockStore::start(env.bucket.clone(), env.options());
    let app = router(QuerierConfig::default(), blocks).await;

    let (status, v) = get(
        &app,
        &a,
        "/api/v1/query",
        &[
            ("query", "count_over_time(up[1h])".into()),
            ("time", secs(start + 90 * 60_000 + 7_500)),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let counts: Vec<f64> = result_series(&v).into_iter().flat_map(|s| s.1).collect();
    assert_eq!(counts, [240.0, 240.0], "one sample per 15 s in (30m, 90m]");

    // Remote read returns the raw samples.
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: start + 3 * HOUR,
            matchers: vec![pb::LabelMatcher {
                r#type: pb::label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: "up".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let (status, resp) = post(&app, &a, "/api/v1/read", body).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&resp));
    let resp = pb::ReadResponse::decode(
        snap::raw::Decoder::new()
            .decompress_vec(&resp)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 2);
    for (k, series) in ts.iter().enumerate() {
        let got: Vec<(i64, f64)> = series
            .samples
            .iter()
            .map(|x| (x.timestamp, x.value))
            .collect();
        let want: Vec<(i64, f64)> = (start..start + 3 * HOUR)
            .step_by(15_000)
            .map(|t| (t, k as f64 + (t / 1000) as f64))
            .collect();
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn block_chunks_count_against_the_chunk_limit() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    // 480 samples per series: 4 chunks of 120; 2 series, 3 replica blocks: 24 chunks.
    let s = series("up", "node", 2, range.0, range.1, 15_000, 0.0);
    for i in 1..=3 {
        env.ship(&a, &format!("ingester-{i}"), range, &s).await;
    }
    env.write_index(&a).await;
    let run = |limit: usize| {
        let env = &env;
        let a = a.clone();
        async move {
            let blocks = BlockStore::start(env.bucket.clone(), env.options());
            let cfg = QuerierConfig {
                max_fetched_chunks_per_query: limit,
                ..QuerierConfig::default()
            };
            let app = router(cfg, blocks).await;
            get(
                &app,
                &a,
                "/api/v1/query",
                &[
                    ("query", "count_over_time(up[2h])".into()),
                    ("time", secs(range.1 - 1)),
                ],
            )
            .await
        }
    };
    let (status, v) = run(24).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = run(23).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("max number of chunks"),
        "{v}"
    );
}

#[tokio::test]
async fn a_block_that_cannot_be_read_fails_the_query() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    let s = series("up", "node", 2, range.0, range.1, 15_000, 0.0);
    env.ship(&a, "ingester-1", range, &s).await;
    let broken = env.ship(&a, "ingester-2", range, &s).await;
    env.write_index(&a).await;
    std::fs::remove_file(env.block_file(&a, broken, "chunks/000001")).unwrap();
    let blocks = BlockStore::start(env.bucket.clone(), env.options());
    let app = router(QuerierConfig::default(), blocks).await;
    let (status, v) = get(
        &app,
        &a,
        "/api/v1/query",
        &[("query", "up".into()), ("time", secs(start + HOUR))],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "error");
    assert!(
        v["error"].as_str().unwrap().contains(&broken.to_string()),
        "{v}"
    );
    // Series and labels read only the index: they still answer.
    let (status, v) = get(
        &app,
        &a,
        "/api/v1/series",
        &[
            ("match[]", "up".into()),
            ("start", secs(start)),
            ("end", secs(start + HOUR)),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn caches_stay_within_their_bounds() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let mut block_bytes = 0;
    for b in 0..6 {
        let range = (start + b * 2 * HOUR, start + (b + 1) * 2 * HOUR);
        let s = series(
            "up",
            &format!("job{}", b % 3),
            200,
            range.0,
            range.1,
            30_000,
            0.0,
        );
        let id = env.ship(&a, "ingester-1", range, &s).await;
        for f in ["index", "chunks/000001"] {
            block_bytes += std::fs::metadata(env.block_file(&a, id, f)).unwrap().len();
        }
    }
    env.write_index(&a).await;
    let range_params = |q: &str| {
        [
            ("query", q.to_string()),
            ("start", secs(start + HOUR)),
            ("end", secs(start + 11 * HOUR)),
            ("step", "600".into()),
        ]
    };

    // With room for everything, repeating a query reads nothing from the bucket.
    let blocks = BlockStore::start(env.bucket.clone(), env.options());
    let app = router(QuerierConfig::default(), blocks.clone()).await;
    let params = range_params("sum(rate(up[10m]))");
    let (_, first) = get(&app, &a, "/api/v1/query_range", &params).await;
    let cold = blocks.stats();
    env.store.take();
    let (_, again) = get(&app, &a, "/api/v1/query_range", &params).await;
    let warm = blocks.stats();
    assert_eq!(first["data"], again["data"]);
    assert_eq!(warm.pages.misses, cold.pages.misses);
    assert!(warm.pages.hits > cold.pages.hits);
    assert_eq!(env.store.take(), vec![], "a warm query reads nothing");
    assert_eq!(cold.open_blocks, 6);
    let header_per_block = cold.open_header_bytes / 6;
    eprintln!(
        "cold: {} B in {} requests ({:.1}% of the blocks' {block_bytes} B); {} B of headers per block",
        cold.pages.fetched_bytes,
        cold.pages.fetches,
        100.0 * cold.pages.fetched_bytes as f64 / block_bytes as f64,
        header_per_block,
    );

    let mut opts = env.options();
    opts.cache_bytes = 256 << 10;
    opts.open_header_bytes = header_per_block * 5 / 2;
    let blocks = BlockStore::start(env.bucket.clone(), opts.clone());
    let app = router(QuerierConfig::default(), blocks.clone()).await;
    let queries = [
        "sum(rate(up[10m]))",
        "count_over_time(up{instance=~\"i00.*\"}[1h])",
        "max(up{job=\"job1\"})",
        "sum(rate(up[10m]))",
    ];
    let mut answers = Vec::new();
    for q in queries {
        let (status, v) = get(&app, &a, "/api/v1/query_range", &range_params(q)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        answers.push(v["data"].clone());
        let st = blocks.stats();
        assert!(st.pages.cached_bytes <= opts.cache_bytes, "{st:?}");
        assert!(st.open_header_bytes <= opts.open_header_bytes, "{st:?}");
        assert_eq!(st.open_blocks, 2, "{st:?}");
    }
    assert_eq!(answers[0], answers[3]);
    assert_eq!(answers[0], first["data"]);
    let st = blocks.stats();
    assert!(
        st.pages.fetched_bytes > opts.cache_bytes as u64,
        "the cache evicted: {st:?}"
    );
    eprintln!(
        "bounded: {} B in {} requests for 4 queries over 6 blocks; page hit rate {:.1}%",
        st.pages.fetched_bytes,
        st.pages.fetches,
        100.0 * st.pages.hits as f64 / (st.pages.hits + st.pages.misses) as f64
    );
}

#[tokio::test]
async fn a_restarted_store_reopens_blocks_from_saved_headers() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    let s = series("up", "node", 500, range.0, range.1, 15_000, 0.0);
    let id = env.ship(&a, "ingester-1", range, &s).await;
    env.write_index(&a).await;
    let params = [
        ("query", "sum(up{instance=~\"i01.*\"})".to_string()),
        ("time", secs(start + HOUR)),
    ];
    let run = || async {
        env.store.take();
        let blocks = BlockStore::start(env.bucket.clone(), env.options());
        let app = router(QuerierConfig::default(), blocks).await;
        let (status, v) = get(&app, &a, "/api/v1/query", &params).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let ops: Vec<Op> = env
            .store
            .take()
            .into_iter()
            .filter(|op| !op.path.ends_with("bucket-index.json.gz"))
            .collect();
        (v["data"].clone(), ops)
    };
    let (first, cold) = run().await;
    let header = env
        .header_dir()
        .join("tenant-a")
        .join(format!("{id}.header"));
    let header_size = std::fs::metadata(&header).unwrap().len();
    let (second, restarted) = run().await;
    assert_eq!(first, second);
    let is_header = |op: &Op| {
        op.path.ends_with("meta.json")
            || op.path.ends_with("tombstones")
            || (op.path.ends_with("/index") && op.kind == "head")
    };
    assert!(cold.iter().any(is_header), "{cold:?}");
    assert!(!restarted.iter().any(is_header), "{restarted:?}");
    let bytes = |ops: &[Op]| ops.iter().map(|o| o.bytes).sum::<u64>();
    // The header's TOC, symbols and postings offset table are not fetched again.
    let saved = bytes(&cold) - bytes(&restarted);
    assert!(
        saved <= header_size && saved + 512 >= header_size,
        "saved {saved} B of a {header_size} B header file"
    );
    // meta.json, tombstones and index: a HEAD each; meta.json, tombstones, the index's first 5
    // bytes, TOC, symbols and postings offset table: a GET each.
    assert_eq!(cold.len() - restarted.len(), 9, "{cold:?}\n{restarted:?}");
    let index_size = std::fs::metadata(env.block_file(&a, id, "index"))
        .unwrap()
        .len();
    let chunks_size = std::fs::metadata(env.block_file(&a, id, "chunks/000001"))
        .unwrap()
        .len();
    eprintln!(
        "block: index {index_size} B, chunks {chunks_size} B; cold query {} B in {} requests, \
         after restart {} B in {} requests; saved header {header_size} B",
        bytes(&cold),
        cold.len(),
        bytes(&restarted),
        restarted.len()
    );

    // A damaged header file is ignored and rewritten.
    std::fs::write(&header, b"garbage").unwrap();
    let (third, reread) = run().await;
    assert_eq!(first, third);
    assert!(reread.iter().any(is_header));
    assert_eq!(std::fs::metadata(&header).unwrap().len(), header_size);
}

#[tokio::test]
async fn new_blocks_become_visible_after_the_index_refresh() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    env.ship(
        &a,
        "ingester-1",
        range,
        &series("old", "node", 1, range.0, range.1, 60_000, 0.0),
    )
    .await;
    env.write_index(&a).await;
    let interval = Duration::from_millis(300);
    let names = |app: axum::Router| {
        let a = a.clone();
        async move {
            let (status, v) = get(
                &app,
                &a,
                "/api/v1/label/__name__/values",
                &[("start", secs(start)), ("end", secs(start + HOUR))],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            strings(&v)
        }
    };
    let wait_for = |app: axum::Router, want: Vec<&'static str>| async move {
        let t0 = Instant::now();
        while names(app.clone()).await != want {
            assert!(
                t0.elapsed() < 10 * interval,
                "not visible after {:?}",
                t0.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        t0.elapsed()
    };

    // Another process (the compactor, later) maintains the index: this querier only reloads it.
    let mut opts = env.options();
    opts.sync_interval = interval;
    let app = router(
        QuerierConfig::default(),
        BlockStore::start(env.bucket.clone(), opts.clone()),
    )
    .await;
    assert_eq!(names(app.clone()).await, ["old"]);
    env.ship(
        &a,
        "ingester-1",
        range,
        &series("new", "node", 1, range.0, range.1, 60_000, 0.0),
    )
    .await;
    tokio::time::sleep(2 * interval).await;
    assert_eq!(names(app.clone()).await, ["old"], "not in the index yet");
    env.write_index(&a).await;
    let took = wait_for(app, vec!["new", "old"]).await;
    eprintln!("visible {took:?} after the index was written (refresh every {interval:?})");

    // This querier keeps the index current itself.
    opts.update_bucket_index = true;
    let app = router(
        QuerierConfig::default(),
        BlockStore::start(env.bucket.clone(), opts),
    )
    .await;
    assert_eq!(names(app.clone()).await, ["new", "old"]);
    env.ship(
        &a,
        "ingester-1",
        range,
        &series("newer", "node", 1, range.0, range.1, 60_000, 0.0),
    )
    .await;
    let took = wait_for(app, vec!["new", "newer", "old"]).await;
    eprintln!("visible {took:?} after the upload (refresh every {interval:?})");
}

/// Label names of `tenant`'s series in `[start, start + 1h]`.
async fn metric_names(
    app: &axum::Router,
    tenant: &hestia_model::TenantId,
    start: i64,
) -> Vec<String> {
    let (status, v) = get(
        app,
        tenant,
        "/api/v1/label/__name__/values",
        &[("start", secs(start)), ("end", secs(start + HOUR))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    strings(&v)
}

#[tokio::test]
async fn blocks_marked_for_deletion_long_ago_are_not_opened() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    let ship = |name: &'static str, ingester: &'static str| {
        let s = series(name, "node", 2, range.0, range.1, 60_000, 0.0);
        let (env, a) = (&env, &a);
        async move { env.ship(a, ingester, range, &s).await }
    };
    let kept = ship("kept", "ingester-1").await;
    // deletion_delay 12 h: a block marked 1 h ago is still read, one marked 7 h ago (more than
    // half the delay) is not, and may be deleted at any time: its files are gone here.
    let recent = ship("recent", "ingester-2").await;
    let old = ship("old", "ingester-3").await;
    env.write_index_with_marks(
        &a,
        &[
            (recent, Duration::from_secs(3600)),
            (old, Duration::from_secs(7 * 3600)),
        ],
    )
    .await;
    std::fs::remove_dir_all(env.block_file(&a, old, "")).unwrap();
    let blocks = BlockStore::start(env.bucket.clone(), env.options());
    let app = router(QuerierConfig::default(), blocks.clone()).await;

    assert_eq!(metric_names(&app, &a, start).await, ["kept", "recent"]);
    let (status, v) = get(
        &app,
        &a,
        "/api/v1/query",
        &[
            ("query", "count({__name__=~\".+\"})".into()),
            ("time", secs(start + HOUR)),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(result_series(&v)[0].1, [4.0]);
    assert_eq!(blocks.stats().open_blocks, 2);
    let mut headers: Vec<String> = std::fs::read_dir(env.header_dir().join(a.as_str()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    headers.sort();
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(headers.iter().all(|h| !h.starts_with(&old.to_string())));
    assert!(headers.iter().any(|h| h.starts_with(&kept.to_string())));
}

#[tokio::test]
async fn a_block_is_closed_once_its_mark_is_older_than_the_delay() {
    let env = Env::new();
    let a = tenant("tenant-a");
    let start = old_range_start();
    let range = (start, start + 2 * HOUR);
    let source = series("source", "node", 2, range.0, range.1, 60_000, 0.0);
    let output = series("output", "node", 2, range.0, range.1, 60_000, 0.0);
    let source_id = env.ship(&a, "ingester-1", range, &source).await;
    env.ship(&a, "compactor", range, &output).await;
    env.write_index_with_marks(&a, &[(source_id, Duration::ZERO)])
        .await;
    let mut opts = env.options();
    opts.sync_interval = Duration::from_millis(200);
    opts.ignore_deletion_marks_delay = Some(Duration::from_secs(2));
    let blocks = BlockStore::start(env.bucket.clone(), opts);
    let app = router(QuerierConfig::default(), blocks.clone()).await;

    // Marked just now: still read.
    assert_eq!(metric_names(&app, &a, start).await, ["output", "source"]);
    assert_eq!(blocks.stats().open_blocks, 2);
    let t0 = Instant::now();
    while metric_names(&app, &a, start).await != ["output"] {
        assert!(t0.elapsed() < Duration::from_secs(5), "still read");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next index refresh closes it and removes its saved header.
    while blocks.stats().open_blocks != 1 {
        assert!(t0.elapsed() < Duration::from_secs(6), "still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let headers = std::fs::read_dir(env.header_dir().join(a.as_str())).unwrap();
    assert_eq!(headers.count(), 1);
    eprintln!("ignored {:?} after the mark", t0.elapsed());
}
