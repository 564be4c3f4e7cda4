//! HA-tracker elections on a 3-voter cluster of `hestia-control-plane` processes, through
//! hestia-ha's `ControlPlaneHaStore`: concurrent candidates through different followers elect
//! exactly one replica, a batch of reports is one Raft entry, elections survive the leader's
//! SIGKILL and a restart of every voter (snapshots every 5 entries), and silent clusters are
//! forgotten.

mod common;

use std::time::Duration;

use common::{cluster, endpoints, metrics, wait_leader, Voter};
use hestia_ha::{ControlPlaneHaStore, HaStore, Outcome, Update};

const T0: i64 = 1_700_000_000_000;
const TENANT: &str = "123456789012_ws-00000000-0000-4000-8000-000000000001";

fn update(cluster: &str, replica: &str, now_ms: i64) -> Update {
    Update {
        tenant: TENANT.into(),
        cluster: cluster.into(),
        replica: replica.into(),
        now_ms,
        failover_timeout_ms: 30_000,
        max_clusters: 500,
    }
}

fn elected(o: &Outcome) -> (String, bool) {
    match o {
        Outcome::Elected { election, changed } => (election.replica.clone(), *changed),
        Outcome::TooManyClusters { .. } => panic!("refused: {o:?}"),
    }
}

fn store_via(voters: &[Voter], first: u64) -> ControlPlaneHaStore {
    ControlPlaneHaStore::new(&endpoints(voters, first)).unwrap()
}

async fn replicas(store: &ControlPlaneHaStore) -> Vec<(String, String)> {
    store
        .list(Some(TENANT))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.cluster, e.election.replica))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elections_are_decided_once_and_survive_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut voters = cluster(dir.path(), 5);
    let http = reqwest::Client::new();
    let leader = wait_leader(&http, &voters, None).await;
    let followers: Vec<u64> = voters
        .iter()
        .map(|v| v.id)
        .filter(|&id| id != leader)
        .collect();
    let a = store_via(&voters, followers[0]);
    let b = store_via(&voters, followers[1]);

    // Twenty replicas of one new cluster race through two followers: one wins, all agree.
    let calls = (0..20).map(|i| {
        let store = if i % 2 == 0 { &a } else { &b };
        async move {
            let o = store
                .update(vec![update("race", &format!("r{i}"), T0)], 0)
                .await
                .unwrap();
            elected(&o[0])
        }
    });
    let results = futures::future::join_all(calls).await;
    let winners: Vec<&(String, bool)> = results.iter().filter(|(_, changed)| *changed).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|(r, _)| *r == winners[0].0),
        "{results:?}"
    );

    // Fifty clusters reported in one call: one Raft entry.
    let l = voters.iter().find(|v| v.id == leader).unwrap();
    let before = metrics(&http, l).await.unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    let batch = (0..50)
        .map(|i| update(&format!("c{i:02}"), "x", T0))
        .collect();
    let outcomes = a.update(batch, 0).await.unwrap();
    assert!(outcomes.iter().all(|o| elected(o) == ("x".into(), true)));
    let after = metrics(&http, l).await.unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 1);
    let expected = replicas(&a).await;
    assert_eq!(expected.len(), 51);

    // The leader dies: the survivors hold every election and keep deciding.
    voters.iter_mut().find(|v| v.id == leader).unwrap().kill();
    wait_leader(&http, &voters, Some(leader)).await;
    assert_eq!(replicas(&b).await, expected);
    let o = b
        .update(vec![update("c00", "y", T0 + 30_000)], 0)
        .await
        .unwrap();
    assert_eq!(
        elected(&o[0]),
        ("x".into(), false),
        "30 s is not more than the timeout"
    );
    let o = b
        .update(vec![update("c00", "y", T0 + 30_001)], 0)
        .await
        .unwrap();
    assert_eq!(elected(&o[0]), ("y".into(), true));

    // Every voter restarts: the elections are read back from disk.
    for v in voters.iter_mut() {
        v.kill();
    }
    for v in voters.iter_mut() {
        v.start();
    }
    wait_leader(&http, &voters, None).await;
    let mut now = replicas(&a).await;
    assert_eq!(now.len(), 51);
    now.retain(|(c, _)| c != "c00");
    let mut want = expected.clone();
    want.retain(|(c, _)| c != "c00");
    assert_eq!(now, want);

    // Clusters not seen since T0 + 1 s are forgotten; c00 (seen at T0 + 30 s) stays.
    a.update(vec![], T0 + 1_000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        replicas(&b).await,
        vec![("c00".to_string(), "y".to_string())]
    );
}
