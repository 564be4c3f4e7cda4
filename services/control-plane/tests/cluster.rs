//! Fault tests on a 3-voter cluster of `hestia-control-plane` processes: SIGKILL the leader, a
//! new one is elected within 10 s and no acknowledged write is lost; restarting every voter keeps
//! the state.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, wait_leader, Voter};
use serde_json::{json, Value};

async fn create(client: &reqwest::Client, v: &Voter, alias: &str) -> Option<String> {
    let r = client
        .post(format!("{}/workspaces", v.api))
        .json(&json!({"alias": alias}))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .ok()?;
    if r.status() != 202 {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["workspaceId"].as_str().map(str::to_string)
}

async fn list(client: &reqwest::Client, v: &Voter) -> Vec<String> {
    let body: Value = client
        .get(format!("{}/workspaces?maxResults=1000", v.api))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspaceId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_and_full_restart_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut voters = cluster(dir.path(), 20);
    let client = reqwest::Client::new();
    let leader = wait_leader(&client, &voters, None).await;

    // Writes through every voter (followers forward to the leader); more than
    // snapshot_every_entries so snapshots and log compaction happen.
    let mut acked = Vec::new();
    for i in 0..30 {
        let v = &voters[i % 3];
        acked.push(create(&client, v, &format!("w{i}")).await.expect("create"));
    }

    // Keep writing through a follower while the leader is SIGKILLed.
    let follower = voters.iter().position(|v| v.id != leader).unwrap();
    let killed_at = Instant::now();
    voters[(leader - 1) as usize].kill();
    let new_leader = wait_leader(&client, &voters, Some(leader)).await;
    let failover = killed_at.elapsed();
    println!("leader {leader} killed; new leader {new_leader} after {failover:?}");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    for i in 0..5 {
        acked.push(
            create(&client, &voters[follower], &format!("after{i}"))
                .await
                .expect("write after failover"),
        );
    }
    let seen = list(&client, &voters[follower]).await;
    for id in &acked {
        assert!(seen.contains(id), "acknowledged {id} lost after failover");
    }

    // The killed voter catches up (from a snapshot: its log was compacted away on the others).
    voters[(leader - 1) as usize].start();
    wait_leader(&client, &voters, None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = list(&client, &voters[(leader - 1) as usize]).await;
        if acked.iter().all(|id| seen.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted voter did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Restart every voter: the state is intact.
    for v in voters.iter_mut() {
        v.kill();
    }
    for v in voters.iter_mut() {
        v.start();
    }
    wait_leader(&client, &voters, None).await;
    for v in &voters {
        let seen = list(&client, v).await;
        assert_eq!(seen.len(), acked.len(), "voter {} after full restart", v.id);
        for id in &acked {
            assert!(
                seen.contains(id),
                "{id} lost after full restart on voter {}",
                v.id
            );
        }
    }
}
