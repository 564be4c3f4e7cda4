/// The one error type of `hestia-storage`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error(transparent)]
    Chunk(#[from] hestia_chunkenc::ChunkError),
    #[error("invalid storage options: {0}")]
    InvalidOptions(String),
    #[error("storage is closed")]
    Closed,
    /// A WAL write failed. The in-memory head may hold samples that are not durable, so writes
    /// are refused until the database is reopened (recovery rebuilds a consistent state).
    #[error("storage refuses writes after a failed WAL write, reopen to recover: {0}")]
    WriteFailed(String),
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        StorageError::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}
