use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{HaError, REFRESH_PERIOD, SAFETY_MARGIN};

/// `[distributor.ha_tracker]`: timing of the elections (which labels, and how many clusters a
/// workspace may have, are per-workspace limits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaTrackerConfig {
    /// How often a distributor reports that the elected replica still sends. Reports of every
    /// cluster travel in one batch per distributor, so this can be much shorter than Mimir's
    /// 15 s: another replica is then elected between `failover_timeout - update_timeout -
    /// jitter` and `failover_timeout` after the elected one's last sample.
    #[serde(with = "humantime_serde")]
    pub update_timeout: Duration,
    /// Up to this much random delay on top of `update_timeout`, so reports spread out.
    #[serde(with = "humantime_serde")]
    pub update_timeout_jitter_max: Duration,
    /// Another replica is elected once the elected one has sent nothing for this long (AMP: 30 s).
    #[serde(with = "humantime_serde")]
    pub failover_timeout: Duration,
    /// A cluster silent for this long is forgotten (it no longer counts against the limit).
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
}

impl Default for HaTrackerConfig {
    fn default() -> Self {
        Self {
            update_timeout: Duration::from_secs(3),
            update_timeout_jitter_max: Duration::from_secs(1),
            failover_timeout: Duration::from_secs(30),
            forget_after: Duration::from_secs(30 * 60),
        }
    }
}

impl HaTrackerConfig {
    /// The elected replica's reports must land before the cache stops trusting it.
    pub fn validate(&self) -> Result<(), HaError> {
        let needed = self.update_timeout + self.update_timeout_jitter_max + REFRESH_PERIOD;
        if self.failover_timeout < needed + SAFETY_MARGIN {
            return Err(HaError::Config(format!(
                "distributor.ha_tracker.failover_timeout ({:?}) must exceed update_timeout + update_timeout_jitter_max + {:?} ({:?})",
                self.failover_timeout,
                REFRESH_PERIOD + SAFETY_MARGIN,
                needed + SAFETY_MARGIN
            )));
        }
        if self.update_timeout.is_zero() {
            return Err(HaError::Config(
                "distributor.ha_tracker.update_timeout must be positive".into(),
            ));
        }
        if self.forget_after <= self.failover_timeout {
            return Err(HaError::Config(
                "distributor.ha_tracker.forget_after must exceed failover_timeout".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_a_too_short_failover_is_not() {
        HaTrackerConfig::default().validate().unwrap();
        let cfg = HaTrackerConfig {
            failover_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("failover_timeout (5s) must exceed"), "{e}");
    }
}
