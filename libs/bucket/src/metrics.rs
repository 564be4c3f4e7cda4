use once_cell::sync::Lazy;
use prometheus::{register_int_counter_vec, IntCounterVec};

/// Object store requests by operation (`get`, `get_range`, `head`, `put`, `put_multipart`,
/// `list`, `delete`) and outcome (`success`, `not_found`, `error`). A request the object store
/// client retried counts once.
pub static OPERATIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_bucket_operations_total",
        "Object store operations, by operation and outcome.",
        &["operation", "outcome"]
    )
    .expect("metric registers once")
});

/// Object bytes moved, by direction (`upload`, `download`).
pub static BYTES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_bucket_transferred_bytes_total",
        "Object bytes uploaded to and downloaded from the object store.",
        &["direction"]
    )
    .expect("metric registers once")
});
