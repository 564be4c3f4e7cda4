//! The operator's routes to the compactors (`hestia admin blocks list`, `hestia admin compact
//! --now`). Like every admin route they pass the auth middleware (`hestia:ListBlocks`,
//! `hestia:RunCompaction` on the cluster: operator account only), are throttled and audited by
//! [`crate::api::call`], and span accounts: a workspace id is resolved to its tenant from the
//! replicated workspaces whatever its account.
//!
//! - `GET /admin/workspaces/{workspace}/blocks` → [`WorkspaceBlocks`];
//! - `POST /admin/compactor/compact` with an optional [`CompactRequest`] → [`CompactResponse`].
//!
//! Unknown workspace: 404 `ResourceNotFoundException`; no compactor to ask: 503.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hestia_model::{TenantId, WorkspaceId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::{body_object, call, check_workspace_id, Api, ApiState, Caller};
use crate::compactors::{CompactorPass, TenantBlocks};
use crate::error::CpError;

/// The answer of `GET /admin/workspaces/{workspace}/blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceBlocks {
    pub workspace_id: String,
    /// The compactor that listed them.
    pub compactor: String,
    /// The tenant, its blocks and partial uploads, as the compactor reports them.
    #[serde(flatten)]
    pub listing: TenantBlocks,
}

/// The body of `POST /admin/compactor/compact` (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompactRequest {
    /// Pass over this workspace's tenant alone; every tenant when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}

/// The answer of `POST /admin/compactor/compact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// One entry per compactor: its pass report, or why it has none.
    pub compactors: Vec<CompactorPass>,
}

impl CompactResponse {
    /// Compactors without a report, and reports with errors.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.compactors {
            if let Some(e) = &c.error {
                out.push(format!("{}: {e}", c.instance));
            }
            if let Some(r) = &c.report {
                out.extend(r.errors.iter().map(|e| format!("{}: {e}", c.instance)));
                for t in &r.tenants {
                    out.extend(
                        t.errors
                            .iter()
                            .map(|e| format!("{} ({}): {e}", c.instance, t.tenant)),
                    );
                }
            }
        }
        out
    }
}

/// The tenant of a visible workspace of any account (the operator's routes span accounts).
async fn workspace_tenant(api: &Api, id: &str) -> Result<TenantId, CpError> {
    check_workspace_id(id)?;
    let account = api
        .cp
        .read(|s| {
            s.workspaces
                .get(id)
                .filter(|w| w.visible())
                .map(|w| w.account.clone())
        })
        .await?
        .ok_or_else(|| CpError::workspace_not_found(id))?;
    let ws = WorkspaceId::parse(id).map_err(|e| CpError::field("workspaceId", e.to_string()))?;
    TenantId::for_workspace(Some(&account), &ws)
        .map_err(|e| CpError::Internal(format!("workspace {id}: {e}")))
}

fn to_json<T: Serialize>(v: &T) -> Result<Value, CpError> {
    serde_json::to_value(v).map_err(|e| CpError::Internal(format!("encoding the answer: {e}")))
}

async fn list_blocks(State(api): ApiState, who: Caller, Path(id): Path<String>) -> Response {
    let params = json!({ "workspaceId": id });
    call(
        &api,
        "ListBlocks",
        true,
        who,
        params,
        StatusCode::OK,
        async {
            let tenant = workspace_tenant(&api, &id).await?;
            let listing = api.cp.compactors().tenant_blocks(&api.cp, &tenant).await?;
            Ok(Some(to_json(&WorkspaceBlocks {
                workspace_id: id.clone(),
                compactor: listing.instance,
                listing: listing.blocks,
            })?))
        },
    )
    .await
}

fn compact_request(body: &Bytes) -> Result<CompactRequest, CpError> {
    // An object (or nothing): serde would also take a JSON array for the struct.
    let m = body_object(body)?;
    serde_json::from_value(Value::Object(m))
        .map_err(|e| CpError::cannot_parse(format!("Could not parse request body: {e}")))
}

async fn compact(State(api): ApiState, who: Caller, body: Bytes) -> Response {
    let request = compact_request(&body);
    let params = match &request {
        Ok(r) => to_json(r).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    call(
        &api,
        "RunCompaction",
        false,
        who,
        params,
        StatusCode::OK,
        async {
            let request = request?;
            let tenant = match &request.workspace_id {
                Some(id) => Some(workspace_tenant(&api, id).await?),
                None => None,
            };
            let compactors = api
                .cp
                .compactors()
                .compact(&api.cp, tenant.as_ref())
                .await?;
            Ok(Some(to_json(&CompactResponse {
                workspace_id: request.workspace_id,
                tenant_id: tenant.map(|t| t.to_string()),
                compactors,
            })?))
        },
    )
    .await
}

/// The routes; the auth middleware goes in front, as for [`crate::api::router`].
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/admin/workspaces/{workspace}/blocks", get(list_blocks))
        .route("/admin/compactor/compact", post(compact))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_bodies() {
        assert_eq!(
            compact_request(&Bytes::from_static(b" ")).unwrap(),
            CompactRequest::default()
        );
        assert_eq!(
            compact_request(&Bytes::from_static(br#"{"workspaceId":"ws-1"}"#))
                .unwrap()
                .workspace_id
                .as_deref(),
            Some("ws-1")
        );
        for bad in [&br#"{"tenant":"x"}"#[..], b"[]", b"{"] {
            let err = compact_request(&Bytes::copy_from_slice(bad)).unwrap_err();
            assert_eq!(err.error_type(), "ValidationException", "{err}");
        }
    }
}
