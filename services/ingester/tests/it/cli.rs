//! The `hestia-ingester` binary refuses configurations it cannot run with, before listening.

use std::process::Command;

/// Runs the binary with `config` as its file; (exit success, stderr).
fn run_with(name: &str, config: &str) -> (bool, String) {
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ingester-{name}.toml"));
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_hestia-ingester"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run hestia-ingester");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_an_in_memory_ring() {
    let (ok, stderr) = run_with("memory-ring", "[ring]\nkv = \"memory\"\n");
    assert!(!ok);
    assert!(
        stderr.contains("a stand-alone ingester needs ring.kv = \"controlplane\""),
        "{stderr}"
    );
}

#[test]
fn refuses_a_ring_without_control_plane_endpoints() {
    let (ok, stderr) = run_with("no-endpoints", "[ring]\nkv = \"controlplane\"\n");
    assert!(!ok);
    assert!(stderr.contains("kv_endpoints"), "{stderr}");
}
