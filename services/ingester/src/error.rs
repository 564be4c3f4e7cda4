use std::path::{Path, PathBuf};

use hestia_storage::StorageError;

/// The ingester service's one error type and its gRPC status mapping.
#[derive(Debug, thiserror::Error)]
pub enum IngesterError {
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("ingester task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("ring: {0}")]
    Ring(#[from] hestia_ring::RingError),
    #[error("block: {0}")]
    Block(#[from] hestia_block::BlockError),
    #[error("bucket: {0}")]
    Bucket(#[from] hestia_bucket::BucketError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl IngesterError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        IngesterError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<IngesterError> for tonic::Status {
    fn from(e: IngesterError) -> Self {
        match e {
            IngesterError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            IngesterError::Storage(_)
            | IngesterError::Task(_)
            | IngesterError::Ring(_)
            | IngesterError::Block(_)
            | IngesterError::Bucket(_)
            | IngesterError::Io { .. } => {
                tracing::error!(error = %e, "ingester request failed");
                tonic::Status::internal(e.to_string())
            }
        }
    }
}
