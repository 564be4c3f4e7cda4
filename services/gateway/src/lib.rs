//! The gateway: Hestia's one public HTTP endpoint, with AMP's URL layout.
//!
//! `POST /workspaces/{id}/api/v1/remote_write` goes to a distributor as `POST /api/v1/push`;
//! `/workspaces/{id}/api/v1/<rest>` goes to a querier as `/api/v1/<rest>`. The workspace id is
//! validated before anything else (malformed → 404), and the tenant travels in `X-Scope-OrgID`,
//! which the gateway always overwrites so clients can never choose it.
//!
//! Workspaces come from the control plane ([`Workspaces::ControlPlane`]): unknown, deleted, not
//! yet ACTIVE and other accounts' ones get 404 (the auth middleware in front of the router has
//! put the caller's principal in the request). In dev mode (`--dev-workspaces`) every well-formed
//! id is accepted: the control plane's workspaces as their tenant ([`Workspaces::Dev`]), any
//! other id as its own tenant ([`Workspaces::Any`] without a control plane).

pub mod audit;
mod error;
pub mod metrics;
pub mod role;
mod upstream;
mod workspaces;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Extension;
use axum::Router;
use hestia_auth::Principal;
use hestia_model::TenantId;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::compression::{CompressionLayer, CompressionLevel};

pub use error::GatewayError;
pub use upstream::Upstream;
pub use workspaces::{Directory, Unresolved, Workspaces};

/// The header carrying the tenant to internal services.
pub const TENANT_HEADER: &str = "x-scope-orgid";

pub struct Gateway {
    workspaces: Workspaces,
    distributor: Upstream,
    querier: Upstream,
}

impl Gateway {
    pub fn new(workspaces: Workspaces, distributor: Upstream, querier: Upstream) -> Self {
        Self {
            workspaces,
            distributor,
            querier,
        }
    }

    async fn resolve(
        &self,
        workspace: &str,
        caller: &Principal,
        api: ApiKind,
    ) -> Result<TenantId, GatewayError> {
        self.workspaces
            .resolve(workspace, &caller.account)
            .await
            .map_err(|e| match e {
                Unresolved::NotFound => GatewayError::WorkspaceNotFound {
                    workspace: workspace.to_string(),
                    api,
                },
                Unresolved::NotActive(status) => GatewayError::WorkspaceNotActive {
                    workspace: workspace.to_string(),
                    status,
                    api,
                },
                Unresolved::Unavailable(message) => {
                    GatewayError::ControlPlaneUnavailable { message, api }
                }
            })
    }
}

/// The public routes. Callers add `/metrics`, `/ready` and `/health`.
///
/// Query API responses are compressed when the client accepts gzip or deflate, as Prometheus'
/// API does (a range result of a few thousand series is megabytes of JSON; Grafana asks for
/// gzip). The fastest level: JSON of numbers still shrinks several times, at a small fraction
/// of the query's CPU.
pub fn router(gw: Arc<Gateway>) -> Router {
    // Remote read is left alone, as in Prometheus: snappy or a stream of framed messages.
    let compression = CompressionLayer::new()
        .gzip(true)
        .deflate(true)
        .quality(CompressionLevel::Fastest)
        .compress_when(DefaultPredicate::new().and(NotForContentType::const_new(
            "application/x-streamed-protobuf",
        )));
    Router::new()
        .route(
            "/workspaces/{workspace}/api/v1/remote_write",
            post(remote_write),
        )
        .route(
            "/workspaces/{workspace}/api/v1/{*rest}",
            any(query_api).layer(compression),
        )
        .with_state(gw)
}

/// Which API family a route belongs to; decides the error body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    RemoteWrite,
    Prometheus,
}

/// A fresh request for the upstream: internal path, tenant header set, and no extensions of the
/// public router (its path parameters must not leak into the upstream's routing).
fn forward_parts(req: Request, tenant: &TenantId, path: &str) -> Result<Request, GatewayError> {
    let (parts, body) = req.into_parts();
    let pq = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let uri = Uri::try_from(pq).map_err(|e| GatewayError::BadPath(e.to_string()))?;
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.version_mut() = parts.version;
    *out.headers_mut() = parts.headers;
    let v =
        HeaderValue::from_str(tenant.as_str()).map_err(|e| GatewayError::BadPath(e.to_string()))?;
    out.headers_mut().insert(TENANT_HEADER, v);
    Ok(out)
}

async fn remote_write(
    State(gw): State<Arc<Gateway>>,
    Path(workspace): Path<String>,
    Extension(caller): Extension<Principal>,
    req: Request,
) -> Response {
    let result = async {
        let tenant = gw
            .resolve(&workspace, &caller, ApiKind::RemoteWrite)
            .await?;
        let req = forward_parts(req, &tenant, "/api/v1/push")?;
        gw.distributor.call(req).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn query_api(
    State(gw): State<Arc<Gateway>>,
    Path((workspace, rest)): Path<(String, String)>,
    Extension(caller): Extension<Principal>,
    req: Request<Body>,
) -> Response {
    let result = async {
        let tenant = gw.resolve(&workspace, &caller, ApiKind::Prometheus).await?;
        let req = forward_parts(req, &tenant, &format!("/api/v1/{rest}"))?;
        gw.querier.call(req).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
