//! The distributor: Hestia's remote-write receiver.
//!
//! A push runs these steps in order, each refusing with its own status before the next one runs:
//! 1. headers (`Content-Encoding: snappy`, `Content-Type: application/x-protobuf` with
//!    `proto=prometheus.WriteRequest` (1.0, the default) or `proto=io.prometheus.write.v2.Request`
//!    (2.0), else 415),
//! 2. body size (compressed limit, 413), 3. snappy with the declared size checked before
//!    allocating, 4. protobuf decode (400), 5. HA deduplication: when the first series carries
//!    the workspace's cluster and replica labels, a request from a replica that is not its
//!    cluster's elected one is dropped with 202 (hestia-ha; as in Cortex it runs before
//!    validation, so duplicates cost no validation), 6. validation of each series, float
//!    sample, native histogram and exemplar (invalid ones are dropped and counted; the rest
//!    continue; the replica label is removed here), 7. the workspace's ingestion rate (429),
//! 8. a ring token per series from `hash(tenant, labels)` (per metadata entry from its metric
//!    name), 9. replication: each series goes to its replication set (RF instances in distinct
//!    zones, from the ring), one gRPC Push per ingester carrying all of its series, all in
//!    parallel.
//!
//! The answer is 2xx once every valid series is durably stored on a quorum of its replicas
//! (2 of 3); 5xx when some series cannot reach quorum (the sender retries; re-sent samples are
//! accepted idempotently); otherwise 400 when something was refused, with the first refusal's
//! message. 1.0 succeeds with 200, 2.0 with 204; 2.0
//! answers always carry `X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`.

mod encode;
mod error;
pub mod metrics;
mod rate;
pub mod role;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::encode::Batch;
use crate::rate::RateLimiter;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hestia_config::DistributorConfig;
use hestia_ha::{Decision, HaTracker};
use hestia_limits::{
    validate_exemplar, validate_histogram, validate_labels, validate_metadata,
    validate_sample_time, Limits, Overrides,
};
use hestia_model::{hash_label_pairs, TenantId};
use hestia_proto::ingester as pb;
use hestia_proto::IngesterPool;
use hestia_remote_write::{
    decode_write_request, decode_write_request_v2, decompress, FlatWriteRequest, LabelRef,
};
use hestia_ring::{token_of, QuorumStatus, RingClient};
use tracing::Instrument;

pub use error::DistributorError;

/// The header that carries the tenant on internal HTTP calls (set by the gateway, never by users).
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// What a successful or partially refused push did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushSummary {
    pub samples_received: usize,
    pub samples_refused: usize,
    pub exemplars_received: usize,
    pub exemplars_refused: usize,
    /// Float samples, native histograms and exemplars sent to the ingesters, for the 2.0
    /// "written" headers.
    pub floats_sent: usize,
    pub histograms_sent: usize,
    pub exemplars_sent: usize,
    /// Samples of either kind the ingesters refused (out of order, duplicates), per series the
    /// largest count any replica refused.
    pub refused_by_ingesters: usize,
    /// Exemplars older than their series' newest one, dropped without an error (largest count
    /// any replica dropped).
    pub exemplars_dropped: usize,
    /// The first refusal's message, when anything was refused.
    pub first_error: Option<String>,
    /// The first refusal by a workspace series limit (answered 429 rather than 400).
    pub first_limit_error: Option<String>,
}

pub struct Distributor {
    cfg: DistributorConfig,
    overrides: Arc<Overrides>,
    rate: RateLimiter,
    ring: Arc<RingClient>,
    pool: Arc<IngesterPool>,
    ha: Arc<HaTracker>,
}

impl Distributor {
    /// Writes go to the ingesters `ring` shows, through clients from `pool`, under each
    /// workspace's limits from `overrides`. `distributors` is the ring the distributors
    /// heartbeat in, which divides the ingestion rate among them (`None`: this one is alone).
    /// `ha` decides which replica of an HA pair is stored (its refresher must run).
    pub fn new(
        cfg: DistributorConfig,
        overrides: Arc<Overrides>,
        ring: Arc<RingClient>,
        pool: Arc<IngesterPool>,
        distributors: Option<Arc<RingClient>>,
        ha: Arc<HaTracker>,
    ) -> Self {
        Self {
            cfg,
            overrides,
            rate: RateLimiter::new(distributors),
            ring,
            pool,
            ha,
        }
    }

    /// Decompresses, decodes, validates and stores one remote-write body. On an ingester
    /// failure the summary is returned with the error, so that 2.0 answers can report what was
    /// written.
    pub async fn push(
        &self,
        tenant: &TenantId,
        protocol: Protocol,
        compressed: &[u8],
    ) -> Result<PushSummary, (DistributorError, PushSummary)> {
        let body = decompress(compressed, self.cfg.max_decompressed_bytes)
            .map_err(|e| (e.into(), PushSummary::default()))?;
        let limits = self.overrides.get(tenant.as_str());
        let (batch, mut summary) = match protocol {
            Protocol::V1 => {
                let req =
                    decode_write_request(&body).map_err(|e| (e.into(), PushSummary::default()))?;
                let strip = self.deduplicate(tenant, &req, &limits).await?;
                self.validate(tenant, &req, &limits, strip)
            }
            Protocol::V2 => {
                let req = decode_write_request_v2(&body)
                    .map_err(|e| (e.into(), PushSummary::default()))?;
                let strip = self.deduplicate(tenant, &req, &limits).await?;
                self.validate(tenant, &req, &limits, strip)
            }
        };
        // Rate-limited on what passed validation, as Cortex does; a refused request stores nothing.
        let samples = summary.floats_sent + summary.histograms_sent;
        let metadata = batch.metadata.len();
        if let Err(r) = self
            .rate
            .allow(tenant.as_str(), samples + metadata, &limits)
        {
            let t = tenant.as_str();
            metrics::DISCARDED_SAMPLES
                .with_label_values(&["rate_limited", t])
                .inc_by(samples as u64);
            metrics::DISCARDED_METADATA
                .with_label_values(&["rate_limited", t])
                .inc_by(metadata as u64);
            let e = DistributorError::RateLimited {
                local_rate: r.local_rate,
                samples,
                metadata,
                retry_after_secs: r.retry_after.as_secs(),
            };
            return Err((e, PushSummary::default()));
        }
        match self.replicate(tenant, batch, &mut summary).await {
            Ok(()) => Ok(summary),
            Err(e) => Err((e, summary)),
        }
    }

    /// HA deduplication. The cluster and replica come from the first series (Prometheus adds
    /// its external labels to every series). Returns the label to remove from every series when
    /// the request comes from the elected replica; refuses the request otherwise.
    async fn deduplicate<'a, 'l, R: FlatWriteRequest<'a>>(
        &self,
        tenant: &TenantId,
        req: &R,
        limits: &'l Limits,
    ) -> Result<Option<&'l str>, (DistributorError, PushSummary)> {
        if !limits.accept_ha_samples {
            return Ok(None);
        }
        let Some(first) = req.series().first() else {
            return Ok(None);
        };
        let labels = req.labels(first);
        let find = |name: &str| labels.iter().find(|l| l.name == name).map(|l| l.value);
        let (Some(cluster), Some(replica)) = (
            find(&limits.ha_cluster_label),
            find(&limits.ha_replica_label),
        ) else {
            return Ok(None);
        };
        let t = tenant.as_str();
        let decision = self
            .ha
            .check(t, cluster, replica, limits.ha_max_clusters, now_ms())
            .await;
        let samples = || (req.total_samples() + req.total_histograms()) as u64;
        match decision {
            Ok(Decision::Accept) => Ok(Some(limits.ha_replica_label.as_str())),
            Ok(Decision::Reject { elected }) => {
                metrics::DEDUPLICATED_SAMPLES
                    .with_label_values(&[t, cluster])
                    .inc_by(samples());
                Err((
                    DistributorError::HaReplicaNotElected {
                        replica: replica.to_string(),
                        elected,
                    },
                    PushSummary::default(),
                ))
            }
            Err(e) => {
                if matches!(e, hestia_ha::HaError::TooManyClusters { .. }) {
                    metrics::DISCARDED_SAMPLES
                        .with_label_values(&["too_many_ha_clusters", t])
                        .inc_by(samples());
                }
                Err((e.into(), PushSummary::default()))
            }
        }
    }

    fn validate<'a, R: FlatWriteRequest<'a>>(
        &self,
        tenant: &TenantId,
        req: &R,
        limits: &Limits,
        strip: Option<&str>,
    ) -> (Batch, PushSummary) {
        let t = tenant.as_str();
        let now_ms = now_ms();
        let mut summary = PushSummary {
            samples_received: req.total_samples() + req.total_histograms(),
            exemplars_received: req.total_exemplars(),
            ..Default::default()
        };
        metrics::RECEIVED_SAMPLES
            .with_label_values(&[t])
            .inc_by(summary.samples_received as u64);
        metrics::RECEIVED_EXEMPLARS
            .with_label_values(&[t])
            .inc_by(summary.exemplars_received as u64);
        metrics::RECEIVED_METADATA
            .with_label_values(&[t])
            .inc_by(req.metadata().len() as u64);

        let refuse = |summary: &mut PushSummary, reason: &str, count: usize, message: String| {
            metrics::DISCARDED_SAMPLES
                .with_label_values(&[reason, t])
                .inc_by(count as u64);
            summary.samples_refused += count;
            summary.first_error.get_or_insert(message);
        };
        let refuse_exemplars =
            |summary: &mut PushSummary, reason: &str, count: usize, message: String| {
                metrics::DISCARDED_EXEMPLARS
                    .with_label_values(&[reason, t])
                    .inc_by(count as u64);
                summary.exemplars_refused += count;
                summary.first_error.get_or_insert(message);
            };

        let mut batch = Batch::default();
        let mut stripped: Vec<LabelRef<'a>> = Vec::new();
        for s in req.series() {
            let labels = match strip {
                Some(name) => {
                    stripped.clear();
                    stripped.extend(req.labels(s).iter().filter(|l| l.name != name).copied());
                    &stripped[..]
                }
                None => req.labels(s),
            };
            let samples = req.samples(s);
            let histograms = req.histograms(s);
            let exemplars = req.exemplars(s);
            if let Err(e) = validate_labels(labels, limits) {
                if !exemplars.is_empty() {
                    refuse_exemplars(&mut summary, e.reason(), exemplars.len(), e.to_string());
                }
                refuse(
                    &mut summary,
                    e.reason(),
                    samples.len() + histograms.len(),
                    e.to_string(),
                );
                continue;
            }
            let mut kept = Vec::with_capacity(samples.len());
            for smp in samples {
                match validate_sample_time(labels, smp.timestamp, now_ms, limits) {
                    Ok(()) => kept.push(pb::Sample {
                        timestamp_ms: smp.timestamp,
                        value: smp.value,
                    }),
                    Err(e) => refuse(&mut summary, e.reason(), 1, e.to_string()),
                }
            }
            let mut kept_h = Vec::with_capacity(histograms.len());
            for h in histograms {
                match validate_histogram(labels, h, now_ms, limits) {
                    Ok(counts) => kept_h.push(pb::Histogram {
                        timestamp_ms: h.timestamp,
                        reset_hint: u32::from(h.reset_hint),
                        schema: h.schema,
                        zero_threshold: h.zero_threshold,
                        zero_count: h.zero_count.as_f64(),
                        count: h.count.as_f64(),
                        sum: h.sum,
                        positive_spans: to_pb_spans(&h.positive_spans),
                        positive_counts: counts.positive,
                        negative_spans: to_pb_spans(&h.negative_spans),
                        negative_counts: counts.negative,
                        custom_values: h.custom_values.clone(),
                    }),
                    Err(e) => refuse(&mut summary, e.reason(), 1, e.to_string()),
                }
            }
            let mut kept_e = Vec::with_capacity(exemplars.len());
            for e in exemplars {
                let elabels = req.exemplar_labels(e);
                match validate_exemplar(labels, elabels, e.timestamp, now_ms, limits) {
                    Ok(()) => kept_e.push(pb::Exemplar {
                        labels: to_pb_labels(elabels),
                        timestamp_ms: e.timestamp,
                        value: e.value,
                    }),
                    Err(err) => refuse_exemplars(&mut summary, err.reason(), 1, err.to_string()),
                }
            }
            if kept.is_empty() && kept_h.is_empty() && kept_e.is_empty() {
                continue;
            }
            summary.floats_sent += kept.len();
            summary.histograms_sent += kept_h.len();
            summary.exemplars_sent += kept_e.len();
            batch.tokens.push(token_of(hash_label_pairs(
                std::iter::once(("__tenant__", t)).chain(labels.iter().map(|l| (l.name, l.value))),
            )));
            batch.push_series(labels, &kept, &kept_h, &kept_e);
        }

        for m in req.metadata() {
            if let Err(e) = validate_metadata(m, limits) {
                metrics::DISCARDED_METADATA
                    .with_label_values(&[e.reason(), t])
                    .inc();
                summary.first_error.get_or_insert(e.to_string());
                continue;
            }
            batch.tokens.push(token_of(hash_label_pairs(
                std::iter::once(("__tenant__", t))
                    .chain(std::iter::once(("__name__", m.metric_family_name))),
            )));
            batch.metadata.push(pb::MetricMetadata {
                metric_family_name: m.metric_family_name.to_string(),
                r#type: m.kind.as_str().to_string(),
                help: m.help.to_string(),
                unit: m.unit.to_string(),
            });
        }
        (batch, summary)
    }

    /// Sends each ingester its share in one Push, all in parallel, and answers once every series
    /// reached quorum (success) or one series cannot any more (failure). Pushes still running
    /// then finish in the background, so that every replica gets its copy.
    async fn replicate(
        &self,
        tenant: &TenantId,
        batch: Batch,
        summary: &mut PushSummary,
    ) -> Result<(), DistributorError> {
        if batch.tokens.is_empty() {
            return Ok(());
        }
        let ring = self.ring.ring();
        let sharded = ring.shard_batch(&batch.tokens, now_ms())?;
        let mut tracker = sharded.tracker;
        let timeout = self.cfg.push_timeout;
        let mut calls = FuturesUnordered::new();
        for (idx, items) in sharded.per_instance {
            let addr = ring.instance(idx).addr.clone();
            let req = bytes::Bytes::from(batch.request(tenant.as_str(), &items));
            let pool = self.pool.clone();
            let span = tracing::debug_span!("push_ingester", ingester = %addr);
            calls.push(
                async move {
                    let push = pool.push_encoded(&addr, req);
                    let res = match tokio::time::timeout(timeout, push).await {
                        Ok(Ok(resp)) => Ok(resp),
                        Ok(Err(status)) => Err(DistributorError::Ingester {
                            ingester: addr.clone(),
                            message: status.message().to_string(),
                        }),
                        Err(_) => Err(DistributorError::IngesterTimeout {
                            ingester: addr.clone(),
                            timeout_ms: timeout.as_millis(),
                        }),
                    };
                    (addr, items, res)
                }
                .instrument(span),
            );
        }

        // Per series of the batch: the most samples any replica refused, and why.
        let mut refused: HashMap<u32, (u32, pb::RejectReason, String)> = HashMap::new();
        let mut failure = None;
        let mut metadata_refused = 0u64;
        let mut status = tracker.status();
        while status == QuorumStatus::Pending {
            let Some((addr, items, res)) = calls.next().await else {
                break;
            };
            let ok = res.is_ok();
            match res {
                Ok(resp) => {
                    summary.exemplars_dropped = summary
                        .exemplars_dropped
                        .max(resp.exemplars_out_of_order as usize);
                    metadata_refused = metadata_refused.max(resp.metadata_refused);
                    if resp.metadata_refused > 0 {
                        summary
                            .first_limit_error
                            .get_or_insert(resp.metadata_limit_message);
                    }
                    for r in resp.rejections {
                        let Some(&series) = items.get(r.series_index as usize) else {
                            continue;
                        };
                        let reason = pb::RejectReason::try_from(r.reason)
                            .unwrap_or(pb::RejectReason::Invalid);
                        let e = refused.entry(series).or_insert((0, reason, String::new()));
                        if r.samples > e.0 {
                            *e = (r.samples, reason, r.message);
                        }
                    }
                }
                Err(e) => {
                    metrics::INGESTER_PUSH_FAILURES
                        .with_label_values(&[addr.as_str()])
                        .inc();
                    tracing::warn!(error = %e, "ingester push failed");
                    failure.get_or_insert(e);
                }
            }
            status = tracker.record(&items, ok);
        }
        if !calls.is_empty() {
            tokio::spawn(async move {
                while let Some((addr, _, res)) = calls.next().await {
                    if res.is_err() {
                        metrics::INGESTER_PUSH_FAILURES
                            .with_label_values(&[addr.as_str()])
                            .inc();
                    }
                }
            });
        }

        let t = tenant.as_str();
        if metadata_refused > 0 {
            metrics::DISCARDED_METADATA
                .with_label_values(&["per_user_metadata_limit", t])
                .inc_by(metadata_refused);
        }
        if summary.exemplars_dropped > 0 {
            metrics::DISCARDED_EXEMPLARS
                .with_label_values(&["exemplar_out_of_order", t])
                .inc_by(summary.exemplars_dropped as u64);
        }
        let mut refused: Vec<_> = refused.into_iter().collect();
        refused.sort_unstable_by_key(|(series, _)| *series);
        for (_, (samples, reason, message)) in refused {
            let reason = match reason {
                pb::RejectReason::OutOfOrder => "sample-out-of-order",
                pb::RejectReason::TooOld => "sample-too-old",
                pb::RejectReason::OutOfBounds => "sample-out-of-bounds",
                pb::RejectReason::DuplicateTimestamp => "new-value-for-timestamp",
                pb::RejectReason::PerUserSeriesLimit => "per_user_series_limit",
                pb::RejectReason::PerMetricSeriesLimit => "per_metric_series_limit",
                pb::RejectReason::Invalid | pb::RejectReason::Unspecified => "invalid",
            };
            if reason.ends_with("_series_limit") {
                summary.first_limit_error.get_or_insert(message.clone());
            }
            metrics::DISCARDED_SAMPLES
                .with_label_values(&[reason, t])
                .inc_by(u64::from(samples));
            summary.samples_refused += samples as usize;
            summary.refused_by_ingesters += samples as usize;
            summary.first_error.get_or_insert(message);
        }
        match status {
            QuorumStatus::Succeeded => Ok(()),
            QuorumStatus::Failed | QuorumStatus::Pending => {
                metrics::QUORUM_FAILURES.with_label_values(&[t]).inc();
                Err(failure.unwrap_or(DistributorError::Quorum {
                    failed_series: tracker.failed_series(),
                }))
            }
        }
    }
}

impl PushSummary {
    /// `(samples, histograms, exemplars)` durably written, for the 2.0 response headers. Ingester
    /// refusals are not broken down by kind; they are taken from the floats first.
    pub fn written(&self) -> (usize, usize, usize) {
        let refused = self.refused_by_ingesters;
        let floats = self.floats_sent.saturating_sub(refused);
        let histograms = self
            .histograms_sent
            .saturating_sub(refused.saturating_sub(self.floats_sent));
        (
            floats,
            histograms,
            self.exemplars_sent.saturating_sub(self.exemplars_dropped),
        )
    }
}

/// The remote-write protocol of a request, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

fn to_pb_labels(labels: &[hestia_remote_write::LabelRef<'_>]) -> Vec<pb::LabelPair> {
    labels
        .iter()
        .map(|l| pb::LabelPair {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

fn to_pb_spans(spans: &[(i32, u32)]) -> Vec<pb::BucketSpan> {
    spans
        .iter()
        .map(|&(offset, length)| pb::BucketSpan { offset, length })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The ring key distributors heartbeat under; its healthy members share the ingestion rate.
pub const DISTRIBUTOR_RING_KEY: &str = "distributor-ring";

/// Registers this distributor (id `distributor-<addr>`) in the distributors' ring and watches
/// that ring, so that each distributor enforces its share of every workspace's rate.
pub async fn join_distributor_ring(
    kv: Arc<dyn hestia_ring::Kv>,
    ingester_ring: &hestia_ring::RingConfig,
    addr: std::net::SocketAddr,
) -> Result<(hestia_ring::Lifecycler, Arc<RingClient>), hestia_ring::RingError> {
    let cfg = hestia_ring::RingConfig {
        key: DISTRIBUTOR_RING_KEY.to_string(),
        replication_factor: 1,
        zone_awareness: false,
        tokens_per_instance: 1,
        ..ingester_ring.clone()
    };
    let instance = hestia_ring::InstanceConfig {
        id: format!("distributor-{addr}"),
        addr: addr.to_string(),
        zone: String::new(),
        tokens_file: None,
    };
    let lifecycler = hestia_ring::Lifecycler::start(
        kv.clone(),
        &cfg,
        instance,
        hestia_ring::InstanceState::Active,
    )
    .await?;
    let ring = Arc::new(RingClient::start(kv, &cfg).await?);
    Ok((lifecycler, ring))
}

/// The HA tracker with its elections on the control plane at `endpoints` (gRPC URLs), its
/// background refresher running.
pub fn start_ha_tracker(
    endpoints: &[String],
    cfg: &hestia_ha::HaTrackerConfig,
) -> Result<(Arc<HaTracker>, tokio::task::JoinHandle<()>), hestia_ha::HaError> {
    let store = Arc::new(hestia_ha::ControlPlaneHaStore::new(endpoints)?);
    let tracker = HaTracker::new(store, cfg.clone());
    let refresher = tracker.spawn_refresher();
    Ok((tracker, refresher))
}

/// The distributor's internal HTTP API: `POST /api/v1/push` with the tenant in `X-Scope-OrgID`,
/// and the [`admin_router`].
pub fn router(d: Arc<Distributor>) -> Router {
    Router::new()
        .route("/api/v1/push", post(push_handler))
        .with_state(d.clone())
        .merge(admin_router(d))
}

/// Operator pages: `GET /ring` and `GET /ha_tracker`.
pub fn admin_router(d: Arc<Distributor>) -> Router {
    Router::new()
        .route("/ring", get(ring_status))
        .route("/ha_tracker", get(ha_tracker_status))
        .with_state(d)
}

/// `GET /ha_tracker[?tenant=…]`: every HA cluster's elected replica, from the election store.
async fn ha_tracker_status(
    State(d): State<Arc<Distributor>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    match d.ha.elections(q.get("tenant").map(String::as_str)).await {
        Ok(elections) => axum::Json(serde_json::json!({ "elections": elections })).into_response(),
        Err(e) => DistributorError::from(e).into_response(),
    }
}

/// `GET /ring`: the ingester ring as this distributor sees it, as JSON.
async fn ring_status(State(d): State<Arc<Distributor>>) -> Response {
    let instances = d.ring.ring().status(now_ms());
    axum::Json(serde_json::json!({ "instances": instances })).into_response()
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
        let fail = |p: Option<Protocol>| move |e| (e, p, PushSummary::default());
        let protocol = check_headers(&headers).map_err(fail(None))?;
        let body = read_body(body, &headers, d.cfg.max_request_body_bytes)
            .await
            .map_err(fail(Some(protocol)))?;
        d.push(&tenant, protocol, &body)
            .await
            .map(|s| (protocol, s))
            .map_err(|(e, s)| (e, Some(protocol), s))
    }
    .instrument(span)
    .await;
    let (mut resp, protocol, summary) = match result {
        Ok((protocol, summary)) => {
            let resp = match (&summary.first_limit_error, &summary.first_error) {
                (Some(msg), _) => DistributorError::SeriesLimit(msg.clone()).into_response(),
                (None, Some(msg)) => DistributorError::Invalid(msg.clone()).into_response(),
                (None, None) if protocol == Protocol::V2 => StatusCode::NO_CONTENT.into_response(),
                (None, None) => StatusCode::OK.into_response(),
            };
            (resp, Some(protocol), summary)
        }
        Err((e, protocol, summary)) => (e.into_response(), protocol, summary),
    };
    if protocol == Some(Protocol::V2) {
        let (samples, histograms, exemplars) = summary.written();
        let h = resp.headers_mut();
        h.insert("x-prometheus-remote-write-samples-written", samples.into());
        h.insert(
            "x-prometheus-remote-write-histograms-written",
            histograms.into(),
        );
        h.insert(
            "x-prometheus-remote-write-exemplars-written",
            exemplars.into(),
        );
    }
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

fn check_headers(headers: &HeaderMap) -> Result<Protocol, DistributorError> {
    let mut protocol = Protocol::V1;
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
                protocol = match proto.trim_matches('"') {
                    "prometheus.WriteRequest" => Protocol::V1,
                    "io.prometheus.write.v2.Request" => Protocol::V2,
                    _ => return Err(DistributorError::UnsupportedContentType(ct.to_string())),
                };
            }
        }
    }
    Ok(protocol)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_proto::prometheus as rw;
    use prost::Message;

    async fn distributor() -> Distributor {
        let kv: Arc<dyn hestia_ring::Kv> = Arc::new(hestia_ring::MemoryKv::default());
        let ring = RingClient::start(kv, &hestia_ring::RingConfig::default())
            .await
            .unwrap();
        Distributor::new(
            DistributorConfig::default(),
            Arc::new(hestia_limits::Overrides::fixed(Limits::default())),
            Arc::new(ring),
            Arc::default(),
            None,
            HaTracker::new(
                Arc::new(hestia_ha::MemoryHaStore::default()),
                Default::default(),
            ),
        )
    }

    fn label(name: &str, value: &str) -> rw::Label {
        rw::Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn hist(t: i64, schema: i32) -> rw::Histogram {
        rw::Histogram {
            count: Some(rw::histogram::Count::CountInt(5)),
            sum: 4.0,
            schema,
            zero_count: Some(rw::histogram::ZeroCount::ZeroCountInt(1)),
            positive_spans: vec![rw::BucketSpan {
                offset: 1,
                length: 2,
            }],
            positive_deltas: vec![1, 2],
            reset_hint: rw::histogram::ResetHint::Yes as i32,
            timestamp: t,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn histograms_and_exemplars_are_validated_and_forwarded() {
        let now = now_ms();
        let body = rw::WriteRequest {
            timeseries: vec![
                rw::TimeSeries {
                    labels: vec![label("__name__", "h")],
                    samples: vec![rw::Sample {
                        value: 1.0,
                        timestamp: now - 1,
                    }],
                    histograms: vec![hist(now, 2), hist(now + 1, 10), hist(now - 7_200_000, 2)],
                    exemplars: vec![
                        rw::Exemplar {
                            labels: vec![label("trace_id", "a")],
                            value: 2.0,
                            timestamp: now,
                        },
                        rw::Exemplar {
                            labels: vec![],
                            value: 2.0,
                            timestamp: now,
                        },
                    ],
                },
                // Invalid labels: its histograms and exemplars are refused with it.
                rw::TimeSeries {
                    labels: vec![label("job", "x")],
                    histograms: vec![hist(now, 0)],
                    exemplars: vec![rw::Exemplar {
                        labels: vec![label("trace_id", "b")],
                        value: 1.0,
                        timestamp: now,
                    }],
                    ..Default::default()
                },
            ],
            metadata: vec![],
        }
        .encode_to_vec();
        let req = decode_write_request(&body).unwrap();
        let tenant = TenantId::parse("t").unwrap();
        let (batch, summary) =
            distributor()
                .await
                .validate(&tenant, &req, &Limits::default(), None);
        assert_eq!(summary.samples_received, 5);
        assert_eq!(summary.samples_refused, 3);
        assert_eq!(summary.exemplars_received, 3);
        assert_eq!(summary.exemplars_refused, 2);
        let first = summary.first_error.unwrap();
        assert!(
            first.contains("invalid schema: 10 (err-mimir-invalid-native-histogram-schema)"),
            "{first}"
        );
        let ts = [batch.series(0)];
        assert_eq!(batch.tokens.len(), 1);
        assert_eq!(batch.num_series(), 1);
        assert_eq!(ts[0].samples.len(), 1);
        let h = &ts[0].histograms[0];
        assert_eq!(
            (
                h.timestamp_ms,
                h.schema,
                h.count,
                h.zero_count,
                h.reset_hint
            ),
            (now, 2, 5.0, 1.0, 1)
        );
        assert_eq!(h.positive_counts, vec![1.0, 3.0], "deltas become counts");
        assert_eq!(h.positive_spans.len(), 1);
        assert_eq!(ts[0].exemplars.len(), 1);
        assert_eq!(ts[0].exemplars[0].labels[0].value, "a");
    }
}
