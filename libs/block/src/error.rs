/// The one error type of `hestia-block`.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("meta.json: {0}")]
    Json(#[from] serde_json::Error),
    /// Well-formed input the block format cannot represent, or API misuse.
    #[error("invalid block: {0}")]
    Invalid(String),
}
