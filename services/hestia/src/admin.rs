//! `hestia admin`: manages accounts, users, access keys, policies and workspace tokens through
//! Hestia's HTTP admin API. Requests are signed with AWS SigV4 (service `aps`) like any client's,
//! with credentials found the way the AWS CLI finds static ones (environment, shared credentials
//! file, config file), and the JSON response is pretty-printed to stdout.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_PROFILE: &str = "default";
const SERVICE: &str = "aps";
const USER_AGENT: &str = concat!("hestia-admin/", env!("CARGO_PKG_VERSION"));
const TIMEOUT: Duration = Duration::from_secs(30);

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
    let call = api_call(&args.command)?;
    let target = resolve(
        args.endpoint.as_deref(),
        args.profile.as_deref(),
        args.region.as_deref(),
        &AwsEnv::from_process(),
    )?;
    if let Some(out) = send(&target, &call).await? {
        println!("{out}");
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

/// Static AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials' session token (sent as `x-amz-security-token`).
    pub session_token: Option<String>,
}

/// The process environment that credential, region and endpoint resolution read (empty
/// variables count as unset).
#[derive(Debug, Clone, Default)]
struct AwsEnv {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    profile: Option<String>,
    region: Option<String>,
    default_region: Option<String>,
    credentials_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl AwsEnv {
    fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            profile: var("AWS_PROFILE"),
            region: var("AWS_REGION"),
            default_region: var("AWS_DEFAULT_REGION"),
            credentials_file: var("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from),
            config_file: var("AWS_CONFIG_FILE").map(PathBuf::from),
            home: std::env::home_dir(),
        }
    }

    /// `explicit`, else `~/.aws/<name>`.
    fn aws_file(&self, explicit: &Option<PathBuf>, name: &str) -> Option<PathBuf> {
        explicit
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".aws").join(name)))
    }
}

/// Where requests go and how they are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    endpoint: String,
    region: String,
    credentials: AwsCredentials,
}

impl Target {
    fn url(&self, path: &str) -> anyhow::Result<Url> {
        let url = Url::parse(&format!("{}{path}", self.endpoint.trim_end_matches('/')))
            .with_context(|| format!("invalid endpoint '{}'", self.endpoint))?;
        match url.scheme() {
            "http" => Ok(url),
            "https" => bail!(
                "endpoint '{}': this build of hestia has no TLS client; use an http:// endpoint",
                self.endpoint
            ),
            _ => bail!("endpoint '{}' must be an http:// URL", self.endpoint),
        }
    }
}

/// Endpoint, region and credentials from the flags (`endpoint` includes HESTIA_ENDPOINT), the
/// environment and the AWS shared files, in the AWS CLI's order.
fn resolve(
    endpoint: Option<&str>,
    profile: Option<&str>,
    region: Option<&str>,
    env: &AwsEnv,
) -> anyhow::Result<Target> {
    let name = profile
        .or(env.profile.as_deref())
        .unwrap_or(DEFAULT_PROFILE);
    let credentials_path = env.aws_file(&env.credentials_file, "credentials");
    let config_path = env.aws_file(&env.config_file, "config");
    let credentials_ini = read_ini(credentials_path.as_deref())?;
    let config_ini = read_ini(config_path.as_deref())?;
    let credentials_section = credentials_ini.get(name);
    let (config_label, config_section) = config_section(&config_ini, name);
    let credentials_place = format!("[{name}] in {}", describe(&credentials_path));
    let config_place = format!("{config_label} in {}", describe(&config_path));

    let mut found = match profile {
        None => env_credentials(env)?,
        Some(_) => None,
    };
    if found.is_none() {
        found = section_credentials(credentials_section, &credentials_place)?;
    }
    if found.is_none() {
        found = section_credentials(config_section, &config_place)?;
    }
    let Some(credentials) = found else {
        if let Some(key) = config_section.and_then(unsupported_source) {
            bail!(
                "{config_place} gets its credentials through '{key}', which hestia admin does \
                 not support; export static credentials (AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) instead"
            );
        }
        let env_place = match profile {
            None => "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ",
            Some(_) => "",
        };
        bail!(
            "no AWS credentials found: looked in {env_place}{credentials_place} and {config_place}"
        );
    };

    let region = region
        .map(str::to_string)
        .or_else(|| env.region.clone())
        .or_else(|| env.default_region.clone())
        .or_else(|| ini_value(config_section, "region"))
        .or_else(|| ini_value(credentials_section, "region"))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let endpoint = endpoint
        .map(str::to_string)
        .or_else(|| ini_value(config_section, "endpoint_url"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    Ok(Target {
        endpoint,
        region,
        credentials,
    })
}

fn describe(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "~/.aws (no home directory)".to_string(),
    }
}

fn env_credentials(env: &AwsEnv) -> anyhow::Result<Option<AwsCredentials>> {
    match (&env.access_key_id, &env.secret_access_key) {
        (Some(id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: env.session_token.clone(),
        })),
        (None, None) => Ok(None),
        _ => bail!("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither"),
    }
}

/// An INI file: section name (inner whitespace collapsed: `[profile  x]` is `profile x`) →
/// key → value.
type Ini = HashMap<String, Section>;
type Section = HashMap<String, String>;

/// The AWS files' INI dialect: `[section]` headers, `key = value` lines, `#` and `;` comment
/// lines, and indented sub-settings under a key with an empty value (skipped).
fn parse_ini(text: &str) -> Ini {
    let mut ini = Ini::new();
    let mut section: Option<String> = None;
    let mut nested = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = inner.split_whitespace().collect::<Vec<_>>().join(" ");
            ini.entry(name.clone()).or_default();
            section = Some(name);
            nested = false;
            continue;
        }
        if nested && line.starts_with([' ', '\t']) {
            continue;
        }
        let (Some(s), Some((key, value))) = (&section, trimmed.split_once('=')) else {
            continue;
        };
        let value = value.trim();
        nested = value.is_empty();
        ini.entry(s.clone())
            .or_default()
            .insert(key.trim().to_string(), value.to_string());
    }
    ini
}

/// A missing file reads as empty.
fn read_ini(path: Option<&Path>) -> anyhow::Result<Ini> {
    let Some(path) = path else {
        return Ok(Ini::new());
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_ini(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ini::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The config file's section of `profile`, with its label: `[profile P]`, or `[default]` (or
/// `[profile default]`) for the default profile.
fn config_section<'a>(ini: &'a Ini, profile: &str) -> (String, Option<&'a Section>) {
    let named = ini.get(&format!("profile {profile}"));
    if profile == DEFAULT_PROFILE {
        ("[default]".to_string(), ini.get(DEFAULT_PROFILE).or(named))
    } else {
        (format!("[profile {profile}]"), named)
    }
}

fn ini_value(section: Option<&Section>, key: &str) -> Option<String> {
    section?.get(key).filter(|v| !v.is_empty()).cloned()
}

fn section_credentials(
    section: Option<&Section>,
    place: &str,
) -> anyhow::Result<Option<AwsCredentials>> {
    match (
        ini_value(section, "aws_access_key_id"),
        ini_value(section, "aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: ini_value(section, "aws_session_token"),
        })),
        (None, None) => Ok(None),
        _ => bail!("{place} needs both aws_access_key_id and aws_secret_access_key"),
    }
}

/// A credential source of the AWS CLI that this client does not implement.
fn unsupported_source(section: &Section) -> Option<&'static str> {
    [
        "role_arn",
        "credential_process",
        "sso_session",
        "sso_start_url",
    ]
    .into_iter()
    .find(|k| section.contains_key(*k))
}

/// The headers that sign `method url` with a JSON `body` at `time`: host, content-type (with a
/// body), x-amz-date, x-amz-content-sha256, x-amz-security-token (temporary credentials) and
/// authorization.
pub fn signed_headers(
    method: &Method,
    url: &Url,
    body: Option<&[u8]>,
    credentials: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> anyhow::Result<HeaderMap> {
    let content_type = body.map(|_| "application/json");
    signed_headers_with(method, url, body, content_type, credentials, region, time)
}

/// [`signed_headers`] with any content type (and then the `body` is signed as is).
pub fn signed_headers_with(
    method: &Method,
    url: &Url,
    body: Option<&[u8]>,
    content_type: Option<&str>,
    credentials: &AwsCredentials,
    region: &str,
    time: SystemTime,
) -> anyhow::Result<HeaderMap> {
    let host = url.host_str().context("the endpoint has no host")?;
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let mut headers = vec![("host", host)];
    if let Some(ct) = content_type {
        headers.push(("content-type", ct.to_string()));
    }
    let identity = aws_credential_types::Credentials::new(
        &credentials.access_key_id,
        &credentials.secret_access_key,
        credentials.session_token.clone(),
        None,
        "hestia-admin",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()?
        .into();
    let signable = SignableRequest::new(
        method.as_str(),
        url.as_str(),
        headers.iter().map(|(n, v)| (*n, v.as_str())),
        SignableBody::Bytes(body.unwrap_or_default()),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut map = HeaderMap::new();
    let signature = instructions.headers();
    for (name, value) in headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .chain(signature)
    {
        map.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    Ok(map)
}

/// Sends `call` signed; the text to print on success.
async fn send(target: &Target, call: &ApiCall) -> anyhow::Result<Option<String>> {
    let url = target.url(&call.path)?;
    let body = call.body.as_ref().map(serde_json::to_vec).transpose()?;
    let headers = signed_headers(
        &call.method,
        &url,
        body.as_deref(),
        &target.credentials,
        &target.region,
        SystemTime::now(),
    )?;
    // A redirect would not carry a valid signature for its new URL.
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut request = client.request(call.method.clone(), url).headers(headers);
    if let Some(body) = body {
        request = request.body(body);
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
    response_output(status, &text)
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
    use std::time::UNIX_EPOCH;

    use clap::Parser;
    use hestia_auth::{Credentials, RequestParts, SigV4Config, Verifier};

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

    #[test]
    fn ini_comments_whitespace_and_nested_settings() {
        let ini = parse_ini(
            "# top comment\nstray = ignored\n[default]\naws_access_key_id=AK1\n  ; indented comment\n\
             aws_secret_access_key   =   secret = with equals  \n\
             [profile   ops ]\nregion = eu-west-1\ns3 =\n  region = nested\n  max = 10\n\
             endpoint_url = http://ops:8080\n",
        );
        let d = &ini["default"];
        assert_eq!(d["aws_access_key_id"], "AK1");
        assert_eq!(d["aws_secret_access_key"], "secret = with equals");
        assert_eq!(d.len(), 2);
        let ops = &ini["profile ops"];
        assert_eq!(ops["region"], "eu-west-1");
        assert_eq!(ops["endpoint_url"], "http://ops:8080");
        assert!(!ops.contains_key("max"));
        assert_eq!(ini.len(), 2);
    }

    /// An environment whose AWS files are `credentials` and `config` in a temp dir.
    fn files(credentials: &str, config: &str) -> (tempfile::TempDir, AwsEnv) {
        let dir = tempfile::tempdir().unwrap();
        let (c, f) = (dir.path().join("credentials"), dir.path().join("config"));
        std::fs::write(&c, credentials).unwrap();
        std::fs::write(&f, config).unwrap();
        let env = AwsEnv {
            credentials_file: Some(c),
            config_file: Some(f),
            ..AwsEnv::default()
        };
        (dir, env)
    }

    fn creds(id: &str, secret: &str, token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key_id: id.into(),
            secret_access_key: secret.into(),
            session_token: token.map(str::to_string),
        }
    }

    const CREDENTIALS: &str =
        "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = sdef\n\
        [ops]\naws_access_key_id = AKOPS\naws_secret_access_key = sops\naws_session_token = tops\n\
        region = ap-south-1\n";
    const CONFIG: &str = "[default]\nregion = eu-central-1\n[profile ops]\n\
        endpoint_url = http://ops:9090\n[profile cfg]\naws_access_key_id = AKCFG\n\
        aws_secret_access_key = scfg\n[profile sso]\nsso_session = corp\n";

    #[test]
    fn credentials_come_from_env_then_credentials_then_config() {
        let (_dir, mut env) = files(CREDENTIALS, CONFIG);
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKDEF", "sdef", None));
        assert_eq!(t.region, "eu-central-1");
        assert_eq!(t.endpoint, DEFAULT_ENDPOINT);

        env.access_key_id = Some("AKENV".into());
        env.secret_access_key = Some("senv".into());
        env.session_token = Some("tenv".into());
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKENV", "senv", Some("tenv")));

        // --profile skips the environment's keys; AWS_PROFILE does not.
        let t = resolve(None, Some("ops"), None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKOPS", "sops", Some("tops")));
        assert_eq!(t.region, "ap-south-1");
        assert_eq!(t.endpoint, "http://ops:9090");
        env.profile = Some("ops".into());
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKENV", "senv", Some("tenv")));
        assert_eq!(t.endpoint, "http://ops:9090");

        let t = resolve(Some("http://flag:1"), Some("cfg"), None, &env).unwrap();
        assert_eq!(t.credentials, creds("AKCFG", "scfg", None));
        assert_eq!(t.endpoint, "http://flag:1");

        env.secret_access_key = None;
        let err = resolve(None, None, None, &env).unwrap_err();
        assert!(err.to_string().contains("set both"), "{err}");
    }

    #[test]
    fn region_precedence() {
        let (_dir, mut env) = files(CREDENTIALS, CONFIG);
        let region = |env: &AwsEnv, flag: Option<&str>, profile: Option<&str>| {
            resolve(None, profile, flag, env).unwrap().region
        };
        assert_eq!(region(&env, None, Some("cfg")), DEFAULT_REGION);
        assert_eq!(region(&env, None, Some("ops")), "ap-south-1");
        assert_eq!(region(&env, None, None), "eu-central-1");
        env.default_region = Some("us-west-1".into());
        assert_eq!(region(&env, None, None), "us-west-1");
        env.region = Some("us-west-2".into());
        assert_eq!(region(&env, None, None), "us-west-2");
        assert_eq!(region(&env, Some("sa-east-1"), None), "sa-east-1");
    }

    #[test]
    fn missing_credentials_name_where_they_were_looked_for() {
        let (dir, env) = files(CREDENTIALS, CONFIG);
        let err = resolve(None, Some("nope"), None, &env)
            .unwrap_err()
            .to_string();
        let creds_path = dir.path().join("credentials");
        let config_path = dir.path().join("config");
        assert!(err.contains("no AWS credentials found"), "{err}");
        assert!(
            err.contains(&format!("[nope] in {}", creds_path.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("[profile nope] in {}", config_path.display())),
            "{err}"
        );
        assert!(!err.contains("AWS_ACCESS_KEY_ID"), "{err}");

        let err = resolve(None, Some("sso"), None, &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'sso_session'"), "{err}");

        // No files at all (they do not exist under this home).
        let env = AwsEnv {
            home: Some(dir.path().join("home")),
            ..AwsEnv::default()
        };
        let err = resolve(None, None, None, &env).unwrap_err().to_string();
        assert!(
            err.contains("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
            "{err}"
        );
        assert!(err.contains("[default] in "), "{err}");
        assert!(err.contains(".aws/credentials"), "{err}");

        let (_dir, env) = files("[default]\naws_access_key_id = AK\n", "");
        let err = resolve(None, None, None, &env).unwrap_err().to_string();
        assert!(err.contains("needs both"), "{err}");
    }

    #[test]
    fn default_profile_may_be_profile_default_in_config() {
        let (_dir, env) = files(
            "",
            "[profile default]\naws_access_key_id = AK\naws_secret_access_key = s\n",
        );
        let t = resolve(None, None, None, &env).unwrap();
        assert_eq!(t.credentials, creds("AK", "s", None));
    }

    fn verify(
        verifier: &Verifier,
        method: &str,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        known: &AwsCredentials,
    ) -> Result<hestia_auth::Verified, hestia_auth::AuthError> {
        let req = RequestParts {
            method,
            path: url.path(),
            query: url.query(),
            headers,
            body: Some(body),
        };
        verifier.verify(&req, now, |id| {
            (id == known.access_key_id).then(|| Credentials {
                access_key_id: known.access_key_id.clone(),
                secret_access_key: known.secret_access_key.clone(),
                session_token: known.session_token.clone(),
            })
        })
    }

    #[test]
    fn signatures_verify_with_hestia_auth() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_500_000);
        let verifier = Verifier::new(SigV4Config::new("eu-west-1", SERVICE));
        for (c, method, path, body) in [
            (
                creds("AKID1", "secret1", None),
                Method::POST,
                "/admin/users/a%20b%2Fc/policies",
                Some(br#"{"policyName":"x"}"#.as_slice()),
            ),
            (
                creds("AKID2", "secret2", Some("session")),
                Method::GET,
                "/workspaces/ws-1/tokens",
                None,
            ),
            (
                creds("AKID3", "secret3", None),
                Method::DELETE,
                "/admin/users/%C3%A9",
                None,
            ),
        ] {
            let url = Url::parse(&format!("http://127.0.0.1:8080{path}")).unwrap();
            let headers = signed_headers(&method, &url, body, &c, "eu-west-1", now).expect("signs");
            assert_eq!(headers["host"], "127.0.0.1:8080");
            assert_eq!(body.is_some(), headers.contains_key("content-type"));
            let bytes = body.unwrap_or_default();
            let ok = verify(&verifier, method.as_str(), &url, &headers, bytes, now, &c);
            assert_eq!(ok.expect("verifies").access_key_id, c.access_key_id);
            assert!(verify(&verifier, method.as_str(), &url, &headers, b"{}", now, &c).is_err());
            let other = Url::parse("http://127.0.0.1:8080/admin/users/other").unwrap();
            assert!(verify(&verifier, method.as_str(), &other, &headers, bytes, now, &c).is_err());
            let wrong = creds(&c.access_key_id, "other-secret", c.session_token.as_deref());
            assert!(verify(
                &verifier,
                method.as_str(),
                &url,
                &headers,
                bytes,
                now,
                &wrong
            )
            .is_err());
        }
        let url = Url::parse("http://h/admin/users").unwrap();
        let c = creds("AKID1", "secret1", None);
        let headers = signed_headers(&Method::GET, &url, None, &c, "us-east-1", now).unwrap();
        assert_eq!(headers["host"], "h");
        assert!(verify(&verifier, "GET", &url, &headers, b"", now, &c).is_err());
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
        assert!(t
            .url("/admin/users")
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
                let now = SystemTime::now();
                match verify(&verifier, m, &url, &parts.headers, &body, now, &known) {
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
