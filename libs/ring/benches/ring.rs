//! Ring lookups: one series' replication set, and sharding a 10k-series request, on a ring of
//! 3 zones × 10 ingesters × 128 tokens.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hestia_ring::{InstanceDesc, InstanceState, Ring, RingConfig, RingDesc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NOW: i64 = 1_000_000;

fn ring(zones: usize, per_zone: usize) -> Ring {
    let mut rng = StdRng::seed_from_u64(7);
    let mut d = RingDesc::default();
    for z in 0..zones {
        for n in 0..per_zone {
            let id = format!("ingester-{z}-{n}");
            let tokens = d.new_tokens(128, &mut rng);
            d.instances.insert(
                id.clone(),
                InstanceDesc {
                    addr: format!("{id}:9095"),
                    id,
                    zone: format!("zone-{z}"),
                    tokens,
                    state: InstanceState::Active,
                    heartbeat_ms: NOW,
                },
            );
        }
    }
    Ring::new(&d, &RingConfig::default())
}

fn bench(c: &mut Criterion) {
    let ring = ring(3, 10);
    let mut rng = StdRng::seed_from_u64(1);
    let probes: Vec<u32> = (0..10_000).map(|_| rng.random()).collect();
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(1));
    let mut k = 0usize;
    g.bench_function("replication_set_30_instances", |b| {
        b.iter(|| {
            k = (k + 1) % probes.len();
            ring.replication_set(probes[k], NOW).expect("set")
        })
    });
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("shard_batch_10k_series_30_instances", |b| {
        b.iter(|| ring.shard_batch(&probes, NOW).expect("shard"))
    });
    let small = self::ring(3, 2);
    g.bench_function("shard_batch_10k_series_6_instances", |b| {
        b.iter(|| small.shard_batch(&probes, NOW).expect("shard"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
