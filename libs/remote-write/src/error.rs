/// Why a remote-write body could not be decoded. Every variant is the client's fault (HTTP 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("snappy: decoded size {declared} bytes exceeds the limit of {limit} bytes")]
    DecodedTooLarge { declared: usize, limit: usize },
    #[error("snappy: {0}")]
    Snappy(String),
    #[error("protobuf: {0}")]
    Protobuf(&'static str),
    #[error("protobuf: invalid UTF-8 in a string field")]
    Utf8,
}
