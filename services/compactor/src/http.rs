//! The compactor's HTTP API (besides `/metrics` and `/ready`, which the caller adds).

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use hestia_model::TenantId;
use serde::Deserialize;

use crate::{Compactor, CompactorError, PassReport, TenantBlocks};

/// `POST /compactor/compact[?tenant=T]`: one pass now (after a running one), over every tenant
/// this compactor owns or over `T` alone, answered with its report.
/// `GET /compactor/tenants/{tenant}/blocks`: the tenant's blocks as the bucket holds them.
pub fn router(compactor: Compactor) -> Router {
    Router::new()
        .route("/compactor/compact", post(compact))
        .route("/compactor/tenants/{tenant}/blocks", get(blocks))
        .with_state(compactor)
}

/// The query of `POST /compactor/compact`.
#[derive(Debug, Default, Deserialize)]
struct CompactParams {
    /// Only this tenant.
    tenant: Option<String>,
}

fn tenant_id(s: &str) -> Result<TenantId, CompactorError> {
    TenantId::parse(s).map_err(|e| CompactorError::InvalidTenant(e.to_string()))
}

async fn compact(
    State(c): State<Compactor>,
    Query(params): Query<CompactParams>,
) -> Result<Json<PassReport>, CompactorError> {
    let only = params.tenant.as_deref().map(tenant_id).transpose()?;
    // A task of its own: a client going away does not stop the pass halfway.
    let pass = tokio::spawn(async move {
        match only {
            Some(t) => c.run_once_for(&t).await,
            None => c.run_once().await,
        }
    });
    Ok(Json(pass.await.map_err(|e| {
        CompactorError::Internal(format!("the pass failed: {e}"))
    })?))
}

async fn blocks(
    State(c): State<Compactor>,
    Path(tenant): Path<String>,
) -> Result<Json<TenantBlocks>, CompactorError> {
    Ok(Json(c.tenant_blocks(&tenant_id(&tenant)?).await?))
}
