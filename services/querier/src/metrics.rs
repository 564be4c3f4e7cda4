use once_cell::sync::Lazy;
use prometheus::{
    register_histogram_vec, register_int_counter_vec, register_int_gauge, HistogramVec,
    IntCounterVec, IntGauge,
};

pub static QUERIES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_querier_queries_total",
        "PromQL queries by kind (instant, range) and outcome (success or the Prometheus errorType).",
        &["tenant", "kind", "outcome"]
    )
    .expect("metric registers once")
});

pub static QUERY_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    register_histogram_vec!(
        "hestia_querier_query_duration_seconds",
        "Time spent evaluating PromQL queries, fetching included.",
        &["kind"],
        vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0
        ]
    )
    .expect("metric registers once")
});

pub static BLOCK_CACHE_LOOKUPS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_querier_block_cache_lookups_total",
        "Block page cache lookups (4 KiB pages of index and chunk files), by result (hit, miss).",
        &["result"]
    )
    .expect("metric registers once")
});

pub static BLOCK_CACHE_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "hestia_querier_block_cache_bytes",
        "Memory held by the block page cache (bounded by querier.block_cache_bytes)."
    )
    .expect("metric registers once")
});

pub static BLOCK_FETCHED_BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_querier_block_fetched_bytes_total",
        "Bytes of blocks read from the object store, by kind (header: opening a block; data: postings, series and chunks).",
        &["kind"]
    )
    .expect("metric registers once")
});

pub static BLOCK_OPENS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_querier_block_opens_total",
        "Blocks opened for queries, by where their index header came from (disk, bucket).",
        &["source"]
    )
    .expect("metric registers once")
});

pub static OPEN_BLOCK_HEADER_BYTES: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "hestia_querier_open_block_header_bytes",
        "Index header bytes of the blocks kept open in memory."
    )
    .expect("metric registers once")
});

pub static BUCKET_INDEX_SYNCS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_querier_bucket_index_syncs_total",
        "Bucket index loads (reading a tenant's index) and updates (rebuilding it from a listing), by outcome.",
        &["operation", "outcome"]
    )
    .expect("metric registers once")
});
