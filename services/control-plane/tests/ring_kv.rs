//! The ingester ring's KV store on a 3-voter cluster of `hestia-control-plane` processes, through
//! hestia-ring's `ControlPlaneKv`: CAS and linearizable reads, lifecyclers and a ring client,
//! heartbeats coalesced into few Raft entries, and the leader SIGKILLed under them.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cluster, endpoints, metrics, wait_leader, Voter};
use hestia_ring::{
    new_kv, now_ms, ControlPlaneKv, InstanceConfig, InstanceDesc, InstanceState, Kv, KvBackend,
    Lifecycler, RingClient, RingConfig, RingDesc, RingError,
};

fn desc_of(ids: &[&str]) -> RingDesc {
    let mut d = RingDesc::default();
    for (n, id) in ids.iter().enumerate() {
        d.instances.insert(
            id.to_string(),
            InstanceDesc {
                id: id.to_string(),
                addr: format!("{id}:9095"),
                zone: "a".into(),
                tokens: vec![n as u32],
                state: InstanceState::Active,
                heartbeat_ms: 1_000,
            },
        );
    }
    d
}

async fn last_log_index(http: &reqwest::Client, v: &Voter) -> u64 {
    metrics(http, v).await.expect("metrics")["last_log_index"]
        .as_u64()
        .expect("a log index")
}

async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_get_conflict_heartbeat_and_watch_through_followers() {
    let dir = tempfile::tempdir().unwrap();
    let voters = cluster(dir.path(), 1000);
    let http = reqwest::Client::new();
    let leader = wait_leader(&http, &voters, None).await;
    let followers: Vec<u64> = voters
        .iter()
        .map(|v| v.id)
        .filter(|&id| id != leader)
        .collect();
    // Two clients, each starting at a different follower: writes are forwarded to the leader.
    let kv = ControlPlaneKv::new(&endpoints(&voters, followers[0])).unwrap();
    let other = ControlPlaneKv::new(&endpoints(&voters, followers[1])).unwrap();

    assert!(kv.get("r").await.unwrap().is_none());
    let mut w = other.watch("r").await.unwrap();
    assert!(w.borrow_and_update().is_none());
    assert_eq!(kv.cas("r", 0, desc_of(&["a"])).await.unwrap(), Some(1));
    assert_eq!(other.cas("r", 0, desc_of(&["b"])).await.unwrap(), None);
    assert_eq!(other.cas("r", 1, desc_of(&["b"])).await.unwrap(), Some(2));
    assert_eq!(kv.cas("r", 1, desc_of(&["a"])).await.unwrap(), None);
    // Reads are linearizable on every node.
    let v = kv.get("r").await.unwrap().unwrap();
    assert_eq!((v.version, &v.desc), (2, &desc_of(&["b"])));
    tokio::time::timeout(
        Duration::from_secs(5),
        w.wait_for(|v| v.as_ref().is_some_and(|v| v.version == 2)),
    )
    .await
    .expect("watch saw version 2")
    .unwrap();

    // Heartbeats: unknown instances are refused, known ones committed within a flush period.
    assert!(!kv.heartbeat("r", "a", 5_000).await.unwrap());
    assert!(kv.heartbeat("r", "b", 5_000).await.unwrap());
    assert!(kv.heartbeat("r", "b", 4_000).await.unwrap());
    let other = &other;
    eventually(
        "heartbeat committed",
        Duration::from_secs(5),
        move || async move {
            let v = other.get("r").await.unwrap().unwrap();
            v.desc.instances["b"].heartbeat_ms == 5_000 && v.version == 3
        },
    )
    .await;
    tokio::time::timeout(
        Duration::from_secs(5),
        w.wait_for(|v| v.as_ref().is_some_and(|v| v.version == 3)),
    )
    .await
    .expect("watch saw the heartbeat")
    .unwrap();
    // A CAS from before the heartbeat loses.
    assert_eq!(kv.cas("r", 2, desc_of(&["c"])).await.unwrap(), None);

    // A refused request is not retried elsewhere.
    assert!(matches!(kv.get("").await, Err(RingError::Kv(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecyclers_and_ring_client_survive_leader_kill_with_coalesced_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let mut voters = cluster(dir.path(), 10);
    let http = reqwest::Client::new();
    let leader = wait_leader(&http, &voters, None).await;

    // The leader first, so that killing it breaks every client's preferred endpoint.
    let cfg = RingConfig {
        kv: KvBackend::ControlPlane,
        kv_endpoints: endpoints(&voters, leader),
        heartbeat_period: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(10),
        forget_after: Duration::from_secs(60),
        tokens_per_instance: 16,
        ..Default::default()
    };
    let client = &RingClient::start(new_kv(&cfg).unwrap(), &cfg)
        .await
        .unwrap();
    let started = Instant::now();
    let mut lcs = Vec::new();
    for (n, zone) in ["a", "b", "c"].into_iter().enumerate() {
        let instance = InstanceConfig {
            id: format!("ingester-{zone}"),
            addr: format!("127.0.0.1:{}", 9100 + n),
            zone: zone.into(),
            tokens_file: None,
        };
        // Its own store, as a separate ingester process would have.
        let kv = new_kv(&cfg).unwrap();
        lcs.push(
            Lifecycler::start(kv, &cfg, instance, InstanceState::Active)
                .await
                .unwrap(),
        );
    }
    eventually(
        "ring client sees 3 instances",
        Duration::from_secs(5),
        move || async move { client.ring().len() == 3 },
    )
    .await;
    println!(
        "ring client saw 3 instances {:?} after the first registration",
        started.elapsed()
    );
    let ring = client.ring();
    let set = ring.replication_set(12345, now_ms()).unwrap();
    assert_eq!((set.len(), set.max_errors()), (3, 1));

    // Heartbeats advance (and reach the client's watch).
    let beats = |ring: &hestia_ring::Ring| {
        (0..ring.len())
            .map(|i| ring.heartbeat_ms(i))
            .collect::<Vec<_>>()
    };
    let before = &beats(&client.ring());
    eventually(
        "heartbeats advance",
        Duration::from_secs(5),
        move || async move {
            beats(&client.ring())
                .iter()
                .zip(before)
                .all(|(now, then)| now > then)
        },
    )
    .await;

    // 3 instances beating every 100 ms for 2 s: 60 heartbeats. Each voter commits at most one
    // RingHeartbeats entry per key per 1 s flush period, so at most 3 voters × (2 s / 1 s + 1)
    // = 9 entries, and nothing else writes while the membership is stable.
    let leader_voter = &voters[(leader - 1) as usize];
    let from = last_log_index(&http, leader_voter).await;
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let entries = last_log_index(&http, leader_voter).await - from;
    println!(
        "{entries} Raft entries for ~60 heartbeats in {:?}",
        window.elapsed()
    );
    assert!((1..=9).contains(&entries), "{entries} entries in 2 s");

    // SIGKILL the leader: the lifecyclers' heartbeats and the client's watch move to the others.
    voters[(leader - 1) as usize].kill();
    let killed_at = now_ms();
    let kill = Instant::now();
    eventually(
        "heartbeats after the leader was killed",
        Duration::from_secs(20),
        move || async move {
            let ring = client.ring();
            ring.len() == 3 && beats(&ring).iter().all(|&b| b > killed_at + 500)
        },
    )
    .await;
    println!(
        "heartbeats seen again {:?} after the leader was killed",
        kill.elapsed()
    );
    let new_leader = wait_leader(&http, &voters, Some(leader)).await;
    println!("new leader {new_leader}");
    assert!(client.ring().replication_set(777, now_ms()).is_ok());

    // The killed voter comes back and catches up (snapshots carry the rings).
    voters[(leader - 1) as usize].start();
    let alone = ControlPlaneKv::new(&[voters[(leader - 1) as usize].grpc.clone()]).unwrap();
    let mut caught_up = false;
    for _ in 0..100 {
        if let Ok(Some(v)) = alone.get(&cfg.key).await {
            if v.desc.instances.len() == 3 {
                caught_up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caught_up, "restarted voter serves the ring");

    for lc in lcs {
        lc.stop().await.unwrap();
    }
    eventually(
        "instances left the ring",
        Duration::from_secs(5),
        move || async move { client.ring().is_empty() },
    )
    .await;
    let kv: Arc<dyn Kv> = new_kv(&cfg).unwrap();
    assert!(kv
        .get(&cfg.key)
        .await
        .unwrap()
        .unwrap()
        .desc
        .instances
        .is_empty());
}

/// Starts one in-process voter on `dir`, waiting for a previous one's RocksDB lock (released
/// by openraft's tasks shortly after `shutdown`).
async fn single_voter(dir: &std::path::Path) -> hestia_control_plane::Running {
    let cfg = hestia_config::ControlPlaneConfig {
        heartbeat_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match hestia_control_plane::start(
            &cfg,
            dir,
            "http://127.0.0.1:8080".to_string(),
            Arc::new(hestia_control_plane::NoDataPlane),
        )
        .await
        {
            Ok(r) => return r,
            Err(e) => assert!(Instant::now() < deadline, "starting a voter: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_ring_watches_and_rings_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let running = single_voter(dir.path()).await;
    let kv = ControlPlaneKv::new(&[format!("http://{}", running.grpc_addr)]).unwrap();
    assert_eq!(kv.cas("r", 0, desc_of(&["a"])).await.unwrap(), Some(1));
    let w = kv.watch("r").await.unwrap();
    assert_eq!(w.borrow().as_ref().map(|v| v.version), Some(1));
    // The open watch stream must not hold up the gRPC server's graceful shutdown.
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown with an open ring watch");
    drop(w);

    let running = single_voter(dir.path()).await;
    let kv = ControlPlaneKv::new(&[format!("http://{}", running.grpc_addr)]).unwrap();
    let v = kv.get("r").await.unwrap().unwrap();
    assert_eq!((v.version, &v.desc), (1, &desc_of(&["a"])));
    running.shutdown().await;
}
