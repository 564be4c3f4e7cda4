//! `hestia admin`: manages accounts, users, access keys, policies and workspace tokens through
//! Hestia's HTTP admin API, lists a workspace's blocks and runs compaction passes (`blocks.rs`).
//! Requests are signed with AWS SigV4 (service `aps`) like any client's, with credentials found
//! the way the AWS CLI finds static ones (environment, shared credentials file, config file),
//! and the JSON response is pretty-printed to stdout.

mod blocks;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use hestia_aws_client::{resolve, signed_headers, AwsEnv, Target};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

pub use blocks::{BlocksCommand, CompactArgs};

const USER_AGENT: &str = concat!("hestia-admin/", env!("CARGO_PKG_VERSION"));
const TIMEOUT: Duration = Duration::from_secs(30);
/// A compaction pass runs while the call waits.
const COMPACT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Attempts of one call when it is throttled (429) or the service is unavailable (503).
const MAX_ATTEMPTS: u32 = 5;
/// The first retry's delay; each next one doubles it.
const RETRY_BASE: Duration = Duration::from_millis(200);

/// `hestia admin`: where to send requests, whose credentials sign them, and the command.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Hestia's HTTP endpoint [default: the profile's endpoint_url, else http://127.0.0.1:8080].
    #[arg(long, env = "HESTIA_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// Profile of the AWS credentials and config files [default: $AWS_PROFILE, else default].
    /// When given, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are ignored.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Region to sign for [default: $AWS_REGION, $AWS_DEFAULT_REGION, the profile's region,
    /// else us-east-1].
    #[arg(long, global = true)]
    pub region: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage a user's access keys.
    #[command(subcommand)]
    AccessKey(AccessKeyCommand),
    /// Manage a user's policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage a workspace's bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Upload Prometheus TSDB blocks (a Prometheus data directory or block directories) into a
    /// workspace, after reading every block in full.
    Backfill(BackfillArgs),
    /// A workspace's blocks in the block store.
    #[command(subcommand)]
    Blocks(BlocksCommand),
    /// Compaction passes on the compactors.
    Compact(CompactArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    pub workspace: String,
    pub dir: PathBuf,
    /// The configuration file whose `[storage]` section names the block store
    /// [default: the embedded defaults: <data_dir>/blocks].
    #[arg(long, env = "HESTIA_CONFIG")]
    pub config: Option<PathBuf>,
    /// `server.data_dir` for a filesystem store without an explicit dir.
    #[arg(long, env = "HESTIA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AccountCommand {
    /// Create an account.
    Create { name: String },
    /// List the accounts.
    List,
    /// Delete an account.
    Delete { account_id: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create { name: String },
    /// List the users.
    List,
    /// Delete a user.
    Delete { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AccessKeyCommand {
    /// Create an access key for a user (the secret is shown only in this response).
    Create { user: String },
    /// List a user's access keys.
    List { user: String },
    /// Delete one of a user's access keys.
    Delete { user: String, key_id: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// Attach a managed policy by name, or a JSON policy document file (a path containing '/',
    /// ending in .json, or naming an existing file).
    Attach {
        user: String,
        policy: String,
        /// Name of the attached policy document [default: the file name without extension].
        #[arg(long)]
        name: Option<String>,
    },
    /// Detach a policy from a user.
    Detach { user: String, policy_name: String },
    /// List a user's policies.
    List { user: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token for a workspace (the token is shown only in this response).
    Create {
        workspace: String,
        #[arg(long, value_enum)]
        scope: Scope,
        /// A name to recognize the token by.
        #[arg(long)]
        name: Option<String>,
    },
    /// List a workspace's tokens.
    List { workspace: String },
    /// Revoke a workspace token.
    Revoke { workspace: String, token_id: String },
}

/// What a workspace token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// Runs one admin command and prints its response.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let target = resolve(
        args.endpoint.as_deref(),
        args.profile.as_deref(),
        args.region.as_deref(),
        &AwsEnv::from_process(),
    )?;
    match &args.command {
        AdminCommand::Backfill(b) => return backfill(&target, b).await,
        AdminCommand::Blocks(BlocksCommand::List { workspace, json }) => {
            return list_blocks(&target, workspace, *json).await
        }
        AdminCommand::Compact(c) => return compact(&target, c).await,
        _ => {}
    }
    let call = api_call(&args.command)?;
    if let Some(out) = send(&target, &call).await? {
        println!("{out}");
    }
    Ok(())
}

/// `backfill`: the workspace's tenant from `DescribeWorkspace`, then the blocks.
async fn backfill(target: &Target, args: &BackfillArgs) -> anyhow::Result<()> {
    let mut cfg = match &args.config {
        Some(p) => hestia_config::Config::from_file(p)?,
        None => hestia_config::Config::default(),
    };
    if let Some(d) = &args.data_dir {
        cfg.server.data_dir = d.clone();
    }
    cfg.validate()?;
    let describe = send(
        target,
        &ApiCall::get(format!("/workspaces/{}", encode_segment(&args.workspace)?)),
    )
    .await
    .with_context(|| format!("describing workspace {}", args.workspace))?
    .context("DescribeWorkspace answered nothing")?;
    let tenant = crate::backfill::tenant_of(&serde_json::from_str(&describe)?, &args.workspace)?;
    let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)?;
    for block in crate::backfill::backfill(&bucket, &tenant, &args.dir).await? {
        println!("{}", serde_json::to_string(&block)?);
    }
    Ok(())
}

/// `blocks list`: the workspace's blocks, as a table or the JSON answer.
async fn list_blocks(target: &Target, workspace: &str, json: bool) -> anyhow::Result<()> {
    let call = ApiCall::get(format!(
        "/admin/workspaces/{}/blocks",
        encode_segment(workspace)?
    ));
    let text = send(target, &call)
        .await?
        .context("the block listing answered nothing")?;
    let answer: hestia_control_plane::compactor_api::WorkspaceBlocks =
        serde_json::from_str(&text).context("reading the block listing")?;
    match json {
        true => println!("{text}"),
        false => print!("{}", blocks::blocks_table(&answer)),
    }
    Ok(())
}

/// `compact --now`: one pass on every compactor; each one's report is printed, and any failure
/// makes the command fail after printing.
async fn compact(target: &Target, args: &CompactArgs) -> anyhow::Result<()> {
    let call = ApiCall::post(
        "/admin/compactor/compact".into(),
        serde_json::to_value(args.request())?,
    );
    let text = send_with(target, &call, COMPACT_TIMEOUT)
        .await?
        .context("the compaction answered nothing")?;
    let answer: hestia_control_plane::compactor_api::CompactResponse =
        serde_json::from_str(&text).context("reading the compaction reports")?;
    let (out, failures) = blocks::compact_output(&answer)?;
    println!("{out}");
    for w in blocks::unstable_warnings(&answer) {
        eprintln!("warning: {w}");
    }
    if !failures.is_empty() {
        bail!(
            "{} compaction failure(s): {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

/// One admin API request: method, path (segments already encoded) and JSON body.
#[derive(Debug, Clone, PartialEq)]
struct ApiCall {
    method: Method,
    path: String,
    body: Option<Value>,
}

impl ApiCall {
    fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            body: None,
        }
    }

    fn post(path: String, body: Value) -> Self {
        Self {
            method: Method::POST,
            path,
            body: Some(body),
        }
    }

    fn delete(path: String) -> Self {
        Self {
            method: Method::DELETE,
            path,
            body: None,
        }
    }
}

fn api_call(command: &AdminCommand) -> anyhow::Result<ApiCall> {
    use AdminCommand as C;
    let seg = encode_segment;
    Ok(match command {
        C::Account(AccountCommand::Create { name }) => {
            ApiCall::post("/admin/accounts".into(), json!({ "name": name }))
        }
        C::Account(AccountCommand::List) => ApiCall::get("/admin/accounts".into()),
        C::Account(AccountCommand::Delete { account_id }) => {
            ApiCall::delete(format!("/admin/accounts/{}", seg(account_id)?))
        }
        C::User(UserCommand::Create { name }) => {
            ApiCall::post("/admin/users".into(), json!({ "userName": name }))
        }
        C::User(UserCommand::List) => ApiCall::get("/admin/users".into()),
        C::User(UserCommand::Delete { name }) => {
            ApiCall::delete(format!("/admin/users/{}", seg(name)?))
        }
        C::AccessKey(AccessKeyCommand::Create { user }) => ApiCall::post(
            format!("/admin/users/{}/access-keys", seg(user)?),
            json!({}),
        ),
        C::AccessKey(AccessKeyCommand::List { user }) => {
            ApiCall::get(format!("/admin/users/{}/access-keys", seg(user)?))
        }
        C::AccessKey(AccessKeyCommand::Delete { user, key_id }) => ApiCall::delete(format!(
            "/admin/users/{}/access-keys/{}",
            seg(user)?,
            seg(key_id)?
        )),
        C::Policy(PolicyCommand::Attach { user, policy, name }) => ApiCall::post(
            format!("/admin/users/{}/policies", seg(user)?),
            attach_body(policy, name.as_deref(), Path::is_file)?,
        ),
        C::Policy(PolicyCommand::Detach { user, policy_name }) => ApiCall::delete(format!(
            "/admin/users/{}/policies/{}",
            seg(user)?,
            seg(policy_name)?
        )),
        C::Policy(PolicyCommand::List { user }) => {
            ApiCall::get(format!("/admin/users/{}/policies", seg(user)?))
        }
        C::Token(TokenCommand::Create {
            workspace,
            scope,
            name,
        }) => {
            let mut body = json!({ "scope": scope.as_str() });
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            ApiCall::post(format!("/workspaces/{}/tokens", seg(workspace)?), body)
        }
        C::Token(TokenCommand::List { workspace }) => {
            ApiCall::get(format!("/workspaces/{}/tokens", seg(workspace)?))
        }
        C::Token(TokenCommand::Revoke {
            workspace,
            token_id,
        }) => ApiCall::delete(format!(
            "/workspaces/{}/tokens/{}",
            seg(workspace)?,
            seg(token_id)?
        )),
        C::Backfill(_) => bail!("backfill is several calls and uploads, not one API call"),
        C::Blocks(_) | C::Compact(_) => bail!("blocks and compact print their own answers"),
    })
}

/// RFC 3986 percent-encoding of one path segment (unreserved characters kept). Empty, `.` and
/// `..` are refused: URL parsing would drop or resolve them.
fn encode_segment(s: &str) -> anyhow::Result<String> {
    if matches!(s, "" | "." | "..") {
        bail!("'{s}' is not a valid name or id");
    }
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Ok(out)
}

/// Whether `policy attach`'s POLICY names a document file rather than a managed policy.
fn is_policy_file(policy: &str, is_file: impl FnOnce(&Path) -> bool) -> bool {
    policy.contains('/') || policy.ends_with(".json") || is_file(Path::new(policy))
}

/// The body of `policy attach`: a managed policy's name, or a named policy document read from
/// a file.
fn attach_body(
    policy: &str,
    name: Option<&str>,
    is_file: impl FnOnce(&Path) -> bool,
) -> anyhow::Result<Value> {
    if !is_policy_file(policy, is_file) {
        if name.is_some() {
            bail!(
                "--name applies to policy document files only; '{policy}' is a managed policy name"
            );
        }
        return Ok(json!({ "policyName": policy }));
    }
    let path = Path::new(policy);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy document {}", path.display()))?;
    let document: Value = serde_json::from_str(&text)
        .with_context(|| format!("policy document {} is not valid JSON", path.display()))?;
    if !document.is_object() {
        bail!("policy document {} must be a JSON object", path.display());
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .with_context(|| {
                format!(
                    "cannot name the policy from {}; pass --name",
                    path.display()
                )
            })?
            .to_string(),
    };
    Ok(json!({ "policyName": name, "policyDocument": document }))
}

/// The URL of `path` on the target's endpoint (plain HTTP only).
fn url(target: &Target, path: &str) -> anyhow::Result<Url> {
    let endpoint = &target.endpoint;
    let url = Url::parse(&format!("{}{path}", endpoint.trim_end_matches('/')))
        .with_context(|| format!("invalid endpoint '{endpoint}'"))?;
    match url.scheme() {
        "http" => Ok(url),
        "https" => bail!(
            "endpoint '{endpoint}': this build of hestia has no TLS client; use an http:// endpoint"
        ),
        _ => bail!("endpoint '{endpoint}' must be an http:// URL"),
    }
}

/// Sends `call` signed; the text to print on success.
async fn send(target: &Target, call: &ApiCall) -> anyhow::Result<Option<String>> {
    send_with(target, call, TIMEOUT).await
}

/// [`send`] with a deadline of `timeout` per attempt.
async fn send_with(
    target: &Target,
    call: &ApiCall,
    timeout: Duration,
) -> anyhow::Result<Option<String>> {
    let url = url(target, &call.path)?;
    let body = call.body.as_ref().map(serde_json::to_vec).transpose()?;
    // A redirect would not carry a valid signature for its new URL.
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut attempt = 1;
    loop {
        // Signed per attempt: the signature carries the time.
        let headers = signed_headers(
            &call.method,
            &url,
            body.as_deref(),
            &target.credentials,
            &target.region,
            SystemTime::now(),
        )?;
        let mut request = client
            .request(call.method.clone(), url.clone())
            .headers(headers);
        if let Some(body) = &body {
            request = request.body(body.clone());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", target.endpoint))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the response from {}", target.endpoint))?;
        // Throttled or unavailable: retried with backoff, as the AWS CLI's standard mode does.
        let retryable =
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
        if retryable && attempt < MAX_ATTEMPTS {
            tokio::time::sleep(RETRY_BASE * 2u32.pow(attempt - 1)).await;
            attempt += 1;
            continue;
        }
        return response_output(status, &text);
    }
}

/// The pretty JSON (or raw text) of a successful response, nothing for an empty one; an error
/// `<status> <message>` for a failed one.
fn response_output(status: StatusCode, body: &str) -> anyhow::Result<Option<String>> {
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| {
                ["message", "Message"]
                    .iter()
                    .find_map(|k| v.get(k)?.as_str().map(str::to_string))
            })
            .unwrap_or_else(|| body.trim().to_string());
        bail!("{}", format!("{status} {message}").trim_end());
    }
    if status == StatusCode::NO_CONTENT || body.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(match serde_json::from_str::<Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v)?,
        Err(_) => body.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use hestia_auth::{Credentials, RequestParts, SigV4Config, Verifier};
    use hestia_aws_client::{AwsCredentials, DEFAULT_REGION, SERVICE};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        admin: AdminArgs,
    }

    fn parse(args: &[&str]) -> AdminArgs {
        let argv = std::iter::once("hestia-admin").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("parses").admin
    }

    fn call(args: &[&str]) -> ApiCall {
        api_call(&parse(args).command).expect("call")
    }

    #[test]
    fn commands_map_to_admin_api_calls() {
        let cases: Vec<(&[&str], Method, &str, Option<Value>)> = vec![
            (
                &["account", "create", "acme"],
                Method::POST,
                "/admin/accounts",
                Some(json!({"name": "acme"})),
            ),
            (&["account", "list"], Method::GET, "/admin/accounts", None),
            (
                &["account", "delete", "acc-1"],
                Method::DELETE,
                "/admin/accounts/acc-1",
                None,
            ),
            (
                &["user", "create", "alice"],
                Method::POST,
                "/admin/users",
                Some(json!({"userName": "alice"})),
            ),
            (&["user", "list"], Method::GET, "/admin/users", None),
            (
                &["user", "delete", "a b/c"],
                Method::DELETE,
                "/admin/users/a%20b%2Fc",
                None,
            ),
            (
                &["access-key", "create", "alice"],
                Method::POST,
                "/admin/users/alice/access-keys",
                Some(json!({})),
            ),
            (
                &["access-key", "list", "alice"],
                Method::GET,
                "/admin/users/alice/access-keys",
                None,
            ),
            (
                &["access-key", "delete", "alice", "AKIA1"],
                Method::DELETE,
                "/admin/users/alice/access-keys/AKIA1",
                None,
            ),
            (
                &["policy", "attach", "alice", "ReadOnlyAccess-x"],
                Method::POST,
                "/admin/users/alice/policies",
                Some(json!({"policyName": "ReadOnlyAccess-x"})),
            ),
            (
                &["policy", "detach", "alice", "p~1.é"],
                Method::DELETE,
                "/admin/users/alice/policies/p~1.%C3%A9",
                None,
            ),
            (
                &["policy", "list", "alice"],
                Method::GET,
                "/admin/users/alice/policies",
                None,
            ),
            (
                &["token", "create", "ws-1", "--scope", "read"],
                Method::POST,
                "/workspaces/ws-1/tokens",
                Some(json!({"scope": "read"})),
            ),
            (
                &[
                    "token", "create", "ws-1", "--scope", "write", "--name", "ci",
                ],
                Method::POST,
                "/workspaces/ws-1/tokens",
                Some(json!({"scope": "write", "name": "ci"})),
            ),
            (
                &["token", "list", "ws-1"],
                Method::GET,
                "/workspaces/ws-1/tokens",
                None,
            ),
            (
                &["token", "revoke", "ws-1", "tok-9"],
                Method::DELETE,
                "/workspaces/ws-1/tokens/tok-9",
                None,
            ),
        ];
        for (args, method, path, body) in cases {
            let want = ApiCall {
                method,
                path: path.to_string(),
                body,
            };
            assert_eq!(call(args), want, "{args:?}");
        }
    }

    #[test]
    fn blocks_and_compact_commands() {
        let a = parse(&["blocks", "list", "ws-1", "--json"]);
        assert!(
            matches!(&a.command, AdminCommand::Blocks(BlocksCommand::List { workspace, json: true }) if workspace == "ws-1"),
            "{:?}",
            a.command
        );
        let AdminCommand::Compact(c) = parse(&["compact", "--now", "--workspace", "ws-2"]).command
        else {
            panic!("compact");
        };
        assert_eq!(c.request().workspace_id.as_deref(), Some("ws-2"));
        let AdminCommand::Compact(c) = parse(&["compact", "--now"]).command else {
            panic!("compact");
        };
        assert_eq!(serde_json::to_value(c.request()).unwrap(), json!({}));
        assert!(
            Cli::try_parse_from(["x", "compact"]).is_err(),
            "--now is required"
        );
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let a = parse(&[
            "--endpoint",
            "http://h:1",
            "user",
            "list",
            "--region",
            "eu-west-1",
        ]);
        assert_eq!(a.endpoint.as_deref(), Some("http://h:1"));
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        let a = parse(&["--profile", "ops", "token", "list", "ws"]);
        assert_eq!(a.profile.as_deref(), Some("ops"));
        assert!(Cli::try_parse_from(["x", "token", "create", "ws", "--scope", "admin"]).is_err());
        assert!(Cli::try_parse_from(["x", "token", "create", "ws"]).is_err());
    }

    #[test]
    fn dot_and_empty_segments_are_refused() {
        for bad in ["", ".", ".."] {
            let err = api_call(&parse(&["user", "delete", bad]).command).unwrap_err();
            assert!(err.to_string().contains("not a valid name"), "{err}");
        }
        assert_eq!(encode_segment("...").unwrap(), "...");
    }

    #[test]
    fn managed_policy_names_and_document_files() {
        let never = |_: &Path| false;
        assert!(!is_policy_file("ReadOnly", never));
        assert!(!is_policy_file("policy.JSON.bak", never));
        assert!(is_policy_file("policies/read", never));
        assert!(is_policy_file("read.json", never));
        assert!(is_policy_file("read", |p: &Path| p == Path::new("read")));
        assert!(attach_body("ReadOnly", Some("x"), never)
            .unwrap_err()
            .to_string()
            .contains("--name"));

        let dir = tempfile::tempdir().unwrap();
        let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "aps:*", "Resource": "*"}]});
        let file = dir.path().join("readers.json");
        std::fs::write(&file, doc.to_string()).unwrap();
        let file = file.to_str().unwrap();
        assert_eq!(
            attach_body(file, None, Path::is_file).unwrap(),
            json!({"policyName": "readers", "policyDocument": doc})
        );
        assert_eq!(
            attach_body(file, Some("ops"), Path::is_file).unwrap(),
            json!({"policyName": "ops", "policyDocument": doc})
        );

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"Version\": ").unwrap();
        let err = attach_body(bad.to_str().unwrap(), None, Path::is_file).unwrap_err();
        assert!(format!("{err:#}").contains("is not valid JSON"), "{err:#}");
        let list = dir.path().join("list.json");
        std::fs::write(&list, "[]").unwrap();
        let err = attach_body(list.to_str().unwrap(), None, Path::is_file).unwrap_err();
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
        let missing = dir.path().join("missing.json");
        let err = attach_body(missing.to_str().unwrap(), None, Path::is_file).unwrap_err();
        assert!(
            err.to_string().contains("cannot read policy document"),
            "{err}"
        );
    }

    fn creds(id: &str, secret: &str, token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: id.into(),
            secret_access_key: secret.into(),
            session_token: token.map(str::to_string),
        }
    }

    #[test]
    fn responses_print_pretty_json_or_fail_with_status_and_message() {
        let out = response_output(StatusCode::OK, r#"{"a":1}"#).unwrap();
        assert_eq!(out.as_deref(), Some("{\n  \"a\": 1\n}"));
        assert_eq!(response_output(StatusCode::NO_CONTENT, "").unwrap(), None);
        assert_eq!(
            response_output(StatusCode::OK, "plain").unwrap().as_deref(),
            Some("plain")
        );
        let err = response_output(StatusCode::FORBIDDEN, r#"{"message":"denied"}"#).unwrap_err();
        assert_eq!(err.to_string(), "403 Forbidden denied");
        let err = response_output(StatusCode::BAD_GATEWAY, "upstream down\n").unwrap_err();
        assert_eq!(err.to_string(), "502 Bad Gateway upstream down");
        let err = response_output(StatusCode::NOT_FOUND, "").unwrap_err();
        assert_eq!(err.to_string(), "404 Not Found");
    }

    #[test]
    fn https_endpoints_are_refused_clearly() {
        let t = Target {
            endpoint: "https://h".into(),
            region: DEFAULT_REGION.into(),
            credentials: creds("AK", "s", None),
        };
        assert!(url(&t, "/admin/users")
            .unwrap_err()
            .to_string()
            .contains("no TLS"));
    }

    /// A server that answers with what it received when the signature verifies, else 403.
    async fn echo_server(known: AwsCredentials) -> String {
        use axum::extract::Request;
        use axum::response::IntoResponse;

        let verifier = std::sync::Arc::new(Verifier::new(SigV4Config::new("eu-west-1", SERVICE)));
        let app = axum::Router::new().fallback(move |req: Request| {
            let (verifier, known) = (verifier.clone(), known.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                let url = Url::parse(&format!("http://x{}", parts.uri)).unwrap();
                let m = parts.method.as_str();
                let signed = RequestParts {
                    method: m,
                    path: url.path(),
                    query: url.query(),
                    headers: &parts.headers,
                    body: Some(&body),
                };
                let lookup = |id: &str| {
                    (id == known.access_key_id).then(|| Credentials {
                        access_key_id: known.access_key_id.clone(),
                        secret_access_key: known.secret_access_key.clone(),
                        session_token: known.session_token.clone(),
                    })
                };
                match verifier.verify(&signed, SystemTime::now(), lookup) {
                    Err(e) => (
                        axum::http::StatusCode::FORBIDDEN,
                        axum::Json(json!({"message": e.to_string()})),
                    )
                        .into_response(),
                    Ok(_) if parts.method == Method::DELETE => {
                        axum::http::StatusCode::NO_CONTENT.into_response()
                    }
                    Ok(who) => axum::Json(json!({
                        "method": m,
                        "path": parts.uri.path(),
                        "who": who.access_key_id,
                        "userAgent": parts.headers["user-agent"].to_str().unwrap(),
                        "body": serde_json::from_slice::<Value>(&body).ok(),
                    }))
                    .into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn requests_go_out_signed_as_built() {
        let known = creds("AKID", "secret", Some("token"));
        let mut target = Target {
            endpoint: echo_server(known.clone()).await,
            region: "eu-west-1".into(),
            credentials: known,
        };
        let out = send(&target, &call(&["access-key", "create", "a b"]))
            .await
            .unwrap()
            .unwrap();
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            got,
            json!({
                "method": "POST",
                "path": "/admin/users/a%20b/access-keys",
                "who": "AKID",
                "userAgent": USER_AGENT,
                "body": {},
            })
        );
        assert!(out.contains('\n'), "pretty-printed: {out}");
        let out = send(&target, &call(&["token", "list", "ws-1"]))
            .await
            .unwrap();
        assert!(out.unwrap().contains("\"GET\""));
        let out = send(&target, &call(&["token", "revoke", "ws-1", "t"])).await;
        assert_eq!(out.unwrap(), None);

        target.credentials.secret_access_key = "wrong".into();
        let err = send(&target, &call(&["user", "list"])).await.unwrap_err();
        assert!(err.to_string().starts_with("403 Forbidden "), "{err}");
        assert!(!err.to_string().contains('{'), "{err}");
    }
}
