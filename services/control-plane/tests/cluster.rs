//! Fault tests on a 3-voter cluster of `hestia-control-plane` processes: SIGKILL the leader, a
//! new one is elected within 10 s and no acknowledged write is lost; restarting every voter keeps
//! the state; a voter cut off from the other two (they are SIGSTOPped) acknowledges no write; and
//! a concurrent history of alias updates and reads through all voters, with the leader killed in
//! the middle and every core busy, is linearizable; a write whose leader died after committing it
//! and before answering is applied once when the follower retries it.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster, wait_leader, CpuHog, Voter};
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

/// The voter's workspace ids; `None` while it does not answer.
async fn try_list(client: &reqwest::Client, v: &Voter) -> Option<Vec<String>> {
    let body: Value = client
        .get(format!("{}/workspaces?maxResults=1000", v.api))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["workspaces"].as_array().map(|ws| {
        ws.iter()
            .filter_map(|w| w["workspaceId"].as_str().map(str::to_string))
            .collect()
    })
}

async fn list(client: &reqwest::Client, v: &Voter) -> Vec<String> {
    try_list(client, v)
        .await
        .expect("the voter lists workspaces")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_acknowledges_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let voters = cluster(dir.path(), 1000);
    let client = reqwest::Client::new();
    wait_leader(&client, &voters, None).await;
    let before = create(&client, &voters[0], "before").await.expect("create");

    // Voter 1 alone: whether it led or followed, nothing it is asked to write is acknowledged.
    voters[1].signal("STOP");
    voters[2].signal("STOP");
    let r = client
        .post(format!("{}/workspaces", voters[0].api))
        .json(&json!({"alias": "minority"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
    let r = client
        .post(format!("{}/workspaces/{before}/alias", voters[0].api))
        .json(&json!({"alias": "renamed"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(r.status(), 503);

    // Healed: the cluster writes again.
    voters[1].signal("CONT");
    voters[2].signal("CONT");
    wait_leader(&client, &voters, None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while create(&client, &voters[0], "after").await.is_none() {
        assert!(Instant::now() < deadline, "no write after healing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One operation of a history: invocation and response times (ns since the start; `None` when
/// the outcome is unknown), and what it wrote or read.
#[derive(Debug, Clone)]
struct Op {
    call: u64,
    ret: Option<u64>,
    write: bool,
    value: String,
}

/// Wing & Gong's search, with Lowe's memoisation, for a register starting at `init`: is there an
/// order of the operations, consistent with real time, in which every read returns the latest
/// write? Writes of unknown outcome may take effect at any time after their call, or never.
fn linearizable(init: &str, ops: &[Op]) -> bool {
    fn search(ops: &[Op], done: u64, value: &str, seen: &mut HashSet<(u64, String)>) -> bool {
        let pending = |i: usize| done & (1 << i) == 0;
        if (0..ops.len()).all(|i| !pending(i) || ops[i].ret.is_none()) {
            return true;
        }
        if !seen.insert((done, value.to_string())) {
            return false;
        }
        let first_return = (0..ops.len())
            .filter(|&i| pending(i))
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for (i, op) in ops.iter().enumerate() {
            if !pending(i) || op.call > first_return {
                continue;
            }
            let next = if op.write {
                op.value.as_str()
            } else if op.value == value {
                value
            } else {
                continue;
            };
            if search(ops, done | (1 << i), next, seen) {
                return true;
            }
        }
        false
    }
    assert!(ops.len() <= 64, "at most 64 operations");
    search(ops, 0, init, &mut HashSet::new())
}

#[test]
fn the_checker_finds_a_stale_read() {
    let op = |call, ret, write, v: &str| Op {
        call,
        ret,
        write,
        value: v.into(),
    };
    // w(b) completes, then a read still sees a: not linearizable.
    assert!(!linearizable(
        "a",
        &[op(0, Some(1), true, "b"), op(2, Some(3), false, "a")]
    ));
    // Overlapping: either order is fine.
    assert!(linearizable(
        "a",
        &[op(0, Some(3), true, "b"), op(1, Some(2), false, "a")]
    ));
    // A write of unknown outcome may never have happened, or may land later.
    assert!(linearizable(
        "a",
        &[op(0, None, true, "b"), op(2, Some(3), false, "a")]
    ));
    assert!(linearizable(
        "a",
        &[
            op(0, None, true, "b"),
            op(2, Some(3), false, "a"),
            op(4, Some(5), false, "b")
        ]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_alias_history_is_linearizable() {
    // Busy cores delay elections and forwarding past the clients' timeouts: the retries that
    // once applied a write twice (issue 29).
    let _hog = CpuHog::start();
    let dir = tempfile::tempdir().unwrap();
    let mut voters = cluster(dir.path(), 10);
    let client = reqwest::Client::new();
    let leader = wait_leader(&client, &voters, None).await;
    let id = create(&client, &voters[0], "a0").await.expect("create");
    let apis: Arc<Vec<String>> = Arc::new(voters.iter().map(|v| v.api.clone()).collect());
    let start = Instant::now();
    let history: Arc<Mutex<Vec<Op>>> = Arc::default();

    let clients: Vec<_> = (0..3usize)
        .map(|c| {
            let (apis, history, id, client) =
                (apis.clone(), history.clone(), id.clone(), client.clone());
            tokio::spawn(async move {
                let mut at = c;
                for i in 0..20usize {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    let api = &apis[at % apis.len()];
                    let write = (i * 7 + c * 3) % 3 == 0;
                    let value = format!("c{c}-{i}");
                    let call = start.elapsed().as_nanos() as u64;
                    let outcome = if write {
                        client
                            .post(format!("{api}/workspaces/{id}/alias"))
                            .json(&json!({ "alias": value }))
                            .timeout(Duration::from_secs(15))
                            .send()
                            .await
                            .ok()
                            .filter(|r| r.status() == 204)
                            .map(|_| value.clone())
                    } else {
                        match client
                            .get(format!("{api}/workspaces/{id}"))
                            .timeout(Duration::from_secs(15))
                            .send()
                            .await
                        {
                            Ok(r) if r.status() == 200 => {
                                r.json::<Value>().await.ok().and_then(|v| {
                                    v["workspace"]["alias"].as_str().map(String::from)
                                })
                            }
                            _ => None,
                        }
                    };
                    let ret = start.elapsed().as_nanos() as u64;
                    let op = match (write, outcome) {
                        (true, Some(v)) => Some(Op {
                            call,
                            ret: Some(ret),
                            write,
                            value: v,
                        }),
                        (true, None) => Some(Op {
                            call,
                            ret: None,
                            write,
                            value,
                        }),
                        (false, Some(v)) => Some(Op {
                            call,
                            ret: Some(ret),
                            write,
                            value: v,
                        }),
                        // A failed read observed nothing.
                        (false, None) => None,
                    };
                    let failed = matches!(&op, Some(Op { ret: None, .. }) | None);
                    if let Some(op) = op {
                        history.lock().unwrap().push(op);
                    }
                    if failed {
                        at += 1; // try another voter
                    }
                }
            })
        })
        .collect();
    // The leader dies while the clients run.
    tokio::time::sleep(Duration::from_millis(150)).await;
    voters[(leader - 1) as usize].kill();
    for c in clients {
        c.await.unwrap();
    }
    let ops = history.lock().unwrap().clone();
    let reads = ops.iter().filter(|o| !o.write).count();
    let unknown = ops.iter().filter(|o| o.ret.is_none()).count();
    println!(
        "history: {} operations ({reads} reads, {unknown} writes of unknown outcome)",
        ops.len()
    );
    assert!(reads >= 10, "too few successful reads: {ops:?}");
    let last = ops.iter().filter_map(|o| o.ret).max().unwrap_or(0);
    assert!(
        last > 150_000_000,
        "the history ended before the leader was killed"
    );
    assert!(linearizable("a0", &ops), "not linearizable: {ops:#?}");
}

async fn counter(client: &reqwest::Client, v: &Voter, name: &str) -> f64 {
    let text = client
        .get(format!("{}/metrics", v.api))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_leader_died_before_answering_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut voters = cluster(dir.path(), 1000);
    let client = reqwest::Client::new();
    let leader = wait_leader(&client, &voters, None).await;
    let follower = voters.iter().position(|v| v.id != leader).unwrap();
    let started = unix_ms();

    // The leader commits the forwarded CreateWorkspace, then dies before answering the follower,
    // which retries the same proposal on the next leader. Applied twice, the retry would find
    // the workspace id taken (409 ConflictException) and the account would hold two records.
    voters[(leader - 1) as usize].arm_failpoint("abort-after-commit");
    let r = client
        .post(format!("{}/workspaces", voters[follower].api))
        .json(&json!({"alias": "once"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or_default();
    assert_eq!(status, 202, "{body}");
    let id = body["workspaceId"]
        .as_str()
        .expect("workspaceId")
        .to_string();
    assert!(
        voters[(leader - 1) as usize].exited(),
        "the leader was meant to die after committing"
    );

    let new_leader = wait_leader(&client, &voters, Some(leader)).await;
    println!("leader {leader} died after committing; {new_leader} leads");
    assert_eq!(list(&client, &voters[follower]).await, vec![id.clone()]);

    // Every voter that applied the retried entry answered it from the request table.
    for v in voters.iter().filter(|v| v.running()) {
        let replayed = counter(&client, v, "hestia_control_plane_replayed_requests_total").await;
        assert!(replayed >= 1.0, "voter {} replayed {replayed}", v.id);
    }

    // The follower's audit log holds the one call, successful, with the one workspace id.
    let audit: Value = client
        .get(format!(
            "{}/admin/audit?startTime={started}",
            voters[follower].api
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let creates: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventName"] == "CreateWorkspace")
        .collect();
    assert_eq!(creates.len(), 1, "{audit:#}");
    assert!(
        creates[0].get("errorCode").is_none_or(Value::is_null),
        "{audit:#}"
    );
    assert_eq!(creates[0]["responseElements"]["workspaceId"], id.as_str());

    // The dead voter restarts, replays its log (the entry is in it) and agrees.
    voters[(leader - 1) as usize].start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if try_list(&client, &voters[(leader - 1) as usize]).await == Some(vec![id.clone()]) {
            break;
        }
        assert!(Instant::now() < deadline, "restarted voter disagrees");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}
