//! The compactor's HTTP API (besides `/metrics` and `/ready`, which the caller adds).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use hestia_model::TenantId;

use crate::{Compactor, CompactorError, PassReport, TenantBlocks};

/// `POST /compactor/compact`: one pass now (after a running one), answered with its report.
/// `GET /compactor/tenants/{tenant}/blocks`: the tenant's blocks as the bucket holds them.
pub fn router(compactor: Compactor) -> Router {
    Router::new()
        .route("/compactor/compact", post(compact))
        .route("/compactor/tenants/{tenant}/blocks", get(blocks))
        .with_state(compactor)
}

async fn compact(State(c): State<Compactor>) -> Result<Json<PassReport>, CompactorError> {
    // A task of its own: a client going away does not stop the pass halfway.
    let pass = tokio::spawn(async move { c.run_once().await });
    Ok(Json(pass.await.map_err(|e| {
        CompactorError::Internal(format!("the pass failed: {e}"))
    })?))
}

async fn blocks(
    State(c): State<Compactor>,
    Path(tenant): Path<String>,
) -> Result<Json<TenantBlocks>, CompactorError> {
    let tenant =
        TenantId::parse(&tenant).map_err(|e| CompactorError::InvalidTenant(e.to_string()))?;
    Ok(Json(c.tenant_blocks(&tenant).await?))
}
