//! Real clients against `hestia all` with authentication on: Debian's Prometheus 2.42 remote-
//! writes into one workspace two ways at once — `oauth2:` (client credentials for a
//! remote-write-only user's key at /oauth2/token) and `authorization:` with a workspace token —
//! `awscurl --service aps` remote-writes a SigV4-signed snappy body with that user's key, and
//! awscurl queries all of it with a query-only user's key.
//!
//! Prometheus' own `sigv4:` is not used: Debian's 2.42+ds build sends its requests unsigned
//! (no Authorization header, checked against a header-dumping server), which Hestia refuses
//! with 403 MissingAuthenticationToken like AMP.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

struct Admin {
    http: reqwest::Client,
    base: String,
    id: String,
    secret: String,
}

impl Admin {
    /// An admin call with the operator's key pair as Basic credentials.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .basic_auth(&self.id, Some(&self.secret))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn user(&self, name: &str, policy: &str) -> (String, String) {
        let post = reqwest::Method::POST;
        self.call(post.clone(), "/admin/users", json!({ "userName": name }))
            .await;
        self.call(
            post.clone(),
            &format!("/admin/users/{name}/policies"),
            json!({ "policyName": policy }),
        )
        .await;
        let k = self
            .call(post, &format!("/admin/users/{name}/access-keys"), json!({}))
            .await;
        let k = &k["accessKey"];
        (
            k["accessKeyId"].as_str().unwrap().to_string(),
            k["secretAccessKey"].as_str().unwrap().to_string(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_oauth2_token_and_awscurl_sigv4() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hestia");
    let hestia = start_in_process_with(&data, |cfg| {
        cfg.auth.enabled = true;
        cfg.gateway.dev_workspaces = false;
    })
    .await;
    let base = format!("http://{}", hestia.addr);
    let credentials = data.join("credentials");
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let key = hestia_aws_client::file_credentials(&credentials, "hestia").unwrap();
    let admin = Admin {
        http: reqwest::Client::new(),
        base: base.clone(),
        id: key.access_key_id,
        secret: key.secret_access_key,
    };
    let ws = admin
        .call(
            reqwest::Method::POST,
            "/workspaces",
            json!({"alias": "prom"}),
        )
        .await["workspaceId"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin
        .call(
            reqwest::Method::GET,
            &format!("/workspaces/{ws}"),
            json!(null),
        )
        .await["workspace"]["status"]["statusCode"]
        != "ACTIVE"
    {
        assert!(Instant::now() < deadline, "workspace never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (writer_id, writer_secret) = admin
        .user("prometheus", "AmazonPrometheusRemoteWriteAccess")
        .await;
    // The query-only user comes from the `hestia admin` CLI, signing with the first start's
    // profile through the standard AWS files (endpoint from the profile's endpoint_url).
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hestia"))
            .arg("admin")
            .args(args)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", data.join("config"))
            .env("AWS_PROFILE", "hestia")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("HESTIA_ENDPOINT")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "hestia admin {args:?}: {stdout} {stderr}"
        );
        serde_json::from_str::<Value>(&stdout).unwrap_or(Value::Null)
    };
    cli(&["user", "create", "grafana"]);
    cli(&["policy", "attach", "grafana", "AmazonPrometheusQueryAccess"]);
    let key = cli(&["access-key", "create", "grafana"]);
    let reader_id = key["accessKey"]["accessKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let reader_secret = key["accessKey"]["secretAccessKey"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = cli(&["user", "list"]);
    assert!(listed.to_string().contains("grafana"), "{listed}");
    let token = admin
        .call(
            reqwest::Method::POST,
            &format!("/workspaces/{ws}/tokens"),
            json!({"scope": "write", "name": "prometheus"}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Each remote-write queue labels its samples, so each path is checked on its own.
    let url = format!("{base}/workspaces/{ws}/api/v1/remote_write");
    let queue = "queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}";
    let relabel =
        |via: &str| format!("write_relabel_configs: [{{target_label: via, replacement: {via}}}]");
    let config = format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: hestia
    static_configs:
      - targets: ["{addr}"]
remote_write:
  - url: {url}
    oauth2: {{client_id: {writer_id}, client_secret: "{writer_secret}", token_url: "{base}/oauth2/token"}}
    {queue}
    {oauth2_relabel}
  - url: {url}
    authorization: {{type: Bearer, credentials: "{token}"}}
    {queue}
    {token_relabel}
"#,
        addr = hestia.addr,
        oauth2_relabel = relabel("oauth2"),
        token_relabel = relabel("token"),
    );
    let _prometheus =
        crate::common::prometheus::Prometheus::start(&dir.path().join("prom"), &config, &[]).await;

    // awscurl signs like the AWS SDKs: a remote write with the writer's key (body hashed).
    let body_file = dir.path().join("write.bin");
    std::fs::write(
        &body_file,
        encode(vec![series(
            &[("__name__", "up"), ("job", "hestia"), ("via", "awscurl")],
            &[(now_ms(), 1.0)],
        )]),
    )
    .unwrap();
    let out = Command::new("awscurl")
        .args([
            "--service",
            "aps",
            "--region",
            "us-east-1",
            "--fail-with-body",
        ])
        .args(["--access_key", &writer_id, "--secret_key", &writer_secret])
        .args(["-X", "POST", "--data-binary", "-d"])
        .arg(format!("@{}", body_file.display()))
        .args([
            "-H",
            "Content-Type: application/x-protobuf",
            "-H",
            "Content-Encoding: snappy",
        ])
        .args(["-H", "X-Prometheus-Remote-Write-Version: 0.1.0"])
        .arg(&url)
        .output()
        .expect("awscurl must be installed (make test installs it)");
    assert!(
        out.status.success(),
        "awscurl remote write: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The reader sees every path's samples. awscurl takes the query unencoded (it encodes it)
    // and mis-signs values holding '=' (it splits on each one), so the query has none.
    let awscurl = |query: &str| {
        let out = Command::new("awscurl")
            .args(["--service", "aps", "--region", "us-east-1"])
            .args(["--access_key", &reader_id, "--secret_key", &reader_secret])
            .arg(format!("{base}/workspaces/{ws}/api/v1/query?query={query}"))
            .output()
            .expect("awscurl must be installed (make test installs it)");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success(), text)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let q = "count by (via) (up)";
    let vias = loop {
        let (ok, text) = awscurl(q);
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let mut vias: Vec<String> = v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|s| s["metric"]["via"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        vias.sort();
        if vias.len() == 3 || Instant::now() > deadline {
            assert!(ok, "awscurl failed: {text}");
            break vias;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(vias, ["awscurl", "oauth2", "token"]);

    // The remote-write-only key cannot query; awscurl without a valid key is refused.
    let out = Command::new("awscurl")
        .args(["--service", "aps", "--region", "us-east-1"])
        .args(["--access_key", &writer_id, "--secret_key", &writer_secret])
        .arg(format!("{base}/workspaces/{ws}/api/v1/query?query=up"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("AccessDeniedException") || text.contains("not authorized"),
        "{text}"
    );
    let metrics = metrics_text(&reqwest::Client::new(), &base).await;
    assert!(
        metrics.contains("hestia_auth_allowed_requests_total"),
        "auth metrics exported"
    );
    hestia.shutdown().await.unwrap();
}
