use std::collections::HashMap;
use std::sync::Arc;

use crate::config::MAX_REPLICATION_FACTOR;
use crate::{InstanceDesc, InstanceState, RingConfig, RingDesc, RingError};

/// An immutable view of the ring for lookups. Token walks are precomputed when the topology
/// changes; heartbeats are kept apart so a heartbeat only costs a copy of one `i64` per instance.
/// One member in [`Ring::status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceStatus {
    pub id: String,
    pub addr: String,
    pub zone: String,
    pub state: InstanceState,
    pub tokens: usize,
    pub heartbeat_age_ms: i64,
    /// A heartbeat within the timeout: writers and readers use it.
    pub healthy: bool,
}

#[derive(Debug, Clone)]
pub struct Ring {
    pub(crate) topo: Arc<Topology>,
    heartbeats: Vec<i64>,
    pub(crate) quorum: usize,
    pub(crate) zone_awareness: bool,
    heartbeat_timeout_ms: i64,
}

const BUCKETS: u32 = 1 << 16;

#[derive(Debug)]
pub(crate) struct Topology {
    /// In id order.
    pub(crate) instances: Vec<InstanceDesc>,
    pub(crate) zone_of: Vec<u16>,
    pub(crate) zones: Vec<String>,
    /// Every instance's tokens, sorted.
    tokens: Vec<u32>,
    /// `bucket_start[b]`: index of the first token whose upper 16 bits are at least `b`, so a
    /// lookup searches one bucket instead of the whole ring.
    bucket_start: Vec<u32>,
    /// The write replicas of the range ending at `tokens[i]`.
    replicas: Vec<Replicas>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Replicas {
    ids: [u16; MAX_REPLICATION_FACTOR],
    len: u8,
}

impl Replicas {
    fn as_slice(&self) -> &[u16] {
        &self.ids[..self.len as usize]
    }
}

/// The healthy write replicas of one token and how many of them may fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationSet {
    ids: [u16; MAX_REPLICATION_FACTOR],
    len: u8,
    max_errors: u8,
}

impl ReplicationSet {
    /// Instance indices (see [`Ring::instance`]).
    pub fn instances(&self) -> impl Iterator<Item = usize> + '_ {
        self.ids[..self.len as usize]
            .iter()
            .map(|&i| usize::from(i))
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Failed replicas the write survives: replicas minus quorum.
    pub fn max_errors(&self) -> usize {
        self.max_errors as usize
    }
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Ring {
    pub fn new(desc: &RingDesc, cfg: &RingConfig) -> Ring {
        let topo = Arc::new(Topology::build(
            desc,
            cfg.replication_factor.min(MAX_REPLICATION_FACTOR),
            cfg.zone_awareness,
        ));
        Self::with_topology(topo, desc, cfg)
    }

    /// A ring for `desc` that shares this one's token table when only heartbeats changed.
    pub fn updated(&self, prev: &RingDesc, desc: &RingDesc, cfg: &RingConfig) -> Ring {
        if prev.same_topology(desc) && self.zone_awareness == cfg.zone_awareness {
            Self::with_topology(self.topo.clone(), desc, cfg)
        } else {
            Self::new(desc, cfg)
        }
    }

    fn with_topology(topo: Arc<Topology>, desc: &RingDesc, cfg: &RingConfig) -> Ring {
        Ring {
            heartbeats: desc.instances.values().map(|i| i.heartbeat_ms).collect(),
            topo,
            quorum: cfg.quorum(),
            zone_awareness: cfg.zone_awareness,
            heartbeat_timeout_ms: ms(cfg.heartbeat_timeout),
        }
    }

    pub fn len(&self) -> usize {
        self.topo.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topo.instances.is_empty()
    }

    /// The instance at `idx` as of the last topology change (its `heartbeat_ms` may be older
    /// than [`Ring::heartbeat_ms`]).
    pub fn instance(&self, idx: usize) -> &InstanceDesc {
        &self.topo.instances[idx]
    }

    pub fn instances(&self) -> &[InstanceDesc] {
        &self.topo.instances
    }

    pub fn heartbeat_ms(&self, idx: usize) -> i64 {
        self.heartbeats[idx]
    }

    pub fn is_healthy(&self, idx: usize, now_ms: i64) -> bool {
        now_ms - self.heartbeats[idx] <= self.heartbeat_timeout_ms
    }

    /// ACTIVE members with a recent heartbeat; no allocation, for per-request use.
    pub fn healthy_active(&self, now_ms: i64) -> usize {
        (0..self.len())
            .filter(|&i| {
                self.topo.instances[i].state == InstanceState::Active && self.is_healthy(i, now_ms)
            })
            .count()
    }

    /// Every member as operators see it (the distributor's `/ring` page).
    pub fn status(&self, now_ms: i64) -> Vec<InstanceStatus> {
        self.topo
            .instances
            .iter()
            .enumerate()
            .map(|(idx, i)| InstanceStatus {
                id: i.id.clone(),
                addr: i.addr.clone(),
                zone: i.zone.clone(),
                state: i.state,
                tokens: i.tokens.len(),
                heartbeat_age_ms: now_ms - self.heartbeats[idx],
                healthy: self.is_healthy(idx, now_ms),
            })
            .collect()
    }

    pub(crate) fn healthy_mask(&self, now_ms: i64) -> Vec<bool> {
        (0..self.len())
            .map(|i| self.is_healthy(i, now_ms))
            .collect()
    }

    /// Write replicas of `token`: walking clockwise from it, the first ACTIVE instance of each
    /// zone (of each instance without zone awareness) up to the replication factor; instances
    /// without a recent heartbeat are then dropped and count against `max_errors`.
    pub fn replication_set(&self, token: u32, now_ms: i64) -> Result<ReplicationSet, RingError> {
        let reps = self.topo.replicas_for(token)?;
        let mut set = ReplicationSet {
            ids: [0; MAX_REPLICATION_FACTOR],
            len: 0,
            max_errors: 0,
        };
        for &i in reps.as_slice() {
            if self.is_healthy(usize::from(i), now_ms) {
                set.ids[set.len as usize] = i;
                set.len += 1;
            }
        }
        let found = set.len();
        if found < self.quorum {
            return Err(RingError::TooFewReplicas {
                need: self.quorum,
                found,
            });
        }
        set.max_errors = (found - self.quorum) as u8;
        Ok(set)
    }

    /// Write replicas of `token` regardless of health (what `replication_set` starts from).
    pub(crate) fn replicas_for(&self, token: u32) -> Result<&[u16], RingError> {
        Ok(self.topo.replicas_for(token)?.as_slice())
    }
}

impl Topology {
    fn build(desc: &RingDesc, rf: usize, zone_awareness: bool) -> Topology {
        let instances: Vec<InstanceDesc> = desc.instances.values().cloned().collect();
        let mut zone_idx: HashMap<&str, u16> = HashMap::new();
        let mut zones = Vec::new();
        let mut zone_of = Vec::with_capacity(instances.len());
        for (n, i) in instances.iter().enumerate() {
            let z = if zone_awareness {
                *zone_idx.entry(i.zone.as_str()).or_insert_with(|| {
                    zones.push(i.zone.clone());
                    (zones.len() - 1) as u16
                })
            } else {
                // Every instance is its own failure domain.
                zones.push(i.id.clone());
                n as u16
            };
            zone_of.push(z);
        }

        let mut owned: Vec<(u32, u16)> = instances
            .iter()
            .enumerate()
            .flat_map(|(n, i)| i.tokens.iter().map(move |&t| (t, n as u16)))
            .collect();
        owned.sort_unstable();
        owned.dedup_by_key(|(t, _)| *t);
        let tokens: Vec<u32> = owned.iter().map(|&(t, _)| t).collect();

        let active = |n: u16| instances[usize::from(n)].state == InstanceState::Active;
        let mut active_zones: Vec<u16> = (0..instances.len() as u16)
            .filter(|&n| active(n))
            .map(|n| zone_of[usize::from(n)])
            .collect();
        active_zones.sort_unstable();
        active_zones.dedup();
        let want = rf.min(active_zones.len());

        let mut replicas = Vec::with_capacity(owned.len());
        let mut used_zones = Vec::with_capacity(rf);
        for start in 0..owned.len() {
            let mut r = Replicas::default();
            used_zones.clear();
            for k in 0..owned.len() {
                if usize::from(r.len) == want {
                    break;
                }
                let n = owned[(start + k) % owned.len()].1;
                let z = zone_of[usize::from(n)];
                // Non-ACTIVE instances are passed over: the next one of the same zone replaces them.
                if !active(n) || used_zones.contains(&z) {
                    continue;
                }
                used_zones.push(z);
                r.ids[usize::from(r.len)] = n;
                r.len += 1;
            }
            replicas.push(r);
        }
        let bucket_start = (0..=BUCKETS)
            .map(|b| tokens.partition_point(|&t| (t >> 16) < b) as u32)
            .collect();
        Topology {
            instances,
            zone_of,
            zones,
            tokens,
            bucket_start,
            replicas,
        }
    }

    fn replicas_for(&self, token: u32) -> Result<&Replicas, RingError> {
        if self.tokens.is_empty() {
            return Err(RingError::Empty);
        }
        let b = (token >> 16) as usize;
        let (lo, hi) = (
            self.bucket_start[b] as usize,
            self.bucket_start[b + 1] as usize,
        );
        let i = lo + self.tokens[lo..hi].partition_point(|&t| t < token);
        Ok(&self.replicas[if i == self.tokens.len() { 0 } else { i }])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn instance(id: &str, zone: &str, tokens: Vec<u32>) -> InstanceDesc {
        InstanceDesc {
            id: id.into(),
            addr: format!("{id}:9095"),
            zone: zone.into(),
            tokens,
            state: InstanceState::Active,
            heartbeat_ms: 1000,
        }
    }

    pub(crate) fn desc(instances: Vec<InstanceDesc>) -> RingDesc {
        RingDesc {
            instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
        }
    }

    /// a1 a2 in zone a, b1 in b, c1 in c; tokens interleaved a1 b1 a2 c1 ...
    pub(crate) fn small_ring() -> RingDesc {
        desc(vec![
            instance("a1", "a", vec![100, 500]),
            instance("b1", "b", vec![200, 600]),
            instance("a2", "a", vec![300, 700]),
            instance("c1", "c", vec![400, 800]),
        ])
    }

    fn ids(ring: &Ring, set: &ReplicationSet) -> Vec<String> {
        set.instances()
            .map(|i| ring.instance(i).id.clone())
            .collect()
    }

    #[test]
    fn walks_clockwise_one_instance_per_zone() {
        let cfg = RingConfig::default();
        let ring = Ring::new(&small_ring(), &cfg);
        let set = ring.replication_set(150, 1000).unwrap();
        // 200 b1, 300 a2, 400 c1.
        assert_eq!(ids(&ring, &set), ["b1", "a2", "c1"]);
        assert_eq!(set.max_errors(), 1);
        // 100 a1, 200 b1, 300 a2 (zone a taken), 400 c1.
        let set = ring.replication_set(50, 1000).unwrap();
        assert_eq!(ids(&ring, &set), ["a1", "b1", "c1"]);
        // Wraps around: 900 → 100 a1, 200 b1, 300 a2 skipped, 400 c1.
        let set = ring.replication_set(900, 1000).unwrap();
        assert_eq!(ids(&ring, &set), ["a1", "b1", "c1"]);
        // Exactly on a token belongs to that token's range.
        let set = ring.replication_set(200, 1000).unwrap();
        assert_eq!(ids(&ring, &set)[0], "b1");
    }

    #[test]
    fn without_zone_awareness_distinct_instances() {
        let cfg = RingConfig {
            zone_awareness: false,
            ..Default::default()
        };
        let ring = Ring::new(&small_ring(), &cfg);
        let set = ring.replication_set(50, 1000).unwrap();
        assert_eq!(ids(&ring, &set), ["a1", "b1", "a2"]);
    }

    #[test]
    fn non_active_instances_are_replaced_in_their_zone() {
        let mut d = small_ring();
        d.instances.get_mut("a1").unwrap().state = InstanceState::Leaving;
        let ring = Ring::new(&d, &RingConfig::default());
        let set = ring.replication_set(50, 1000).unwrap();
        assert_eq!(ids(&ring, &set), ["b1", "a2", "c1"]);
        d.instances.get_mut("a1").unwrap().state = InstanceState::Joining;
        let ring = Ring::new(&d, &RingConfig::default());
        assert_eq!(
            ids(&ring, &ring.replication_set(50, 1000).unwrap()),
            ["b1", "a2", "c1"]
        );
    }

    #[test]
    fn unhealthy_instances_count_as_errors_and_are_not_replaced() {
        let cfg = RingConfig::default();
        let timeout = ms(cfg.heartbeat_timeout);
        let mut d = small_ring();
        d.instances.get_mut("b1").unwrap().heartbeat_ms = 1000 - timeout - 1;
        let ring = Ring::new(&d, &cfg);
        let set = ring.replication_set(50, 1000).unwrap();
        assert_eq!(ids(&ring, &set), ["a1", "c1"]);
        assert_eq!(set.max_errors(), 0);
        d.instances.get_mut("c1").unwrap().heartbeat_ms = -1_000_000;
        let ring = Ring::new(&d, &cfg);
        assert_eq!(
            ring.replication_set(50, 1000),
            Err(RingError::TooFewReplicas { need: 2, found: 1 })
        );
    }

    #[test]
    fn fewer_zones_than_replication_factor() {
        let d = desc(vec![
            instance("a1", "a", vec![10]),
            instance("b1", "b", vec![20]),
        ]);
        let ring = Ring::new(&d, &RingConfig::default());
        let set = ring.replication_set(0, 1000).unwrap();
        assert_eq!((set.len(), set.max_errors()), (2, 0));
        let ring = Ring::new(&RingDesc::default(), &RingConfig::default());
        assert_eq!(ring.replication_set(0, 0), Err(RingError::Empty));
    }

    #[test]
    fn heartbeat_only_updates_share_the_token_table() {
        let cfg = RingConfig::default();
        let d = small_ring();
        let ring = Ring::new(&d, &cfg);
        let mut d2 = d.clone();
        d2.instances.get_mut("a1").unwrap().heartbeat_ms = 5000;
        let r2 = ring.updated(&d, &d2, &cfg);
        assert!(Arc::ptr_eq(&ring.topo, &r2.topo));
        assert_eq!(r2.heartbeat_ms(0), 5000);
        let mut d3 = d2.clone();
        d3.instances.get_mut("a1").unwrap().state = InstanceState::Leaving;
        assert!(!Arc::ptr_eq(&r2.topo, &r2.updated(&d2, &d3, &cfg).topo));
    }
}
