#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing scenario {path}: {source}")]
    Scenario {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid settings: {0}")]
    Invalid(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("sigv4: {0}")]
    Aws(#[from] hestia_aws_client::AwsClientError),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}
