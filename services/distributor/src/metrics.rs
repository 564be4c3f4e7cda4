use once_cell::sync::Lazy;
use prometheus::{register_int_counter_vec, IntCounterVec};

pub static RECEIVED_SAMPLES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_distributor_received_samples_total",
        "Samples received in remote-write requests, before validation.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static RECEIVED_METADATA: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_distributor_received_metadata_total",
        "Metadata entries received in remote-write requests, before validation.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static DISCARDED_SAMPLES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_discarded_samples_total",
        "Samples refused, by reason.",
        &["reason", "tenant"]
    )
    .expect("metric registers once")
});

pub static DISCARDED_METADATA: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_discarded_metadata_total",
        "Metadata entries refused, by reason.",
        &["reason", "tenant"]
    )
    .expect("metric registers once")
});

pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_distributor_requests_total",
        "Remote-write requests by outcome status code.",
        &["tenant", "status_code"]
    )
    .expect("metric registers once")
});

pub static INGESTER_PUSH_FAILURES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_distributor_ingester_push_failures_total",
        "Pushes to one ingester that failed or timed out (the request fails only without quorum).",
        &["ingester"]
    )
    .expect("metric registers once")
});

pub static RECEIVED_EXEMPLARS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_distributor_received_exemplars_total",
        "Exemplars received in remote-write requests, before validation.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static DISCARDED_EXEMPLARS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_discarded_exemplars_total",
        "Exemplars refused or dropped, by reason.",
        &["reason", "tenant"]
    )
    .expect("metric registers once")
});

pub static QUORUM_FAILURES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_distributor_quorum_failures_total",
        "Requests answered 5xx because some series could not reach a write quorum.",
        &["tenant"]
    )
    .expect("metric registers once")
});

pub static DEDUPLICATED_SAMPLES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_distributor_deduplicated_samples_total",
        "Samples dropped because they came from an HA replica that is not its cluster's elected one.",
        &["tenant", "cluster"]
    )
    .expect("metric registers once")
});
