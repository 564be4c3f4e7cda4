/// Errors raised while building model values from untrusted input.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid workspace id {0:?}: expected ws- followed by 1-64 of [a-zA-Z0-9-]")]
    InvalidWorkspaceId(String),
    #[error("invalid tenant id {0:?}: expected 1-150 of [a-zA-Z0-9_-]")]
    InvalidTenantId(String),
    #[error("invalid regular expression {pattern:?}: {reason}")]
    InvalidRegex { pattern: String, reason: String },
}
