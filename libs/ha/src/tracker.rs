//! [`HaTracker`]: the distributor's view of the elections, answering per request from a local
//! cache and going to the store only when the cache cannot decide.
//!
//! A cached election is trusted while its stored received time is younger than the failover
//! timeout minus [`SAFETY_MARGIN`]: no distributor can elect another replica before that time
//! has passed (the store elects only after the elected replica's stored received time is older
//! than the failover timeout, and that time never goes back). The hot path only records when it
//! last saw the elected replica; while that replica keeps sending, a background task reports it
//! to the store every `update_timeout` (plus jitter), one batch for every cluster, so the cache
//! stays trusted and the hot path never waits on Raft.
//! The store is asked synchronously only for a cluster not seen before, for a replica that may
//! take over (the cached leader looks silent), or when the refreshes failed for a whole window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rand::Rng;

use crate::table::{ClusterElection, Election, Outcome, Update};
use crate::{metrics, HaError, HaStore, HaTrackerConfig};

/// How much earlier than the failover timeout a cached election stops being trusted: room for
/// clock differences between distributors and for the background refresh's latency.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(1);

/// How often the background task sends the refreshes that came due.
pub const REFRESH_PERIOD: Duration = Duration::from_millis(500);

/// What to do with a request from `replica`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `replica` is the elected one: store the samples (without the replica label).
    Accept,
    /// Another replica is elected: drop the samples.
    Reject { elected: String },
}

#[derive(Debug)]
struct Cached {
    election: Election,
    /// When to report the elected replica again (stored received time + timeout + jitter).
    refresh_after_ms: i64,
    /// The newest time this distributor accepted samples from the elected replica; reported
    /// once it passes `refresh_after_ms`.
    seen_ms: AtomicI64,
    /// The workspace's cluster limit when the entry was learnt (reports carry it).
    max_clusters: usize,
}

pub struct HaTracker {
    store: Arc<dyn HaStore>,
    cfg: HaTrackerConfig,
    /// tenant → cluster → election as last learnt from the store.
    cache: RwLock<HashMap<String, HashMap<String, Cached>>>,
}

impl HaTracker {
    pub fn new(store: Arc<dyn HaStore>, cfg: HaTrackerConfig) -> Arc<Self> {
        Arc::new(Self {
            store,
            cfg,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// Sends the due refreshes every [`REFRESH_PERIOD`] until the tracker is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(t) = weak.upgrade() else { return };
                let now = now_ms();
                t.refresh_due(now).await;
                t.forget_silent(now);
            }
        })
    }

    /// Decides about samples from `replica` of `cluster` received at `now_ms`.
    pub async fn check(
        &self,
        tenant: &str,
        cluster: &str,
        replica: &str,
        max_clusters: usize,
        now_ms: i64,
    ) -> Result<Decision, HaError> {
        let failover = self.cfg.failover_timeout.as_millis() as i64;
        let trusted = failover - SAFETY_MARGIN.as_millis() as i64;
        if let Some(c) = self.cache.read().get(tenant).and_then(|c| c.get(cluster)) {
            let age = now_ms.saturating_sub(c.election.received_at_ms);
            if c.election.replica == replica && age < trusted {
                c.seen_ms.fetch_max(now_ms, Ordering::Relaxed);
                return Ok(Decision::Accept);
            }
            if c.election.replica != replica && age <= failover {
                return Ok(Decision::Reject {
                    elected: c.election.replica.clone(),
                });
            }
        }
        // Only the store can decide: a new cluster, a possible failover, or a stale cache.
        let u = self.update(tenant, cluster, replica, max_clusters, now_ms);
        let outcome = self
            .store
            .update(vec![u], self.forget_before(now_ms))
            .await
            .inspect_err(|_| {
                metrics::STORE_UPDATES
                    .with_label_values(&["sync", "error"])
                    .inc()
            })?
            .pop()
            .ok_or_else(|| HaError::Store("HA update answered nothing".into()))?;
        metrics::STORE_UPDATES
            .with_label_values(&["sync", "ok"])
            .inc();
        match self.learn(tenant, cluster, max_clusters, outcome)? {
            e if e.replica == replica => Ok(Decision::Accept),
            e => Ok(Decision::Reject { elected: e.replica }),
        }
    }

    fn update(
        &self,
        tenant: &str,
        cluster: &str,
        replica: &str,
        max_clusters: usize,
        now_ms: i64,
    ) -> Update {
        Update {
            tenant: tenant.to_string(),
            cluster: cluster.to_string(),
            replica: replica.to_string(),
            now_ms,
            failover_timeout_ms: self.cfg.failover_timeout.as_millis() as i64,
            max_clusters,
        }
    }

    fn forget_before(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.cfg.forget_after.as_millis() as i64)
    }

    /// Caches what the store answered; returns the cluster's election.
    fn learn(
        &self,
        tenant: &str,
        cluster: &str,
        max_clusters: usize,
        outcome: Outcome,
    ) -> Result<Election, HaError> {
        let (election, changed) = match outcome {
            Outcome::Elected { election, changed } => (election, changed),
            Outcome::TooManyClusters { limit } => return Err(HaError::TooManyClusters { limit }),
        };
        if changed {
            if election.changes > 0 {
                metrics::ELECTED_REPLICA_CHANGES
                    .with_label_values(&[tenant, cluster])
                    .inc();
            }
            tracing::info!(tenant, cluster, replica = %election.replica, "HA replica elected");
        }
        metrics::ELECTED_REPLICA_TIMESTAMP
            .with_label_values(&[tenant, cluster])
            .set(election.received_at_ms as f64 / 1000.0);
        let jitter_max = self.cfg.update_timeout_jitter_max.as_millis() as i64;
        let jitter = if jitter_max > 0 {
            rand::rng().random_range(0..=jitter_max)
        } else {
            0
        };
        let mut cache = self.cache.write();
        let clusters = cache.entry(tenant.to_string()).or_default();
        let old = clusters.get(cluster);
        let same_replica = old.is_some_and(|c| c.election.replica == election.replica);
        // Never replace a newer answer with an older one that raced it.
        if same_replica && old.is_some_and(|c| c.election.received_at_ms > election.received_at_ms)
        {
            return Ok(election);
        }
        let seen_ms = old
            .filter(|_| same_replica)
            .map_or(0, |c| c.seen_ms.load(Ordering::Relaxed));
        clusters.insert(
            cluster.to_string(),
            Cached {
                refresh_after_ms: election.received_at_ms
                    + self.cfg.update_timeout.as_millis() as i64
                    + jitter,
                election: election.clone(),
                seen_ms: AtomicI64::new(seen_ms),
                max_clusters,
            },
        );
        Ok(election)
    }

    /// Reports, in one store update, every elected replica seen since its report came due, and
    /// caches the answers. A failed report stays due for the next call.
    pub async fn refresh_due(&self, now_ms: i64) {
        let due: Vec<Update> = {
            let cache = self.cache.read();
            cache
                .iter()
                .flat_map(|(tenant, clusters)| {
                    clusters.iter().filter_map(move |(cluster, c)| {
                        let seen = c.seen_ms.load(Ordering::Relaxed);
                        (seen >= c.refresh_after_ms).then(|| {
                            let replica = &c.election.replica;
                            self.update(tenant, cluster, replica, c.max_clusters, seen)
                        })
                    })
                })
                .collect()
        };
        if due.is_empty() {
            return;
        }
        let reported: Vec<(String, String, usize)> = due
            .iter()
            .map(|u| (u.tenant.clone(), u.cluster.clone(), u.max_clusters))
            .collect();
        match self.store.update(due, self.forget_before(now_ms)).await {
            Ok(outcomes) => {
                metrics::STORE_UPDATES
                    .with_label_values(&["refresh", "ok"])
                    .inc();
                for ((tenant, cluster, max_clusters), o) in reported.into_iter().zip(outcomes) {
                    if let Err(e) = self.learn(&tenant, &cluster, max_clusters, o) {
                        tracing::warn!(%tenant, %cluster, error = %e, "HA refresh refused");
                    }
                }
            }
            Err(e) => {
                metrics::STORE_UPDATES
                    .with_label_values(&["refresh", "error"])
                    .inc();
                tracing::warn!(error = %e, clusters = reported.len(), "HA refresh failed");
            }
        }
    }

    /// Drops cached clusters the store forgets (silent for `forget_after`), with their gauges.
    pub fn forget_silent(&self, now_ms: i64) {
        let before = self.forget_before(now_ms);
        let mut cache = self.cache.write();
        cache.retain(|tenant, clusters| {
            clusters.retain(|cluster, c| {
                let keep = c.election.received_at_ms >= before;
                if !keep {
                    let _ = metrics::ELECTED_REPLICA_TIMESTAMP
                        .remove_label_values(&[tenant.as_str(), cluster.as_str()]);
                }
                keep
            });
            !clusters.is_empty()
        });
    }

    /// Every election the store holds, or one tenant's.
    pub async fn elections(&self, tenant: Option<&str>) -> Result<Vec<ClusterElection>, HaError> {
        self.store.list(tenant).await
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryHaStore;
    use parking_lot::Mutex;

    fn cfg() -> HaTrackerConfig {
        HaTrackerConfig {
            update_timeout: Duration::from_secs(15),
            update_timeout_jitter_max: Duration::ZERO,
            failover_timeout: Duration::from_secs(30),
            forget_after: Duration::from_secs(1800),
        }
    }

    /// A store that counts its calls.
    #[derive(Default)]
    struct Counting {
        inner: MemoryHaStore,
        calls: Mutex<usize>,
    }

    #[async_trait::async_trait]
    impl HaStore for Counting {
        async fn update(&self, u: Vec<Update>, f: i64) -> Result<Vec<Outcome>, HaError> {
            *self.calls.lock() += 1;
            self.inner.update(u, f).await
        }
        async fn list(&self, t: Option<&str>) -> Result<Vec<ClusterElection>, HaError> {
            self.inner.list(t).await
        }
    }

    const T0: i64 = 1_700_000_000_000;

    #[tokio::test]
    async fn two_distributors_agree_and_fail_over_once() {
        let store = Arc::new(Counting::default());
        let a = HaTracker::new(store.clone(), cfg());
        let b = HaTracker::new(store.clone(), cfg());
        let accept = Decision::Accept;
        let reject = |r: &str| Decision::Reject { elected: r.into() };

        assert_eq!(a.check("t", "c", "r1", 500, T0).await.unwrap(), accept);
        assert_eq!(
            b.check("t", "c", "r2", 500, T0 + 10).await.unwrap(),
            reject("r1")
        );
        assert_eq!(*store.calls.lock(), 2);
        // The elected replica and the other one, both from the cache.
        for s in 1..14 {
            let now = T0 + s * 1000;
            assert_eq!(a.check("t", "c", "r1", 500, now).await.unwrap(), accept);
            assert_eq!(
                b.check("t", "c", "r2", 500, now).await.unwrap(),
                reject("r1")
            );
        }
        assert_eq!(*store.calls.lock(), 2);
        // Past the update timeout: one background refresh keeps the election alive.
        assert_eq!(
            a.check("t", "c", "r1", 500, T0 + 16_000).await.unwrap(),
            accept
        );
        a.refresh_due(T0 + 16_000).await;
        assert_eq!(*store.calls.lock(), 3);
        // b's cache says r1 was last seen 31 s ago: b asks, learns r1 is alive, rejects.
        assert_eq!(
            b.check("t", "c", "r2", 500, T0 + 31_000).await.unwrap(),
            reject("r1")
        );
        assert_eq!(*store.calls.lock(), 4);
        // r1 goes silent after T0+16 s; 30 s later r2 takes over, through b.
        assert_eq!(
            b.check("t", "c", "r2", 500, T0 + 46_001).await.unwrap(),
            accept
        );
        // a's cache no longer trusts r1 (stored 16 s + 30 s - margin ago) and learns of r2.
        assert_eq!(
            a.check("t", "c", "r1", 500, T0 + 46_002).await.unwrap(),
            reject("r2")
        );
        // r1 restarting does not flip it back while r2 sends.
        assert_eq!(
            a.check("t", "c", "r1", 500, T0 + 47_000).await.unwrap(),
            reject("r2")
        );
        let rows = a.elections(Some("t")).await.unwrap();
        assert_eq!(rows[0].election.replica, "r2");
        assert_eq!(rows[0].election.changes, 1);

        // Silent for `forget_after`: gone from the cache, so the next sighting asks the store.
        a.forget_silent(T0 + 46_002 + 1_800_001);
        assert!(a.cache.read().is_empty());
    }

    #[tokio::test]
    async fn the_elected_replica_waits_on_the_store_only_when_the_cache_is_stale() {
        let store = Arc::new(Counting::default());
        let a = HaTracker::new(store.clone(), cfg());
        a.check("t", "c", "r1", 500, T0).await.unwrap();
        // Refreshes were due but never sent (store down): past the trusted window, ask.
        assert_eq!(
            a.check("t", "c", "r1", 500, T0 + 28_000).await.unwrap(),
            Decision::Accept
        );
        assert_eq!(*store.calls.lock(), 1);
        assert_eq!(
            a.check("t", "c", "r1", 500, T0 + 29_500).await.unwrap(),
            Decision::Accept
        );
        assert_eq!(*store.calls.lock(), 2);
    }

    #[tokio::test]
    async fn too_many_clusters_is_an_error() {
        let a = HaTracker::new(Arc::new(MemoryHaStore::default()), cfg());
        a.check("t", "c1", "r1", 1, T0).await.unwrap();
        let e = a.check("t", "c2", "r1", 1, T0).await.unwrap_err();
        assert_eq!(e, HaError::TooManyClusters { limit: 1 });
        assert_eq!(e.to_string(), "too many HA clusters (limit: 1)");
    }
}
