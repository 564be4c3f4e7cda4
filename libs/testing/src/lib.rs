//! Helpers shared by the integration tests of several crates.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The kernel's ephemeral port range, from which outgoing connections take their local port.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// A loopback port nothing listens on, chosen outside the ephemeral range.
///
/// A port from `bind(":0")` is an ephemeral one: once its server is killed, any client's outgoing
/// connection may take it as its local port and the restarted server fails to bind. Ports below
/// (or above) the ephemeral range are never handed out that way. Each process starts at an offset
/// of its own so that test binaries running side by side rarely probe the same ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = ephemeral_range();
    let (first, last) = if lo > 12_000 {
        (10_000u32, u32::from(lo) - 1)
    } else {
        (u32::from(hi) + 1, 65_535)
    };
    let span = last - first + 1;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + (start + n) % span;
        let port = u16::try_from(port).expect("port range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {first}..={last}");
}

/// `127.0.0.1:<free_port()>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A real S3-compatible server for tests: s3s-fs (`make deps` installs it) serving `dir` on a
/// fixed loopback port, with one bucket. Killed when dropped; start it again on the same port and
/// directory to model an object store that was down and came back.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    pub const ACCESS_KEY: &'static str = "AKIDHESTIATEST";
    pub const SECRET_KEY: &'static str = "hestia-test-secret";
    pub const REGION: &'static str = "us-east-1";

    /// Starts s3s-fs on `port` over `dir` with the empty bucket `bucket` (kept if it exists) and
    /// waits until it accepts connections.
    pub fn start(port: u16, dir: &Path, bucket: &str) -> Self {
        std::fs::create_dir_all(dir.join(bucket)).expect("create the bucket directory");
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                Self::ACCESS_KEY,
                "--secret-key",
                Self::SECRET_KEY,
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs is installed (make deps)");
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$S3S_FS`, else `s3s-fs` from `~/.cargo/bin` or the PATH.
fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return p.into();
    }
    let cargo = Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cargo/bin/s3s-fs");
    if cargo.exists() {
        cargo
    } else {
        "s3s-fs".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_distinct() {
        let (lo, hi) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for p in &ports {
            assert!(*p < lo || *p > hi, "{p} is ephemeral ({lo}-{hi})");
            assert!(TcpListener::bind(("127.0.0.1", *p)).is_ok());
        }
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }
}
