use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ApiKind;

/// The gateway's one error type. Prometheus-API routes answer in Prometheus' JSON error format,
/// remote write in plain text (what Prometheus logs), both with the same status codes.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("workspace not found: {workspace:?}")]
    WorkspaceNotFound { workspace: String, api: ApiKind },
    #[error("workspace {workspace:?} is {status}, not ACTIVE")]
    WorkspaceNotActive {
        workspace: String,
        status: String,
        api: ApiKind,
    },
    #[error("control plane unavailable: {message}")]
    ControlPlaneUnavailable { message: String, api: ApiKind },
    #[error("invalid request path: {0}")]
    BadPath(String),
    #[error("upstream unavailable: {0}")]
    Upstream(String),
}

impl GatewayError {
    fn status(&self) -> StatusCode {
        match self {
            Self::WorkspaceNotFound { .. } | Self::WorkspaceNotActive { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::ControlPlaneUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn api(&self) -> ApiKind {
        match self {
            Self::WorkspaceNotFound { api, .. }
            | Self::WorkspaceNotActive { api, .. }
            | Self::ControlPlaneUnavailable { api, .. } => *api,
            _ => ApiKind::Prometheus,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = match self.api() {
            ApiKind::RemoteWrite => (status, self.to_string()).into_response(),
            ApiKind::Prometheus => {
                let error_type = match status {
                    StatusCode::NOT_FOUND => "not_found",
                    StatusCode::BAD_REQUEST => "bad_data",
                    _ => "unavailable",
                };
                (
                    status,
                    axum::Json(json!({"status": "error", "errorType": error_type, "error": self.to_string()})),
                )
                    .into_response()
            }
        };
        if status == StatusCode::NOT_FOUND {
            resp.headers_mut().insert(
                "x-amzn-errortype",
                HeaderValue::from_static("ResourceNotFoundException"),
            );
        }
        resp
    }
}
