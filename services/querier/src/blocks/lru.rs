//! A least-recently-used map bounded by the total weight of its values.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

struct Entry<V> {
    value: V,
    weight: usize,
    /// Position in `order`: larger is more recent.
    tick: u64,
}

pub(crate) struct Lru<K, V> {
    map: HashMap<K, Entry<V>>,
    order: BTreeMap<u64, K>,
    next_tick: u64,
    weight: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
            weight: 0,
            capacity,
        }
    }

    /// The value of `key`, which becomes the most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let tick = self.next_tick;
        let e = self.map.get_mut(key)?;
        self.order.remove(&e.tick);
        e.tick = tick;
        self.order.insert(tick, key.clone());
        self.next_tick += 1;
        Some(e.value.clone())
    }

    /// Stores `value` as the most recently used, evicting the least recently used entries until
    /// the total weight fits. A value heavier than the whole capacity is not stored.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: usize) {
        self.remove(&key);
        if weight > self.capacity {
            return;
        }
        while self.weight + weight > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&oldest) {
                self.weight -= e.weight;
            }
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.order.insert(tick, key.clone());
        self.map.insert(
            key,
            Entry {
                value,
                weight,
                tick,
            },
        );
        self.weight += weight;
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let e = self.map.remove(key)?;
        self.order.remove(&e.tick);
        self.weight -= e.weight;
        Some(e.value)
    }

    /// Removes every entry whose key `keep` rejects.
    pub(crate) fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        let gone: Vec<K> = self.map.keys().filter(|k| !keep(k)).cloned().collect();
        for k in &gone {
            self.remove(k);
        }
    }

    /// Total weight of the entries.
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let mut lru = Lru::new(10);
        lru.insert("a", 1, 4);
        lru.insert("b", 2, 4);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3, 4);
        assert_eq!(lru.get(&"b"), None, "b was least recently used");
        assert_eq!((lru.get(&"a"), lru.get(&"c")), (Some(1), Some(3)));
        assert_eq!((lru.weight(), lru.len()), (8, 2));
        lru.insert("huge", 9, 11);
        assert_eq!(lru.get(&"huge"), None);
        assert_eq!(lru.weight(), 8);
        lru.insert("a", 5, 2);
        assert_eq!((lru.get(&"a"), lru.weight()), (Some(5), 6));
        lru.retain(|k| *k != "c");
        assert_eq!((lru.len(), lru.weight()), (1, 2));
    }
}
