//! Authentication and authorization end to end on `hestia all` with auth on (the default): the
//! bootstrap credentials file, every route × AMP's four managed policies, another account's
//! workspace on every route, unauthenticated and replayed requests, workspace tokens (Bearer
//! and bare), Basic, OAuth2 client credentials, and refusals in the audit log. Requests are
//! signed with the aws-sigv4 crate (AWS's own signer), verified by hestia-auth.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use crate::common::*;
use hestia_aws_client::{signed_headers_with, AwsCredentials};
use reqwest::{Method, Url};
use serde_json::{json, Value};

const POLICIES: [&str; 4] = [
    "AmazonPrometheusFullAccess",
    "AmazonPrometheusConsoleFullAccess",
    "AmazonPrometheusQueryAccess",
    "AmazonPrometheusRemoteWriteAccess",
];

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn signed_at(
        &self,
        key: &AwsCredentials,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        time: SystemTime,
    ) -> (u16, String) {
        let url = Url::parse(&format!("{}{path}", self.base)).unwrap();
        let remote_write = path.ends_with("/remote_write");
        let content_type = match (&body, remote_write) {
            (None, _) => None,
            (Some(_), true) => Some("application/x-protobuf"),
            (Some(_), false) => Some("application/json"),
        };
        let headers = signed_headers_with(
            &method,
            &url,
            body.as_deref(),
            content_type,
            key,
            "us-east-1",
            time,
        )
        .unwrap();
        let mut req = self.http.request(method, url).headers(headers);
        if remote_write {
            req = req
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0");
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn signed(
        &self,
        key: &AwsCredentials,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        self.signed_at(key, method, path, body, SystemTime::now())
            .await
    }

    async fn json(&self, key: &AwsCredentials, method: Method, path: &str, body: Value) -> Value {
        let body = (method != Method::GET && method != Method::DELETE)
            .then(|| body.to_string().into_bytes());
        let (status, text) = self.signed(key, method.clone(), path, body).await;
        assert!(status < 300, "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A request with a raw Authorization header (or none).
    async fn with_auth(
        &self,
        authorization: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if path.ends_with("/remote_write") {
            req = req
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0");
        }
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

fn creds(id: &str, secret: &str) -> AwsCredentials {
    AwsCredentials {
        access_key_id: id.to_string(),
        secret_access_key: secret.to_string(),
        session_token: None,
    }
}

/// The operator's key from the credentials file the first start wrote.
fn bootstrap_key(data_dir: &std::path::Path) -> AwsCredentials {
    let path = data_dir.join("credentials");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials file mode");
    hestia_aws_client::file_credentials(&path, "hestia").unwrap()
}

async fn wait_active(c: &Client, key: &AwsCredentials, ws: &str) {
    for _ in 0..100 {
        let v = c
            .json(key, Method::GET, &format!("/workspaces/{ws}"), json!({}))
            .await;
        if v["workspace"]["status"]["statusCode"] == "ACTIVE" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{ws} never became ACTIVE");
}

async fn create_workspace(c: &Client, key: &AwsCredentials) -> String {
    let v = c.json(key, Method::POST, "/workspaces", json!({})).await;
    let ws = v["workspaceId"].as_str().unwrap().to_string();
    wait_active(c, key, &ws).await;
    ws
}

async fn new_user(c: &Client, admin: &AwsCredentials, name: &str, policy: &str) -> AwsCredentials {
    c.json(
        admin,
        Method::POST,
        "/admin/users",
        json!({ "userName": name }),
    )
    .await;
    c.json(
        admin,
        Method::POST,
        &format!("/admin/users/{name}/policies"),
        json!({ "policyName": policy }),
    )
    .await;
    let v = c
        .json(
            admin,
            Method::POST,
            &format!("/admin/users/{name}/access-keys"),
            json!({}),
        )
        .await;
    creds(
        v["accessKey"]["accessKeyId"].as_str().unwrap(),
        v["accessKey"]["secretAccessKey"].as_str().unwrap(),
    )
}

fn allowed(policy: &str, action: &str) -> bool {
    match policy {
        "AmazonPrometheusFullAccess" => action.starts_with("aps:"),
        "AmazonPrometheusConsoleFullAccess" => matches!(
            action,
            "aps:CreateWorkspace"
                | "aps:DescribeWorkspace"
                | "aps:UpdateWorkspaceAlias"
                | "aps:DeleteWorkspace"
                | "aps:ListWorkspaces"
        ),
        "AmazonPrometheusQueryAccess" => matches!(
            action,
            "aps:GetLabels" | "aps:GetMetricMetadata" | "aps:GetSeries" | "aps:QueryMetrics"
        ),
        "AmazonPrometheusRemoteWriteAccess" => action == "aps:RemoteWrite",
        _ => unreachable!(),
    }
}

/// Every route: (method, path with `{ws}`/`{arn}`, body, action). `{victim}` is a workspace
/// the request may delete.
fn routes() -> Vec<(Method, &'static str, Option<Vec<u8>>, &'static str)> {
    let write = encode(vec![series(
        &[("__name__", "auth_test"), ("job", "t")],
        &[(now_ms(), 1.0)],
    )]);
    let j = |v: Value| Some(v.to_string().into_bytes());
    vec![
        (
            Method::POST,
            "/workspaces",
            j(json!({})),
            "aps:CreateWorkspace",
        ),
        (Method::GET, "/workspaces", None, "aps:ListWorkspaces"),
        (
            Method::GET,
            "/workspaces/{ws}",
            None,
            "aps:DescribeWorkspace",
        ),
        (
            Method::POST,
            "/workspaces/{ws}/alias",
            j(json!({"alias": "a"})),
            "aps:UpdateWorkspaceAlias",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/configuration",
            None,
            "aps:DescribeWorkspaceConfiguration",
        ),
        (
            Method::PATCH,
            "/workspaces/{ws}/configuration",
            j(json!({"retentionPeriodInDays": 30})),
            "aps:UpdateWorkspaceConfiguration",
        ),
        (Method::GET, "/tags/{arn}", None, "aps:ListTagsForResource"),
        (
            Method::POST,
            "/tags/{arn}",
            j(json!({"tags": {"k": "v"}})),
            "aps:TagResource",
        ),
        (
            Method::DELETE,
            "/tags/{arn}?tagKeys=k",
            None,
            "aps:UntagResource",
        ),
        (
            Method::POST,
            "/workspaces/{ws}/api/v1/remote_write",
            Some(write),
            "aps:RemoteWrite",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/api/v1/query?query=up",
            None,
            "aps:QueryMetrics",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/api/v1/query_range?query=up&start=0&end=60&step=15",
            None,
            "aps:QueryMetrics",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/api/v1/series?match%5B%5D=up",
            None,
            "aps:GetSeries",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/api/v1/labels",
            None,
            "aps:GetLabels",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/api/v1/label/job/values",
            None,
            "aps:GetLabels",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/api/v1/metadata",
            None,
            "aps:GetMetricMetadata",
        ),
        (
            Method::POST,
            "/workspaces/{ws}/tokens",
            j(json!({"scope": "read"})),
            "aps:CreateToken",
        ),
        (
            Method::GET,
            "/workspaces/{ws}/tokens",
            None,
            "aps:ListTokens",
        ),
        (Method::GET, "/admin/users", None, "iam:ListUsers"),
        (Method::GET, "/admin/accounts", None, "hestia:ListAccounts"),
        (
            Method::DELETE,
            "/workspaces/{victim}",
            None,
            "aps:DeleteWorkspace",
        ),
    ]
}

fn fill(path: &str, ws: &str, victim: &str) -> String {
    let arn = format!("arn%3Aaws%3Aaps%3Aus-east-1%3A000000000000%3Aworkspace%2F{ws}");
    path.replace("{ws}", ws)
        .replace("{victim}", victim)
        .replace("{arn}", &arn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_authenticated_and_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hestia");
    let hestia = start_in_process_with(&data, |cfg| {
        cfg.auth.enabled = true;
        cfg.gateway.dev_workspaces = false;
        cfg.control_plane.max_workspaces_per_account = 100;
        cfg.control_plane.api_rate = 10_000.0;
        cfg.control_plane.api_burst = 10_000;
        cfg.control_plane.purge_grace = Duration::from_secs(3600);
    })
    .await;
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://{}", hestia.addr),
    };
    let admin = bootstrap_key(&data);
    let ws = create_workspace(&c, &admin).await;

    // One user per managed policy; the policies allowed to delete get a workspace to delete.
    let mut users = Vec::new();
    for (i, policy) in POLICIES.iter().enumerate() {
        let key = new_user(&c, &admin, &format!("user{i}"), policy).await;
        let victim = if allowed(policy, "aps:DeleteWorkspace") {
            create_workspace(&c, &admin).await
        } else {
            ws.clone()
        };
        users.push((i, *policy, key, victim));
    }
    let mut checked = 0;
    for (i, policy, key, victim) in &users {
        for (method, path, body, action) in routes() {
            let path = fill(path, &ws, victim);
            let (status, text) = c.signed(key, method.clone(), &path, body).await;
            if allowed(policy, action) {
                assert!(status < 300, "{policy}: {method} {path} → {status} {text}");
            } else {
                assert_eq!(status, 403, "{policy}: {method} {path} → {text}");
                let resource = if path.starts_with("/admin/users") {
                    "arn:aws:iam::000000000000:user/*".to_string()
                } else if path.starts_with("/admin/accounts") {
                    "arn:aws:hestia:us-east-1:000000000000:cluster".to_string()
                } else if path == "/workspaces" {
                    "arn:aws:aps:us-east-1:000000000000:workspace/*".to_string()
                } else {
                    let target = if action == "aps:DeleteWorkspace" {
                        victim
                    } else {
                        &ws
                    };
                    format!("arn:aws:aps:us-east-1:000000000000:workspace/{target}")
                };
                let want = format!(
                    "User: arn:aws:iam::000000000000:user/user{i} is not authorized to perform: {action} on resource: {resource}"
                );
                assert!(
                    text.contains(&want),
                    "{policy}: {method} {path} → {text}\nwant {want}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * routes().len());

    // Another account: its administrator gets 403 or 404 on every route naming our workspace,
    // and its workspace list does not show ours.
    let b = c
        .json(
            &admin,
            Method::POST,
            "/admin/accounts",
            json!({"name": "team-b"}),
        )
        .await;
    let b_admin = creds(
        b["accessKeyId"].as_str().unwrap(),
        b["secretAccessKey"].as_str().unwrap(),
    );
    let b_ws = create_workspace(&c, &b_admin).await;
    for (method, path, body, _) in routes() {
        if !path.contains("{ws}") && !path.contains("{victim}") && !path.contains("{arn}") {
            continue;
        }
        let path = fill(path, &ws, &ws);
        let (status, text) = c.signed(&b_admin, method.clone(), &path, body).await;
        assert!(
            status == 403 || status == 404,
            "account B: {method} {path} → {status} {text}"
        );
    }
    let listed = c
        .json(&b_admin, Method::GET, "/workspaces", json!({}))
        .await;
    let ids: Vec<&str> = listed["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["workspaceId"].as_str())
        .collect();
    assert_eq!(ids, vec![b_ws.as_str()]);
    // Team B's admin manages its own users but not accounts.
    let (status, _) = c
        .signed(&b_admin, Method::GET, "/admin/accounts", None)
        .await;
    assert_eq!(status, 403);
    c.json(&b_admin, Method::GET, "/admin/users", json!({}))
        .await;

    // Unauthenticated, unknown key, bad signature, replayed outside the skew window.
    let (status, text) = c
        .with_auth(None, Method::GET, &format!("/workspaces/{ws}"), None)
        .await;
    assert_eq!(
        (status, text.contains("Missing Authentication Token")),
        (403, true),
        "{text}"
    );
    let (status, text) = c
        .with_auth(
            None,
            Method::GET,
            &format!("/workspaces/{ws}/api/v1/query?query=up"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "error", "Prometheus error JSON: {text}");
    assert_eq!(body["errorType"], "MissingAuthenticationTokenException");
    let stranger = creds("AKIAUNKNOWNUNKNOWN12", "x");
    let (status, text) = c.signed(&stranger, Method::GET, "/workspaces", None).await;
    assert_eq!(status, 403);
    assert!(
        text.contains("security token included in the request is invalid"),
        "{text}"
    );
    let forged = creds(&admin.access_key_id, "not-the-secret");
    let (status, text) = c.signed(&forged, Method::GET, "/workspaces", None).await;
    assert_eq!(status, 403);
    assert!(
        text.contains("signature we calculated does not match"),
        "{text}"
    );
    let stale = SystemTime::now() - Duration::from_secs(6 * 60);
    let (status, text) = c
        .signed_at(&admin, Method::GET, "/workspaces", None, stale)
        .await;
    assert_eq!(status, 403);
    assert!(text.contains("Signature expired"), "{text}");

    // Workspace tokens: write scope as Bearer and as the bare token, then revoked.
    let t = c
        .json(
            &admin,
            Method::POST,
            &format!("/workspaces/{ws}/tokens"),
            json!({"scope": "write", "name": "agent"}),
        )
        .await;
    let token = t["token"].as_str().unwrap().to_string();
    let rw = format!("/workspaces/{ws}/api/v1/remote_write");
    let q = format!("/workspaces/{ws}/api/v1/query?query=auth_test");
    let sample = || {
        encode(vec![series(
            &[("__name__", "auth_test"), ("job", "t")],
            &[(now_ms(), 2.0)],
        )])
    };
    for auth in [format!("Bearer {token}"), token.clone()] {
        let (status, text) = c
            .with_auth(Some(&auth), Method::POST, &rw, Some(sample()))
            .await;
        assert!(status < 300, "{status} {text}");
    }
    let (status, _) = c
        .with_auth(Some(&format!("Bearer {token}")), Method::GET, &q, None)
        .await;
    assert_eq!(status, 403, "a write token cannot query");
    let (status, _) = c
        .with_auth(
            Some(&format!("Bearer {token}")),
            Method::POST,
            &format!("/workspaces/{b_ws}/api/v1/remote_write"),
            Some(sample()),
        )
        .await;
    assert_eq!(status, 403, "a token is for its workspace only");
    let listed = c
        .json(
            &admin,
            Method::GET,
            &format!("/workspaces/{ws}/tokens"),
            json!({}),
        )
        .await;
    assert!(
        !listed.to_string().contains(&token),
        "tokens are listed without their secret"
    );
    let tid = t["tokenId"].as_str().unwrap();
    c.signed(
        &admin,
        Method::DELETE,
        &format!("/workspaces/{ws}/tokens/{tid}"),
        None,
    )
    .await;
    let (status, _) = c
        .with_auth(Some(&token), Method::POST, &rw, Some(sample()))
        .await;
    assert_eq!(status, 403, "a revoked token");

    // No escalation through tokens: a user allowed CreateToken but not RemoteWrite gets a read
    // token (it may query) but no write token.
    c.json(
        &admin,
        Method::POST,
        "/admin/users",
        json!({"userName": "minter"}),
    )
    .await;
    let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": ["aps:CreateToken", "aps:QueryMetrics", "aps:GetSeries", "aps:GetLabels",
                   "aps:GetMetricMetadata"], "Resource": "*"}]});
    c.json(
        &admin,
        Method::POST,
        "/admin/users/minter/policies",
        json!({"policyName": "mint", "policyDocument": doc}),
    )
    .await;
    let k = c
        .json(
            &admin,
            Method::POST,
            "/admin/users/minter/access-keys",
            json!({}),
        )
        .await;
    let minter = creds(
        k["accessKey"]["accessKeyId"].as_str().unwrap(),
        k["accessKey"]["secretAccessKey"].as_str().unwrap(),
    );
    let tokens = format!("/workspaces/{ws}/tokens");
    let body = |scope: &str| Some(json!({ "scope": scope }).to_string().into_bytes());
    let (status, text) = c
        .signed(&minter, Method::POST, &tokens, body("write"))
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("aps:RemoteWrite") && text.contains("write token"),
        "{text}"
    );
    let (status, text) = c.signed(&minter, Method::POST, &tokens, body("read")).await;
    assert_eq!(status, 201, "{text}");

    // Basic with a key pair; OAuth2 client credentials for a bearer token.
    let reader = &users[2].2;
    let basic = basic_header(&reader.access_key_id, &reader.secret_access_key);
    let (status, text) = c.with_auth(Some(&basic), Method::GET, &q, None).await;
    assert_eq!(status, 200, "{text}");
    let r = c
        .http
        .post(format!("{}/oauth2/token", c.base))
        .basic_auth(&reader.access_key_id, Some(&reader.secret_access_key))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let grant: Value = r.json().await.unwrap();
    assert_eq!(grant["token_type"], "Bearer");
    assert_eq!(grant["expires_in"], 3600);
    let bearer = format!("Bearer {}", grant["access_token"].as_str().unwrap());
    let (status, text) = c.with_auth(Some(&bearer), Method::GET, &q, None).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{text}");
    let (status, _) = c
        .with_auth(Some(&bearer), Method::POST, &rw, Some(sample()))
        .await;
    assert_eq!(status, 403, "the reader's token cannot write");
    let r = c
        .http
        .post(format!("{}/oauth2/token", c.base))
        .basic_auth(&reader.access_key_id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Malformed workspace ids never reach storage.
    for bad in ["ws-..", "ws-a.b", &format!("ws-{}", "a".repeat(65))] {
        let (status, _) = c
            .signed(&admin, Method::GET, &format!("/workspaces/{bad}"), None)
            .await;
        assert!(status == 400 || status == 404, "{bad}: {status}");
    }

    // The refusals are in the audit log, with who and why; no secret is.
    let audit = c
        .json(
            &admin,
            Method::GET,
            "/admin/audit?maxResults=1000",
            json!({}),
        )
        .await;
    let events = audit["events"].as_array().unwrap();
    let codes: Vec<&str> = events
        .iter()
        .filter_map(|e| e["errorCode"].as_str())
        .collect();
    for code in [
        "AccessDeniedException",
        "MissingAuthenticationTokenException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
    ] {
        assert!(codes.contains(&code), "{code} not audited: {codes:?}");
    }
    let text = audit.to_string();
    assert!(
        !text.contains(&reader.secret_access_key),
        "a secret reached the audit log"
    );
    assert!(
        !text.contains(&admin.secret_access_key),
        "a secret reached the audit log"
    );
    hestia.shutdown().await.unwrap();
}

/// `Basic base64(id:secret)`, as reqwest builds it.
fn basic_header(id: &str, secret: &str) -> String {
    let req = reqwest::Client::new()
        .get("http://127.0.0.1/")
        .basic_auth(id, Some(secret))
        .build()
        .unwrap();
    req.headers()["authorization"].to_str().unwrap().to_string()
}
