//! The crate's error type.

/// How the HTTP layer should report a [`QueryError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Parse errors and invalid arguments (400 `bad_data`).
    BadData,
    /// Evaluation errors (422 `execution`).
    Execution,
    /// 503 `timeout`.
    Timeout,
    /// 503 `canceled`.
    Canceled,
    /// 422 `execution`.
    TooManySamples,
    /// Errors propagated from the [`crate::Queryable`].
    Storage,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(String),
    #[error("query was canceled in {0}")]
    Canceled(String),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(String),
    #[error("{0}")]
    Storage(String),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::BadData(_) => ErrorKind::BadData,
            QueryError::Execution(_) => ErrorKind::Execution,
            QueryError::Timeout(_) => ErrorKind::Timeout,
            QueryError::Canceled(_) => ErrorKind::Canceled,
            QueryError::TooManySamples(_) => ErrorKind::TooManySamples,
            QueryError::Storage(_) => ErrorKind::Storage,
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }

    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        QueryError::BadData(msg.into())
    }
}
