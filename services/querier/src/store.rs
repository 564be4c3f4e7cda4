//! Reads from the ingesters over gRPC, zone by zone: a write reached a quorum of its replicas in
//! distinct zones, so asking every instance of all zones but `quorum - 1` sees every acknowledged
//! sample. The ring's read plan names the zones, complete zones first (the querier's own zone
//! leading); when an instance of a zone fails, the next complete zone is asked instead. Replicas
//! are merged and deduplicated, and a read that cannot be completed fails: never a partial
//! result as success.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use hestia_block::BlockError;
use hestia_bucket::BucketError;
use hestia_model::{Label, Labels, MatchOp, Matcher, TenantId};
use hestia_promql::{QueryError, Queryable, SelectHints, Series};
use hestia_proto::ingester as pb;
use hestia_proto::{IngesterConn, IngesterPool};
use hestia_ring::{now_ms, RingClient, ZoneReplicas};
use ulid::Ulid;

use crate::{ApiError, QueryStore};

#[derive(Clone)]
pub struct IngesterStore {
    ring: Arc<RingClient>,
    pool: Arc<IngesterPool>,
    preferred_zone: Option<String>,
}

impl IngesterStore {
    pub fn new(
        ring: Arc<RingClient>,
        pool: Arc<IngesterPool>,
        preferred_zone: Option<String>,
    ) -> Self {
        Self {
            ring,
            pool,
            preferred_zone,
        }
    }

    /// Runs `call` against every instance of the zones the read plan needs, in parallel, moving
    /// on to the next complete zone when one fails; the answers of all instances asked.
    async fn fan_out<T, F, Fut>(&self, call: F) -> Result<Vec<T>, StoreError>
    where
        F: Fn(IngesterConn) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let ring = self.ring.ring();
        let plan = ring
            .read_plan(now_ms(), self.preferred_zone.as_deref())
            .map_err(|e| StoreError::Ring(e.to_string()))?;
        let ask_zone = |zone: &ZoneReplicas| {
            let calls = zone.instances.iter().map(|&i| {
                let addr = ring.instance(i).addr.clone();
                let client = self.pool.get(&addr);
                let fut = client.map(&call);
                async move {
                    match fut {
                        Ok(f) => f.await.map_err(|s| StoreError::from_status(&addr, s)),
                        Err(e) => Err(StoreError::Unavailable {
                            addr,
                            message: e.to_string(),
                        }),
                    }
                }
            });
            futures::future::try_join_all(calls)
        };
        let mut zones = plan.zones.iter().filter(|z| z.complete);
        let mut pending: FuturesUnordered<_> = zones
            .by_ref()
            .take(plan.zones_needed)
            .map(ask_zone)
            .collect();
        let mut out = Vec::new();
        let mut answered = 0;
        while let Some(res) = pending.next().await {
            match res {
                Ok(v) => {
                    out.extend(v);
                    answered += 1;
                    if answered == plan.zones_needed {
                        return Ok(out);
                    }
                }
                Err(e @ (StoreError::Unavailable { .. } | StoreError::Corrupt(_))) => {
                    match zones.next() {
                        Some(z) => {
                            tracing::warn!(error = %e, zone = %z.zone, "zone read failed, asking another zone");
                            pending.push(ask_zone(z));
                        }
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Ring(format!(
            "{answered} of {} zones answered",
            plan.zones_needed
        )))
    }

    /// The chunks of the series matching `matchers` overlapping [mint, maxt] (with
    /// `latest_only`, the newest sample), one entry per ingester holding the series. Every chunk
    /// received is charged to `chunks`; the read stops once the budget is exceeded.
    pub(crate) async fn query_stream(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        hints: &SelectHints,
        chunks: &ChunkBudget,
    ) -> Result<Vec<(Labels, Vec<pb::Chunk>)>, StoreError> {
        let req = pb::QueryRequest {
            tenant: tenant.to_string(),
            start_ms: hints.mint,
            end_ms: hints.maxt,
            matchers: matchers.iter().map(to_pb_matcher).collect(),
            latest_only: hints.latest_only,
        };
        let per_ingester = self
            .fan_out(|mut c| {
                let req = req.clone();
                async move {
                    let mut stream = c.query_stream(req).await?;
                    let mut out = Vec::new();
                    while let Some(msg) = stream.next().await {
                        let msg = msg?;
                        let n = msg.series.iter().map(|s| s.chunks.len()).sum();
                        chunks.charge(n)?;
                        out.extend(msg.series);
                    }
                    Ok(out)
                }
            })
            .await?;
        Ok(per_ingester
            .into_iter()
            .flatten()
            .map(|s| (from_pb_labels(s.labels), s.chunks))
            .collect())
    }

    /// Exemplars of the series matching any of `sets` in [mint, maxt], merged across ingesters
    /// and sorted by series labels, each series' exemplars in time order.
    pub async fn exemplars(
        &self,
        tenant: &TenantId,
        sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<pb::Exemplar>)>, StoreError> {
        let req = pb::ExemplarsRequest {
            tenant: tenant.to_string(),
            start_ms: mint,
            end_ms: maxt,
            matcher_sets: sets
                .iter()
                .map(|ms| pb::MatcherSet {
                    matchers: ms.iter().map(to_pb_matcher).collect(),
                })
                .collect(),
        };
        let per_ingester = self
            .fan_out(|mut c| {
                let req = req.clone();
                async move { Ok(c.query_exemplars(req).await?.series) }
            })
            .await?;
        let mut merged: BTreeMap<Labels, Vec<pb::Exemplar>> = BTreeMap::new();
        for s in per_ingester.into_iter().flatten() {
            merged
                .entry(from_pb_labels(s.labels))
                .or_default()
                .extend(s.exemplars);
        }
        Ok(merged
            .into_iter()
            .map(|(labels, mut ex)| {
                ex.sort_by_key(|e| e.timestamp_ms);
                // Replicas hold the same exemplars.
                ex.dedup_by(|a, b| {
                    a.timestamp_ms == b.timestamp_ms && a.value.to_bits() == b.value.to_bits()
                });
                (labels, ex)
            })
            .collect())
    }

    pub async fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        let req = pb::LabelNamesRequest {
            tenant: tenant.to_string(),
            start_ms: mint,
            end_ms: maxt,
            matchers: matchers.iter().map(to_pb_matcher).collect(),
        };
        let names = self
            .fan_out(|mut c| {
                let req = req.clone();
                async move { Ok(c.label_names(req).await?.names) }
            })
            .await?;
        Ok(union_sorted(names))
    }

    pub async fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        let req = pb::LabelValuesRequest {
            tenant: tenant.to_string(),
            name: name.to_string(),
            start_ms: mint,
            end_ms: maxt,
            matchers: matchers.iter().map(to_pb_matcher).collect(),
        };
        let values = self
            .fan_out(|mut c| {
                let req = req.clone();
                async move { Ok(c.label_values(req).await?.values) }
            })
            .await?;
        Ok(union_sorted(values))
    }

    pub async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StoreError> {
        let req = pb::SeriesRequest {
            tenant: tenant.to_string(),
            start_ms: mint,
            end_ms: maxt,
            matchers: matchers.iter().map(to_pb_matcher).collect(),
        };
        let mut out: Vec<Labels> = self
            .fan_out(|mut c| {
                let req = req.clone();
                async move { Ok(c.series(req).await?.series) }
            })
            .await?
            .into_iter()
            .flatten()
            .map(|l| from_pb_labels(l.labels))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub async fn metadata(
        &self,
        tenant: &TenantId,
        metric: Option<&str>,
        limit_per_metric: usize,
    ) -> Result<Vec<pb::MetricMetadata>, StoreError> {
        let req = pb::MetricsMetadataRequest {
            tenant: tenant.to_string(),
            metric: metric.unwrap_or_default().to_string(),
            limit: 0,
            limit_per_metric: u32::try_from(limit_per_metric).unwrap_or(u32::MAX),
        };
        let mut out: Vec<pb::MetricMetadata> = self
            .fan_out(|mut c| {
                let req = req.clone();
                async move { Ok(c.metrics_metadata(req).await?.metadata) }
            })
            .await?
            .into_iter()
            .flatten()
            .collect();
        out.sort_by(|a, b| {
            (&a.metric_family_name, &a.r#type, &a.help, &a.unit).cmp(&(
                &b.metric_family_name,
                &b.r#type,
                &b.help,
                &b.unit,
            ))
        });
        out.dedup();
        Ok(out)
    }
}

fn union_sorted(results: Vec<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = results.into_iter().flatten().collect();
    out.sort();
    out.dedup();
    out
}

pub fn to_pb_matcher(m: &Matcher) -> pb::LabelMatcher {
    let t = match m.op {
        MatchOp::Equal => pb::label_matcher::Type::Eq,
        MatchOp::NotEqual => pb::label_matcher::Type::Neq,
        MatchOp::RegexMatch => pb::label_matcher::Type::Re,
        MatchOp::RegexNoMatch => pb::label_matcher::Type::Nre,
    };
    pb::LabelMatcher {
        r#type: t as i32,
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

pub(crate) fn from_pb_labels(pairs: Vec<pb::LabelPair>) -> Labels {
    let mut v: Vec<Label> = pairs
        .into_iter()
        .map(|p| Label {
            name: p.name,
            value: p.value,
        })
        .collect();
    if !v.windows(2).all(|w| w[0].name < w[1].name) {
        return Labels::from_pairs(v.into_iter().map(|l| (l.name, l.value)));
    }
    v.retain(|l| !l.value.is_empty());
    Labels::from_sorted_unchecked(v)
}

/// A failed read from the ingesters or the blocks.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ingester {addr}: {message}")]
    Unavailable { addr: String, message: String },
    #[error("ingester {addr} refused the request: {message}")]
    Invalid { addr: String, message: String },
    #[error("corrupt chunk received from an ingester: {0}")]
    Corrupt(String),
    #[error("the query hit the max number of chunks limit (limit: {limit} chunks)")]
    ChunkLimit { limit: usize },
    #[error("ingester ring: {0}")]
    Ring(String),
    #[error("block {block}: {source}")]
    Block { block: Ulid, source: BlockError },
    /// The bucket index or the object store configuration.
    #[error("block storage: {0}")]
    Bucket(BucketError),
}

/// Marks the status [`ChunkBudget::charge`] returns, so that `fan_out` can tell a spent budget
/// from an ingester failure.
const CHUNK_LIMIT_METADATA: &str = "hestia-chunk-limit";

/// The chunks one query may fetch (AMP: 2,000,000, each chunk up to 120 samples), shared by all
/// the selections and ingester streams of the query.
#[derive(Debug)]
pub struct ChunkBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ChunkBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether `n` more chunks stay within the limit.
    fn take(&self, n: usize) -> bool {
        self.used.fetch_add(n, Ordering::Relaxed) + n <= self.limit
    }

    /// Charges chunks read from blocks.
    pub(crate) fn charge_chunks(&self, n: usize) -> Result<(), StoreError> {
        match self.take(n) {
            true => Ok(()),
            false => Err(StoreError::ChunkLimit { limit: self.limit }),
        }
    }

    /// Charges chunks an ingester streams; the error status ends its stream.
    fn charge(&self, n: usize) -> Result<(), tonic::Status> {
        if self.take(n) {
            return Ok(());
        }
        let mut s = tonic::Status::resource_exhausted("chunk limit");
        if let Ok(v) = self.limit.to_string().parse() {
            s.metadata_mut().insert(CHUNK_LIMIT_METADATA, v);
        }
        Err(s)
    }
}

impl StoreError {
    pub(crate) fn block(block: Ulid, source: BlockError) -> Self {
        Self::Block { block, source }
    }

    fn from_status(addr: &str, s: tonic::Status) -> Self {
        if let Some(limit) = s
            .metadata()
            .get(CHUNK_LIMIT_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            return Self::ChunkLimit { limit };
        }
        match s.code() {
            tonic::Code::InvalidArgument => Self::Invalid {
                addr: addr.to_string(),
                message: s.message().to_string(),
            },
            _ => Self::Unavailable {
                addr: addr.to_string(),
                message: s.message().to_string(),
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid { message, .. } => ApiError::bad_data(message),
            StoreError::Corrupt(_) => ApiError::internal(e.to_string()),
            StoreError::Unavailable { .. } | StoreError::Ring(_) => {
                ApiError::unavailable(e.to_string())
            }
            StoreError::ChunkLimit { .. } => ApiError::execution(e.to_string()),
            StoreError::Block {
                source:
                    BlockError::Corrupt { .. }
                    | BlockError::Chunk(_)
                    | BlockError::Json(_)
                    | BlockError::Invalid(_),
                ..
            }
            | StoreError::Bucket(BucketError::Corrupt { .. }) => ApiError::internal(e.to_string()),
            StoreError::Block { .. } | StoreError::Bucket(_) => {
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

/// The PromQL engine's view of one tenant's data.
pub struct TenantQueryable<'a> {
    pub store: &'a QueryStore,
    pub tenant: &'a TenantId,
    pub chunks: ChunkBudget,
}

#[async_trait::async_trait]
impl Queryable for TenantQueryable<'_> {
    async fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, QueryError> {
        self.store
            .select(self.tenant, matchers, hints, &self.chunks)
            .await
            .map_err(|e| match e {
                StoreError::ChunkLimit { .. } => QueryError::Execution(e.to_string()),
                e => QueryError::Storage(e.to_string()),
            })
    }
}
