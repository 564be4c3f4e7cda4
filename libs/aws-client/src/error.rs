use std::path::PathBuf;

/// Why credentials could not be resolved or a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum AwsClientError {
    /// The I/O error is part of the message: callers print errors without their chain too.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")]
    PartialEnvCredentials,
    /// `place` is a section in a file, e.g. `[default] in ~/.aws/credentials`.
    #[error("{place} needs both aws_access_key_id and aws_secret_access_key")]
    PartialCredentials { place: String },
    #[error(
        "{place} gets its credentials through '{key}', which Hestia's AWS client does not \
         support; export static credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
         AWS_SESSION_TOKEN) instead"
    )]
    UnsupportedSource { place: String, key: &'static str },
    #[error("no AWS credentials found: looked in {places}")]
    NoCredentials { places: String },
    #[error("the endpoint has no host")]
    NoHost,
    /// An error of the signer or of turning its output into HTTP headers.
    #[error(transparent)]
    Signing(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl AwsClientError {
    pub(crate) fn signing(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Signing(Box::new(e))
    }
}
