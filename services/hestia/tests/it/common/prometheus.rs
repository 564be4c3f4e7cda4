//! Debian's Prometheus 2.42 as a reference: a child process with the remote-write receiver on,
//! killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn binary() -> String {
    std::env::var("HESTIA_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_string())
}

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML) and the remote-write receiver, and waits until ready.
    pub async fn start(dir: &Path, config: &str, extra_args: &[&str]) -> Self {
        let addr = super::free_addr();
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let cfg_path = dir.join("prometheus.yml");
        std::fs::write(&cfg_path, config).expect("write prometheus.yml");
        let child = Command::new(binary())
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Debian's prometheus must be installed (make test installs it)");
        let p = Self { child, addr };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("http://{addr}/-/ready")).send().await {
                if r.status() == 200 {
                    return p;
                }
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends one snappy-compressed remote-write request to the receiver; panics unless 2xx.
    pub async fn remote_write(&self, client: &reqwest::Client, body: Vec<u8>) {
        let r = client
            .post(format!("http://{}/api/v1/write", self.addr))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .expect("prometheus write");
        assert!(r.status().is_success(), "prometheus write: {}", r.status());
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs Debian's `promtool` with `args`; its standard output, once it succeeded.
pub fn promtool<I, S>(args: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian's prometheus package)");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `promtool tsdb create-blocks-from openmetrics FILE OUT_DIR`: Prometheus' own blocks of the
/// OpenMetrics text in `file`, written under `out_dir`.
pub fn create_blocks_from_openmetrics(file: &Path, out_dir: &Path) {
    promtool([
        "tsdb".as_ref(),
        "create-blocks-from".as_ref(),
        "openmetrics".as_ref(),
        file.as_os_str(),
        out_dir.as_os_str(),
    ]);
}
