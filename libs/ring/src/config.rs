use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::RingError;

/// Largest supported replication factor (replica sets live in fixed-size arrays).
pub const MAX_REPLICATION_FACTOR: usize = 8;

/// Where the ring descriptor is stored. Changing this one value swaps the implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvBackend {
    /// In-process only: every ring member must live in the same process (`hestia all`, tests).
    #[default]
    Memory,
    /// The control plane's Raft group, over its gRPC API at `RingConfig::kv_endpoints`.
    ControlPlane,
}

/// Ring settings shared by every member and client of one ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RingConfig {
    pub kv: KvBackend,
    /// Control-plane gRPC endpoints (`http://host:port`) for `kv = "controlplane"`; any voter
    /// will do, the others are tried when one is unavailable.
    pub kv_endpoints: Vec<String>,
    /// KV key holding the ring descriptor.
    pub key: String,
    pub replication_factor: usize,
    /// At most one replica per zone.
    pub zone_awareness: bool,
    pub tokens_per_instance: usize,
    #[serde(with = "humantime_serde")]
    pub heartbeat_period: Duration,
    /// An instance without a heartbeat for this long is unhealthy: writers and readers skip it.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// An instance without a heartbeat for this long is removed from the ring.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            kv: KvBackend::Memory,
            kv_endpoints: Vec::new(),
            key: "ingester-ring".into(),
            replication_factor: 3,
            zone_awareness: true,
            tokens_per_instance: 128,
            heartbeat_period: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        }
    }
}

impl RingConfig {
    pub fn validate(&self) -> Result<(), RingError> {
        let bad = |m: &str| Err(RingError::Config(m.to_string()));
        if self.key.is_empty() {
            return bad("key must not be empty");
        }
        if self.kv == KvBackend::ControlPlane && self.kv_endpoints.is_empty() {
            return bad("kv = \"controlplane\" needs kv_endpoints");
        }
        if self
            .kv_endpoints
            .iter()
            .any(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return bad("kv_endpoints must be http://host:port URLs");
        }
        if !(1..=MAX_REPLICATION_FACTOR).contains(&self.replication_factor) {
            return bad("replication_factor must be between 1 and 8");
        }
        if self.tokens_per_instance == 0 || self.tokens_per_instance > 4096 {
            return bad("tokens_per_instance must be between 1 and 4096");
        }
        if self.heartbeat_period.is_zero() {
            return bad("heartbeat_period must be positive");
        }
        if self.heartbeat_timeout <= self.heartbeat_period {
            return bad("heartbeat_timeout must exceed heartbeat_period");
        }
        if self.forget_after <= self.heartbeat_timeout {
            return bad("forget_after must exceed heartbeat_timeout");
        }
        Ok(())
    }

    /// Successful replicas a write needs: a majority of the replication factor.
    pub fn quorum(&self) -> usize {
        self.replication_factor / 2 + 1
    }
}

/// Identity of the instance a lifecycler registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub id: String,
    /// gRPC address clients dial.
    pub addr: String,
    #[serde(default)]
    pub zone: String,
    /// Keeps the instance's tokens across restarts so it owns the same series again.
    #[serde(default)]
    pub tokens_file: Option<PathBuf>,
}

impl InstanceConfig {
    pub fn validate(&self, ring: &RingConfig) -> Result<(), RingError> {
        if self.id.is_empty() || self.addr.is_empty() {
            return Err(RingError::Config(
                "instance id and addr must not be empty".into(),
            ));
        }
        if ring.zone_awareness && self.zone.is_empty() {
            return Err(RingError::Config(
                "zone_awareness needs a zone for every instance".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_quorum_is_majority() {
        let c = RingConfig::default();
        c.validate().unwrap();
        assert_eq!(c.quorum(), 2);
        let c = RingConfig {
            replication_factor: 1,
            ..Default::default()
        };
        assert_eq!(c.quorum(), 1);
    }

    #[test]
    fn rejects_bad_values() {
        for c in [
            RingConfig {
                replication_factor: 0,
                ..Default::default()
            },
            RingConfig {
                forget_after: Duration::from_secs(1),
                ..Default::default()
            },
            RingConfig {
                tokens_per_instance: 0,
                ..Default::default()
            },
            RingConfig {
                kv: KvBackend::ControlPlane,
                ..Default::default()
            },
            RingConfig {
                kv: KvBackend::ControlPlane,
                kv_endpoints: vec!["127.0.0.1:9000".into()],
                ..Default::default()
            },
        ] {
            assert!(c.validate().is_err());
        }
    }

    #[test]
    fn control_plane_backend_is_one_line_away() {
        let c: RingConfig =
            toml::from_str("kv = \"controlplane\"\nkv_endpoints = [\"http://127.0.0.1:9000\"]\n")
                .unwrap();
        assert_eq!(c.kv, KvBackend::ControlPlane);
        c.validate().unwrap();
        let c: RingConfig = toml::from_str("").unwrap();
        assert_eq!((c.kv, c.kv_endpoints.len()), (KvBackend::Memory, 0));
    }
}
