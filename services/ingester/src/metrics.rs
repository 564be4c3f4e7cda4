use once_cell::sync::Lazy;
use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};

pub static SAMPLES_APPENDED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ingester_samples_appended_total",
        "Samples durably appended to the head.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static SAMPLES_REJECTED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ingester_samples_rejected_total",
        "Samples the ingester refused (out of order, duplicate timestamp, series limits), by reason.",
        &["reason", "tenant"]
    )
    .expect("metric registers once")
});

pub static METADATA_REJECTED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ingester_metadata_rejected_total",
        "Metadata entries refused by the per-workspace metric metadata limit.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static SERIES_CREATED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ingester_series_created_total",
        "Series created in the head.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static MEMORY_SERIES: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "hestia_ingester_memory_series",
        "Series held in the ingester's head, per tenant.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static IDLE_SERIES: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "hestia_ingester_idle_series",
        "Series that left memory after ingester.series_idle_timeout without samples (on disk only), per tenant.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static OUT_OF_ORDER_SAMPLES_APPENDED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ingester_out_of_order_samples_appended_total",
        "Samples accepted within the workspace's out-of-order window (also in samples_appended).",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static ACTIVE_SERIES: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "hestia_ingester_active_series",
        "Series with a sample in the last 5 minutes, per tenant.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static EXEMPLARS_APPENDED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ingester_exemplars_appended_total",
        "Exemplars durably stored.",
        &["tenant"]
    )
    .expect("metric registers once")
});
