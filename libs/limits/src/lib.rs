//! Ingestion limits with AMP's defaults (seed 000, "Service quotas" and "Additional quotas on
//! ingested data") and the validation the distributor applies to every series before it is sharded.

mod histogram;
mod overrides;
mod retention;
mod validate;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use histogram::{
    validate_exemplar, validate_histogram, BucketCounts, CUSTOM_BUCKETS_SCHEMA,
    EXEMPLAR_MAX_LABEL_SET_LENGTH, EXPONENTIAL_SCHEMAS,
};
pub use overrides::{Overrides, OverridesError};
pub use retention::{Retentions, DEFAULT_RETENTION_DAYS};
pub use validate::{validate_labels, validate_metadata, validate_sample_time, ValidationError};

/// Limits applied per workspace. Defaults are AMP's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Labels per series, `__name__` included (AMP: 70).
    pub max_label_names_per_series: usize,
    /// Bytes in a label name (AMP: 1024).
    pub max_label_name_length: usize,
    /// Bytes in a label value (AMP: 2048).
    pub max_label_value_length: usize,
    /// Samples older than this, relative to the receiver's clock, are refused (AMP: 1 hour).
    #[serde(with = "humantime_serde")]
    pub reject_old_samples_max_age: Duration,
    /// Samples further than this in the future are refused (clock skew allowance).
    #[serde(with = "humantime_serde")]
    pub creation_grace_period: Duration,
    /// Bytes of one metadata entry: metric name, HELP and UNIT together (AMP: 1024).
    pub max_metadata_length: usize,
    /// Samples (and metadata) per second a workspace may send, shared by the healthy
    /// distributors (AMP: 70,000).
    pub ingestion_rate: f64,
    /// Samples a workspace may send at once above the rate (AMP: 1,000,000).
    pub ingestion_burst_size: usize,
    /// Active series per workspace across the cluster, before replication (AMP: 1,000,000).
    pub max_global_series_per_user: usize,
    /// Active series per metric name across the cluster (AMP: 200,000).
    pub max_global_series_per_metric: usize,
    /// Metric families with metadata per workspace (AMP: 20,000). Metadata is kept per family
    /// and type, so a family never holds more than 8 entries (AMP allows 10).
    pub max_global_metrics_with_metadata_per_user: usize,
    /// Deduplicate HA Prometheus pairs: a request whose series carry both HA labels is stored
    /// only if it comes from its cluster's elected replica, without the replica label.
    pub accept_ha_samples: bool,
    /// The label naming an HA group (AMP: `cluster`); kept on stored series.
    pub ha_cluster_label: String,
    /// The label naming a replica of the group (AMP: `__replica__`); removed when stored.
    pub ha_replica_label: String,
    /// HA clusters per workspace (AMP: 500; 0 = no limit).
    pub ha_max_clusters: usize,
    /// Float samples up to this much older than their series' newest sample are accepted
    /// (AMP's `outOfOrderTimeWindowInSeconds`; 0, the default, refuses every out-of-order sample).
    #[serde(with = "humantime_serde")]
    pub out_of_order_time_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_label_names_per_series: 70,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            reject_old_samples_max_age: Duration::from_secs(3600),
            creation_grace_period: Duration::from_secs(600),
            max_metadata_length: 1024,
            ingestion_rate: 70_000.0,
            ingestion_burst_size: 1_000_000,
            max_global_series_per_user: 1_000_000,
            max_global_series_per_metric: 200_000,
            max_global_metrics_with_metadata_per_user: 20_000,
            accept_ha_samples: true,
            ha_cluster_label: "cluster".to_string(),
            ha_replica_label: "__replica__".to_string(),
            ha_max_clusters: 500,
            out_of_order_time_window: Duration::ZERO,
        }
    }
}

impl Limits {
    /// Checks that the limits are usable; returns a message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_label_names_per_series == 0 {
            return Err("limits.max_label_names_per_series must be at least 1".into());
        }
        if self.max_label_name_length == 0 || self.max_label_value_length == 0 {
            return Err(
                "limits.max_label_name_length and max_label_value_length must be positive".into(),
            );
        }
        if self.reject_old_samples_max_age.is_zero() {
            return Err("limits.reject_old_samples_max_age must be positive".into());
        }
        if !(self.ingestion_rate.is_finite() && self.ingestion_rate > 0.0) {
            return Err("limits.ingestion_rate must be a positive number".into());
        }
        if self.ingestion_burst_size == 0 {
            return Err("limits.ingestion_burst_size must be at least 1".into());
        }
        if self.accept_ha_samples
            && (self.ha_cluster_label.is_empty()
                || self.ha_replica_label.is_empty()
                || self.ha_cluster_label == self.ha_replica_label)
        {
            return Err(
                "limits.ha_cluster_label and ha_replica_label must be two different label names"
                    .into(),
            );
        }
        Ok(())
    }
}
