use once_cell::sync::Lazy;
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};

pub static API_CALLS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_control_plane_api_calls_total",
        "AMP workspace API calls by operation.",
        &["operation"]
    )
    .expect("metric registers once")
});

pub static API_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_control_plane_api_errors_total",
        "AMP workspace API errors by exception.",
        &["exception"]
    )
    .expect("metric registers once")
});

pub static APPLIED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_control_plane_applied_entries_total",
        "Raft entries applied to the state machine."
    )
    .expect("metric registers once")
});

pub static SNAPSHOTS: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_control_plane_snapshots_total",
        "State-machine snapshots built."
    )
    .expect("metric registers once")
});

pub static FORWARDED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_control_plane_forwarded_writes_total",
        "Writes a follower forwarded to the leader."
    )
    .expect("metric registers once")
});

pub static PURGED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_control_plane_purged_workspaces_total",
        "Deleted workspaces whose data was purged."
    )
    .expect("metric registers once")
});

pub static REPLAYED: Lazy<IntCounter> = Lazy::new(|| {
    register_int_counter!(
        "hestia_control_plane_replayed_requests_total",
        "Proposals whose request id was already applied: answered with the first outcome, not applied again."
    )
    .expect("metric registers once")
});
