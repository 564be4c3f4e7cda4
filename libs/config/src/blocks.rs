//! `[blocks]`: how ingesters cut their data into TSDB blocks and ship them to the object store
//! (`[storage]`), and how the bucket index that queriers read is kept current.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlocksConfig {
    /// Ingesters ship blocks at all. Off, every sample stays in the ingesters' RocksDB.
    pub ship: bool,
    /// Length of the time range one shipped block covers; ranges are aligned to multiples of it
    /// since the Unix epoch (Prometheus and Mimir: 2 h).
    #[serde(with = "humantime_serde")]
    pub block_range: Duration,
    /// How long an ingester keeps a shipped range in RocksDB after the upload (Mimir: 13 h), so
    /// that queriers reading `query_ingesters_within` still find it there.
    #[serde(with = "humantime_serde")]
    pub retain_after_upload: Duration,
    /// How often an ingester looks for closed ranges to ship; failed uploads are retried from
    /// this period, doubling up to `ship_max_backoff`.
    #[serde(with = "humantime_serde")]
    pub ship_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub ship_max_backoff: Duration,
    /// How often queriers reread each tenant's bucket index (`bucket-index.json.gz`), which
    /// the compactor brings up to date from the bucket (every `compactor.cleanup_interval`, at
    /// most this), so queriers find new blocks without listing the bucket on the query path.
    /// With `compactor.enabled = false`, queriers update the indexes themselves this often.
    #[serde(with = "humantime_serde")]
    pub bucket_index_update_interval: Duration,
}

impl Default for BlocksConfig {
    fn default() -> Self {
        Self {
            ship: true,
            block_range: Duration::from_secs(2 * 3600),
            retain_after_upload: Duration::from_secs(13 * 3600),
            ship_interval: Duration::from_secs(60),
            ship_max_backoff: Duration::from_secs(300),
            bucket_index_update_interval: Duration::from_secs(300),
        }
    }
}

impl BlocksConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("blocks.{m}")));
        let ms = self.block_range.as_millis();
        if ms < 60_000 || !ms.is_multiple_of(60_000) {
            return bad("block_range must be a whole number of minutes, at least 1m");
        }
        if self.ship_interval.is_zero() || self.ship_max_backoff < self.ship_interval {
            return bad(
                "ship_interval must be positive and ship_max_backoff at least ship_interval",
            );
        }
        if self.bucket_index_update_interval.is_zero() {
            return bad("bucket_index_update_interval must be positive");
        }
        Ok(())
    }

    /// The block range in milliseconds.
    pub fn block_range_ms(&self) -> i64 {
        i64::try_from(self.block_range.as_millis()).unwrap_or(i64::MAX)
    }
}
