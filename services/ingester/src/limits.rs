//! Per-workspace series limits on one ingester: the workspace's global limits (with its
//! overrides) turned into this ingester's share of the ring, Cortex's "global strategy".

use std::sync::Arc;

use hestia_limits::Overrides;
use hestia_model::{Labels, TenantId};
use hestia_ring::{now_ms, RingClient};
use hestia_storage::{series_in_braces, AppendLimits, RejectReason};

/// Turns global series limits into local ones.
pub struct SeriesLimiter {
    overrides: Arc<Overrides>,
    /// Ingester-wide caps whatever the global limits give (0: none).
    local_per_user: usize,
    local_per_metric: usize,
    /// The ingester ring, for the number of healthy ingesters; `None`: this ingester is alone.
    ring: Option<Arc<RingClient>>,
    replication_factor: usize,
}

/// The limits one push runs under, with the figures of their error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushLimits {
    pub series: AppendLimits,
    /// Metric families with metadata this ingester keeps for the workspace (0: no limit).
    pub metadata_metrics: usize,
    pub global_metadata_metrics: usize,
    pub global_per_user: usize,
    pub global_per_metric: usize,
    pub local_per_user: usize,
    pub local_per_metric: usize,
}

impl SeriesLimiter {
    pub fn new(
        overrides: Arc<Overrides>,
        local_per_user: usize,
        local_per_metric: usize,
        ring: Option<Arc<RingClient>>,
        replication_factor: usize,
    ) -> Self {
        Self {
            overrides,
            local_per_user,
            local_per_metric,
            ring,
            replication_factor: replication_factor.max(1),
        }
    }

    /// No limits at all (tests and tools).
    pub fn unlimited() -> Self {
        let none = hestia_limits::Limits {
            max_global_series_per_user: 0,
            max_global_series_per_metric: 0,
            ..hestia_limits::Limits::default()
        };
        Self::new(Arc::new(Overrides::fixed(none)), 0, 0, None, 1)
    }

    /// Healthy ACTIVE ingesters and the replicas each series has among them.
    fn ring_shape(&self) -> (usize, usize) {
        let Some(ring) = &self.ring else {
            return (1, 1);
        };
        let healthy = ring.ring().healthy_active(now_ms()).max(1);
        (healthy, self.replication_factor.min(healthy))
    }

    pub fn limits_for(&self, tenant: &TenantId) -> PushLimits {
        let limits = self.overrides.get(tenant.as_str());
        let (healthy, rf) = self.ring_shape();
        // Each ingester holds about global × RF / healthy of a workspace's series.
        let share = |global: usize| global.saturating_mul(rf).div_ceil(healthy);
        let actual = |local: usize, global: usize| match (local, global) {
            (0, 0) => 0,
            (l, 0) => l,
            (0, g) => share(g),
            (l, g) => l.min(share(g)),
        };
        PushLimits {
            series: AppendLimits {
                max_series: actual(self.local_per_user, limits.max_global_series_per_user),
                max_series_per_metric: actual(
                    self.local_per_metric,
                    limits.max_global_series_per_metric,
                ),
                out_of_order_window_ms: i64::try_from(limits.out_of_order_time_window.as_millis())
                    .unwrap_or(i64::MAX),
            },
            metadata_metrics: actual(0, limits.max_global_metrics_with_metadata_per_user),
            global_metadata_metrics: limits.max_global_metrics_with_metadata_per_user,
            global_per_user: limits.max_global_series_per_user,
            global_per_metric: limits.max_global_series_per_metric,
            local_per_user: self.local_per_user,
            local_per_metric: self.local_per_metric,
        }
    }
}

impl PushLimits {
    /// Cortex's message for a series refused by a limit; `None` for other reasons.
    pub fn message(
        &self,
        tenant: &TenantId,
        reason: RejectReason,
        labels: &Labels,
    ) -> Option<String> {
        let (kind, global, local, actual) = match reason {
            RejectReason::SeriesLimit => (
                "per-user",
                self.global_per_user,
                self.local_per_user,
                self.series.max_series,
            ),
            RejectReason::MetricSeriesLimit => (
                "per-metric",
                self.global_per_metric,
                self.local_per_metric,
                self.series.max_series_per_metric,
            ),
            _ => return None,
        };
        let shown = if global > 0 { global } else { local };
        let mut msg = format!(
            "user={tenant}: {kind} series limit of {shown} exceeded, please contact administrator to raise it (local limit: {local} global limit: {global} actual local limit: {actual})"
        );
        if reason == RejectReason::MetricSeriesLimit {
            msg.push_str(&format!(" for series {}", series_in_braces(labels)));
        }
        Some(msg)
    }
}

impl PushLimits {
    /// Cortex's message for metadata refused by the per-workspace metric metadata limit.
    pub fn metadata_message(&self, tenant: &TenantId) -> String {
        format!(
            "user={tenant}: per-user metric metadata limit of {global} exceeded, please contact administrator to raise it (local limit: 0 global limit: {global} actual local limit: {actual})",
            global = self.global_metadata_metrics,
            actual = self.metadata_metrics,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hestia_ring::{InstanceConfig, InstanceState, Kv, Lifecycler, MemoryKv, RingConfig};

    fn overrides(per_user: usize, per_metric: usize) -> Arc<Overrides> {
        Arc::new(Overrides::fixed(hestia_limits::Limits {
            max_global_series_per_user: per_user,
            max_global_series_per_metric: per_metric,
            ..hestia_limits::Limits::default()
        }))
    }

    #[tokio::test]
    async fn the_global_limit_is_shared_by_the_healthy_ingesters_times_rf() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let cfg = RingConfig::default();
        let mut members = Vec::new();
        for (id, zone) in [
            ("a1", "a"),
            ("a2", "a"),
            ("b1", "b"),
            ("b2", "b"),
            ("c1", "c"),
            ("c2", "c"),
        ] {
            let instance = InstanceConfig {
                id: id.into(),
                addr: format!("{id}:9095"),
                zone: zone.into(),
                tokens_file: None,
            };
            members.push(
                Lifecycler::start(kv.clone(), &cfg, instance, InstanceState::Active)
                    .await
                    .unwrap(),
            );
        }
        let ring = Arc::new(RingClient::start(kv, &cfg).await.unwrap());
        for _ in 0..100 {
            if ring.ring().len() == 6 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let t = TenantId::parse("123456789012_ws-a").unwrap();
        let l = SeriesLimiter::new(overrides(1_000_000, 200_000), 0, 0, Some(ring.clone()), 3);
        let p = l.limits_for(&t);
        assert_eq!(p.series.max_series, 500_000);
        assert_eq!(p.series.max_series_per_metric, 100_000);
        // A local cap lower than the share wins.
        let l = SeriesLimiter::new(overrides(1_000_000, 0), 300_000, 7, Some(ring), 3);
        let p = l.limits_for(&t);
        assert_eq!(
            (p.series.max_series, p.series.max_series_per_metric),
            (300_000, 7)
        );
        let msg = p
            .message(&t, RejectReason::SeriesLimit, &Labels::empty())
            .unwrap();
        assert_eq!(
            msg,
            "user=123456789012_ws-a: per-user series limit of 1000000 exceeded, please contact administrator to raise it (local limit: 300000 global limit: 1000000 actual local limit: 300000)"
        );
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let msg = p
            .message(&t, RejectReason::MetricSeriesLimit, &labels)
            .unwrap();
        assert!(msg.ends_with("(local limit: 7 global limit: 0 actual local limit: 7) for series {__name__=\"up\", job=\"a\"}"), "{msg}");
        assert!(p.message(&t, RejectReason::OutOfOrder, &labels).is_none());
        drop(members);
    }

    #[test]
    fn alone_the_ingester_holds_the_whole_global_limit() {
        let t = TenantId::parse("t").unwrap();
        let l = SeriesLimiter::new(overrides(1_000_000, 200_000), 0, 0, None, 3);
        assert_eq!(
            l.limits_for(&t).series,
            AppendLimits {
                max_series: 1_000_000,
                max_series_per_metric: 200_000,
                out_of_order_window_ms: 0,
            }
        );
        assert!(!SeriesLimiter::unlimited()
            .limits_for(&t)
            .series
            .caps_series());
    }
}
