//! The distributor: Hestia's remote-write receiver.
//!
//! A push runs these steps in order, each refusing with its own status before the next one runs:
//! 1. headers (`Content-Encoding: snappy`, `Content-Type: application/x-protobuf`, else 415),
//! 2. body size (compressed limit, 413), 3. snappy with the declared size checked before
//!    allocating, 4. protobuf decode (400), 5. validation of each series and sample (invalid ones are
//!    dropped and counted; the rest continue), 6. sharding by `hash(tenant, labels)` over the
//!    ingesters, 7. one gRPC Push per ingester, all in parallel.
//!
//! The answer is 2xx only when every valid sample is durably stored; 5xx when any ingester failed
//! (the sender retries; re-sent samples are accepted idempotently); otherwise 400 when something
//! was refused, with the first refusal's message.

mod error;
pub mod metrics;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hestia_config::DistributorConfig;
use hestia_limits::{validate_labels, validate_metadata, validate_sample_time, Limits};
use hestia_model::{hash_label_pairs, TenantId};
use hestia_proto::ingester as pb;
use hestia_proto::ingester::ingester_client::IngesterClient;
use hestia_remote_write::{decode_write_request, decompress, WriteRequest};
use tonic::transport::Channel;
use tracing::Instrument;

pub use error::DistributorError;

/// The header that carries the tenant on internal HTTP calls (set by the gateway, never by users).
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// What a successful or partially refused push did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushSummary {
    pub samples_received: usize,
    pub samples_stored: u64,
    pub series_created: u64,
    pub samples_refused: usize,
    /// The first refusal's message, when anything was refused.
    pub first_error: Option<String>,
}

struct IngesterHandle {
    addr: String,
    client: IngesterClient<Channel>,
}

pub struct Distributor {
    cfg: DistributorConfig,
    limits: Limits,
    ingesters: Vec<IngesterHandle>,
}

impl Distributor {
    /// Connects lazily to the configured ingesters (at least one is required).
    pub fn new(cfg: DistributorConfig, limits: Limits) -> anyhow::Result<Self> {
        if cfg.ingesters.is_empty() {
            anyhow::bail!("distributor: no ingesters configured");
        }
        let ingesters = cfg
            .ingesters
            .iter()
            .map(|addr| {
                let channel = Channel::from_shared(addr.clone())?
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok(IngesterHandle {
                    addr: addr.clone(),
                    client: IngesterClient::new(channel)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            limits,
            ingesters,
        })
    }

    /// Decompresses, decodes, validates and stores one remote-write body.
    pub async fn push(
        &self,
        tenant: &TenantId,
        compressed: &[u8],
    ) -> Result<PushSummary, DistributorError> {
        let body = decompress(compressed, self.cfg.max_decompressed_bytes)?;
        let req = decode_write_request(&body)?;
        let (shards, mut summary) = self.validate_and_shard(tenant, &req);
        self.send(tenant, shards, &mut summary).await?;
        Ok(summary)
    }

    fn validate_and_shard(
        &self,
        tenant: &TenantId,
        req: &WriteRequest<'_>,
    ) -> (Vec<pb::PushRequest>, PushSummary) {
        let t = tenant.as_str();
        let now_ms = now_ms();
        let mut summary = PushSummary {
            samples_received: req.total_samples() + req.total_histograms(),
            ..Default::default()
        };
        metrics::RECEIVED_SAMPLES
            .with_label_values(&[t])
            .inc_by(summary.samples_received as u64);
        metrics::RECEIVED_METADATA
            .with_label_values(&[t])
            .inc_by(req.metadata.len() as u64);

        let refuse = |summary: &mut PushSummary, reason: &str, count: usize, message: String| {
            metrics::DISCARDED_SAMPLES
                .with_label_values(&[reason, t])
                .inc_by(count as u64);
            summary.samples_refused += count;
            summary.first_error.get_or_insert(message);
        };

        let n = self.ingesters.len();
        let mut shards: Vec<pb::PushRequest> = (0..n)
            .map(|_| pb::PushRequest {
                tenant: t.to_string(),
                ..Default::default()
            })
            .collect();

        for s in &req.series {
            let labels = req.labels(s);
            let samples = req.samples(s);
            let histograms = req.histograms(s).len();
            if let Err(e) = validate_labels(labels, &self.limits) {
                refuse(
                    &mut summary,
                    e.reason(),
                    samples.len() + histograms,
                    e.to_string(),
                );
                continue;
            }
            if histograms > 0 {
                refuse(
                    &mut summary,
                    "native_histograms_unsupported",
                    histograms,
                    "native histogram samples are not supported yet; float samples of the request were stored".into(),
                );
            }
            let mut kept = Vec::with_capacity(samples.len());
            for smp in samples {
                match validate_sample_time(labels, smp.timestamp, now_ms, &self.limits) {
                    Ok(()) => kept.push(pb::Sample {
                        timestamp_ms: smp.timestamp,
                        value: smp.value,
                    }),
                    Err(e) => refuse(&mut summary, e.reason(), 1, e.to_string()),
                }
            }
            if kept.is_empty() {
                continue;
            }
            let shard = if n == 1 {
                0
            } else {
                let h = hash_label_pairs(
                    std::iter::once(("__tenant__", t))
                        .chain(labels.iter().map(|l| (l.name, l.value))),
                );
                (h % n as u64) as usize
            };
            shards[shard].timeseries.push(pb::TimeSeries {
                labels: labels
                    .iter()
                    .map(|l| pb::LabelPair {
                        name: l.name.to_string(),
                        value: l.value.to_string(),
                    })
                    .collect(),
                samples: kept,
            });
        }

        for m in &req.metadata {
            if let Err(e) = validate_metadata(m, &self.limits) {
                metrics::DISCARDED_METADATA
                    .with_label_values(&[e.reason(), t])
                    .inc();
                summary.first_error.get_or_insert(e.to_string());
                continue;
            }
            let shard = (hash_label_pairs(std::iter::once(("__name__", m.metric_family_name)))
                % n as u64) as usize;
            shards[shard].metadata.push(pb::MetricMetadata {
                metric_family_name: m.metric_family_name.to_string(),
                r#type: m.kind.as_str().to_string(),
                help: m.help.to_string(),
                unit: m.unit.to_string(),
            });
        }
        (shards, summary)
    }

    async fn send(
        &self,
        tenant: &TenantId,
        shards: Vec<pb::PushRequest>,
        summary: &mut PushSummary,
    ) -> Result<(), DistributorError> {
        let timeout = self.cfg.push_timeout;
        let calls = shards
            .into_iter()
            .zip(&self.ingesters)
            .filter(|(r, _)| !r.timeseries.is_empty() || !r.metadata.is_empty())
            .map(|(r, ing)| {
                let mut client = ing.client.clone();
                async move {
                    let res = tokio::time::timeout(timeout, client.push(r)).await;
                    (ing.addr.as_str(), res)
                }
            });
        let results = futures::future::join_all(calls).await;
        let mut failure = None;
        for (addr, res) in results {
            match res {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    summary.samples_stored += resp.samples_appended;
                    summary.series_created += resp.series_created;
                    for r in resp.rejections {
                        let reason = match pb::RejectReason::try_from(r.reason) {
                            Ok(pb::RejectReason::OutOfOrder) => "sample-out-of-order",
                            Ok(pb::RejectReason::DuplicateTimestamp) => "new-value-for-timestamp",
                            _ => "invalid",
                        };
                        metrics::DISCARDED_SAMPLES
                            .with_label_values(&[reason, tenant.as_str()])
                            .inc_by(u64::from(r.samples));
                        summary.samples_refused += r.samples as usize;
                        summary.first_error.get_or_insert(r.message);
                    }
                }
                Ok(Err(status)) => {
                    metrics::INGESTER_PUSH_FAILURES
                        .with_label_values(&[addr])
                        .inc();
                    failure.get_or_insert(DistributorError::Ingester {
                        ingester: addr.to_string(),
                        message: status.message().to_string(),
                    });
                }
                Err(_) => {
                    metrics::INGESTER_PUSH_FAILURES
                        .with_label_values(&[addr])
                        .inc();
                    failure.get_or_insert(DistributorError::IngesterTimeout {
                        ingester: addr.to_string(),
                        timeout_ms: timeout.as_millis(),
                    });
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The distributor's internal HTTP API: `POST /api/v1/push` with the tenant in `X-Scope-OrgID`.
pub fn router(d: Arc<Distributor>) -> Router {
    Router::new()
        .route("/api/v1/push", post(push_handler))
        .with_state(d)
}

async fn push_handler(
    State(d): State<Arc<Distributor>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tenant = match tenant_from(&headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let span = tracing::info_span!("push", tenant = %tenant);
    let result = async {
        check_headers(&headers)?;
        let body = read_body(body, &headers, d.cfg.max_request_body_bytes).await?;
        d.push(&tenant, &body).await
    }
    .instrument(span)
    .await;
    let resp = match result {
        Ok(PushSummary {
            first_error: Some(msg),
            ..
        }) => DistributorError::Invalid(msg).into_response(),
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    };
    metrics::REQUESTS
        .with_label_values(&[tenant.as_str(), resp.status().as_str()])
        .inc();
    resp
}

/// Reads the tenant an upstream gateway resolved.
pub fn tenant_from(headers: &HeaderMap) -> Result<TenantId, DistributorError> {
    let v = headers
        .get(TENANT_HEADER)
        .ok_or(DistributorError::MissingTenant)?
        .to_str()
        .map_err(|_| DistributorError::InvalidTenant("not ASCII".into()))?;
    TenantId::parse(v).map_err(|e| DistributorError::InvalidTenant(e.to_string()))
}

fn check_headers(headers: &HeaderMap) -> Result<(), DistributorError> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("<binary>");
        if !enc.trim().eq_ignore_ascii_case("snappy") {
            return Err(DistributorError::UnsupportedEncoding(enc.to_string()));
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("<binary>");
        let mut parts = ct.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err(DistributorError::UnsupportedContentType(ct.to_string()));
        }
        for p in parts {
            if let Some(proto) = p.strip_prefix("proto=") {
                if proto.trim_matches('"') != "prometheus.WriteRequest" {
                    return Err(DistributorError::UnsupportedContentType(ct.to_string()));
                }
            }
        }
    }
    Ok(())
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<bytes::Bytes, DistributorError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(DistributorError::BodyTooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            DistributorError::BodyTooLarge { limit }
        } else {
            DistributorError::Body(e.to_string())
        }
    })
}
