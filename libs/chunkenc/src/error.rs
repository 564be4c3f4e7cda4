/// The one error type of `hestia-chunkenc`: a chunk that cannot be decoded or appended to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("chunk is full (65535 samples)")]
    ChunkFull,
    /// The sample cannot join this chunk (it needs a new one, or is malformed).
    #[error("cannot append: {0}")]
    Unappendable(&'static str),
}

impl ChunkError {
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        ChunkError::Corrupt {
            what,
            detail: detail.into(),
        }
    }
}
