//! Properties of replication sets over random rings, and the load balance 128 tokens give.
use std::collections::HashSet;

use hestia_ring::{InstanceDesc, InstanceState, QuorumStatus, Ring, RingConfig, RingDesc};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_000_000;

fn random_ring(seed: u64, zones: usize, per_zone: usize, tokens: usize) -> RingDesc {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut d = RingDesc::default();
    for z in 0..zones {
        for n in 0..per_zone {
            let id = format!("ingester-{}{}", (b'a' + z as u8) as char, n + 1);
            let state = match rng.random_range(0..10) {
                0 => InstanceState::Joining,
                1 => InstanceState::Leaving,
                _ => InstanceState::Active,
            };
            let i = InstanceDesc {
                id: id.clone(),
                addr: format!("{id}:9095"),
                zone: format!("zone-{z}"),
                tokens: d.new_tokens(tokens, &mut rng),
                state,
                heartbeat_ms: NOW,
            };
            d.instances.insert(id, i);
        }
    }
    d
}

/// The definition, walked naively: first ACTIVE instance of each unused zone, clockwise.
fn reference(d: &RingDesc, token: u32, rf: usize) -> Vec<String> {
    let mut all: Vec<(u32, &InstanceDesc)> = d
        .instances
        .values()
        .flat_map(|i| i.tokens.iter().map(move |&t| (t, i)))
        .collect();
    all.sort_by_key(|(t, _)| *t);
    let start = all.iter().position(|(t, _)| *t >= token).unwrap_or(0);
    let mut out: Vec<String> = Vec::new();
    let mut zones = HashSet::new();
    for k in 0..all.len() {
        let i = all[(start + k) % all.len()].1;
        if out.len() == rf {
            break;
        }
        if i.state == InstanceState::Active && zones.insert(i.zone.clone()) {
            out.push(i.id.clone());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replication_sets_match_the_definition(
        seed in any::<u64>(),
        zones in 1usize..5,
        per_zone in 1usize..5,
        rf in 1usize..6,
        probes in prop::collection::vec(any::<u32>(), 1..64),
    ) {
        let d = random_ring(seed, zones, per_zone, 16);
        let cfg = RingConfig { replication_factor: rf, ..Default::default() };
        let ring = Ring::new(&d, &cfg);
        let again = Ring::new(&d.clone(), &cfg);
        for &t in &probes {
            let want = reference(&d, t, rf);
            match ring.replication_set(t, NOW) {
                Ok(set) => {
                    let got: Vec<String> =
                        set.instances().map(|i| ring.instance(i).id.clone()).collect();
                    prop_assert_eq!(&got, &want);
                    let zs: HashSet<&str> =
                        set.instances().map(|i| ring.instance(i).zone.as_str()).collect();
                    prop_assert_eq!(zs.len(), set.len());
                    prop_assert_eq!(set.max_errors(), set.len() - cfg.quorum());
                    prop_assert_eq!(again.replication_set(t, NOW).ok(), Some(set));
                }
                Err(_) => prop_assert!(want.len() < cfg.quorum()),
            }
        }
    }

    #[test]
    fn sharding_agrees_with_replication_sets(
        seed in any::<u64>(),
        tokens in prop::collection::vec(any::<u32>(), 0..200),
    ) {
        let mut d = random_ring(seed, 3, 3, 32);
        for i in d.instances.values_mut() {
            i.state = InstanceState::Active;
        }
        let ring = Ring::new(&d, &RingConfig::default());
        let mut b = ring.shard_batch(&tokens, NOW).unwrap();
        let mut per_series = vec![Vec::new(); tokens.len()];
        for (inst, list) in &b.per_instance {
            prop_assert!(list.windows(2).all(|w| w[0] < w[1]));
            for &s in list {
                per_series[s as usize].push(*inst);
            }
        }
        for (s, &t) in tokens.iter().enumerate() {
            let mut want: Vec<usize> = ring.replication_set(t, NOW).unwrap().instances().collect();
            want.sort_unstable();
            prop_assert_eq!(&per_series[s], &want);
        }
        // One failed instance never fails a request at RF=3.
        let lists = b.per_instance.clone();
        let mut status = b.tracker.status();
        for (n, (_, list)) in lists.iter().enumerate() {
            status = b.tracker.record(list, n != 0);
        }
        prop_assert_eq!(status, QuorumStatus::Succeeded);
    }
}

/// Share of the token space each instance holds as a replica, relative to the mean.
fn imbalance(zones: usize, per_zone: usize, tokens: usize, seed: u64) -> (f64, f64) {
    let mut d = random_ring(seed, zones, per_zone, tokens);
    for i in d.instances.values_mut() {
        i.state = InstanceState::Active;
    }
    let ring = Ring::new(&d, &RingConfig::default());
    let mut all: Vec<u32> = d
        .instances
        .values()
        .flat_map(|i| i.tokens.clone())
        .collect();
    all.sort_unstable();
    let mut owned = vec![0f64; ring.len()];
    for (k, &t) in all.iter().enumerate() {
        let prev = if k == 0 {
            all[all.len() - 1]
        } else {
            all[k - 1]
        };
        let len = f64::from(t.wrapping_sub(prev));
        for i in ring.replication_set(t, NOW).unwrap().instances() {
            owned[i] += len;
        }
    }
    let mean = owned.iter().sum::<f64>() / owned.len() as f64;
    let max = owned.iter().cloned().fold(f64::MIN, f64::max);
    let min = owned.iter().cloned().fold(f64::MAX, f64::min);
    (max / mean - 1.0, 1.0 - min / mean)
}

#[test]
fn load_balance_with_128_tokens() {
    for (zones, per_zone, limit) in [(3, 2, 0.25), (3, 10, 0.5), (3, 33, 0.5)] {
        let mut worst = (0f64, 0f64);
        for seed in 0..20 {
            let (over, under) = imbalance(zones, per_zone, 128, seed);
            worst = (worst.0.max(over), worst.1.max(under));
        }
        eprintln!(
            "{zones} zones x {per_zone} instances, 128 tokens: worst of 20 rings +{:.1}% / -{:.1}% of mean load",
            worst.0 * 100.0,
            worst.1 * 100.0
        );
        assert!(worst.0 < limit, "overload {} over {limit}", worst.0);
    }
}
