//! The control plane's one error type and its mapping to AMP's REST-JSON errors (status,
//! `x-amzn-ErrorType`, body shape) and to gRPC statuses.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use hestia_auth::identity::IdentityError;

use crate::state::CommandError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CpError {
    #[error("{message}")]
    Validation {
        message: String,
        /// AMP `ValidationExceptionReason`.
        reason: &'static str,
        /// `(field name, message)`.
        fields: Vec<(String, String)>,
    },
    #[error("{message}")]
    NotFound {
        message: String,
        resource_id: String,
        resource_type: &'static str,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        resource_id: String,
    },
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("Rate exceeded")]
    Throttled { retry_after_secs: u64 },
    /// No leader reachable (election in progress, minority partition): retry later.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CpError {
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        CpError::Validation {
            message: format!("1 validation error detected: Value at '{name}' failed to satisfy constraint: {message}"),
            reason: "FIELD_VALIDATION_FAILED",
            fields: vec![(name.to_string(), message)],
        }
    }

    pub fn cannot_parse(message: impl Into<String>) -> Self {
        CpError::Validation {
            message: message.into(),
            reason: "CANNOT_PARSE",
            fields: Vec::new(),
        }
    }

    pub fn workspace_not_found(id: &str) -> Self {
        CpError::NotFound {
            message: format!("Workspace not found: {id}"),
            resource_id: id.to_string(),
            resource_type: "Workspace",
        }
    }

    /// The AMP exception name (`x-amzn-ErrorType`).
    pub fn error_type(&self) -> &'static str {
        match self {
            CpError::Validation { .. } => "ValidationException",
            CpError::NotFound { .. } => "ResourceNotFoundException",
            CpError::Conflict { .. } => "ConflictException",
            CpError::QuotaExceeded(_) => "ServiceQuotaExceededException",
            CpError::AccessDenied(_) => "AccessDeniedException",
            CpError::Throttled { .. } => "ThrottlingException",
            CpError::Unavailable(_) | CpError::Internal(_) => "InternalServerException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            CpError::Validation { .. } => StatusCode::BAD_REQUEST,
            CpError::NotFound { .. } => StatusCode::NOT_FOUND,
            CpError::Conflict { .. } => StatusCode::CONFLICT,
            CpError::QuotaExceeded(_) => StatusCode::PAYMENT_REQUIRED,
            CpError::AccessDenied(_) => StatusCode::FORBIDDEN,
            CpError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            CpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body with the model's members.
    pub fn body(&self) -> Value {
        let message = self.to_string();
        match self {
            CpError::Validation { reason, fields, .. } => {
                let mut v = json!({"message": message, "reason": reason});
                if !fields.is_empty() {
                    v["fieldList"] = fields
                        .iter()
                        .map(|(n, m)| json!({"name": n, "message": m}))
                        .collect();
                }
                v
            }
            CpError::NotFound {
                resource_id,
                resource_type,
                ..
            } => {
                json!({"message": message, "resourceId": resource_id, "resourceType": resource_type})
            }
            CpError::Conflict { resource_id, .. } => {
                json!({"message": message, "resourceId": resource_id, "resourceType": "Workspace"})
            }
            CpError::QuotaExceeded(_) => json!({
                "message": message, "resourceId": "", "resourceType": "Workspace",
                "serviceCode": "aps", "quotaCode": "L-003DB08C",
            }),
            CpError::Throttled { .. } => json!({"message": message, "serviceCode": "aps"}),
            CpError::AccessDenied(_) | CpError::Unavailable(_) | CpError::Internal(_) => {
                json!({"message": message})
            }
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            CpError::Throttled { retry_after_secs } => Some(*retry_after_secs),
            CpError::Unavailable(_) => Some(1),
            _ => None,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self {
            CpError::Validation { .. } => tonic::Status::invalid_argument(msg),
            CpError::AccessDenied(_) => tonic::Status::permission_denied(msg),
            CpError::NotFound { .. } => tonic::Status::not_found(msg),
            CpError::Conflict { .. } => tonic::Status::failed_precondition(msg),
            CpError::QuotaExceeded(_) | CpError::Throttled { .. } => {
                tonic::Status::resource_exhausted(msg)
            }
            CpError::Unavailable(_) => tonic::Status::unavailable(msg),
            CpError::Internal(_) => tonic::Status::internal(msg),
        }
    }
}

impl From<CommandError> for CpError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::NotFound(id) => CpError::workspace_not_found(&id),
            CommandError::Conflict { id, message } => CpError::Conflict {
                message,
                resource_id: id,
            },
            e @ CommandError::QuotaExceeded { .. } => CpError::QuotaExceeded(e.to_string()),
            CommandError::Identity(e) => e.into(),
        }
    }
}

impl IntoResponse for CpError {
    fn into_response(self) -> Response {
        crate::metrics::API_ERRORS
            .with_label_values(&[self.error_type()])
            .inc();
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        let h = resp.headers_mut();
        h.insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.error_type()),
        );
        if let Some(s) = self.retry_after() {
            h.insert("retry-after", HeaderValue::from(s));
        }
        resp
    }
}

impl From<IdentityError> for CpError {
    fn from(e: IdentityError) -> Self {
        let message = e.to_string();
        match e {
            IdentityError::NoSuchEntity(_) => CpError::NotFound {
                message,
                resource_id: String::new(),
                resource_type: "Identity",
            },
            IdentityError::EntityAlreadyExists(_) => CpError::Conflict {
                message,
                resource_id: String::new(),
            },
            IdentityError::LimitExceeded(_) => CpError::QuotaExceeded(message),
            IdentityError::MalformedPolicyDocument(_) | IdentityError::Invalid(_) => {
                CpError::Validation {
                    message,
                    reason: "OTHER",
                    fields: Vec::new(),
                }
            }
        }
    }
}
