//! The AMP workspace API (REST-JSON, `reference/amp/service-2.json`): paths, status codes, member
//! names and exception shapes as the model defines them, plus the admin endpoints (audit log,
//! limit overrides, voters, identities). The auth middleware in front of the router puts the
//! caller's [`Principal`] in each request; every call acts in the principal's account.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tracing::Instrument;

use hestia_auth::secrets::MasterKey;
use hestia_auth::{Authenticator, Principal};

use crate::audit::AuditEvent;
use crate::error::CpError;
use crate::node::ControlPlane;
use crate::state::{Command, Target, Workspace, WorkspaceConfiguration};

/// AMP's default retention when a workspace has no configured one.
pub const DEFAULT_RETENTION_DAYS: u32 = 150;

pub struct Api {
    pub(crate) cp: Arc<ControlPlane>,
    /// Seals new access keys' secrets; `None` when authentication is disabled.
    pub(crate) master: Option<MasterKey>,
    /// The node's authenticator, updated right after identity writes.
    pub(crate) auth: Option<Arc<Authenticator>>,
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
}

/// A token bucket (AMP: 5 transactions per second, burst 5, per account and operation).
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Api {
    pub fn new(
        cp: Arc<ControlPlane>,
        master: Option<MasterKey>,
        auth: Option<Arc<Authenticator>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cp,
            master,
            auth,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    fn throttle(&self, account: &str, op: &'static str) -> Result<(), CpError> {
        let (rate, burst) = (self.cp.cfg.api_rate, f64::from(self.cp.cfg.api_burst));
        let mut buckets = self.buckets.lock();
        let now = Instant::now();
        let b = buckets.entry((account.to_string(), op)).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0) as u64;
            Err(CpError::Throttled {
                retry_after_secs: wait,
            })
        }
    }

    fn arn(&self, account: &str, id: &str) -> String {
        format!(
            "arn:aws:aps:{}:{account}:workspace/{id}",
            self.cp.cfg.region
        )
    }

    fn summary(&self, w: &Workspace) -> Value {
        let mut v = json!({
            "workspaceId": w.id,
            "arn": self.arn(&w.account, &w.id),
            "status": {"statusCode": w.status.code()},
            "createdAt": w.created_at_ms as f64 / 1000.0,
        });
        if let Some(a) = &w.alias {
            v["alias"] = Value::from(a.as_str());
        }
        if !w.tags.is_empty() {
            v["tags"] = json!(w.tags);
        }
        v
    }

    fn description(&self, w: &Workspace) -> Value {
        let mut v = self.summary(w);
        v["prometheusEndpoint"] = Value::from(format!(
            "{}/workspaces/{}/",
            self.cp.public_url.trim_end_matches('/'),
            w.id
        ));
        v
    }

    /// A visible workspace of `account`, read linearizably.
    pub(crate) async fn workspace(&self, account: &str, id: &str) -> Result<Workspace, CpError> {
        check_workspace_id(id)?;
        let account = account.to_string();
        self.cp
            .read(|s| {
                s.workspaces
                    .get(id)
                    .filter(|w| w.visible() && w.account == account)
                    .cloned()
            })
            .await?
            .ok_or_else(|| CpError::workspace_not_found(id))
    }

    /// A write on a workspace of `account` (ownership checked before proposing).
    async fn write_owned(&self, account: &str, cmd: Command) -> Result<Workspace, CpError> {
        let Target::Workspace(id) = cmd.target() else {
            return Err(CpError::Internal(format!(
                "{cmd} is not a workspace command"
            )));
        };
        let id = id.to_string();
        self.workspace(account, &id).await?;
        self.cp
            .write(cmd)
            .await?
            .into_workspace()
            .ok_or_else(|| CpError::workspace_not_found(&id))
    }

    /// Resolves `arn:aws:aps:<region>:<account>:workspace/<id>` to a workspace id of `account`.
    fn workspace_of_arn(&self, account: &str, arn: &str) -> Result<String, CpError> {
        let not_found = || CpError::NotFound {
            message: format!("Resource not found: {arn}"),
            resource_id: arn.to_string(),
            resource_type: "Workspace",
        };
        let prefix = format!("arn:aws:aps:{}:{account}:workspace/", self.cp.cfg.region);
        if !arn.starts_with("arn:aws") {
            return Err(CpError::field("resourceArn", "must be a workspace ARN"));
        }
        arn.strip_prefix(&prefix)
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map(str::to_string)
            .ok_or_else(not_found)
    }
}

/// Who called: the principal the auth middleware put in the request, and where from.
pub struct Caller {
    pub principal: Principal,
    ip: String,
    user_agent: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| {
                CpError::Internal("the request did not pass the auth middleware".into())
                    .into_response()
            })?;
        Ok(Caller {
            principal,
            ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip().to_string())
                .unwrap_or_default(),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        })
    }
}

/// Runs one API operation: throttling, tracing span, metrics, audit event, response.
pub(crate) async fn call<F>(
    api: &Api,
    op: &'static str,
    read_only: bool,
    who: Caller,
    params: Value,
    status: StatusCode,
    f: F,
) -> Response
where
    F: std::future::Future<Output = Result<Option<Value>, CpError>>,
{
    crate::metrics::API_CALLS.with_label_values(&[op]).inc();
    let workspace = params
        .get("workspaceId")
        .or_else(|| params.get("resourceArn"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let span = tracing::info_span!(
        "amp_api",
        operation = op,
        account = %who.principal.account,
        workspace = %workspace
    );
    let result = async {
        api.throttle(&who.principal.account, op)?;
        f.await
    }
    .instrument(span)
    .await;
    let now = chrono::Utc::now().timestamp_millis();
    let event_id = uuid_v4();
    let (response_elements, error) = match &result {
        Ok(body) if !read_only => (redact(body.clone().unwrap_or(Value::Null)), None),
        Ok(_) => (Value::Null, None),
        Err(e) => (Value::Null, Some((e.error_type(), e.to_string()))),
    };
    let audited = api.cp.audit.append(AuditEvent {
        time_ms: now,
        event_id: &event_id,
        event_name: op,
        region: &api.cp.cfg.region,
        account: &who.principal.account,
        user_identity: crate::audit::user_identity(&who.principal),
        source_ip: who.ip,
        user_agent: who.user_agent,
        read_only,
        request_parameters: params,
        response_elements,
        error,
    });
    let result = match (result, audited) {
        (Ok(_), Err(e)) => Err(e),
        (r, _) => r,
    };
    match result {
        Ok(Some(body)) => (status, Json(body)).into_response(),
        Ok(None) => status.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Secrets a response hands out once (access keys, tokens) never reach the audit log.
fn redact(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            for (k, field) in m.iter_mut() {
                if matches!(k.as_str(), "secretAccessKey" | "token") {
                    *field = Value::from("HIDDEN_DUE_TO_SECURITY_REASONS");
                } else {
                    *field = redact(field.take());
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = redact(item.take());
            }
        }
        _ => {}
    }
    v
}

pub fn uuid_v4() -> String {
    let b: [u8; 16] = rand::random();
    let h = u128::from_be_bytes(b) & !(0xf000 << 64) & !(0xc000 << 48)
        | (0x4000 << 64)
        | (0x8000 << 48);
    let s = format!("{h:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

pub(crate) fn body_object(body: &Bytes) -> Result<Map<String, Value>, CpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CpError::cannot_parse("Request body must be a JSON object")),
        Err(e) => Err(CpError::cannot_parse(format!(
            "Could not parse request body: {e}"
        ))),
    }
}

pub(crate) fn opt_str<'a>(
    m: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, CpError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(CpError::field(name, "must be a string")),
    }
}

fn opt_int(m: &Map<String, Value>, name: &str, min: i64, max: i64) -> Result<Option<i64>, CpError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
            Some(_) => Err(CpError::field(
                name,
                format!("must be between {min} and {max}"),
            )),
            None => Err(CpError::field(name, "must be an integer")),
        },
    }
}

fn check_alias(alias: Option<&str>) -> Result<Option<String>, CpError> {
    let Some(a) = alias else { return Ok(None) };
    let a = a.trim();
    if a.is_empty() || a.chars().count() > 100 {
        return Err(CpError::field(
            "alias",
            "Member must have length between 1 and 100",
        ));
    }
    Ok(Some(a.to_string()))
}

fn check_client_token(t: Option<&str>) -> Result<Option<String>, CpError> {
    let Some(t) = t else { return Ok(None) };
    if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(CpError::field(
            "clientToken",
            "Member must have length between 1 and 64 and satisfy pattern [!-~]+",
        ));
    }
    Ok(Some(t.to_string()))
}

/// Ids are checked before any storage access: `ws-` and 1–64 of `[0-9A-Za-z-]`.
pub(crate) fn check_workspace_id(id: &str) -> Result<(), CpError> {
    hestia_model::WorkspaceId::parse(id)
        .map(|_| ())
        .map_err(|e| CpError::field("workspaceId", e.to_string()))
}

fn tag_chars_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

fn check_tag_key(k: &str) -> Result<(), CpError> {
    if k.is_empty() || k.chars().count() > 128 || !tag_chars_ok(k) || k.starts_with("aws:") {
        return Err(CpError::field(
            "tags",
            format!("invalid tag key {k:?}: 1-128 characters of letters, digits, spaces and _.:/=+-@, not starting with aws:"),
        ));
    }
    Ok(())
}

fn check_tags(m: &Map<String, Value>, required: bool) -> Result<BTreeMap<String, String>, CpError> {
    let obj = match m.get("tags") {
        None | Some(Value::Null) if required => {
            return Err(CpError::field("tags", "Member must not be null"))
        }
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(CpError::field("tags", "must be a map of strings")),
    };
    if obj.len() > 50 {
        return Err(CpError::field(
            "tags",
            "Member must have at most 50 entries",
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        check_tag_key(k)?;
        let Some(v) = v.as_str() else {
            return Err(CpError::field(
                "tags",
                format!("value of {k:?} must be a string"),
            ));
        };
        if v.chars().count() > 256 || !tag_chars_ok(v) {
            return Err(CpError::field(
                "tags",
                format!("invalid value for tag {k:?}"),
            ));
        }
        out.insert(k.clone(), v.to_string());
    }
    Ok(out)
}

pub(crate) type ApiState = State<Arc<Api>>;

async fn create_workspace(State(api): ApiState, who: Caller, body: Bytes) -> Response {
    let account = who.principal.account.clone();
    let parsed = body_object(&body);
    let params = parsed
        .as_ref()
        .map(|m| Value::Object(m.clone()))
        .unwrap_or(Value::Null);
    call(
        &api,
        "CreateWorkspace",
        false,
        who,
        params,
        StatusCode::ACCEPTED,
        async {
            let m = parsed?;
            let alias = check_alias(opt_str(&m, "alias")?)?;
            let client_token = check_client_token(opt_str(&m, "clientToken")?)?;
            let tags = check_tags(&m, false)?;
            if opt_str(&m, "kmsKeyArn")?.is_some() {
                return Err(CpError::Validation {
                    message: "Customer managed KMS keys are not supported".to_string(),
                    reason: "OTHER",
                    fields: vec![("kmsKeyArn".to_string(), "not supported".to_string())],
                });
            }
            let w = api
                .cp
                .write(Command::CreateWorkspace {
                    id: format!("ws-{}", uuid_v4()),
                    account: account.clone(),
                    alias,
                    tags,
                    client_token,
                    now_ms: chrono::Utc::now().timestamp_millis(),
                    max_per_account: api.cp.cfg.max_workspaces_per_account,
                })
                .await?
                .into_workspace()
                .ok_or_else(|| CpError::Internal("create returned no workspace".to_string()))?;
            let mut v = json!({
                "workspaceId": w.id,
                "arn": api.arn(&w.account, &w.id),
                "status": {"statusCode": w.status.code()},
            });
            if !w.tags.is_empty() {
                v["tags"] = json!(w.tags);
            }
            Ok(Some(v))
        },
    )
    .await
}

async fn describe_workspace(State(api): ApiState, who: Caller, Path(id): Path<String>) -> Response {
    let account = who.principal.account.clone();
    let params = json!({"workspaceId": id});
    call(
        &api,
        "DescribeWorkspace",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            let w = api.workspace(&account, &id).await?;
            Ok(Some(json!({"workspace": api.description(&w)})))
        },
    )
    .await
}

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn query_one(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

async fn list_workspaces(State(api): ApiState, who: Caller, RawQuery(q): RawQuery) -> Response {
    let account = who.principal.account.clone();
    let pairs = query_pairs(&q);
    let params = Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    );
    call(
        &api,
        "ListWorkspaces",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            let max = match query_one(&pairs, "maxResults") {
                None => 100,
                Some(s) => match s.parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => {
                        return Err(CpError::field(
                            "maxResults",
                            "Member must have value between 1 and 1000",
                        ))
                    }
                },
            };
            let alias = query_one(&pairs, "alias");
            if alias
                .as_ref()
                .is_some_and(|a| a.is_empty() || a.chars().count() > 100)
            {
                return Err(CpError::field(
                    "alias",
                    "Member must have length between 1 and 100",
                ));
            }
            // The token is the (creation time, id) of the last workspace returned.
            let after =
                match query_one(&pairs, "nextToken").filter(|t| !t.is_empty()) {
                    None => None,
                    Some(t) => {
                        let parsed = t
                            .split_once('.')
                            .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id.to_string())));
                        Some(parsed.ok_or_else(|| {
                            CpError::field("nextToken", "invalid pagination token")
                        })?)
                    }
                };
            let account = account.clone();
            let mut all: Vec<Workspace> = api
                .cp
                .read(|s| {
                    s.workspaces
                        .values()
                        .filter(|w| w.visible() && w.account == account)
                        .filter(|w| match &alias {
                            Some(a) => w
                                .alias
                                .as_deref()
                                .is_some_and(|wa| wa.starts_with(a.as_str())),
                            None => true,
                        })
                        .cloned()
                        .collect()
                })
                .await?;
            all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
            let start = match &after {
                Some((ms, id)) => all.partition_point(|w| (w.created_at_ms, &w.id) <= (*ms, id)),
                None => 0,
            };
            let page: Vec<&Workspace> = all[start..].iter().take(max).collect();
            let mut v =
                json!({"workspaces": page.iter().map(|w| api.summary(w)).collect::<Vec<_>>()});
            if start + page.len() < all.len() {
                if let Some(last) = page.last() {
                    v["nextToken"] = Value::from(format!("{}.{}", last.created_at_ms, last.id));
                }
            }
            Ok(Some(v))
        },
    )
    .await
}

async fn update_alias(
    State(api): ApiState,
    who: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let account = who.principal.account.clone();
    let parsed = body_object(&body);
    let mut params = parsed
        .as_ref()
        .map(|m| Value::Object(m.clone()))
        .unwrap_or(json!({}));
    params["workspaceId"] = Value::from(id.as_str());
    call(
        &api,
        "UpdateWorkspaceAlias",
        false,
        who,
        params,
        StatusCode::NO_CONTENT,
        async {
            let m = parsed?;
            let alias = check_alias(opt_str(&m, "alias")?)?;
            check_client_token(opt_str(&m, "clientToken")?)?;
            api.write_owned(
                &account,
                Command::UpdateAlias {
                    id: id.clone(),
                    alias,
                },
            )
            .await?;
            Ok(None)
        },
    )
    .await
}

async fn delete_workspace(
    State(api): ApiState,
    who: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let account = who.principal.account.clone();
    let pairs = query_pairs(&q);
    let params = json!({"workspaceId": id, "clientToken": query_one(&pairs, "clientToken")});
    call(
        &api,
        "DeleteWorkspace",
        false,
        who,
        params,
        StatusCode::ACCEPTED,
        async {
            check_client_token(query_one(&pairs, "clientToken").as_deref())?;
            api.write_owned(
                &account,
                Command::Delete {
                    id: id.clone(),
                    now_ms: chrono::Utc::now().timestamp_millis(),
                },
            )
            .await?;
            Ok(None)
        },
    )
    .await
}

async fn list_tags(State(api): ApiState, who: Caller, Path(arn): Path<String>) -> Response {
    let account = who.principal.account.clone();
    let params = json!({"resourceArn": arn});
    call(
        &api,
        "ListTagsForResource",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            let w = api
                .workspace(&account, &api.workspace_of_arn(&account, &arn)?)
                .await?;
            Ok(Some(json!({"tags": w.tags})))
        },
    )
    .await
}

async fn tag_resource(
    State(api): ApiState,
    who: Caller,
    Path(arn): Path<String>,
    body: Bytes,
) -> Response {
    let account = who.principal.account.clone();
    let parsed = body_object(&body);
    let mut params = parsed
        .as_ref()
        .map(|m| Value::Object(m.clone()))
        .unwrap_or(json!({}));
    params["resourceArn"] = Value::from(arn.as_str());
    call(
        &api,
        "TagResource",
        false,
        who,
        params,
        StatusCode::OK,
        async {
            let m = parsed?;
            let tags = check_tags(&m, true)?;
            let id = api.workspace_of_arn(&account, &arn)?;
            let w = api.workspace(&account, &id).await?;
            let new_keys = tags.keys().filter(|k| !w.tags.contains_key(*k)).count();
            if w.tags.len() + new_keys > 50 {
                return Err(CpError::field(
                    "tags",
                    "a resource can have at most 50 tags",
                ));
            }
            api.write_owned(&account, Command::Tag { id, tags }).await?;
            Ok(Some(json!({})))
        },
    )
    .await
}

async fn untag_resource(
    State(api): ApiState,
    who: Caller,
    Path(arn): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let account = who.principal.account.clone();
    let keys: Vec<String> = query_pairs(&q)
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    let params = json!({"resourceArn": arn, "tagKeys": keys});
    call(
        &api,
        "UntagResource",
        false,
        who,
        params,
        StatusCode::OK,
        async {
            if keys.is_empty() {
                return Err(CpError::field("tagKeys", "Member must not be null"));
            }
            for k in &keys {
                check_tag_key(k)
                    .map_err(|_| CpError::field("tagKeys", format!("invalid tag key {k:?}")))?;
            }
            let id = api.workspace_of_arn(&account, &arn)?;
            api.write_owned(
                &account,
                Command::Untag {
                    id,
                    keys: keys.clone(),
                },
            )
            .await?;
            Ok(Some(json!({})))
        },
    )
    .await
}

fn configuration_json(w: &Workspace) -> Value {
    let c = &w.configuration;
    let mut v = json!({
        "status": {"statusCode": "ACTIVE"},
        "retentionPeriodInDays": c.retention_period_in_days.unwrap_or(DEFAULT_RETENTION_DAYS),
        "limitsPerLabelSet": c.limits_per_label_set.clone().unwrap_or_default(),
    });
    if let Some(s) = c.out_of_order_time_window_in_seconds {
        v["outOfOrderTimeWindowInSeconds"] = Value::from(s);
    }
    if let Some(s) = c.rule_query_offset_in_seconds {
        v["ruleQueryOffsetInSeconds"] = Value::from(s);
    }
    v
}

async fn describe_configuration(
    State(api): ApiState,
    who: Caller,
    Path(id): Path<String>,
) -> Response {
    let account = who.principal.account.clone();
    let params = json!({"workspaceId": id});
    call(
        &api,
        "DescribeWorkspaceConfiguration",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            let w = api.workspace(&account, &id).await?;
            Ok(Some(
                json!({"workspaceConfiguration": configuration_json(&w)}),
            ))
        },
    )
    .await
}

fn check_limits_per_label_set(v: &Value) -> Result<Vec<Value>, CpError> {
    let bad = |m: &str| CpError::field("limitsPerLabelSet", m.to_string());
    let list = v.as_array().ok_or_else(|| bad("must be a list"))?;
    for entry in list {
        let limits = entry
            .get("limits")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("each entry needs a limits object"))?;
        if let Some(ms) = limits.get("maxSeries") {
            if ms.as_i64().is_none_or(|n| n < 0) {
                return Err(bad("limits.maxSeries must be a non-negative integer"));
            }
        }
        let labels = entry
            .get("labelSet")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("each entry needs a labelSet map"))?;
        if labels.values().any(|v| !v.is_string()) {
            return Err(bad("labelSet values must be strings"));
        }
    }
    Ok(list.clone())
}

async fn update_configuration(
    State(api): ApiState,
    who: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let account = who.principal.account.clone();
    let parsed = body_object(&body);
    let mut params = parsed
        .as_ref()
        .map(|m| Value::Object(m.clone()))
        .unwrap_or(json!({}));
    params["workspaceId"] = Value::from(id.as_str());
    call(
        &api,
        "UpdateWorkspaceConfiguration",
        false,
        who,
        params,
        StatusCode::ACCEPTED,
        async {
            let m = parsed?;
            check_client_token(opt_str(&m, "clientToken")?)?;
            let configuration = WorkspaceConfiguration {
                retention_period_in_days: opt_int(
                    &m,
                    "retentionPeriodInDays",
                    1,
                    i64::from(u32::MAX),
                )?
                .map(|d| d as u32),
                out_of_order_time_window_in_seconds: opt_int(
                    &m,
                    "outOfOrderTimeWindowInSeconds",
                    0,
                    i64::MAX,
                )?
                .map(|s| s as u64),
                rule_query_offset_in_seconds: opt_int(&m, "ruleQueryOffsetInSeconds", 0, i64::MAX)?
                    .map(|s| s as u64),
                limits_per_label_set: match m.get("limitsPerLabelSet") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(check_limits_per_label_set(v)?),
                },
            };
            api.write_owned(
                &account,
                Command::UpdateConfiguration {
                    id: id.clone(),
                    configuration,
                },
            )
            .await?;
            Ok(Some(json!({"status": {"statusCode": "ACTIVE"}})))
        },
    )
    .await
}

// ---- admin endpoints (operators; not part of the AMP API) ----

async fn admin_audit(State(api): ApiState, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(&q);
    let result = (|| {
        let time = |name: &str, default: i64| -> Result<i64, CpError> {
            match query_one(&pairs, name) {
                None => Ok(default),
                Some(s) => s
                    .parse::<i64>()
                    .ok()
                    .or_else(|| {
                        chrono::DateTime::parse_from_rfc3339(&s)
                            .ok()
                            .map(|t| t.timestamp_millis())
                    })
                    .ok_or_else(|| CpError::field(name, "epoch milliseconds or RFC 3339")),
            }
        };
        let start = time("startTime", 0)?;
        let end = time("endTime", i64::MAX)?;
        let max = match query_one(&pairs, "maxResults") {
            None => 100,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| CpError::field("maxResults", "between 1 and 1000"))?,
        };
        let (events, next) =
            api.cp
                .audit
                .range(start, end, max, query_one(&pairs, "nextToken").as_deref())?;
        let mut v = json!({"events": events});
        if let Some(t) = next {
            v["nextToken"] = Value::from(t);
        }
        Ok::<_, CpError>(v)
    })();
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The account owning workspace `id` (the operator's limit routes span accounts).
async fn owner(api: &Api, id: &str) -> Result<String, CpError> {
    check_workspace_id(id)?;
    api.cp
        .read(|s| {
            s.workspaces
                .get(id)
                .filter(|w| w.visible())
                .map(|w| w.account.clone())
        })
        .await?
        .ok_or_else(|| CpError::workspace_not_found(id))
}

async fn admin_get_limits(State(api): ApiState, Path(id): Path<String>) -> Response {
    let w = async { api.workspace(&owner(&api, &id).await?, &id).await };
    match w.await {
        Ok(w) => Json(json!({"workspaceId": w.id, "limits": w.limit_overrides})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Sets a workspace's limit overrides: a JSON object of `[limits]` fields, checked by building
/// the resulting limits.
async fn admin_put_limits(State(api): ApiState, Path(id): Path<String>, body: Bytes) -> Response {
    let result = async {
        let m = body_object(&body)?;
        let mut merged = serde_json::to_value(hestia_config::Limits::default())
            .map_err(|e| CpError::Internal(e.to_string()))?;
        for (k, v) in &m {
            if merged.get(k).is_none() {
                return Err(CpError::field(k, "unknown limit"));
            }
            merged[k] = v.clone();
        }
        let limits: hestia_config::Limits = serde_json::from_value(merged)
            .map_err(|e| CpError::cannot_parse(format!("invalid limits: {e}")))?;
        limits.validate().map_err(|e| CpError::Validation {
            message: e,
            reason: "OTHER",
            fields: Vec::new(),
        })?;
        let overrides = m.into_iter().collect();
        let account = owner(&api, &id).await?;
        let w = api
            .write_owned(
                &account,
                Command::SetLimitOverrides {
                    id: id.clone(),
                    overrides,
                },
            )
            .await?;
        Ok(json!({"workspaceId": w.id, "limits": w.limit_overrides}))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn admin_cluster(State(api): ApiState) -> Response {
    Json(json!(api.cp.metrics())).into_response()
}

async fn admin_add_voter(State(api): ApiState, body: Bytes) -> Response {
    let result = async {
        let m = body_object(&body)?;
        let id = opt_int(&m, "nodeId", 1, i64::MAX)?
            .ok_or_else(|| CpError::field("nodeId", "required"))?;
        let addr = opt_str(&m, "addr")?.ok_or_else(|| CpError::field("addr", "required"))?;
        api.cp.add_voter(id as u64, addr.to_string()).await
    }
    .await;
    match result {
        Ok(m) => Json(json!(m)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn admin_remove_voter(State(api): ApiState, Path(id): Path<u64>) -> Response {
    match api.cp.remove_voter(id).await {
        Ok(m) => Json(json!(m)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The AMP workspace API and the admin endpoints.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/workspaces", post(create_workspace).get(list_workspaces))
        .route(
            "/workspaces/{workspace}",
            get(describe_workspace).delete(delete_workspace),
        )
        .route("/workspaces/{workspace}/alias", post(update_alias))
        .route(
            "/workspaces/{workspace}/configuration",
            get(describe_configuration).patch(update_configuration),
        )
        .route(
            "/tags/{resource_arn}",
            get(list_tags).post(tag_resource).delete(untag_resource),
        )
        .route("/admin/audit", get(admin_audit))
        .route(
            "/admin/workspaces/{workspace}/limits",
            get(admin_get_limits).put(admin_put_limits),
        )
        .route("/admin/cluster", get(admin_cluster))
        .route("/admin/cluster/voters", post(admin_add_voter))
        .route(
            "/admin/cluster/voters/{node_id}",
            axum::routing::delete(admin_remove_voter),
        )
        .with_state(api)
}
