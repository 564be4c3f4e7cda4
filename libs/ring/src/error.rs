/// Everything the ring can fail with.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RingError {
    #[error("invalid ring configuration: {0}")]
    Config(String),
    #[error("the ring is empty")]
    Empty,
    #[error("at least {need} live replicas required, could only find {found}")]
    TooFewReplicas { need: usize, found: usize },
    #[error("{unavailable} zones unavailable for reads, at most {allowed} allowed")]
    TooManyUnavailableZones { unavailable: usize, allowed: usize },
    #[error("instance {0} is not registered in the ring")]
    UnknownInstance(String),
    #[error("compare-and-swap on ring key {0} kept conflicting")]
    CasConflict(String),
    #[error("kv store: {0}")]
    Kv(String),
    #[error("tokens file {path}: {message}")]
    TokensFile { path: String, message: String },
}
