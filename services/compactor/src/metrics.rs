use once_cell::sync::Lazy;
use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

pub static LAST_SUCCESS: Lazy<IntGaugeVec> = Lazy::new(|| {
    register_int_gauge_vec!(
        "hestia_compactor_last_successful_run_timestamp_seconds",
        "When a compaction pass last finished a tenant without error (unix seconds).",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static PASSES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_compactor_passes_total",
        "Passes over the owned tenants, by kind (compaction, cleanup) and outcome (success, failure).",
        &["kind", "outcome"]
    )
    .expect("metric registers once")
});

pub static COMPACTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_compactor_compactions_total",
        "Blocks written by merging others, by kind (vertical: overlapping blocks; level: a window of a longer range).",
        &["kind"]
    )
    .expect("metric registers once")
});

pub static BLOCKS_COMPACTED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_compactor_blocks_compacted_total",
        "Source blocks merged into compacted blocks."
    )
    .expect("metric registers once")
});

pub static BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_compactor_bytes_total",
        "Block bytes downloaded to compact (in) and compacted blocks uploaded (out).",
        &["direction"]
    )
    .expect("metric registers once")
});

pub static SAMPLES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_compactor_samples_total",
        "Samples read from sources (in) and written to compacted blocks (out).",
        &["direction"]
    )
    .expect("metric registers once")
});

pub static DUPLICATES: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_compactor_duplicate_samples_total",
        "Samples removed because another copy had the same timestamp and value (replicas)."
    )
    .expect("metric registers once")
});

pub static CONFLICTS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_compactor_conflicting_samples_total",
        "Samples removed because another copy had the same timestamp and another value (the block with the smallest ULID wins)."
    )
    .expect("metric registers once")
});

pub static FAILURES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_compactor_failures_total",
        "Tenant passes that failed, by reason (object_store, block, ring, local_disk, output, other).",
        &["reason"]
    )
    .expect("metric registers once")
});

pub static BLOCKS_MARKED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_compactor_blocks_marked_for_deletion_total",
        "Deletion marks written, by reason (compacted, superseded, retention).",
        &["reason"]
    )
    .expect("metric registers once")
});

pub static BLOCKS_DELETED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_compactor_blocks_deleted_total",
        "Blocks deleted from the bucket, by kind (marked, partial, tenant).",
        &["kind"]
    )
    .expect("metric registers once")
});

pub static TENANTS_DELETED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_compactor_tenants_deleted_total",
        "Tenants removed from the bucket after their tenant deletion mark."
    )
    .expect("metric registers once")
});

pub static OWNED_TENANTS: Lazy<IntGauge> = Lazy::new(|| {
    register_int_gauge!(
        "hestia_compactor_owned_tenants",
        "Tenants of the bucket this compactor owned at its last pass."
    )
    .expect("metric registers once")
});
