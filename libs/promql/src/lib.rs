//! Hestia's PromQL engine, with Prometheus 3.x semantics.
//!
//! Queries are parsed with `promql-parser`, every selector's time range is planned up front, the
//! data is fetched through the storage-agnostic [`Queryable`] (remote in the querier), and the
//! expression is then evaluated synchronously over the fetched series.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hestia_promql::QueryError> {
//! use hestia_promql::{Engine, EngineOptions, MemoryStorage};
//! let storage = MemoryStorage::new();
//! let engine = Engine::new(EngineOptions::default());
//! let res = engine.instant_query(&storage, "sum by (job) (rate(http_requests_total[5m]))", 1_700_000_000_000).await?;
//! println!("{}", res.data_json());
//! # Ok(()) }
//! ```

mod aggregate;
mod binary;
mod engine;
mod error;
mod eval;
mod functions;
pub mod histogram;
mod memory;
mod pos;
mod trim;
mod value;

pub use engine::{parse, Engine, EngineOptions, Parsed};
pub use error::{ErrorKind, QueryError};
pub use histogram::{CounterResetHint, FloatHistogram, Span, CUSTOM_BUCKETS_SCHEMA};
pub use memory::MemoryStorage;
pub use value::{almost_equal, format_float, InstantSample, QueryResult, Series, Value};

use hestia_model::Matcher;

/// What the engine reads of one selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectHints {
    /// Samples in `[mint, maxt]` (ms, inclusive).
    pub mint: i64,
    pub maxt: i64,
    /// Only each series' newest sample at or before `maxt` is read (instant selectors evaluated
    /// at one time): a storage may return just that sample, or more.
    pub latest_only: bool,
}

/// Read access to series data. Implemented over gRPC by the querier and by [`MemoryStorage`].
#[async_trait::async_trait]
pub trait Queryable: Send + Sync {
    /// Series matching all matchers with their samples in `[hints.mint, hints.maxt]`, sorted by
    /// labels; series without a sample there are left out.
    async fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, QueryError>;
}
