use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hestia_promql::{ErrorKind, QueryError};
use serde_json::json;

/// Prometheus API error types (`errorType` in the JSON envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
}

impl ApiErrorType {
    fn as_str(self) -> &'static str {
        match self {
            Self::BadData => "bad_data",
            Self::Execution => "execution",
            Self::Timeout => "timeout",
            Self::Canceled => "canceled",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
        }
    }

    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::BadData => StatusCode::BAD_REQUEST,
            Self::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Timeout | Self::Canceled | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// The querier's one error type: rendered as Prometheus' JSON error envelope.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ApiErrorType,
    pub message: String,
}

impl ApiError {
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self {
            kind: ApiErrorType::BadData,
            message: message.into(),
        }
    }

    pub fn execution(message: impl Into<String>) -> Self {
        Self {
            kind: ApiErrorType::Execution,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: ApiErrorType::Unavailable,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: ApiErrorType::Internal,
            message: message.into(),
        }
    }

    /// `invalid parameter "name": reason`, Prometheus' wording for bad parameters.
    pub fn invalid_param(name: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {reason}"))
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let kind = match e.kind() {
            ErrorKind::BadData => ApiErrorType::BadData,
            ErrorKind::Execution | ErrorKind::TooManySamples => ApiErrorType::Execution,
            ErrorKind::Timeout => ApiErrorType::Timeout,
            ErrorKind::Canceled => ApiErrorType::Canceled,
            ErrorKind::Storage => ApiErrorType::Unavailable,
        };
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind.status().is_server_error() {
            tracing::warn!(error = %self.message, kind = self.kind.as_str(), "query failed");
        }
        let body = json!({
            "status": "error",
            "errorType": self.kind.as_str(),
            "error": self.message,
        });
        (self.kind.status(), axum::Json(body)).into_response()
    }
}
