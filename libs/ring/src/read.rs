use crate::{InstanceState, Ring, RingError};

/// Which instances a query asks. A write is acknowledged by at least `quorum` replicas in
/// distinct zones, so reading every zone but `quorum - 1` sees every acknowledged sample.
/// Reading one zone alone would not: a zone may have missed writes that quorum accepted without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// Zones (instances, without zone awareness) in the order to ask them: complete zones
    /// first, the preferred zone leading.
    pub zones: Vec<ZoneReplicas>,
    /// How many zones must answer in full; ask the first `zones_needed`, and on an error move
    /// on to the next zone in order.
    pub zones_needed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneReplicas {
    pub zone: String,
    /// Instance indices of the zone's healthy ACTIVE or LEAVING instances.
    pub instances: Vec<usize>,
    /// Every instance of the zone is healthy and serving.
    pub complete: bool,
}

impl Ring {
    pub fn read_plan(
        &self,
        now_ms: i64,
        preferred_zone: Option<&str>,
    ) -> Result<ReadPlan, RingError> {
        if self.is_empty() {
            return Err(RingError::Empty);
        }
        let topo = &self.topo;
        let mut zones: Vec<ZoneReplicas> = topo
            .zones
            .iter()
            .map(|z| ZoneReplicas {
                zone: z.clone(),
                instances: Vec::new(),
                complete: true,
            })
            .collect();
        for (n, inst) in topo.instances.iter().enumerate() {
            let z = &mut zones[usize::from(topo.zone_of[n])];
            let serving = matches!(inst.state, InstanceState::Active | InstanceState::Leaving);
            if serving && self.is_healthy(n, now_ms) {
                z.instances.push(n);
            } else {
                z.complete = false;
            }
        }
        let preferred =
            |z: &ZoneReplicas| self.zone_awareness && preferred_zone.is_some_and(|p| p == z.zone);
        zones.sort_by(|a, b| {
            (!a.complete, !preferred(a), &a.zone).cmp(&(!b.complete, !preferred(b), &b.zone))
        });
        let max_unavailable = self.quorum - 1;
        let zones_needed = zones.len().saturating_sub(max_unavailable).max(1);
        let complete = zones.iter().filter(|z| z.complete).count();
        if complete < zones_needed {
            return Err(RingError::TooManyUnavailableZones {
                unavailable: zones.len() - complete,
                allowed: zones.len() - zones_needed,
            });
        }
        Ok(ReadPlan {
            zones,
            zones_needed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::tests::small_ring;
    use crate::RingConfig;

    fn names(p: &ReadPlan) -> Vec<&str> {
        p.zones.iter().map(|z| z.zone.as_str()).collect()
    }

    #[test]
    fn two_of_three_zones_preferred_first() {
        let ring = Ring::new(&small_ring(), &RingConfig::default());
        let p = ring.read_plan(1000, Some("b")).unwrap();
        assert_eq!(names(&p), ["b", "a", "c"]);
        assert_eq!(p.zones_needed, 2);
        assert_eq!(p.zones[1].instances.len(), 2);
    }

    #[test]
    fn incomplete_zones_go_last_and_two_bad_zones_fail() {
        let mut d = small_ring();
        d.instances.get_mut("a2").unwrap().state = InstanceState::Joining;
        let ring = Ring::new(&d, &RingConfig::default());
        let p = ring.read_plan(1000, Some("a")).unwrap();
        assert_eq!(names(&p), ["b", "c", "a"]);
        assert!(!p.zones[2].complete);
        d.instances.get_mut("c1").unwrap().heartbeat_ms = -1_000_000;
        let ring = Ring::new(&d, &RingConfig::default());
        assert_eq!(
            ring.read_plan(1000, None),
            Err(RingError::TooManyUnavailableZones {
                unavailable: 2,
                allowed: 1
            })
        );
    }

    #[test]
    fn without_zone_awareness_instances_are_the_groups() {
        let cfg = RingConfig {
            zone_awareness: false,
            ..Default::default()
        };
        let ring = Ring::new(&small_ring(), &cfg);
        let p = ring.read_plan(1000, None).unwrap();
        assert_eq!(p.zones.len(), 4);
        assert_eq!(p.zones_needed, 3);
    }
}
