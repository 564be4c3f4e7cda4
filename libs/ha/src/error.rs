/// Everything the HA tracker can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaError {
    #[error("invalid HA tracker configuration: {0}")]
    Config(String),
    /// A new cluster over the workspace's limit (Cortex's text).
    #[error("too many HA clusters (limit: {limit})")]
    TooManyClusters { limit: usize },
    /// The store could not decide (control plane unavailable): the sender should retry.
    #[error("HA tracker store: {0}")]
    Store(String),
}
