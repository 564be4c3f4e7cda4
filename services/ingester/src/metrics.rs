use once_cell::sync::Lazy;
use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

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

pub static SHIPPER_BLOCKS_SHIPPED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_ingester_shipper_blocks_shipped_total",
        "TSDB blocks uploaded to the object store and recorded as shipped."
    )
    .expect("metric registers once")
});

pub static SHIPPER_SAMPLES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_ingester_shipper_samples_cut_total",
        "Samples written into cut blocks (a block cut again after a crash counts twice)."
    )
    .expect("metric registers once")
});

pub static SHIPPER_FAILURES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ingester_shipper_failures_total",
        "Failures of the block shipper by stage (cut, upload, drop); the data stays in the ingester.",
        &["stage"]
    )
    .expect("metric registers once")
});

pub static SHIPPER_PENDING_BLOCKS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "hestia_ingester_shipper_pending_blocks",
        "Complete local blocks waiting for their upload."
    )
    .expect("metric registers once")
});

pub static SHIPPER_LAST_SUCCESS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "hestia_ingester_shipper_last_success_timestamp_seconds",
        "When the last block was shipped (Unix seconds)."
    )
    .expect("metric registers once")
});

pub static SHIPPER_CHUNKS_DROPPED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_ingester_shipper_dropped_chunks_total",
        "Chunk rows deleted from RocksDB after their range was shipped and retained."
    )
    .expect("metric registers once")
});

pub static RETENTION_CHUNKS_DELETED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_ingester_retention_chunks_deleted_total",
        "Chunk rows deleted because all their samples were past the workspace's retention.",
    )
    .expect("metric registers once")
});

pub static RETENTION_SERIES_DELETED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_ingester_retention_series_deleted_total",
        "Idle series deleted because their newest sample was past the workspace's retention.",
    )
    .expect("metric registers once")
});

pub static RETENTION_FAILURES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_ingester_retention_failures_total",
        "Retention passes that failed (retried at the next period).",
    )
    .expect("metric registers once")
});
