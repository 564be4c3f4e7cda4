use std::collections::{BTreeMap, HashSet};

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InstanceState {
    /// Registered, not yet serving (e.g. replaying its WAL): excluded from reads and writes.
    Joining,
    Active,
    /// Shutting down: still read, no longer written.
    Leaving,
}

/// One ring member as stored in the KV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceDesc {
    pub id: String,
    pub addr: String,
    pub zone: String,
    /// Sorted, unique within the ring.
    pub tokens: Vec<u32>,
    pub state: InstanceState,
    /// Last heartbeat, milliseconds since the Unix epoch.
    pub heartbeat_ms: i64,
}

impl InstanceDesc {
    /// Heartbeat within `timeout_ms` of `now_ms`.
    pub fn is_healthy(&self, now_ms: i64, timeout_ms: i64) -> bool {
        now_ms - self.heartbeat_ms <= timeout_ms
    }
}

/// The ring descriptor: the whole ring state, one KV value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingDesc {
    pub instances: BTreeMap<String, InstanceDesc>,
}

impl RingDesc {
    /// Everything but heartbeats is equal: token tables built from either are identical.
    pub fn same_topology(&self, other: &RingDesc) -> bool {
        self.instances.len() == other.instances.len()
            && self
                .instances
                .values()
                .zip(other.instances.values())
                .all(|(a, b)| {
                    a.id == b.id
                        && a.addr == b.addr
                        && a.zone == b.zone
                        && a.state == b.state
                        && a.tokens == b.tokens
                })
    }

    /// Removes instances whose last heartbeat is older than `forget_after_ms`; true if any were.
    pub fn forget_stale(&mut self, now_ms: i64, forget_after_ms: i64) -> bool {
        let before = self.instances.len();
        self.instances
            .retain(|_, i| now_ms - i.heartbeat_ms <= forget_after_ms);
        self.instances.len() != before
    }

    /// `n` random tokens not owned by any other instance, sorted.
    pub fn new_tokens(&self, n: usize, rng: &mut impl Rng) -> Vec<u32> {
        let taken: HashSet<u32> = self
            .instances
            .values()
            .flat_map(|i| i.tokens.iter().copied())
            .collect();
        let mut out = HashSet::with_capacity(n);
        while out.len() < n {
            let t: u32 = rng.random();
            if !taken.contains(&t) {
                out.insert(t);
            }
        }
        let mut v: Vec<u32> = out.into_iter().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, hb: i64) -> InstanceDesc {
        InstanceDesc {
            id: id.into(),
            addr: format!("{id}:9095"),
            zone: "a".into(),
            tokens: vec![],
            state: InstanceState::Active,
            heartbeat_ms: hb,
        }
    }

    #[test]
    fn new_tokens_avoid_taken_ones() {
        let mut d = RingDesc::default();
        let mut rng = rand::rng();
        let mut a = inst("a", 0);
        a.tokens = d.new_tokens(1000, &mut rng);
        assert_eq!(a.tokens.len(), 1000);
        assert!(a.tokens.windows(2).all(|w| w[0] < w[1]));
        d.instances.insert("a".into(), a.clone());
        let b = d.new_tokens(1000, &mut rng);
        assert!(b.iter().all(|t| a.tokens.binary_search(t).is_err()));
    }

    #[test]
    fn forget_and_topology() {
        let mut d = RingDesc::default();
        d.instances.insert("a".into(), inst("a", 100));
        d.instances.insert("b".into(), inst("b", 10));
        let mut e = d.clone();
        e.instances.get_mut("a").unwrap().heartbeat_ms = 500;
        assert!(d.same_topology(&e));
        e.instances.get_mut("a").unwrap().state = InstanceState::Leaving;
        assert!(!d.same_topology(&e));
        assert!(d.forget_stale(200, 100));
        assert_eq!(d.instances.keys().collect::<Vec<_>>(), ["a"]);
        assert!(!d.forget_stale(200, 100));
    }

    #[test]
    fn serde_round_trip() {
        let mut d = RingDesc::default();
        d.instances.insert("a".into(), inst("a", 1));
        let s = serde_json::to_string(&d).unwrap();
        assert!(s.contains("\"ACTIVE\""));
        assert_eq!(serde_json::from_str::<RingDesc>(&s).unwrap(), d);
    }
}
