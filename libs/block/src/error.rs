/// The one error type of `hestia-block`.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object storage: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A file of the block does not exist.
    #[error("block file {0} not found")]
    NotFound(String),
    #[error("meta.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A file of a block does not hold what its format says.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error(transparent)]
    Chunk(#[from] hestia_chunkenc::ChunkError),
    /// Well-formed input the block format cannot represent, or API misuse.
    #[error("invalid block: {0}")]
    Invalid(String),
}

impl BlockError {
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        BlockError::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}
