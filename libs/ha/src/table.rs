//! [`HaTable`]: every HA cluster's elected replica, and the one rule that changes it. The control
//! plane's state machine applies it to Raft entries (so every voter decides the same, once);
//! [`crate::MemoryHaStore`] applies it in-process.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The elected replica of one HA cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    pub replica: String,
    /// The newest time a distributor reported samples from `replica` (ms since the epoch).
    pub received_at_ms: i64,
    pub elected_at_ms: i64,
    /// Failovers since the cluster was first seen.
    pub changes: u64,
}

/// A distributor received samples from `replica` of `cluster` at `now_ms` (its clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub tenant: String,
    pub cluster: String,
    pub replica: String,
    pub now_ms: i64,
    pub failover_timeout_ms: i64,
    /// Most clusters of the tenant; 0 = no limit.
    pub max_clusters: usize,
}

/// What an [`Update`] found or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The cluster's election after the update; `changed` when this update elected its replica.
    Elected { election: Election, changed: bool },
    /// The cluster is new and the tenant already has `limit` clusters.
    TooManyClusters { limit: usize },
}

/// One row of [`HaTable::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterElection {
    pub tenant: String,
    pub cluster: String,
    #[serde(flatten)]
    pub election: Election,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaTable {
    /// tenant → cluster → election.
    tenants: BTreeMap<String, BTreeMap<String, Election>>,
}

impl HaTable {
    /// Elects `u.replica` when the cluster is new or its elected replica has been silent for
    /// longer than the failover timeout; refreshes the received time when `u.replica` is the
    /// elected one; otherwise changes nothing.
    pub fn apply(&mut self, u: &Update) -> Outcome {
        let clusters = self.tenants.entry(u.tenant.clone()).or_default();
        let Some(e) = clusters.get_mut(&u.cluster) else {
            if u.max_clusters > 0 && clusters.len() >= u.max_clusters {
                if clusters.is_empty() {
                    self.tenants.remove(&u.tenant);
                }
                return Outcome::TooManyClusters {
                    limit: u.max_clusters,
                };
            }
            let election = Election {
                replica: u.replica.clone(),
                received_at_ms: u.now_ms,
                elected_at_ms: u.now_ms,
                changes: 0,
            };
            clusters.insert(u.cluster.clone(), election.clone());
            return Outcome::Elected {
                election,
                changed: true,
            };
        };
        let changed = if e.replica == u.replica {
            e.received_at_ms = e.received_at_ms.max(u.now_ms);
            false
        } else if u.now_ms.saturating_sub(e.received_at_ms) > u.failover_timeout_ms {
            e.replica.clone_from(&u.replica);
            e.received_at_ms = u.now_ms;
            e.elected_at_ms = u.now_ms;
            e.changes += 1;
            true
        } else {
            false
        };
        Outcome::Elected {
            election: e.clone(),
            changed,
        }
    }

    /// Forgets clusters whose elected replica was last seen before `before_ms`; returns them as
    /// (tenant, cluster).
    pub fn forget_silent(&mut self, before_ms: i64) -> Vec<(String, String)> {
        let mut forgotten = Vec::new();
        self.tenants.retain(|tenant, clusters| {
            clusters.retain(|cluster, e| {
                let keep = e.received_at_ms >= before_ms;
                if !keep {
                    forgotten.push((tenant.clone(), cluster.clone()));
                }
                keep
            });
            !clusters.is_empty()
        });
        forgotten
    }

    /// One store update: forgets the clusters silent since `forget_before_ms`, then applies
    /// `updates` in order. Returns one outcome per update and every (tenant, cluster) that may
    /// have changed, sorted and unique (what a persistent store must write back).
    pub fn apply_batch(
        &mut self,
        updates: &[Update],
        forget_before_ms: i64,
    ) -> (Vec<Outcome>, Vec<(String, String)>) {
        let mut touched = self.forget_silent(forget_before_ms);
        let outcomes = updates.iter().map(|u| self.apply(u)).collect();
        touched.extend(
            updates
                .iter()
                .map(|u| (u.tenant.clone(), u.cluster.clone())),
        );
        touched.sort();
        touched.dedup();
        (outcomes, touched)
    }

    pub fn get(&self, tenant: &str, cluster: &str) -> Option<&Election> {
        self.tenants.get(tenant)?.get(cluster)
    }

    /// Puts back an election as [`HaTable::list`] returned it (loading from disk).
    pub fn insert(&mut self, e: ClusterElection) {
        self.tenants
            .entry(e.tenant)
            .or_default()
            .insert(e.cluster, e.election);
    }

    /// Every election, or one tenant's, ordered by tenant and cluster.
    pub fn list(&self, tenant: Option<&str>) -> Vec<ClusterElection> {
        self.tenants
            .iter()
            .filter(|(t, _)| tenant.is_none_or(|want| want == t.as_str()))
            .flat_map(|(t, clusters)| {
                clusters.iter().map(|(c, e)| ClusterElection {
                    tenant: t.clone(),
                    cluster: c.clone(),
                    election: e.clone(),
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.tenants.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(cluster: &str, replica: &str, now_ms: i64) -> Update {
        Update {
            tenant: "t".into(),
            cluster: cluster.into(),
            replica: replica.into(),
            now_ms,
            failover_timeout_ms: 30_000,
            max_clusters: 2,
        }
    }

    fn elected(o: &Outcome) -> (&str, bool) {
        match o {
            Outcome::Elected { election, changed } => (election.replica.as_str(), *changed),
            Outcome::TooManyClusters { .. } => panic!("refused: {o:?}"),
        }
    }

    #[test]
    fn first_replica_wins_and_others_wait_for_the_failover_timeout() {
        let mut t = HaTable::default();
        assert_eq!(elected(&t.apply(&update("c", "r1", 1_000))), ("r1", true));
        assert_eq!(elected(&t.apply(&update("c", "r2", 1_001))), ("r1", false));
        // r1 keeps sending: its received time follows.
        assert_eq!(elected(&t.apply(&update("c", "r1", 20_000))), ("r1", false));
        // 30 s after r1's last sample is not yet more than the timeout.
        assert_eq!(elected(&t.apply(&update("c", "r2", 50_000))), ("r1", false));
        assert_eq!(elected(&t.apply(&update("c", "r2", 50_001))), ("r2", true));
        // The old leader coming back does not flip it while r2 sends.
        assert_eq!(elected(&t.apply(&update("c", "r1", 50_002))), ("r2", false));
        let rows = t.list(Some("t"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].election.changes, 1);
        assert_eq!(rows[0].election.elected_at_ms, 50_001);
    }

    #[test]
    fn a_late_report_never_moves_the_received_time_back() {
        let mut t = HaTable::default();
        t.apply(&update("c", "r1", 10_000));
        t.apply(&update("c", "r1", 5_000));
        assert_eq!(t.list(None)[0].election.received_at_ms, 10_000);
    }

    #[test]
    fn clusters_per_tenant_are_limited_and_silent_ones_forgotten() {
        let mut t = HaTable::default();
        t.apply(&update("a", "r1", 1_000));
        t.apply(&update("b", "r1", 2_000));
        assert_eq!(
            t.apply(&update("c", "r1", 3_000)),
            Outcome::TooManyClusters { limit: 2 }
        );
        // Known clusters still update.
        assert_eq!(elected(&t.apply(&update("a", "r1", 4_000))), ("r1", false));
        assert_eq!(t.forget_silent(3_000).len(), 1);
        assert_eq!(elected(&t.apply(&update("c", "r1", 5_000))), ("r1", true));
        let mut other = update("x", "r1", 5_000);
        other.tenant = "u".into();
        other.max_clusters = 0;
        assert_eq!(elected(&t.apply(&other)), ("r1", true));
        assert_eq!(t.len(), 3);
        let rows = t.list(None);
        // One batch: "a" (last seen at 4 s) is forgotten first, which makes room for "b".
        let (outcomes, touched) = t.apply_batch(&[update("b", "r1", 6_000)], 5_000);
        assert_eq!(elected(&outcomes[0]), ("r1", true));
        assert_eq!(
            touched,
            [("t", "a"), ("t", "b")].map(|(t, c)| (t.to_string(), c.to_string()))
        );
        assert_eq!(t.forget_silent(i64::MAX).len(), 3);
        assert!(t.is_empty() && t.get("u", "x").is_none());
        for r in rows {
            t.insert(r);
        }
        assert_eq!(t.get("u", "x").map(|e| e.replica.as_str()), Some("r1"));
    }
}
