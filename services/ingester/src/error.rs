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
}

impl From<IngesterError> for tonic::Status {
    fn from(e: IngesterError) -> Self {
        match e {
            IngesterError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            IngesterError::Storage(_) | IngesterError::Task(_) | IngesterError::Ring(_) => {
                tracing::error!(error = %e, "ingester request failed");
                tonic::Status::internal(e.to_string())
            }
        }
    }
}
