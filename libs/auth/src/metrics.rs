use once_cell::sync::Lazy;
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};

pub static ALLOWED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_auth_allowed_requests_total",
        "Requests that authenticated and were authorized."
    )
    .expect("metric registers once")
});

pub static REFUSED: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_auth_refused_requests_total",
        "Requests refused by authentication or authorization, by AWS error code.",
        &["code"]
    )
    .expect("metric registers once")
});
