//! Fault tests on a 3-voter cluster of `hestia-control-plane` processes: SIGKILL the leader, a
//! new one is elected within 10 s and no acknowledged write is lost; restarting every voter keeps
//! the state.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Voter {
    id: u64,
    api: String,
    config: PathBuf,
    data: PathBuf,
    child: Option<Child>,
}

impl Voter {
    fn start(&mut self) {
        let log = std::fs::File::create(self.data.with_extension("log")).unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_hestia-control-plane"))
                .arg("--config")
                .arg(&self.config)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }
}

impl Drop for Voter {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cluster(dir: &Path) -> Vec<Voter> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let bootstrap: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (g, _))| format!("\"{}=127.0.0.1:{g}\"", i + 1))
        .collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, (g, a))| {
            let id = i as u64 + 1;
            let data = dir.join(format!("cp-{id}"));
            let config = dir.join(format!("cp-{id}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[server]\ndata_dir = {data:?}\n[control_plane]\nnode_id = {id}\n\
                     grpc_listen = \"127.0.0.1:{g}\"\napi_listen = \"127.0.0.1:{a}\"\n\
                     bootstrap = [{}]\nheartbeat_interval = \"100ms\"\nsnapshot_every_entries = 20\n\
                     max_workspaces_per_account = 1000\napi_rate = 1000.0\napi_burst = 1000\n",
                    bootstrap.join(", ")
                ),
            )
            .unwrap();
            let mut v = Voter {
                id,
                api: format!("http://127.0.0.1:{a}"),
                config,
                data,
                child: None,
            };
            v.start();
            v
        })
        .collect()
}

async fn leader_of(client: &reqwest::Client, v: &Voter) -> Option<u64> {
    let m: Value = client
        .get(format!("{}/admin/cluster", v.api))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    m["current_leader"].as_u64()
}

/// Waits until every running voter names the same leader, other than `not`.
async fn wait_leader(client: &reqwest::Client, voters: &[Voter], not: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for v in voters.iter().filter(|v| v.child.is_some()) {
            seen.push(leader_of(client, v).await);
        }
        if let Some(Some(l)) = seen.first() {
            if seen.iter().all(|s| *s == Some(*l)) && Some(*l) != not {
                return *l;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    let mut voters = cluster(dir.path());
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
