//! The querier: Prometheus' HTTP query API for one tenant per request (the gateway resolves it and
//! passes it in `X-Scope-OrgID`), PromQL through `hestia-promql`, data from the ingesters and
//! from the blocks in the object store (`blocks/`), merged in `merge.rs`.

mod api;
pub mod blocks;
mod error;
mod exemplars;
mod format;
mod merge;
pub mod metrics;
mod params;
mod read;
pub mod role;
mod store;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use hestia_config::QuerierConfig;
use hestia_promql::{Engine, EngineOptions};
use hestia_proto::IngesterPool;
use hestia_ring::RingClient;

pub use blocks::{BlockStore, BlockStoreOptions, BlockStoreStats, CacheStats};
pub use error::{ApiError, ApiErrorType};
pub use merge::{merge_series, QueryStore, SeriesPart};
pub use params::{parse_duration, parse_time};
pub use store::{ChunkBudget, IngesterStore, StoreError, TenantQueryable};

/// The header that carries the tenant on internal HTTP calls.
pub const TENANT_HEADER: &str = "x-scope-orgid";

pub struct Querier {
    pub(crate) cfg: QuerierConfig,
    pub(crate) engine: Engine,
    pub(crate) store: QueryStore,
}

impl Querier {
    /// Reads go to the ingesters `ring` shows, through clients from `pool`, for any time range.
    pub fn new(cfg: QuerierConfig, ring: Arc<RingClient>, pool: Arc<IngesterPool>) -> Self {
        Self::build(cfg, ring, pool, None)
    }

    /// Reads go to the ingesters for the last `cfg.query_ingesters_within` and to `blocks` for
    /// what starts before now minus `cfg.query_store_after`.
    pub fn with_blocks(
        cfg: QuerierConfig,
        ring: Arc<RingClient>,
        pool: Arc<IngesterPool>,
        blocks: BlockStore,
    ) -> Self {
        Self::build(cfg, ring, pool, Some(blocks))
    }

    fn build(
        cfg: QuerierConfig,
        ring: Arc<RingClient>,
        pool: Arc<IngesterPool>,
        blocks: Option<BlockStore>,
    ) -> Self {
        let ingesters = IngesterStore::new(ring, pool, cfg.preferred_zone.clone());
        let store = QueryStore::new(
            ingesters,
            blocks,
            cfg.query_ingesters_within,
            cfg.query_store_after,
        );
        let engine = Engine::new(EngineOptions {
            lookback_delta: cfg.lookback_delta,
            max_samples: cfg.max_samples,
            timeout: Some(cfg.timeout),
            ..EngineOptions::default()
        });
        Self { cfg, engine, store }
    }
}

/// The querier's internal HTTP API: Prometheus paths under `/api/v1`, tenant in `X-Scope-OrgID`.
pub fn router(q: Arc<Querier>) -> Router {
    Router::new()
        .route("/api/v1/query", get(api::query).post(api::query))
        .route(
            "/api/v1/query_range",
            get(api::query_range).post(api::query_range),
        )
        .route("/api/v1/series", get(api::series).post(api::series))
        .route("/api/v1/labels", get(api::labels).post(api::labels))
        .route("/api/v1/label/{name}/values", get(api::label_values))
        .route("/api/v1/metadata", get(api::metadata))
        .route(
            "/api/v1/format_query",
            get(format::format_query).post(format::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(format::parse_query).post(format::parse_query),
        )
        .route("/api/v1/read", post(read::read))
        .route(
            "/api/v1/query_exemplars",
            get(exemplars::query_exemplars).post(exemplars::query_exemplars),
        )
        .route("/api/v1/status/buildinfo", get(api::buildinfo))
        .with_state(q)
}
