//! The `hestia-ingester` binary refuses configurations it cannot run with, before listening.

use std::process::Command;

#[test]
fn refuses_an_in_memory_ring() {
    let cfg = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ingester-memory-ring.toml");
    std::fs::write(&cfg, "[ring]\nkv = \"memory\"\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_hestia-ingester"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run hestia-ingester");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a stand-alone ingester needs ring.kv = \"controlplane\""),
        "{stderr}"
    );
}

#[test]
fn refuses_a_ring_without_control_plane_endpoints() {
    let cfg = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ingester-no-endpoints.toml");
    std::fs::write(&cfg, "[ring]\nkv = \"controlplane\"\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_hestia-ingester"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run hestia-ingester");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kv_endpoints"), "{stderr}");
}
