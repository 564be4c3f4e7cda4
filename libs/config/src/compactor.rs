//! `[compactor]`: merges the blocks ingesters ship (the RF replicas of each range, backfills)
//! into one block per range and then into longer ranges, applies each workspace's retention,
//! deletes marked and abandoned blocks and deleted tenants, and keeps the bucket index current.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hestia_ring::RingConfig;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// Run the compactor (`hestia all`; the stand-alone `hestia-compactor` refuses to start
    /// without it). Queriers write the bucket indexes themselves only when this is off.
    pub enabled: bool,
    /// Ranges of the compaction levels, each a multiple of the previous one; the first is
    /// `blocks.block_range`. Blocks inside one aligned window of the next range are merged into
    /// one once the window has ended. Empty = `blocks.block_range` × 1, 6, 12 (2h, 12h, 24h as
    /// Mimir's by default).
    #[serde(with = "duration_list")]
    pub block_ranges: Vec<Duration>,
    /// How long a block marked for deletion (a compacted source, past retention) stays, so that
    /// queries that started before the mark finish; abandoned partial uploads are removed after
    /// the same delay, deleted tenants' blocks too (Mimir: 12h). Queriers stop reading a marked
    /// block half this delay after its mark, so none opens a block about to be deleted.
    #[serde(with = "humantime_serde")]
    pub deletion_delay: Duration,
    /// How often a compaction pass runs; a failed pass is retried after `cleanup_interval`,
    /// doubling up to this.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// How often the cleaner runs between compactions: bucket index update, retention marks,
    /// deletions. Queriers find new blocks through the index, so this is at most
    /// `blocks.bucket_index_update_interval`, the default.
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Option<Duration>,
    /// Level-1 blocks (as shipped) younger than this are left alone so that every replica of
    /// their range is there before they are merged (Mimir: 25m).
    #[serde(with = "humantime_serde")]
    pub first_level_wait: Duration,
    /// Tenants compacted at once by one compactor; each needs disk in `data_dir` for its
    /// sources and output.
    pub max_concurrent_tenants: usize,
    /// Series merged per batch: memory grows with this, not with block size.
    pub merge_batch_series: usize,
    /// Where sources are downloaded and outputs written; emptied at start, so it must not hold
    /// `server.data_dir`. Empty = `<server.data_dir>/compactor`.
    pub data_dir: PathBuf,
    /// `/metrics`, `/ready` and the compactor's API.
    pub http_listen: SocketAddr,
    /// How compactors share tenants.
    pub ring: CompactorRingConfig,
}

/// The compactors' ring. It lives in the same store as `[ring]` (the control plane in a
/// cluster, memory in `hestia all`) with `[ring]`'s heartbeat settings, under its own key; each
/// compactor is one instance and a tenant belongs to the owner of its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorRingConfig {
    pub key: String,
    pub tokens_per_instance: usize,
    /// This compactor's ring id, unique [default: `compactor-<http port>`].
    pub instance_id: Option<String>,
    /// `host:port` at which operators' calls (through a voter: `hestia admin blocks list`,
    /// `compact --now`) reach this compactor's API [default: `compactor.http_listen`; set it
    /// when that is a wildcard address such as `0.0.0.0:8083`].
    pub advertise_addr: Option<String>,
    /// The ring must have been unchanged this long before a compactor starts a tenant, so that
    /// a joining compactor and the one handing the tenant over never both start it.
    #[serde(with = "humantime_serde")]
    pub wait_stability: Duration,
}

impl Default for CompactorRingConfig {
    fn default() -> Self {
        Self {
            key: "compactor-ring".to_string(),
            tokens_per_instance: 128,
            instance_id: None,
            advertise_addr: None,
            wait_stability: Duration::from_secs(60),
        }
    }
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            block_ranges: Vec::new(),
            deletion_delay: Duration::from_secs(12 * 3600),
            compaction_interval: Duration::from_secs(3600),
            cleanup_interval: None,
            first_level_wait: Duration::from_secs(25 * 60),
            max_concurrent_tenants: 1,
            merge_batch_series: 4096,
            data_dir: PathBuf::new(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            ring: CompactorRingConfig::default(),
        }
    }
}

impl CompactorConfig {
    /// Checks the section against `blocks.block_range`, `blocks.bucket_index_update_interval`
    /// and `server.data_dir`.
    pub(crate) fn validate(
        &self,
        block_range: Duration,
        index_update_interval: Duration,
        server_data_dir: &Path,
    ) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("compactor.{m}")));
        if !self.data_dir.as_os_str().is_empty() && server_data_dir.starts_with(&self.data_dir) {
            return bad("data_dir is emptied at start: it must not hold server.data_dir");
        }
        if !self.block_ranges.is_empty() && self.block_ranges[0] != block_range {
            return bad("block_ranges must start with blocks.block_range");
        }
        for w in self.block_ranges.windows(2) {
            let (a, b) = (w[0].as_millis(), w[1].as_millis());
            if b <= a || !b.is_multiple_of(a) {
                return bad("block_ranges must grow, each a multiple of the previous one");
            }
        }
        let cleanup = self.cleanup_interval(index_update_interval);
        if self.compaction_interval.is_zero() || cleanup.is_zero() {
            return bad("compaction_interval and cleanup_interval must be positive");
        }
        if cleanup > self.compaction_interval {
            return bad("cleanup_interval must not exceed compaction_interval");
        }
        if cleanup > index_update_interval {
            return bad("cleanup_interval must not exceed blocks.bucket_index_update_interval (queriers find new blocks through the index the cleaner writes)");
        }
        if self.max_concurrent_tenants == 0 || self.merge_batch_series == 0 {
            return bad("max_concurrent_tenants and merge_batch_series must be positive");
        }
        if self.ring.advertise_addr.as_deref().is_some_and(|a| {
            a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return bad("ring.advertise_addr must be host:port");
        }
        if self.ring.key.is_empty() {
            return bad("ring.key must not be empty");
        }
        if self.ring.tokens_per_instance == 0 || self.ring.tokens_per_instance > 4096 {
            return bad("ring.tokens_per_instance must be between 1 and 4096");
        }
        Ok(())
    }

    /// `data_dir`, or `<server_data_dir>/compactor` when empty.
    pub fn data_dir(&self, server_data_dir: &Path) -> PathBuf {
        if self.data_dir.as_os_str().is_empty() {
            server_data_dir.join("compactor")
        } else {
            self.data_dir.clone()
        }
    }

    /// The compactors' ring: `shared`'s store and heartbeats, this section's key and tokens,
    /// one owner per tenant.
    pub fn ring_config(&self, shared: &RingConfig) -> RingConfig {
        RingConfig {
            key: self.ring.key.clone(),
            replication_factor: 1,
            zone_awareness: false,
            tokens_per_instance: self.ring.tokens_per_instance,
            ..shared.clone()
        }
    }

    /// The level ranges in milliseconds: `block_ranges`, or `block_range` × 1, 6, 12.
    pub fn block_ranges_ms(&self, block_range: Duration) -> Vec<i64> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match self.block_ranges.is_empty() {
            true => [1, 6, 12]
                .iter()
                .map(|k| ms(block_range).saturating_mul(*k))
                .collect(),
            false => self.block_ranges.iter().map(|d| ms(*d)).collect(),
        }
    }

    /// `cleanup_interval`, or `index_update_interval` (`blocks.bucket_index_update_interval`)
    /// when unset.
    pub fn cleanup_interval(&self, index_update_interval: Duration) -> Duration {
        self.cleanup_interval.unwrap_or(index_update_interval)
    }
}

/// A list of humantime durations (`["2h", "12h"]`).
mod duration_list {
    use std::time::Duration;

    use humantime_serde::Serde;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(Serde::from)
            .collect::<Vec<Serde<&Duration>>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v: Vec<Serde<Duration>> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(Serde::into_inner).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: &CompactorConfig) -> Result<(), ConfigError> {
        c.validate(
            Duration::from_secs(7200),
            Duration::from_secs(300),
            Path::new("/var/lib/hestia"),
        )
    }

    #[test]
    fn defaults_are_valid_and_ranges_round_trip() {
        let c = CompactorConfig::default();
        check(&c).unwrap();
        let two_hours = Duration::from_secs(7200);
        assert_eq!(
            c.block_ranges_ms(two_hours),
            [7_200_000, 43_200_000, 86_400_000]
        );
        assert_eq!(
            c.block_ranges_ms(Duration::from_secs(60)),
            [60_000, 360_000, 720_000]
        );
        assert_eq!(c.cleanup_interval(Duration::from_secs(300)).as_secs(), 300);
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<CompactorConfig>(&text).unwrap(), c);
        let c: CompactorConfig =
            toml::from_str("block_ranges = [\"2h\", \"12h\", \"24h\"]\ncleanup_interval = \"1m\"")
                .unwrap();
        check(&c).unwrap();
        assert_eq!(
            c.block_ranges_ms(two_hours),
            [7_200_000, 43_200_000, 86_400_000]
        );
        let text = toml::to_string(&c).unwrap();
        assert!(
            text.contains("block_ranges = [\"2h\", \"12h\", \"1day\"]"),
            "{text}"
        );
        assert_eq!(toml::from_str::<CompactorConfig>(&text).unwrap(), c);
    }

    #[test]
    fn rejects_bad_ranges_and_intervals() {
        for bad in [
            "block_ranges = [\"1h\", \"12h\"]",
            "block_ranges = [\"2h\", \"5h\"]",
            "block_ranges = [\"2h\", \"12h\", \"12h\"]",
            "cleanup_interval = \"10m\"",
            "compaction_interval = \"0s\"",
            "max_concurrent_tenants = 0",
            "ring.key = \"\"",
            "data_dir = \"/var/lib/hestia\"",
            "data_dir = \"/var/lib\"",
            "ring.advertise_addr = \"compactor-1\"",
            "ring.advertise_addr = \":8083\"",
            "ring.advertise_addr = \"compactor-1:http\"",
        ] {
            let c: CompactorConfig = toml::from_str(bad).unwrap();
            assert!(check(&c).is_err(), "{bad}");
        }
        let c: CompactorConfig =
            toml::from_str("ring.advertise_addr = \"compactor:8083\"").unwrap();
        check(&c).unwrap();
    }

    #[test]
    fn the_ring_shares_the_store_and_has_one_owner_per_tenant() {
        let shared = RingConfig {
            kv: hestia_ring::KvBackend::ControlPlane,
            kv_endpoints: vec!["http://127.0.0.1:9096".into()],
            heartbeat_period: Duration::from_secs(1),
            ..RingConfig::default()
        };
        let r = CompactorConfig::default().ring_config(&shared);
        assert_eq!(
            (r.kv, r.key.as_str(), r.replication_factor, r.zone_awareness),
            (
                hestia_ring::KvBackend::ControlPlane,
                "compactor-ring",
                1,
                false
            )
        );
        assert_eq!(r.heartbeat_period, Duration::from_secs(1));
        r.validate().unwrap();
        assert_eq!(
            CompactorConfig::default().data_dir(Path::new("/d")),
            PathBuf::from("/d/compactor")
        );
    }
}
