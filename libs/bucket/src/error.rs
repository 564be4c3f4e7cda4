use std::error::Error as _;
use std::path::PathBuf;

use object_store::client::HttpError;

/// What went wrong with the bucket. `object_store` has already retried transient failures
/// (connection refused or reset, timeouts, 5xx, 429) with backoff before any of these is
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("{path}: no such object")]
    NotFound { path: String },
    /// The credentials were refused (401) or lack a permission (403).
    #[error("{path}: the object store refused the credentials: {source}")]
    Denied {
        path: String,
        source: object_store::Error,
    },
    /// The service could not be reached or kept failing in transit after every retry.
    #[error("object store unavailable after retries: {source}")]
    Unavailable { source: object_store::Error },
    /// Any other failure reported by the object store (an error answer, a local I/O error of
    /// the filesystem backend).
    #[error("object store: {source}")]
    Store { source: object_store::Error },
    /// An object holds something Hestia cannot read (bad JSON or gzip, unknown version).
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// A local block directory cannot be uploaded.
    #[error("block directory {dir}: {reason}")]
    InvalidBlock { dir: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage configuration: {0}")]
    Config(String),
}

impl BucketError {
    /// Worth trying again later: the object store was unreachable.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BucketError::Unavailable { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BucketError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<object_store::Error> for BucketError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => BucketError::NotFound { path },
            object_store::Error::PermissionDenied { ref path, .. }
            | object_store::Error::Unauthenticated { ref path, .. } => BucketError::Denied {
                path: path.clone(),
                source: e,
            },
            e if failed_in_transit(&e) => BucketError::Unavailable { source: e },
            e => BucketError::Store { source: e },
        }
    }
}

/// Whether the request never got an answer: an HTTP transport error (connect, timeout, reset)
/// is somewhere in the cause chain.
fn failed_in_transit(e: &object_store::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.downcast_ref::<HttpError>().is_some() {
            return true;
        }
        cause = c.source();
    }
    false
}
