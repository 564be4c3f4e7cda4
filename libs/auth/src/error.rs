use http::StatusCode;

/// Why a request is not authenticated, with AWS's error codes and texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No Authorization header and no presigned query.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// An Authorization header or presigned query that cannot be parsed.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key is not known.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    SignatureMismatch,
    /// The request time is outside the allowed window (message names the window).
    #[error("{0}")]
    Expired(String),
    /// The credential scope names another region or service.
    #[error("{0}")]
    WrongScope(String),
    /// A bearer token past its expiry.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// `x-amz-content-sha256` is not the body's hash.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
}

impl AuthError {
    /// The AWS error type (`x-amzn-ErrorType`, `__type`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::IncompleteSignature(_) => "IncompleteSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::SignatureMismatch | Self::Expired(_) | Self::WrongScope(_) => {
                "InvalidSignatureException"
            }
            Self::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            Self::ExpiredToken => "ExpiredTokenException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::IncompleteSignature(_) | Self::ContentSha256Mismatch => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }
}
