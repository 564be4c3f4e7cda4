use once_cell::sync::Lazy;
use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};

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
