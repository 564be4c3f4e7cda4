//! `deploy/local/cluster` driven from a test: every role its own process on 127.0.0.x, stopped
//! when the [`LocalCluster`] is dropped. The addresses are fixed, so one cluster runs at a time:
//! each holds [`SERIAL`] until it is stopped (tests of one binary run on parallel threads).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;

/// A control-plane voter's AMP API.
pub const CP_API: &str = "http://127.0.0.11:8090";

/// Held by the running [`LocalCluster`].
static SERIAL: Mutex<()> = Mutex::new(());

pub struct LocalCluster {
    dir: tempfile::TempDir,
    pub gateway: String,
    bin_dir: PathBuf,
    /// `HESTIA_AUTH=enabled`: one shared master key, operator credentials in a voter's dir.
    auth: bool,
    /// More variables for the script (its configuration overrides, see its documentation).
    env: Vec<(String, String)>,
    /// Released after `Drop` has stopped every process.
    _serial: MutexGuard<'static, ()>,
}

impl LocalCluster {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/cluster")
    }

    pub fn run(&self, args: &[&str]) {
        let out = Command::new("python3")
            .arg(Self::script())
            .args(args)
            .env("HESTIA_CLUSTER_DIR", self.dir.path())
            .env("HESTIA_GATEWAY_ADDR", &self.gateway)
            .env("HESTIA_BIN_DIR", &self.bin_dir)
            .env("HESTIA_PURGE_GRACE", "1s")
            .env(
                "HESTIA_AUTH",
                if self.auth { "enabled" } else { "disabled" },
            )
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run deploy/local/cluster");
        assert!(
            out.status.success(),
            "cluster {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn up() -> LocalCluster {
        Self::start(false, &[])
    }

    /// A cluster with authentication on.
    pub fn up_with_auth() -> LocalCluster {
        Self::start(true, &[])
    }

    /// A cluster with authentication on and the script's variables `env` (e.g.
    /// `HESTIA_BLOCK_RANGE`), which also apply to processes started again later.
    pub fn up_with_auth_env(env: &[(&str, &str)]) -> LocalCluster {
        Self::start(true, env)
    }

    /// The cluster's state: one directory per process, and the block store (`blocks/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The operator's (access key id, secret) from the credentials file the winning voter wrote.
    pub async fn operator_key(&self) -> (String, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 1..=3 {
                let path = self
                    .dir
                    .path()
                    .join(format!("control-plane-{i}/credentials"));
                if let Ok(k) = hestia_aws_client::file_credentials(&path, "hestia") {
                    return (k.access_key_id, k.secret_access_key);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no voter wrote the operator's credentials"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn start(auth: bool, env: &[(&str, &str)]) -> LocalCluster {
        // The binaries of every role sit next to the `hestia` binary cargo built for this test.
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_hestia"))
            .parent()
            .expect("target dir")
            .to_path_buf();
        for role in [
            "control-plane",
            "ingester",
            "distributor",
            "querier",
            "gateway",
            "compactor",
        ] {
            let bin = bin_dir.join(format!("hestia-{role}"));
            assert!(
                bin.exists(),
                "{} missing: build with `cargo test --workspace --no-run`",
                bin.display()
            );
        }
        // A test that failed while holding the lock stopped its cluster all the same.
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let c = LocalCluster {
            _serial: serial,
            dir: tempfile::tempdir().expect("tempdir"),
            gateway: super::free_addr().to_string(),
            bin_dir,
            auth,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        c.run(&["up"]);
        c
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.gateway)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for name in PROCESSES {
            let _ = Command::new("python3")
                .arg(Self::script())
                .args(["kill", name])
                .env("HESTIA_CLUSTER_DIR", self.dir.path())
                .env("HESTIA_GATEWAY_ADDR", &self.gateway)
                .env("HESTIA_BIN_DIR", &self.bin_dir)
                .output();
        }
    }
}

pub const PROCESSES: [&str; 16] = [
    "gateway",
    "compactor-1",
    "compactor-2",
    "querier-1",
    "querier-2",
    "distributor-1",
    "distributor-2",
    "ingester-a1",
    "ingester-a2",
    "ingester-b1",
    "ingester-b2",
    "ingester-c1",
    "ingester-c2",
    "control-plane-1",
    "control-plane-2",
    "control-plane-3",
];

/// Creates a workspace through the AMP API of a control-plane voter and waits until it is ACTIVE.
pub async fn create_workspace(client: &reqwest::Client) -> String {
    let r = client
        .post("http://127.0.0.12:8090/workspaces")
        .json(&json!({"alias": "local-cluster"}))
        .send()
        .await
        .expect("CreateWorkspace");
    assert_eq!(r.status(), 202, "CreateWorkspace");
    let v: serde_json::Value = r.json().await.expect("json");
    let id = v["workspaceId"].as_str().expect("workspaceId").to_string();
    wait_active(client, &id).await;
    id
}

/// Waits until workspace `id` is ACTIVE on a voter (30 s at most).
pub async fn wait_active(client: &reqwest::Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: serde_json::Value = client
            .get(format!("{CP_API}/workspaces/{id}"))
            .send()
            .await
            .expect("DescribeWorkspace")
            .json()
            .await
            .expect("json");
        if v["workspace"]["status"]["statusCode"] == "ACTIVE" {
            return;
        }
        assert!(Instant::now() < deadline, "workspace not ACTIVE: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
