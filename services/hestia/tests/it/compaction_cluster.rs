//! The compactor in the multi-process cluster (`deploy/local/cluster`, RF=3, two compactors,
//! authentication on), driven as an operator would: `hestia admin blocks list` and `hestia admin
//! compact --now` through a voter's admin API, `hestia admin backfill`, and the AWS CLI's
//! `amp update-workspace-configuration`.
//!
//! - Writes acknowledged over several 1-minute block ranges are shipped by every replica; after
//!   one pass the bucket holds one live block per range, whose samples (`promtool tsdb dump`,
//!   Prometheus 2.42, on a copy) are exactly the acknowledged ones, and PromQL answers the same
//!   from the compacted blocks as from the replicas.
//! - Retention: backfilled blocks older than the workspace's `retentionPeriodInDays` are gone
//!   after one pass, newer ones stay, and after raising the retention old blocks stay. The admin
//!   routes' errors: unknown workspace 404, another account's admin 403, no compactor 503; the
//!   operator's calls are in the audit log.
//! - A compactor SIGKILLed mid-pass: the other one takes its tenants over once the ring forgets
//!   it, and no sample is lost or doubled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hestia_control_plane::compactor_api::{CompactResponse, WorkspaceBlocks};
use hestia_control_plane::compactors::BlockRow;
use serde_json::{json, Value};

use crate::common::cluster::{wait_active, LocalCluster, CP_API};
use crate::common::prometheus::{create_blocks_from_openmetrics, promtool};
use crate::common::{encode, now_ms, series};

const MINUTE: i64 = 60_000;
/// Block ranges written (1 minute each).
const RANGES: i64 = 4;
/// One sample per series every 5 s: 12 per series and range.
const STEP: i64 = 5_000;

/// Samples by series (as Go prints labels) and timestamp.
type Samples = BTreeMap<String, BTreeMap<i64, f64>>;

/// The cluster of these tests: 1-minute blocks shipped every second, compactors that merge the
/// replicas of a range only (no longer levels) and start tenants at once, queriers that read blocks for
/// anything older than 70 s and refresh the bucket index every second.
fn fast_blocks(deletion_delay: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HESTIA_BLOCK_RANGE", "1m".into()),
        ("HESTIA_SHIP_INTERVAL", "1s".into()),
        ("HESTIA_BUCKET_INDEX_UPDATE_INTERVAL", "1s".into()),
        ("HESTIA_QUERY_INGESTERS_WITHIN", "70s".into()),
        ("HESTIA_QUERY_STORE_AFTER", "0s".into()),
        ("HESTIA_COMPACTOR_BLOCK_RANGES", "1m".into()),
        ("HESTIA_COMPACTOR_FIRST_LEVEL_WAIT", "0s".into()),
        // No wait: the compactors' first scheduled pass (at start, before any data) finds the
        // ring stable, so the next is an hour later and only the passes the tests ask for
        // compact (a pass that found the ring changing is retried within seconds).
        ("HESTIA_COMPACTOR_WAIT_STABILITY", "0s".into()),
        ("HESTIA_COMPACTOR_DELETION_DELAY", deletion_delay.into()),
    ]
}

fn up(env: &[(&'static str, String)]) -> LocalCluster {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    LocalCluster::up_with_auth_env(&env)
}

/// The operator, as `hestia admin`, the AWS CLI and an HTTP client.
struct Operator {
    key: (String, String),
    /// Every request carries the operator's key (HTTP Basic).
    http: reqwest::Client,
}

impl Operator {
    async fn of(cluster: &LocalCluster) -> Operator {
        let key = cluster.operator_key().await;
        let basic = reqwest::Client::new()
            .get("http://x/")
            .basic_auth(&key.0, Some(&key.1))
            .build()
            .expect("request")
            .headers()["authorization"]
            .clone();
        let headers =
            reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, basic)]);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client");
        Operator { key, http }
    }

    /// A command with the operator's key in the environment (no profile, no shared files).
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("AWS_ACCESS_KEY_ID", &self.key.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.key.1)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("HESTIA_ENDPOINT")
            .env_remove("HESTIA_CONFIG");
        c
    }

    /// `hestia admin --endpoint <voter> ARGS`.
    fn admin(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_hestia"))
            .args(["admin", "--endpoint", CP_API])
            .args(args)
            .output()
            .expect("run hestia admin")
    }

    fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(
            out.status.success(),
            "hestia admin {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `hestia admin blocks list WS --json`.
    fn blocks(&self, ws: &str) -> WorkspaceBlocks {
        let out = self.admin_ok(&["blocks", "list", ws, "--json"]);
        serde_json::from_str(&out).expect("WorkspaceBlocks")
    }

    /// `hestia admin compact --now [--workspace WS]`, timed.
    fn compact(&self, ws: Option<&str>) -> (CompactResponse, Duration) {
        let mut args = vec!["compact", "--now"];
        args.extend(ws.iter().flat_map(|w| ["--workspace", *w]));
        let start = Instant::now();
        let out = self.admin_ok(&args);
        (
            serde_json::from_str(&out).expect("CompactResponse"),
            start.elapsed(),
        )
    }

    /// Creates a workspace on a voter and waits until it is ACTIVE (retrying while the voter
    /// has not learnt the operator's key yet).
    async fn create_workspace(&self, alias: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let r = loop {
            let r = self
                .http
                .post(format!("{CP_API}/workspaces"))
                .json(&json!({ "alias": alias }))
                .send()
                .await
                .expect("CreateWorkspace");
            if r.status() != 403 || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(r.status(), 202, "CreateWorkspace");
        let v: Value = r.json().await.expect("json");
        let id = v["workspaceId"].as_str().expect("workspaceId").to_string();
        wait_active(&self.http, &id).await;
        id
    }

    /// Remote-writes `body` through the gateway; retried while the gateway does not know the
    /// operator's key yet (403), any other refusal fails the test.
    async fn write(&self, gateway: &str, ws: &str, body: Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .http
                .post(format!("{gateway}/workspaces/{ws}/api/v1/remote_write"))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone())
                .send()
                .await
                .expect("remote write");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                return;
            }
            assert!(
                status == 403 && Instant::now() < deadline,
                "remote write: {status} {text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A Prometheus API query through the gateway: its `data`, or the status of a failure.
    async fn query(
        &self,
        gateway: &str,
        ws: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{gateway}/workspaces/{ws}/api/v1/{path}"))
            .query(params)
            .send()
            .await
            .expect("query");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200 => Ok(v["data"].clone()),
            s => Err(format!("{s} {v}")),
        }
    }
}

/// `n` series over the `RANGES` block ranges ending at `end`: series `i` counts up from
/// `i * 1000` every `STEP`. Returns the request body and the samples.
fn load(metric: &str, n: usize, end: i64) -> (Vec<u8>, Samples) {
    let start = end - RANGES * MINUTE;
    let mut ts = Vec::with_capacity(n);
    let mut want = Samples::new();
    for i in 0..n {
        let (job, idx) = (format!("j{}", i % 3), i.to_string());
        let samples: Vec<(i64, f64)> = (0..)
            .map(|k| start + k * STEP)
            .take_while(|t| *t < end)
            .enumerate()
            .map(|(k, t)| (t, (i * 1000 + k) as f64))
            .collect();
        let labels = format!("{{__name__=\"{metric}\", i=\"{idx}\", job=\"{job}\"}}");
        want.insert(labels, samples.iter().copied().collect());
        ts.push(series(
            &[("__name__", metric), ("i", &idx), ("job", &job)],
            &samples,
        ));
    }
    (encode(ts), want)
}

/// The samples of `want` in `[min, max)`.
fn within(want: &Samples, min: i64, max: i64) -> Samples {
    want.iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.range(min..max).map(|(t, v)| (*t, *v)).collect(),
            )
        })
        .filter(|(_, s): &(String, BTreeMap<i64, f64>)| !s.is_empty())
        .collect()
}

fn count(s: &Samples) -> u64 {
    s.values().map(|v| v.len() as u64).sum()
}

/// The end of the last range to write: a minute boundary at least 80 s ago, so that the ranges
/// are closed (shipped at the next pass) and older than `query_ingesters_within` (read from
/// blocks only).
fn last_range_end() -> i64 {
    (now_ms() - 80_000) / MINUTE * MINUTE
}

/// Polls `f` every `every` until it answers `Some`, for at most `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            println!("{what}: {:.1?}", start.elapsed());
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(every).await;
    }
}

/// Level-1 (shipped) blocks of each range `[start, start + 1m)` in `[first, first + RANGES m)`.
fn shipped_by_range(b: &WorkspaceBlocks, first: i64) -> BTreeMap<i64, Vec<BlockRow>> {
    let mut out: BTreeMap<i64, Vec<BlockRow>> = (0..RANGES)
        .map(|r| (first + r * MINUTE, Vec::new()))
        .collect();
    for block in b.listing.blocks.iter().filter(|b| b.level == 1) {
        let start = block.min_time.div_euclid(MINUTE) * MINUTE;
        if let Some(v) = out.get_mut(&start) {
            assert!(
                block.max_time <= start + MINUTE,
                "a shipped block spans ranges: {block:?}"
            );
            v.push(block.clone());
        }
    }
    out
}

/// The raw samples `metric[5m]` returns at `at` (ms), as [`Samples`].
fn matrix_samples(data: &Value) -> Samples {
    let mut out = Samples::new();
    for s in data["result"].as_array().expect("matrix") {
        let m = s["metric"].as_object().expect("metric");
        let mut labels: Vec<(&String, &str)> = m
            .iter()
            .map(|(k, v)| (k, v.as_str().expect("label")))
            .collect();
        labels.sort();
        let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let points = s["values"].as_array().expect("values").iter().map(|p| {
            let t = (p[0].as_f64().expect("t") * 1000.0).round() as i64;
            (t, p[1].as_str().expect("v").parse::<f64>().expect("value"))
        });
        let prev = out.insert(format!("{{{}}}", text.join(", ")), points.collect());
        assert!(prev.is_none(), "a series returned twice: {labels:?}");
    }
    out
}

/// The blocks `ids` of the tenant, copied from the bucket into a fresh directory and dumped by
/// `promtool tsdb dump` (Prometheus 2.42 opens it as a database: it needs a `wal` directory).
fn promtool_dump(bucket_tenant: &Path, ids: &[String]) -> (Samples, usize) {
    let db = tempfile::tempdir().expect("dump dir");
    for id in ids {
        copy_dir(&bucket_tenant.join(id), &db.path().join(id));
    }
    std::fs::create_dir(db.path().join("wal")).expect("wal dir");
    let dump = promtool(["tsdb".as_ref(), "dump".as_ref(), db.path().as_os_str()]);
    let mut got = Samples::new();
    let mut lines = 0;
    for line in String::from_utf8_lossy(&dump).lines() {
        let (rest, t) = line.rsplit_once(' ').expect("timestamp");
        let (labels, v) = rest.rsplit_once(' ').expect("value");
        let prev = got
            .entry(labels.to_string())
            .or_default()
            .insert(t.parse().expect("timestamp"), v.parse().expect("value"));
        assert!(prev.is_none(), "dumped twice: {line}");
        lines += 1;
    }
    (got, lines)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read block dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// Block directories of the tenant that are complete (`meta.json`) and not marked for deletion,
/// read from the bucket directory itself.
fn live_in_bucket(bucket_tenant: &Path) -> BTreeSet<String> {
    std::fs::read_dir(bucket_tenant)
        .expect("tenant dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file() && !p.join("deletion-mark.json").exists())
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|n| n.len() == 26)
        .collect()
}

/// The instant and range queries compared before and after compaction, at `end` (ms).
fn queries(metric: &str, end: i64) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let at = format!("{:.3}", end as f64 / 1000.0);
    let start = format!("{:.3}", (end - RANGES * MINUTE) as f64 / 1000.0);
    let instant = |q: String| ("query", vec![("query", q), ("time", at.clone())]);
    let range = |q: String| {
        (
            "query_range",
            vec![
                ("query", q),
                ("start", start.clone()),
                ("end", at.clone()),
                ("step", "10".to_string()),
            ],
        )
    };
    vec![
        instant(format!("{metric}[5m]")),
        instant(metric.to_string()),
        instant(format!("sum by (job) ({metric})")),
        instant(format!("rate({metric}[1m])")),
        instant(format!("sum(increase({metric}[3m]))")),
        instant(format!("count_over_time({metric}[5m])")),
        instant(format!("max_over_time({metric}[90s])")),
        instant(format!("avg_over_time({metric}[4m])")),
        range(metric.to_string()),
        range(format!("sum by (job) (rate({metric}[30s]))")),
        range(format!("count({metric})")),
        range(format!("quantile(0.5, {metric})")),
    ]
}

async fn answers(
    op: &Operator,
    gateway: &str,
    ws: &str,
    qs: &[(&str, Vec<(&str, String)>)],
) -> Vec<Value> {
    let mut out = Vec::new();
    for (path, params) in qs {
        let data = op.query(gateway, ws, path, params).await;
        out.push(data.unwrap_or_else(|e| panic!("{path} {params:?}: {e}")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_compaction_keeps_every_acknowledged_sample() {
    let test_start = Instant::now();
    let cluster = up(&fast_blocks("5s"));
    let op = Operator::of(&cluster).await;
    let ws = op.create_workspace("compaction").await;
    let gateway = cluster.base();

    // 20 series over 4 closed 1-minute ranges, in one request (a later one could fall below
    // the min valid time a shipper raised meanwhile).
    let metric = "compaction_load";
    let end = last_range_end();
    let first = end - RANGES * MINUTE;
    let (body, want) = load(metric, 20, end);
    op.write(&gateway, &ws, body).await;
    let acked = count(&want);
    assert_eq!(acked, 20 * 48);

    // Every replica ships every range: 3 copies of each acknowledged sample.
    let shipped = wait_for(
        "ranges shipped by every replica",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || async {
            let by_range = shipped_by_range(&op.blocks(&ws), first);
            by_range
                .iter()
                .all(|(start, blocks)| {
                    let copies: u64 = blocks.iter().map(|b| b.num_samples).sum();
                    copies == 3 * count(&within(&want, *start, start + MINUTE))
                })
                .then_some(by_range)
        },
    )
    .await;
    for (start, blocks) in &shipped {
        println!("range {start}: {} shipped blocks", blocks.len());
        assert!(blocks
            .iter()
            .all(|b| b.source == "ingester" && b.deletion_time.is_none()));
    }

    // PromQL over the replicas' blocks, once the queriers' index has them all.
    let qs = queries(metric, end);
    let (path, params) = &qs[0];
    wait_for(
        "queriers read every replica block",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            // Both queriers (the gateway alternates), each after its own index refresh: six
            // complete answers in a row, over 3 s.
            for _ in 0..6 {
                let got = op.query(&gateway, &ws, path, params).await.ok()?;
                if matrix_samples(&got) != want {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Some(())
        },
    )
    .await;
    let before = answers(&op, &gateway, &ws, &qs).await;

    let (answer, took) = op.compact(None);
    println!(
        "compact --now: {took:.1?}\n{}",
        serde_json::to_string_pretty(&answer).unwrap()
    );
    assert!(answer.failures().is_empty(), "{:?}", answer.failures());
    let mut instances: Vec<&str> = answer
        .compactors
        .iter()
        .map(|c| c.instance.as_str())
        .collect();
    instances.sort();
    assert_eq!(instances, ["compactor-1", "compactor-2"]);
    let tenant_reports: Vec<_> = answer
        .compactors
        .iter()
        .filter_map(|c| {
            let r = c.report.as_ref().expect("report");
            assert!(r.ring_stable, "{r:?}");
            r.tenants.iter().find(|t| t.tenant.ends_with(&ws))
        })
        .collect();
    assert_eq!(tenant_reports.len(), 1, "one compactor owns the tenant");
    let r = tenant_reports[0];
    let blocks_in: usize = shipped.values().map(Vec::len).sum();
    assert_eq!(
        (r.compactions, r.blocks_in, r.blocks_out, r.blocks_marked),
        (RANGES as usize, blocks_in, RANGES as usize, blocks_in)
    );
    assert_eq!((r.samples_in, r.samples_out), (3 * acked, acked));
    assert_eq!((r.duplicates, r.conflicts), (2 * acked, 0));

    // One live block per range, holding exactly that range's acknowledged samples.
    let listing = op.blocks(&ws);
    let tenant_dir = cluster.dir().join("blocks").join(&listing.listing.tenant);
    let live: Vec<&BlockRow> = listing
        .listing
        .blocks
        .iter()
        .filter(|b| b.deletion_time.is_none())
        .collect();
    assert_eq!(live.len(), RANGES as usize, "{listing:?}");
    let live_ids: BTreeSet<String> = live.iter().map(|b| b.id.to_string()).collect();
    assert_eq!(
        live_in_bucket(&tenant_dir),
        live_ids,
        "the bucket directory agrees"
    );
    for (start, sources) in &shipped {
        let block = live
            .iter()
            .find(|b| b.min_time >= *start && b.max_time <= start + MINUTE)
            .unwrap_or_else(|| panic!("no live block for range {start}: {listing:?}"));
        let range_want = within(&want, *start, start + MINUTE);
        assert_eq!((block.level, block.source.as_str()), (2, "compactor"));
        assert_eq!(block.num_samples, count(&range_want));
        let mut source_ids: Vec<_> = sources.iter().map(|b| b.id).collect();
        source_ids.sort();
        assert_eq!(block.sources, source_ids);
        let (dumped, lines) = promtool_dump(&tenant_dir, &[block.id.to_string()]);
        assert_eq!(
            lines as u64,
            count(&range_want),
            "promtool dumps each sample once"
        );
        assert_eq!(dumped, range_want, "range {start}");
    }
    let all: Vec<String> = live_ids.iter().cloned().collect();
    let (dumped, lines) = promtool_dump(&tenant_dir, &all);
    assert_eq!((lines as u64, &dumped), (acked, &want));
    println!("promtool 2.42 dumps the {acked} acknowledged samples exactly, each once");

    // Sources deleted after the delay; queriers follow the index to the compacted blocks.
    wait_for(
        "compacted sources deleted",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || async {
            let b = op.blocks(&ws);
            (b.listing.blocks.len() == RANGES as usize).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = answers(&op, &gateway, &ws, &qs).await;
    assert_eq!(matrix_samples(&after[0]), want);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b, a, "query {:?} changed", qs[i]);
    }
    println!(
        "{} queries answer identically before and after compaction; test took {:.1?}",
        qs.len(),
        test_start.elapsed()
    );
}

/// Makes a Prometheus block per `(label, age)` with `promtool tsdb create-blocks-from
/// openmetrics`: three samples of `retention_probe{age=label}` `age` ago.
fn promtool_blocks(dir: &Path, probes: &[(&str, i64)]) -> PathBuf {
    let now_s = now_ms() / 1000;
    let mut samples: Vec<(i64, &str)> = Vec::new();
    for (label, age_s) in probes {
        // Inside one 2-hour window (promtool's block length), so one block per probe.
        let t = (now_s - age_s) / 7200 * 7200 + 600;
        samples.extend((0..3).map(|k| (t + 60 * k, *label)));
    }
    samples.sort();
    let mut om =
        String::from("# HELP retention_probe A backfilled probe.\n# TYPE retention_probe gauge\n");
    for (i, (t, label)) in samples.iter().enumerate() {
        om.push_str(&format!("retention_probe{{age=\"{label}\"}} {i} {t}\n"));
    }
    om.push_str("# EOF\n");
    std::fs::create_dir_all(dir).expect("mkdir");
    let file = dir.join("probes.om");
    std::fs::write(&file, om).expect("write openmetrics");
    let out_dir = dir.join("blocks");
    create_blocks_from_openmetrics(&file, &out_dir);
    out_dir
}

/// `hestia admin backfill WS DIR` into the cluster's block store; the uploaded block ids.
fn backfill(op: &Operator, cluster: &LocalCluster, ws: &str, dir: &Path) -> Vec<String> {
    let cfg = dir.join("backfill.toml");
    let store = cluster.dir().join("blocks");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nbackend = \"filesystem\"\n\n[storage.filesystem]\ndir = {:?}\n",
            store.display().to_string()
        ),
    )
    .expect("config");
    let out = op.admin_ok(&[
        "backfill",
        ws,
        dir.to_str().expect("utf-8"),
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("backfill line");
            v["block"].as_str().expect("block").to_string()
        })
        .collect()
}

/// `aws amp update-workspace-configuration` against a voter.
fn set_retention(op: &Operator, ws: &str, days: u32) {
    let out = op
        .command("aws")
        .args([
            "amp",
            "update-workspace-configuration",
            "--endpoint-url",
            CP_API,
            "--output",
            "json",
        ])
        .args([
            "--workspace-id",
            ws,
            "--retention-period-in-days",
            &days.to_string(),
        ])
        .output()
        .expect("the AWS CLI");
    assert!(
        out.status.success(),
        "aws amp update-workspace-configuration: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = op
        .command("aws")
        .args([
            "amp",
            "describe-workspace-configuration",
            "--endpoint-url",
            CP_API,
            "--output",
            "json",
        ])
        .args(["--workspace-id", ws])
        .output()
        .expect("the AWS CLI");
    let v: Value = serde_json::from_slice(&out.stdout).expect("describe-workspace-configuration");
    assert_eq!(
        v["workspaceConfiguration"]["retentionPeriodInDays"], days,
        "{v}"
    );
}

/// Live block ids of the workspace and the whole listing.
fn live_ids(b: &WorkspaceBlocks) -> BTreeSet<String> {
    b.listing
        .blocks
        .iter()
        .filter(|b| b.deletion_time.is_none())
        .map(|b| b.id.to_string())
        .collect()
}

/// The owner's report of the workspace's tenant in `answer`.
fn tenant_report<'a>(
    answer: &'a CompactResponse,
    ws: &str,
) -> &'a hestia_control_plane::compactors::TenantReport {
    let reports: Vec<_> = answer
        .compactors
        .iter()
        .filter_map(|c| {
            c.report
                .as_ref()?
                .tenants
                .iter()
                .find(|t| t.tenant.ends_with(ws))
        })
        .collect();
    assert_eq!(
        reports.len(),
        1,
        "one compactor owns the tenant: {answer:?}"
    );
    reports[0]
}

const DAY_S: i64 = 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_compaction_follows_workspace_retention() {
    let test_start = Instant::now();
    // Deleted as soon as marked; no cleaner pass of its own during the test (every 5 min).
    let cluster = up(&[
        ("HESTIA_COMPACTOR_WAIT_STABILITY", "2s".into()),
        ("HESTIA_COMPACTOR_DELETION_DELAY", "0s".into()),
    ]);
    let op = Operator::of(&cluster).await;
    let ws = op.create_workspace("retention").await;
    let tmp = tempfile::tempdir().expect("tempdir");

    let made = promtool_blocks(
        &tmp.path().join("first"),
        &[("10d", 10 * DAY_S), ("3d", 3 * DAY_S), ("12h", DAY_S / 2)],
    );
    let ids = backfill(&op, &cluster, &ws, &made);
    assert_eq!(ids.len(), 3, "{ids:?}");
    let listing = op.blocks(&ws);
    assert_eq!(live_ids(&listing), ids.iter().cloned().collect());
    assert!(
        listing
            .listing
            .blocks
            .iter()
            .all(|b| b.source == "backfill"),
        "{listing:?}"
    );
    let by_age = |ids: &[String], listing: &WorkspaceBlocks| -> Vec<String> {
        let mut rows: Vec<&BlockRow> = listing
            .listing
            .blocks
            .iter()
            .filter(|b| ids.contains(&b.id.to_string()))
            .collect();
        rows.sort_by_key(|b| b.min_time);
        rows.iter().map(|b| b.id.to_string()).collect()
    };
    // Oldest first: 10 days, 3 days, 12 hours.
    let (old, older_than_2d, recent) = {
        let v = by_age(&ids, &listing);
        (v[0].clone(), v[1].clone(), v[2].clone())
    };
    let table = String::from_utf8(op.admin(&["blocks", "list", &ws]).stdout).expect("utf-8");
    println!("{table}");
    assert!(
        table.contains(&old) && table.contains("backfill"),
        "{table}"
    );

    // Retention 2 days: the 10- and 3-day-old blocks go in one pass, the 12-hour one stays.
    set_retention(&op, &ws, 2);
    // The compactors follow the workspaces through the control plane's watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (answer, took) = op.compact(Some(&ws));
    println!("compact --now --workspace (retention 2d): {took:.1?}");
    assert!(answer.failures().is_empty(), "{:?}", answer.failures());
    assert_eq!(answer.workspace_id.as_deref(), Some(ws.as_str()));
    let r = tenant_report(&answer, &ws);
    assert_eq!((r.retention_marked, r.blocks_deleted), (2, 2), "{r:?}");
    let listing = op.blocks(&ws);
    assert_eq!(live_ids(&listing), BTreeSet::from([recent.clone()]));
    assert_eq!(
        listing.listing.blocks.len(),
        1,
        "gone, not only marked: {listing:?}"
    );
    let tenant_dir = cluster.dir().join("blocks").join(&listing.listing.tenant);
    assert!(!tenant_dir.join(&old).exists() && !tenant_dir.join(&older_than_2d).exists());
    assert_eq!(
        live_in_bucket(&tenant_dir),
        BTreeSet::from([recent.clone()])
    );

    // Retention 30 days: a 9-day-old block backfilled now stays at the next pass.
    set_retention(&op, &ws, 30);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let made = promtool_blocks(&tmp.path().join("second"), &[("9d", 9 * DAY_S)]);
    let nine_days = backfill(&op, &cluster, &ws, &made);
    let (answer, _) = op.compact(Some(&ws));
    assert!(answer.failures().is_empty(), "{:?}", answer.failures());
    let r = tenant_report(&answer, &ws);
    assert_eq!((r.retention_marked, r.blocks_deleted), (0, 0), "{r:?}");
    let listing = op.blocks(&ws);
    let want: BTreeSet<String> = nine_days.iter().cloned().chain([recent.clone()]).collect();
    assert_eq!(live_ids(&listing), want);
    assert_eq!(live_in_bucket(&tenant_dir), want);

    // The admin routes' refusals. An unknown workspace: 404 as in the rest of the admin API.
    let unknown = "ws-00000000-0000-4000-8000-0000000dead0";
    for r in [
        op.http
            .get(format!("{CP_API}/admin/workspaces/{unknown}/blocks"))
            .send()
            .await
            .expect("send"),
        op.http
            .post(format!("{CP_API}/admin/compactor/compact"))
            .json(&json!({ "workspaceId": unknown }))
            .send()
            .await
            .expect("send"),
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-amzn-errortype"], "ResourceNotFoundException");
    }
    let out = op.admin(&["blocks", "list", unknown]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("404") && err.contains(unknown),
        "{err}"
    );

    // Another account's administrator is not the operator: 403.
    let acme: Value = op
        .http
        .post(format!("{CP_API}/admin/accounts"))
        .json(&json!({ "name": "acme" }))
        .send()
        .await
        .expect("CreateAccount")
        .json()
        .await
        .expect("json");
    let (acme_id, acme_secret) = (
        acme["accessKeyId"].as_str().expect("key"),
        acme["secretAccessKey"].as_str().expect("secret"),
    );
    let c = reqwest::Client::new();
    wait_for(
        "another account refused with AccessDenied",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let r = c
                .get(format!("{CP_API}/admin/workspaces/{ws}/blocks"))
                .basic_auth(acme_id, Some(acme_secret))
                .send()
                .await
                .expect("send");
            let kind = r
                .headers()
                .get("x-amzn-errortype")
                .map(|v| v.to_str().unwrap_or("").to_string());
            assert_eq!(r.status(), 403, "{kind:?}");
            (kind.as_deref() == Some("AccessDeniedException")).then_some(())
        },
    )
    .await;

    // The operator's calls are in the voter's audit log.
    let audit: Value = op
        .http
        .get(format!("{CP_API}/admin/audit?maxResults=1000"))
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let events = audit["events"].as_array().expect("events");
    let named = |name: &str| {
        events
            .iter()
            .filter(|e| {
                e["eventName"] == name && e["requestParameters"]["workspaceId"] == ws.as_str()
            })
            .count()
    };
    assert!(
        named("RunCompaction") >= 2 && named("ListBlocks") >= 3,
        "{audit}"
    );
    let run = events
        .iter()
        .find(|e| e["eventName"] == "RunCompaction")
        .expect("RunCompaction");
    assert_eq!(run["readOnly"], false, "{run}");

    // No compactor left in the ring: 503 with a clear message.
    cluster.run(&["stop", "compactor-1"]);
    cluster.run(&["stop", "compactor-2"]);
    let r = op
        .http
        .post(format!("{CP_API}/admin/compactor/compact"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.expect("json");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("compactor"), "{v}");
    println!("with no compactor: 503 {message}");
    let r = op
        .http
        .get(format!("{CP_API}/admin/workspaces/{ws}/blocks"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
    println!("test took {:.1?}", test_start.elapsed());
}

/// The pid the cluster script recorded for `name`.
fn pid_of(cluster: &LocalCluster, name: &str) -> String {
    std::fs::read_to_string(cluster.dir().join(name).join("pid"))
        .expect("pid file")
        .trim()
        .to_string()
}

/// Whether the compactor's working directory holds anything (a merge job is running).
fn working(cluster: &LocalCluster, name: &str) -> bool {
    std::fs::read_dir(cluster.dir().join(name).join("compactor"))
        .is_ok_and(|mut d| d.next().is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_compactor_killed_mid_pass_is_taken_over() {
    let test_start = Instant::now();
    // The ring forgets a dead compactor after 20 s; its tenants then go to the other one.
    let mut env = fast_blocks("5s");
    env.push(("HESTIA_RING_FORGET_AFTER", "20s".into()));
    let cluster = up(&env);
    let op = Operator::of(&cluster).await;
    let gateway = cluster.base();
    let metric = "takeover_load";
    let end = last_range_end();
    let first = end - RANGES * MINUTE;
    let mut workspaces = Vec::new();
    for k in 0..3 {
        let ws = op.create_workspace(&format!("takeover-{k}")).await;
        let (body, want) = load(metric, 300, end);
        op.write(&gateway, &ws, body).await;
        workspaces.push((ws, want));
    }
    for (ws, want) in &workspaces {
        wait_for(
            "ranges shipped by every replica",
            Duration::from_secs(180),
            Duration::from_secs(1),
            || async {
                let by_range = shipped_by_range(&op.blocks(ws), first);
                by_range
                    .iter()
                    .all(|(start, blocks)| {
                        let copies: u64 = blocks.iter().map(|b| b.num_samples).sum();
                        copies == 3 * count(&within(want, *start, start + MINUTE))
                    })
                    .then_some(())
            },
        )
        .await;
    }

    // A pass on both compactors; the first seen merging is SIGKILLed.
    let http = op.http.clone();
    let pass = tokio::spawn(async move {
        let r = http
            .post(format!("{CP_API}/admin/compactor/compact"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.json::<CompactResponse>().await.expect("CompactResponse")
    });
    let victim = wait_for(
        "a compactor merging",
        Duration::from_secs(60),
        Duration::from_millis(1),
        || async {
            ["compactor-1", "compactor-2"]
                .into_iter()
                .find(|n| working(&cluster, n))
        },
    )
    .await;
    let killed = Command::new("kill")
        .args(["-9", &pid_of(&cluster, victim)])
        .status()
        .expect("kill");
    assert!(killed.success());
    let answer = pass.await.expect("pass");
    let killed_entry = answer
        .compactors
        .iter()
        .find(|c| c.instance == victim)
        .expect("victim in the answer");
    println!("{victim} SIGKILLed mid-pass: {:?}", killed_entry.error);
    assert!(
        killed_entry.report.is_none() && killed_entry.error.is_some(),
        "{answer:?}"
    );

    // Once the ring forgot it, the survivor owns every tenant and finishes the work.
    let survivor = if victim == "compactor-1" {
        "compactor-2"
    } else {
        "compactor-1"
    };
    let taken_over = Instant::now();
    let report = wait_for(
        "the survivor alone in the ring",
        Duration::from_secs(90),
        Duration::from_secs(2),
        || async {
            let r = op
                .http
                .post(format!("{CP_API}/admin/compactor/compact"))
                .send()
                .await
                .expect("send");
            let answer: CompactResponse = r.json().await.ok()?;
            match answer.compactors.as_slice() {
                [only] if only.instance == survivor => {
                    let report = only.report.clone()?;
                    (report.ring_stable && report.tenants.len() == workspaces.len())
                        .then_some(report)
                }
                _ => None,
            }
        },
    )
    .await;
    println!(
        "taken over {:.1?} after the kill: {report:?}",
        taken_over.elapsed()
    );
    assert!(!report.failed(), "{report:?}");

    for (ws, want) in &workspaces {
        // Marked sources and any abandoned partial upload are cleaned after the delay.
        let listing = wait_for(
            "sources and partial uploads cleaned",
            Duration::from_secs(60),
            Duration::from_secs(1),
            || async {
                let b = op.blocks(ws);
                (b.listing.partial.is_empty()
                    && b.listing.blocks.iter().all(|b| b.deletion_time.is_none()))
                .then_some(b)
            },
        )
        .await;
        let live: Vec<&BlockRow> = listing.listing.blocks.iter().collect();
        assert_eq!(
            live.len(),
            RANGES as usize,
            "one block per range: {listing:?}"
        );
        let mut starts: Vec<i64> = live
            .iter()
            .map(|b| b.min_time.div_euclid(MINUTE) * MINUTE)
            .collect();
        starts.sort();
        assert_eq!(
            starts,
            (0..RANGES).map(|r| first + r * MINUTE).collect::<Vec<_>>()
        );
        let tenant_dir = cluster.dir().join("blocks").join(&listing.listing.tenant);
        let ids: Vec<String> = live.iter().map(|b| b.id.to_string()).collect();
        let (dumped, lines) = promtool_dump(&tenant_dir, &ids);
        assert_eq!(lines as u64, count(want), "{ws}: each sample once");
        assert_eq!(&dumped, want, "{ws}: no sample lost");
        assert_eq!(live.iter().map(|b| b.num_samples).sum::<u64>(), count(want));
    }
    println!(
        "no sample lost or doubled after the takeover; test took {:.1?}",
        test_start.elapsed()
    );
}
