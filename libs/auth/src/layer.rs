//! The HTTP side: one axum middleware in front of every public route authenticates the caller,
//! authorizes the route's action and hands the [`Principal`] to the handlers (a request
//! extension); failures answer in the route family's error format and go to the audit sink.
//! `POST /oauth2/token` exchanges an access key pair for a bearer token (client credentials).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

use crate::authn::{Authenticator, Denied, Presented, Principal};
use crate::policy::route_action;
use crate::secrets::MasterKey;
use crate::{metrics, AuthError, RequestParts};

/// Where authentication and authorization failures are recorded.
pub trait AuditSink: Send + Sync {
    fn record(&self, failure: &AuthFailure);
}

/// One refused request (owned and serializable: gateways forward them to a voter's audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailure {
    pub time_ms: i64,
    pub source_ip: String,
    pub user_agent: String,
    pub method: String,
    pub path: String,
    /// The route's action, when the route has one.
    pub action: Option<String>,
    /// The caller's ARN and account, when it authenticated.
    pub principal_arn: Option<String>,
    pub account: Option<String>,
    /// The access key the request named, when it named one.
    pub access_key_id: Option<String>,
    pub error_code: String,
    pub message: String,
}

/// Failures as structured log lines (target `hestia::audit`), for nodes without an audit log.
pub struct LogAudit;

impl AuditSink for LogAudit {
    fn record(&self, f: &AuthFailure) {
        tracing::warn!(
            target: "hestia::audit",
            source_ip = %f.source_ip,
            user_agent = %f.user_agent,
            method = %f.method,
            path = %f.path,
            action = f.action.as_deref().unwrap_or(""),
            principal = f.principal_arn.as_deref().unwrap_or(""),
            access_key_id = f.access_key_id.as_deref().unwrap_or(""),
            error_code = %f.error_code,
            message = %f.message,
            "request refused"
        );
    }
}

pub enum AuthMode {
    /// Every request acts as the account's root (`--auth=disabled`).
    Disabled {
        account: String,
    },
    Enabled(Arc<Authenticator>),
}

pub struct AuthLayer {
    pub mode: AuthMode,
    pub audit: Arc<dyn AuditSink>,
    /// Largest body buffered to check a SigV4 payload hash.
    pub max_body_bytes: usize,
}

/// What a node's auth needs: the middleware's state, and when enabled the authenticator (to be
/// fed identities) and the master key (to seal new secrets).
pub struct AuthSetup {
    pub layer: Arc<AuthLayer>,
    pub authenticator: Option<Arc<Authenticator>>,
    pub master: Option<MasterKey>,
}

/// Builds a node's auth from `[auth]` (region and operator account from `[control_plane]`).
/// Fails when authentication is on and no master key is configured.
/// The master key comes from `auth.master_key_file`, else `$HESTIA_MASTER_KEY`, else
/// `default_key_file` (created when missing; single-node only).
pub fn from_config(
    cfg: &hestia_config::Config,
    audit: Arc<dyn AuditSink>,
    default_key_file: Option<&Path>,
) -> Result<AuthSetup, crate::secrets::SecretError> {
    let (mode, authenticator, master) = if cfg.auth.enabled {
        let master = MasterKey::resolve(
            cfg.auth.master_key_file.as_deref(),
            hestia_config::MASTER_KEY_ENV,
            default_key_file,
        )?;
        let mut sigv4 = crate::SigV4Config::new(&cfg.control_plane.region, "aps");
        sigv4.max_skew = cfg.auth.max_clock_skew;
        sigv4.allow_unsigned_payload = cfg.auth.allow_unsigned_payload;
        let a = Arc::new(Authenticator::new(
            sigv4,
            master.clone(),
            cfg.auth.token_ttl,
        ));
        (AuthMode::Enabled(a.clone()), Some(a), Some(master))
    } else {
        tracing::warn!("authentication is disabled: every request acts as the operator account");
        let account = cfg.control_plane.account_id.clone();
        (AuthMode::Disabled { account }, None, None)
    };
    Ok(AuthSetup {
        layer: Arc::new(AuthLayer {
            mode,
            audit,
            max_body_bytes: cfg.auth.max_body_bytes,
        }),
        authenticator,
        master,
    })
}

/// Why a request was refused, rendered in its route family's format.
enum Refusal {
    Auth(AuthError),
    Denied(String),
    TooLarge(usize),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Auth(e) => e.status(),
            Refusal::Denied(_) => StatusCode::FORBIDDEN,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Refusal::Auth(e) => e.code(),
            Refusal::Denied(_) => "AccessDeniedException",
            Refusal::TooLarge(_) => "ValidationException",
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Auth(e) => e.to_string(),
            Refusal::Denied(m) => m.clone(),
            Refusal::TooLarge(max) => format!("request body larger than {max} bytes"),
        }
    }

    /// Remote write answers in text, the Prometheus API in its error JSON, everything else as
    /// AWS's REST-JSON services do.
    fn into_response(self, path: &str) -> Response {
        let (status, code, message) = (self.status(), self.code(), self.message());
        let mut resp = match prometheus_route(path) {
            Some(true) => (status, message).into_response(),
            Some(false) => (
                status,
                Json(json!({"status": "error", "errorType": code, "error": message})),
            )
                .into_response(),
            None => (status, Json(json!({"message": message}))).into_response(),
        };
        resp.headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(code));
        resp
    }
}

/// `Some(is_remote_write)` for the Prometheus-compatible routes of a workspace.
fn prometheus_route(path: &str) -> Option<bool> {
    let rest = path.strip_prefix("/workspaces/")?;
    let (_, api) = rest.split_once('/')?;
    let api = api.strip_prefix("api/v1/")?;
    Some(api == "remote_write")
}

/// The access key id a SigV4 Authorization header or presigned query names.
fn named_key<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    let from = |s: &'a str, marker: &str| {
        let start = s.find(marker)? + marker.len();
        let rest = &s[start..];
        rest.find(['/', '%']).map(|end| &rest[..end])
    };
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| from(a, "Credential="))
        .or_else(|| query.and_then(|q| from(q, "X-Amz-Credential=")))
}

/// The middleware: `axum::middleware::from_fn_with_state(layer, hestia_auth::layer::authenticate)`.
pub async fn authenticate(
    State(layer): State<Arc<AuthLayer>>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = match &layer.mode {
        AuthMode::Disabled { account } => {
            req.extensions_mut().insert(Principal::anonymous(account));
            return next.run(req).await;
        }
        AuthMode::Enabled(a) => a.clone(),
    };
    match check(&layer, &auth, req).await {
        Ok((principal, mut req)) => {
            metrics::ALLOWED.inc();
            let span = tracing::info_span!(
                "auth",
                account = %principal.account,
                principal = %principal.arn
            );
            req.extensions_mut().insert(principal);
            next.run(req).instrument(span).await
        }
        Err(refused) => {
            let (refusal, failure) = *refused;
            metrics::REFUSED.with_label_values(&[refusal.code()]).inc();
            layer.audit.record(&failure);
            refusal.into_response(&failure.path)
        }
    }
}

/// A refusal and its audit record.
type Refused = Box<(Refusal, AuthFailure)>;

/// The audit record of `refusal` (built only when a request is refused).
fn failure(
    head: &Parts,
    route: Option<&str>,
    principal: Option<&Principal>,
    refusal: &Refusal,
) -> AuthFailure {
    let query = head.uri.query();
    AuthFailure {
        time_ms: chrono::Utc::now().timestamp_millis(),
        source_ip: head
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_string())
            .unwrap_or_default(),
        user_agent: head
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        method: head.method.as_str().to_string(),
        path: head.uri.path().to_string(),
        action: route.map(str::to_string),
        principal_arn: principal.map(|p| p.arn.clone()),
        account: principal.map(|p| p.account.clone()),
        access_key_id: named_key(&head.headers, query).map(str::to_string),
        error_code: refusal.code().to_string(),
        message: refusal.message(),
    }
}

/// Authenticates (buffering the body when SigV4 covers it) and authorizes the route.
async fn check(
    layer: &AuthLayer,
    auth: &Authenticator,
    req: Request,
) -> Result<(Principal, Request), Refused> {
    let (head, body) = req.into_parts();
    let (method, path, query) = (head.method.as_str(), head.uri.path(), head.uri.query());
    let route = route_action(method, path);
    let action = route.as_ref().map(|r| r.action);
    let refuse = |refusal: Refusal, principal: Option<&Principal>| {
        let f = failure(&head, action, principal, &refusal);
        Box::new((refusal, f))
    };
    let authorization = head
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // SigV4 covers the body: buffer it to hash it (bounded by max_body_bytes).
    let (body, bytes) = if Presented::of(authorization, query) == Presented::SigV4 {
        match axum::body::to_bytes(body, layer.max_body_bytes).await {
            Ok(b) => (Body::from(b.clone()), Some(b)),
            Err(_) => return Err(refuse(Refusal::TooLarge(layer.max_body_bytes), None)),
        }
    } else {
        (body, None)
    };
    let request = RequestParts {
        method,
        path,
        query,
        headers: &head.headers,
        body: bytes.as_deref(),
    };
    let principal = auth
        .authenticate(&request, SystemTime::now())
        .map_err(|e| refuse(Refusal::Auth(e), None))?;
    let denied = match &route {
        Some(route) => auth
            .authorize(&principal, route)
            .err()
            .map(|d: Denied| d.to_string()),
        None => Some(format!(
            "User: {} is not authorized to perform: {method} {path} (no such operation)",
            principal.arn
        )),
    };
    if let Some(message) = denied {
        return Err(refuse(Refusal::Denied(message), Some(&principal)));
    }
    Ok((principal, Request::from_parts(head, body)))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `routes` behind authentication (every request authenticated and authorized, refusals
/// audited), plus `POST /oauth2/token` for clients exchanging credentials for a token.
pub fn protect(routes: Router, layer: Arc<AuthLayer>) -> Router {
    routes
        .layer(axum::middleware::from_fn_with_state(
            layer.clone(),
            authenticate,
        ))
        .merge(oauth2_router(layer))
}

/// `POST /oauth2/token`: RFC 6749 client credentials (client id and secret in HTTP Basic or in
/// the form) → `{access_token, token_type, expires_in}`.
pub fn oauth2_router(layer: Arc<AuthLayer>) -> Router {
    Router::new()
        .route("/oauth2/token", post(token_endpoint))
        .with_state(layer)
}

async fn token_endpoint(
    State(layer): State<Arc<AuthLayer>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let oauth_error = |status: StatusCode, error: &str, description: String| {
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let AuthMode::Enabled(auth) = &layer.mode else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authentication is disabled on this server".into(),
        );
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials".into(),
        );
    }
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            Some((id.to_string(), secret.to_string()))
        });
    let (id, secret) = match (basic, form.client_id, form.client_secret) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client credentials are required".into(),
            )
        }
    };
    // RFC 6749 §2.3.1 form-encodes both inside Basic (Go's oauth2 does; many clients do not):
    // the pair as sent, else decoded.
    let now = SystemTime::now();
    let issued = auth.issue_token(&id, &secret, now).or_else(|e| {
        let (did, dsecret) = (form_decode(&id), form_decode(&secret));
        if (did.as_str(), dsecret.as_str()) == (id.as_str(), secret.as_str()) {
            Err(e)
        } else {
            auth.issue_token(&did, &dsecret, now)
        }
    });
    match issued {
        Ok((token, ttl)) => Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
        }))
        .into_response(),
        Err(e) => {
            metrics::REFUSED.with_label_values(&[e.code()]).inc();
            layer.audit.record(&AuthFailure {
                time_ms: chrono::Utc::now().timestamp_millis(),
                source_ip: String::new(),
                user_agent: headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                method: "POST".into(),
                path: "/oauth2/token".into(),
                action: None,
                principal_arn: None,
                account: None,
                access_key_id: Some(id.clone()),
                error_code: e.code().to_string(),
                message: e.to_string(),
            });
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", e.to_string())
        }
    }
}

fn form_decode(s: &str) -> String {
    crate::sigv4::percent_decode(&s.replace('+', " "))
}
