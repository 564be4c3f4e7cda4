use once_cell::sync::Lazy;
use prometheus::{register_gauge_vec, register_int_counter_vec, GaugeVec, IntCounterVec};

pub static ELECTED_REPLICA_CHANGES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ha_tracker_elected_replica_changes_total",
        "Failovers of an HA cluster to another replica, counted by the distributor that made them.",
        &["tenant", "cluster"]
    )
    .expect("metric registers once")
});

pub static ELECTED_REPLICA_TIMESTAMP: Lazy<GaugeVec> = Lazy::new(|| {
    register_gauge_vec!(
        "hestia_ha_tracker_elected_replica_timestamp_seconds",
        "When the elected replica of an HA cluster was last reported to the store.",
        &["tenant", "cluster"]
    )
    .expect("metric registers once")
});

pub static STORE_UPDATES: Lazy<IntCounterVec> = Lazy::new(|| {
    register_int_counter_vec!(
        "hestia_ha_tracker_store_updates_total",
        "Calls to the election store: sync (a request waited) or refresh (background batch).",
        &["kind", "outcome"]
    )
    .expect("metric registers once")
});
