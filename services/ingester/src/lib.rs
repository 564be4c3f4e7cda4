//! The ingester: Hestia's stateful role. It owns one `hestia_storage::Tsdb` (RocksDB) and serves
//! the internal `hestia.ingester.Ingester` gRPC service. Storage calls are blocking, so each runs
//! on tokio's blocking pool; a Push is answered only after its WAL write is fsync'd.

mod error;
mod limits;
pub mod metrics;
mod push;
pub mod retention;
pub mod role;
pub mod shipper;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hestia_config::{IngesterConfig, RingConfig};
use hestia_model::{Label, Labels, MatchOp, Matcher, TenantId};
use hestia_proto::ingester as pb;
use hestia_proto::ingester::ingester_server::{Ingester, IngesterServer};
use hestia_ring::{InstanceConfig, InstanceState, Kv, Lifecycler};
use hestia_storage::{
    seek_before, ChunkEncoding, CounterResetHint, Exemplar, Histogram, MetricMetadata, MetricType,
    RejectReason, Span, Tsdb, TsdbOptions,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

pub use error::IngesterError;
pub use limits::{PushLimits, SeriesLimiter};
pub use retention::RetentionReport;
pub use shipper::{ShipReport, Shipper};

/// Series per `QueryStreamResponse` message.
const STREAM_BATCH_SERIES: usize = 128;

/// Opens (and recovers) the ingester's database under `<data_dir>/ingester`.
pub fn open_tsdb(data_dir: &Path, cfg: &IngesterConfig) -> Result<Arc<Tsdb>, IngesterError> {
    let opts = TsdbOptions {
        checkpoint_interval: Some(cfg.checkpoint_interval),
        block_cache_bytes: cfg.block_cache_bytes,
        series_idle_timeout: Some(cfg.series_idle_timeout).filter(|t| !t.is_zero()),
        ..TsdbOptions::default()
    };
    Ok(Arc::new(Tsdb::open(data_dir.join("ingester"), opts)?))
}

#[derive(Clone)]
pub struct IngesterService {
    db: Arc<Tsdb>,
    limiter: Arc<SeriesLimiter>,
}

impl IngesterService {
    pub fn new(db: Arc<Tsdb>, limiter: Arc<SeriesLimiter>) -> Self {
        Self { db, limiter }
    }

    pub fn into_server(self) -> IngesterServer<Self> {
        IngesterServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(256 << 20)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, IngesterError>
    where
        T: Send + 'static,
        F: FnOnce(&Tsdb) -> Result<T, hestia_storage::StorageError> + Send + 'static,
    {
        let db = self.db.clone();
        Ok(tokio::task::spawn_blocking(move || f(&db)).await??)
    }
}

fn tenant(s: &str) -> Result<TenantId, IngesterError> {
    TenantId::parse(s).map_err(|e| IngesterError::InvalidArgument(e.to_string()))
}

fn labels_from_pb(pairs: Vec<pb::LabelPair>) -> Labels {
    let v: Vec<Label> = pairs
        .into_iter()
        .map(|p| Label {
            name: p.name,
            value: p.value,
        })
        .collect();
    if v.windows(2).all(|w| w[0].name < w[1].name) && v.iter().all(|l| !l.value.is_empty()) {
        Labels::from_sorted_unchecked(v)
    } else {
        Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value)))
    }
}

fn spans_from_pb(spans: Vec<pb::BucketSpan>) -> Vec<Span> {
    spans
        .into_iter()
        .map(|s| Span {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

fn histogram_from_pb(h: pb::Histogram) -> (i64, Histogram) {
    let counter_reset_hint = match h.reset_hint {
        1 => CounterResetHint::CounterReset,
        2 => CounterResetHint::NotCounterReset,
        3 => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    };
    (
        h.timestamp_ms,
        Histogram {
            counter_reset_hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count,
            count: h.count,
            sum: h.sum,
            positive_spans: spans_from_pb(h.positive_spans),
            negative_spans: spans_from_pb(h.negative_spans),
            positive_buckets: h.positive_counts,
            negative_buckets: h.negative_counts,
            custom_values: h.custom_values,
        },
    )
}

fn chunk_encoding_to_pb(e: ChunkEncoding) -> pb::ChunkEncoding {
    match e {
        ChunkEncoding::Xor => pb::ChunkEncoding::Xor,
        ChunkEncoding::Histogram => pb::ChunkEncoding::Histogram,
    }
}

fn exemplar_to_pb(e: Exemplar) -> pb::Exemplar {
    pb::Exemplar {
        labels: labels_to_pb(e.labels),
        timestamp_ms: e.t,
        value: e.v,
    }
}

fn labels_to_pb(l: Labels) -> Vec<pb::LabelPair> {
    l.into_vec()
        .into_iter()
        .map(|l| pb::LabelPair {
            name: l.name,
            value: l.value,
        })
        .collect()
}

fn matchers_from_pb(ms: Vec<pb::LabelMatcher>) -> Result<Vec<Matcher>, IngesterError> {
    ms.into_iter()
        .map(|m| {
            let op = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(pb::label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(pb::label_matcher::Type::Re) => MatchOp::RegexMatch,
                Ok(pb::label_matcher::Type::Nre) => MatchOp::RegexNoMatch,
                Err(_) => {
                    return Err(IngesterError::InvalidArgument(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )))
                }
            };
            Matcher::new(op, m.name, m.value)
                .map_err(|e| IngesterError::InvalidArgument(e.to_string()))
        })
        .collect()
}

#[tonic::async_trait]
impl Ingester for IngesterService {
    async fn push(
        &self,
        req: Request<pb::PushRequestEncoded>,
    ) -> Result<Response<pb::PushResponse>, Status> {
        let req = req.into_inner();
        let tenant = tenant(&req.tenant)?;
        let metadata: Vec<MetricMetadata> = req
            .metadata
            .into_iter()
            .map(|m| MetricMetadata {
                metric_family_name: m.metric_family_name,
                kind: MetricType::parse(&m.r#type),
                help: m.help,
                unit: m.unit,
            })
            .collect();
        let t = tenant.clone();
        let limits = self.limiter.limits_for(&tenant);
        let db = self.db.clone();
        let timeseries = req.timeseries;
        let (result, messages, metadata_refused) = tokio::task::spawn_blocking(move || {
            let mut decoded = push::Decoded::new(&timeseries)?;
            let batch = decoded.batch()?;
            let r = db.append_limited(&t, &batch, &limits.series)?;
            let metadata_refused =
                db.put_metadata_limited(&t, &metadata, limits.metadata_metrics)?;
            let messages: Vec<String> = r
                .rejected
                .iter()
                .map(|rej| match batch.get(rej.series_index) {
                    Some(s) => {
                        let labels = s.labels.to_labels();
                        limits
                            .message(&t, rej.reason, &labels)
                            .unwrap_or_else(|| rej.message(&labels))
                    }
                    None => rej.to_string(),
                })
                .collect();
            Ok::<_, IngesterError>((r, messages, metadata_refused))
        })
        .await
        .map_err(IngesterError::from)??;
        let ts = tenant.as_str();
        metrics::SAMPLES_APPENDED
            .with_label_values(&[ts])
            .inc_by(result.samples_appended as u64);
        metrics::OUT_OF_ORDER_SAMPLES_APPENDED
            .with_label_values(&[ts])
            .inc_by(result.samples_out_of_order as u64);
        metrics::SERIES_CREATED
            .with_label_values(&[ts])
            .inc_by(result.series_created as u64);
        metrics::EXEMPLARS_APPENDED
            .with_label_values(&[ts])
            .inc_by(result.exemplars_appended as u64);
        let rejections = result
            .rejected
            .iter()
            .zip(messages)
            .map(|(r, message)| {
                let reason = match r.reason {
                    RejectReason::OutOfOrder => pb::RejectReason::OutOfOrder,
                    RejectReason::TooOld => pb::RejectReason::TooOld,
                    RejectReason::DuplicateTimestamp => pb::RejectReason::DuplicateTimestamp,
                    RejectReason::SeriesLimit => pb::RejectReason::PerUserSeriesLimit,
                    RejectReason::MetricSeriesLimit => pb::RejectReason::PerMetricSeriesLimit,
                    RejectReason::OutOfBounds => pb::RejectReason::OutOfBounds,
                };
                let label = r.reason.discard_reason();
                metrics::SAMPLES_REJECTED
                    .with_label_values(&[label, ts])
                    .inc_by(r.count as u64);
                pb::Rejection {
                    series_index: r.series_index as u32,
                    reason: reason as i32,
                    samples: r.count as u32,
                    message,
                }
            })
            .collect();
        let metadata_limit_message = (metadata_refused > 0).then(|| {
            metrics::METADATA_REJECTED
                .with_label_values(&[ts])
                .inc_by(metadata_refused as u64);
            limits.metadata_message(&tenant)
        });
        Ok(Response::new(pb::PushResponse {
            metadata_refused: metadata_refused as u64,
            metadata_limit_message: metadata_limit_message.unwrap_or_default(),
            samples_appended: result.samples_appended as u64,
            series_created: result.series_created as u64,
            rejections,
            exemplars_appended: result.exemplars_appended as u64,
            exemplars_out_of_order: result.exemplars_out_of_order as u64,
        }))
    }

    type QueryStreamStream = hestia_proto::QueryStreamAnswers;

    async fn query_stream(
        &self,
        req: Request<pb::QueryRequest>,
    ) -> Result<Response<Self::QueryStreamStream>, Status> {
        let req = req.into_inner();
        let tenant = tenant(&req.tenant)?;
        let matchers = matchers_from_pb(req.matchers)?;
        let (mint, maxt, latest_only) = (req.start_ms, req.end_ms, req.latest_only);
        let series = self
            .blocking(move |db| match latest_only {
                true => db.select_latest(&tenant, &matchers, mint, maxt),
                false => db.select(&tenant, &matchers, mint, maxt),
            })
            .await?;
        let mut messages = Vec::with_capacity(series.len() / STREAM_BATCH_SERIES + 1);
        let mut iter = series.into_iter().peekable();
        while iter.peek().is_some() {
            let batch = iter
                .by_ref()
                .take(STREAM_BATCH_SERIES)
                .map(|s| pb::SeriesChunks {
                    labels: labels_to_pb(s.labels),
                    chunks: s
                        .chunks
                        .into_iter()
                        .map(|c| pb::Chunk {
                            min_time_ms: c.min_t,
                            max_time_ms: c.max_t,
                            encoding: chunk_encoding_to_pb(c.encoding) as i32,
                            seek: c.seeks.and_then(|s| seek_before(&s, mint)).map(|p| {
                                pb::XorSeek {
                                    index: p.index.into(),
                                    bit: p.bit.into(),
                                    t: p.t,
                                    t_delta: p.t_delta,
                                    v_bits: p.v_bits,
                                    leading: p.leading.into(),
                                    trailing: p.trailing.into(),
                                }
                            }),
                            data: c.data,
                        })
                        .collect(),
                })
                .collect();
            messages.push(Ok(pb::QueryStreamResponse { series: batch }));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }

    async fn label_names(
        &self,
        req: Request<pb::LabelNamesRequest>,
    ) -> Result<Response<pb::LabelNamesResponse>, Status> {
        let req = req.into_inner();
        let tenant = tenant(&req.tenant)?;
        let matchers = matchers_from_pb(req.matchers)?;
        let names = self
            .blocking(move |db| db.label_names(&tenant, &matchers, req.start_ms, req.end_ms))
            .await?;
        Ok(Response::new(pb::LabelNamesResponse { names }))
    }

    async fn purge_tenant(
        &self,
        req: Request<pb::PurgeTenantRequest>,
    ) -> Result<Response<pb::PurgeTenantResponse>, Status> {
        let tenant = tenant(&req.into_inner().tenant)?;
        let t = tenant.clone();
        let existed = self.blocking(move |db| db.delete_tenant(&t)).await?;
        tracing::info!(%tenant, existed, "tenant purged");
        Ok(Response::new(pb::PurgeTenantResponse { existed }))
    }

    async fn label_values(
        &self,
        req: Request<pb::LabelValuesRequest>,
    ) -> Result<Response<pb::LabelValuesResponse>, Status> {
        let req = req.into_inner();
        let tenant = tenant(&req.tenant)?;
        let matchers = matchers_from_pb(req.matchers)?;
        let name = req.name;
        let values = self
            .blocking(move |db| {
                db.label_values(&tenant, &name, &matchers, req.start_ms, req.end_ms)
            })
            .await?;
        Ok(Response::new(pb::LabelValuesResponse { values }))
    }

    async fn series(
        &self,
        req: Request<pb::SeriesRequest>,
    ) -> Result<Response<pb::SeriesResponse>, Status> {
        let req = req.into_inner();
        let tenant = tenant(&req.tenant)?;
        let matchers = matchers_from_pb(req.matchers)?;
        let series = self
            .blocking(move |db| db.series(&tenant, &matchers, req.start_ms, req.end_ms))
            .await?;
        Ok(Response::new(pb::SeriesResponse {
            series: series
                .into_iter()
                .map(|l| pb::Labels {
                    labels: labels_to_pb(l),
                })
                .collect(),
        }))
    }

    async fn query_exemplars(
        &self,
        req: Request<pb::ExemplarsRequest>,
    ) -> Result<Response<pb::ExemplarsResponse>, Status> {
        let req = req.into_inner();
        let tenant = tenant(&req.tenant)?;
        let sets = req
            .matcher_sets
            .into_iter()
            .map(|s| matchers_from_pb(s.matchers))
            .collect::<Result<Vec<_>, _>>()?;
        let (mint, maxt) = (req.start_ms, req.end_ms);
        let found = self
            .blocking(move |db| {
                let mut out = Vec::new();
                for m in &sets {
                    out.extend(db.exemplars(&tenant, m, mint, maxt)?);
                }
                // Overlapping matcher sets select a series once.
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                out.dedup_by(|a, b| a.labels == b.labels);
                Ok(out)
            })
            .await?;
        Ok(Response::new(pb::ExemplarsResponse {
            series: found
                .into_iter()
                .map(|s| pb::SeriesExemplars {
                    labels: labels_to_pb(s.labels),
                    exemplars: s.exemplars.into_iter().map(exemplar_to_pb).collect(),
                })
                .collect(),
        }))
    }

    async fn metrics_metadata(
        &self,
        req: Request<pb::MetricsMetadataRequest>,
    ) -> Result<Response<pb::MetricsMetadataResponse>, Status> {
        let req = req.into_inner();
        let tenant = tenant(&req.tenant)?;
        let metric = (!req.metric.is_empty()).then_some(req.metric);
        let limit = (req.limit > 0).then_some(req.limit as usize);
        let per_metric = (req.limit_per_metric > 0).then_some(req.limit_per_metric as usize);
        let items = self
            .blocking(move |db| db.metadata(&tenant, metric.as_deref(), limit, per_metric))
            .await?;
        Ok(Response::new(pb::MetricsMetadataResponse {
            metadata: items
                .into_iter()
                .map(|m| pb::MetricMetadata {
                    metric_family_name: m.metric_family_name,
                    r#type: m.kind.as_str().to_string(),
                    help: m.help,
                    unit: m.unit,
                })
                .collect(),
        }))
    }
}

/// Joins the ring as ACTIVE (the WAL was replayed when the database opened) under the
/// configured identity; tokens are kept in `<data_dir>/ring-tokens.json` so that a restarted
/// ingester owns the same series.
pub async fn join_ring(
    kv: Arc<dyn Kv>,
    ring: &RingConfig,
    cfg: &IngesterConfig,
    grpc_addr: SocketAddr,
    data_dir: &Path,
) -> Result<Lifecycler, IngesterError> {
    let addr = advertised_addr(cfg, grpc_addr);
    let instance = InstanceConfig {
        id: instance_id(cfg, grpc_addr),
        addr,
        zone: cfg.zone.clone(),
        tokens_file: Some(data_dir.join("ring-tokens.json")),
    };
    tracing::info!(id = %instance.id, addr = %instance.addr, zone = %instance.zone, "joining the ring");
    Ok(Lifecycler::start(kv, ring, instance, InstanceState::Active).await?)
}

fn advertised_addr(cfg: &IngesterConfig, grpc_addr: SocketAddr) -> String {
    cfg.advertise_addr
        .clone()
        .unwrap_or_else(|| grpc_addr.to_string())
}

/// The ingester's id in the ring (and in its blocks' `__ingester_id__`): `ingester.instance_id`,
/// else `ingester-<advertised address>`.
pub fn instance_id(cfg: &IngesterConfig, grpc_addr: SocketAddr) -> String {
    cfg.instance_id
        .clone()
        .unwrap_or_else(|| format!("ingester-{}", advertised_addr(cfg, grpc_addr)))
}

/// Binds the gRPC listener; returns it with its actual address (port 0 picks a free one).
pub async fn bind_grpc(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

/// Serves the ingester gRPC service until `shutdown` resolves.
pub async fn serve_grpc(
    listener: TcpListener,
    service: IngesterService,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // `Server::tcp_nodelay` applies only to listeners tonic binds itself.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Refreshes the per-tenant series gauges from the head's statistics.
pub fn export_head_stats(db: &Tsdb) {
    for t in db.head_stats().tenants {
        let tenant = t.tenant.as_str();
        metrics::MEMORY_SERIES
            .with_label_values(&[tenant])
            .set(t.series as i64);
        metrics::ACTIVE_SERIES
            .with_label_values(&[tenant])
            .set(t.active_series as i64);
        metrics::IDLE_SERIES
            .with_label_values(&[tenant])
            .set(t.idle_series as i64);
    }
}
