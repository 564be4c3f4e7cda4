use once_cell::sync::Lazy;
use prometheus::{register_int_counter_vec, IntCounterVec};

pub static UPSTREAM_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_gateway_upstream_errors_total",
        "Requests the gateway could not deliver to a distributor or querier.",
        &["upstream"]
    )
    .expect("metric registers once")
});

pub static AUDIT_DROPPED: Lazy<prometheus::IntCounter> = Lazy::new(|| {
    prometheus::register_int_counter!(
        "hestia_gateway_audit_dropped_total",
        "Refused requests the gateway could not hand to the control plane's audit log."
    )
    .expect("metric registers once")
});
