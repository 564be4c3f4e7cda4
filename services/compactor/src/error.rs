use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hestia_block::BlockError;
use hestia_bucket::BucketError;
use hestia_model::TenantId;
use hestia_ring::RingError;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// The compactor's one error type; its HTTP status is chosen in [`CompactorError::status`].
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("block: {0}")]
    Block(#[from] BlockError),
    #[error("ring: {0}")]
    Ring(#[from] RingError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid tenant id: {0}")]
    InvalidTenant(String),
    /// The ring gave the tenant to another compactor during a compaction: its output is not
    /// uploaded.
    #[error("tenant {0} now belongs to another compactor")]
    NotOwner(TenantId),
    /// A compacted block does not cover its sources (its `compaction.sources`).
    #[error("compacted block {id}: {reason}")]
    BadOutput { id: Ulid, reason: String },
    #[error("control plane: {0}")]
    ControlPlane(#[from] hestia_proto::CallError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CompactorError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CompactorError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            CompactorError::InvalidTenant(_) => StatusCode::BAD_REQUEST,
            CompactorError::Bucket(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            CompactorError::ControlPlane(_) | CompactorError::NotOwner(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `reason` label of `hestia_compactor_failures_total`.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            CompactorError::Bucket(_) => "object_store",
            CompactorError::Block(_) => "block",
            CompactorError::Ring(_) | CompactorError::NotOwner(_) => "ring",
            CompactorError::Io { .. } => "local_disk",
            CompactorError::BadOutput { .. } => "output",
            CompactorError::InvalidTenant(_)
            | CompactorError::ControlPlane(_)
            | CompactorError::Internal(_) => "other",
        }
    }
}

/// The JSON body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl IntoResponse for CompactorError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}
