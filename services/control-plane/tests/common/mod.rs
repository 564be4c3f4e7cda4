//! A 3-voter cluster of `hestia-control-plane` processes for the fault tests.

// Each test crate uses a part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Voter {
    pub id: u64,
    /// AMP API and admin endpoints.
    pub api: String,
    /// The internal gRPC API, `http://host:port`.
    pub grpc: String,
    config: PathBuf,
    data: PathBuf,
    child: Option<Child>,
}

impl Voter {
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .unwrap();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_hestia-control-plane"))
                .arg("--config")
                .arg(&self.config)
                .env("RUST_LOG", "warn")
                .env("HESTIA_FAILPOINTS", "1")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    /// Arms the failpoint `name` of this voter (`ControlPlane::failpoint`).
    pub fn arm_failpoint(&self, name: &str) {
        let dir = self.data.join("control-plane").join("failpoints");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), b"").unwrap();
    }

    /// Whether the process has exited on its own (reaping it).
    pub fn exited(&mut self) -> bool {
        let exited = match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_some(),
            None => false,
        };
        if exited {
            self.child = None;
        }
        exited
    }

    /// The last lines of this voter's log (stderr of every run so far).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends `sig` (`STOP`, `CONT`, …) to the running process: a stopped voter neither answers
    /// nor votes, as if cut off by a partition.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }
}

impl Drop for Voter {
    fn drop(&mut self) {
        self.kill();
    }
}

use hestia_testing::free_port;

/// Busy loops on every core until dropped: the cluster's timers then fire late, as on a loaded
/// machine.
pub struct CpuHog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    pub fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts three voters under `dir`, snapshotting every `snapshot_every` entries.
pub fn cluster(dir: &Path, snapshot_every: u64) -> Vec<Voter> {
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
                     bootstrap = [{}]\nheartbeat_interval = \"100ms\"\n\
                     snapshot_every_entries = {snapshot_every}\n\
                     max_workspaces_per_account = 1000\napi_rate = 1000.0\napi_burst = 1000\n\
                     [auth]\nenabled = false\n",
                    bootstrap.join(", ")
                ),
            )
            .unwrap();
            let mut v = Voter {
                id,
                api: format!("http://127.0.0.1:{a}"),
                grpc: format!("http://127.0.0.1:{g}"),
                config,
                data,
                child: None,
            };
            v.start();
            v
        })
        .collect()
}

/// The gRPC endpoints with voter `first` in front.
pub fn endpoints(voters: &[Voter], first: u64) -> Vec<String> {
    let mut v: Vec<&Voter> = voters.iter().collect();
    v.sort_by_key(|v| v.id != first);
    v.iter().map(|v| v.grpc.clone()).collect()
}

/// The voter's openraft metrics (`/admin/cluster`).
pub async fn metrics(client: &reqwest::Client, v: &Voter) -> Option<Value> {
    client
        .get(format!("{}/admin/cluster", v.api))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

pub async fn leader_of(client: &reqwest::Client, v: &Voter) -> Option<u64> {
    metrics(client, v).await?["current_leader"].as_u64()
}

/// Waits until every running voter names the same leader, other than `not`.
pub async fn wait_leader(client: &reqwest::Client, voters: &[Voter], not: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for v in voters.iter().filter(|v| v.running()) {
            seen.push((v, leader_of(client, v).await));
        }
        if let Some((_, Some(l))) = seen.first() {
            if seen.iter().all(|(_, s)| *s == Some(*l)) && Some(*l) != not {
                return *l;
            }
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = seen
                .iter()
                .filter(|(_, s)| s.is_none())
                .map(|(v, _)| format!("voter {} log:\n{}", v.id, v.log_tail()))
                .collect();
            let leaders: Vec<Option<u64>> = seen.iter().map(|(_, s)| *s).collect();
            panic!("no agreed leader: {leaders:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
