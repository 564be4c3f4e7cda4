use crate::{Ring, RingError};

/// A request's series split by ingester: one Push per entry, and the tracker that decides, per
/// series, when the request has reached quorum.
#[derive(Debug)]
pub struct ShardedBatch {
    /// `(instance index, indices of the series it must receive)`, for instances with any.
    pub per_instance: Vec<(usize, Vec<u32>)>,
    pub tracker: QuorumTracker,
}

/// Counts replica answers per series. The request succeeds once every series has `quorum`
/// successes and fails as soon as one series has more failures than its replication set allows.
#[derive(Debug, Clone)]
pub struct QuorumTracker {
    series: Vec<SeriesQuorum>,
    pending: usize,
    failed: usize,
}

#[derive(Debug, Clone, Copy)]
struct SeriesQuorum {
    /// Successes still needed; 0 once the series is safe.
    need: u8,
    /// Failures still tolerated.
    may_fail: u8,
    failed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumStatus {
    Pending,
    /// Every series reached quorum: answer 2xx (remaining Pushes may finish in the background).
    Succeeded,
    /// At least one series cannot reach quorum any more: answer 5xx.
    Failed,
}

impl QuorumTracker {
    /// Records the answer of the instance that was sent `series`.
    pub fn record(&mut self, series: &[u32], ok: bool) -> QuorumStatus {
        for &s in series {
            let q = &mut self.series[s as usize];
            if q.need == 0 || q.failed {
                continue;
            }
            if ok {
                q.need -= 1;
                if q.need == 0 {
                    self.pending -= 1;
                }
            } else if q.may_fail == 0 {
                q.failed = true;
                self.failed += 1;
            } else {
                q.may_fail -= 1;
            }
        }
        self.status()
    }

    pub fn status(&self) -> QuorumStatus {
        if self.failed > 0 {
            QuorumStatus::Failed
        } else if self.pending == 0 {
            QuorumStatus::Succeeded
        } else {
            QuorumStatus::Pending
        }
    }

    /// Series that can no longer reach quorum.
    pub fn failed_series(&self) -> usize {
        self.failed
    }
}

impl Ring {
    /// Shards series by their tokens (e.g. the upper 32 bits of a hash of tenant and labels).
    /// Fails without sharding anything when some series has fewer live replicas than quorum.
    pub fn shard_batch(&self, tokens: &[u32], now_ms: i64) -> Result<ShardedBatch, RingError> {
        let healthy = self.healthy_mask(now_ms);
        let expected = tokens.len() * self.quorum.max(1) / self.len().max(1) + 16;
        let mut lists: Vec<Vec<u32>> = vec![Vec::with_capacity(expected); self.len()];
        let mut series = Vec::with_capacity(tokens.len());
        for (s, &token) in tokens.iter().enumerate() {
            let mut found = 0usize;
            for &i in self.replicas_for(token)? {
                if healthy[usize::from(i)] {
                    lists[usize::from(i)].push(s as u32);
                    found += 1;
                }
            }
            if found < self.quorum {
                return Err(RingError::TooFewReplicas {
                    need: self.quorum,
                    found,
                });
            }
            series.push(SeriesQuorum {
                need: self.quorum as u8,
                may_fail: (found - self.quorum) as u8,
                failed: false,
            });
        }
        Ok(ShardedBatch {
            per_instance: lists
                .into_iter()
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
                .collect(),
            tracker: QuorumTracker {
                pending: series.len(),
                series,
                failed: 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::tests::small_ring;
    use crate::RingConfig;

    #[test]
    fn one_list_per_instance_and_quorum_per_series() {
        let ring = Ring::new(&small_ring(), &RingConfig::default());
        // 50 → a1 b1 c1; 150 → b1 a2 c1.
        let mut b = ring.shard_batch(&[50, 150], 1000).unwrap();
        let by_id: Vec<(&str, Vec<u32>)> = b
            .per_instance
            .iter()
            .map(|(i, l)| (ring.instance(*i).id.as_str(), l.clone()))
            .collect();
        assert_eq!(
            by_id,
            [
                ("a1", vec![0]),
                ("a2", vec![1]),
                ("b1", vec![0, 1]),
                ("c1", vec![0, 1])
            ]
        );
        let t = &mut b.tracker;
        assert_eq!(t.record(&[0, 1], true), QuorumStatus::Pending); // b1
        assert_eq!(t.record(&[0], false), QuorumStatus::Pending); // a1: series 0 may lose one
        assert_eq!(t.record(&[0, 1], true), QuorumStatus::Succeeded); // c1
                                                                      // Late answers change nothing.
        assert_eq!(t.record(&[1], false), QuorumStatus::Succeeded);
    }

    #[test]
    fn a_series_losing_two_replicas_fails_the_request() {
        let ring = Ring::new(&small_ring(), &RingConfig::default());
        let mut b = ring.shard_batch(&[50, 150], 1000).unwrap();
        let t = &mut b.tracker;
        assert_eq!(t.record(&[0], false), QuorumStatus::Pending);
        assert_eq!(t.record(&[0, 1], false), QuorumStatus::Failed);
        assert_eq!(t.failed_series(), 1);
    }

    #[test]
    fn too_few_live_replicas_is_an_error() {
        let mut d = small_ring();
        for id in ["b1", "c1"] {
            d.instances.get_mut(id).unwrap().heartbeat_ms = -1_000_000;
        }
        let ring = Ring::new(&d, &RingConfig::default());
        assert_eq!(
            ring.shard_batch(&[50], 1000).map(|_| ()),
            Err(RingError::TooFewReplicas { need: 2, found: 1 })
        );
        let b = ring.shard_batch(&[], 1000).unwrap();
        assert_eq!(b.tracker.status(), QuorumStatus::Succeeded);
    }
}
