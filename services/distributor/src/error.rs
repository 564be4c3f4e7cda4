use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything a push can fail with, and the one place that maps it to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum DistributorError {
    #[error("missing tenant: the X-Scope-OrgID header is required")]
    MissingTenant,
    #[error("invalid tenant: {0}")]
    InvalidTenant(String),
    #[error("unsupported Content-Encoding {0:?}: remote write requires snappy")]
    UnsupportedEncoding(String),
    #[error("unsupported Content-Type {0:?}: expected application/x-protobuf with proto=prometheus.WriteRequest (remote write 1.0) or proto=io.prometheus.write.v2.Request (2.0)")]
    UnsupportedContentType(String),
    #[error("request body too large: limit is {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("reading request body: {0}")]
    Body(String),
    #[error("{0}")]
    Decode(#[from] hestia_remote_write::DecodeError),
    /// Some series or samples were invalid; the valid ones were stored.
    #[error("{0}")]
    Invalid(String),
    /// An ingester could not store its share: the sender must retry.
    #[error("failed pushing to ingester {ingester}: {message}")]
    Ingester { ingester: String, message: String },
    #[error("ingester {ingester} did not answer within {timeout_ms} ms")]
    IngesterTimeout { ingester: String, timeout_ms: u128 },
    /// Too few live replicas for some series (Cortex: "at least 2 live replicas required").
    #[error("{0}")]
    Ring(#[from] hestia_ring::RingError),
    #[error("{failed_series} series could not be stored on a quorum of their replicas")]
    Quorum { failed_series: usize },
    /// The workspace's ingestion rate (this distributor's share) would be exceeded; nothing
    /// of the request was stored.
    #[error("ingestion rate limit ({local_rate}) exceeded while adding {samples} samples and {metadata} metadata")]
    RateLimited {
        local_rate: f64,
        samples: usize,
        metadata: usize,
        retry_after_secs: u64,
    },
    /// New series over a workspace series limit were refused; the rest was stored.
    #[error("{0}")]
    SeriesLimit(String),
    /// An HA replica that is not its cluster's elected one: dropped, answered 202 so the
    /// sender does not retry (Cortex's text).
    #[error("replicas did not match, rejecting sample: replica={replica}, elected={elected}")]
    HaReplicaNotElected { replica: String, elected: String },
    /// A new HA cluster over the workspace's limit, or no election store.
    #[error("{0}")]
    Ha(#[from] hestia_ha::HaError),
}

impl DistributorError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingTenant => StatusCode::UNAUTHORIZED,
            Self::InvalidTenant(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedEncoding(_) | Self::UnsupportedContentType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(_) | Self::Decode(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Ingester { .. } | Self::Ring(_) | Self::Quorum { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::IngesterTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } | Self::SeriesLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::HaReplicaNotElected { .. } => StatusCode::ACCEPTED,
            Self::Ha(hestia_ha::HaError::TooManyClusters { .. }) => StatusCode::BAD_REQUEST,
            Self::Ha(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for DistributorError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "push failed");
        }
        let mut resp = (status, self.to_string()).into_response();
        if let Self::RateLimited {
            retry_after_secs, ..
        } = self
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, retry_after_secs.into());
        }
        resp
    }
}
