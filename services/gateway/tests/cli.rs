//! The `hestia-gateway` binary refuses upstreams it cannot proxy to, and authentication without
//! a master key, before listening.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hestia-gateway"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("HESTIA_MASTER_KEY")
        .output()
        .expect("run hestia-gateway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_upstreams_that_are_not_http_urls() {
    let (ok, stderr) = run(&[
        "--distributor-url",
        "https://127.0.0.1:8081",
        "--querier-url",
        "http://127.0.0.1:8082",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "distributor upstream \"https://127.0.0.1:8081\" must be an http://host:port URL"
        ),
        "{stderr}"
    );
    let (ok, stderr) = run(&[
        "--distributor-url",
        "http://127.0.0.1:8081",
        "--querier-url",
        "127.0.0.1",
    ]);
    assert!(!ok);
    assert!(stderr.contains("querier upstream"), "{stderr}");
}

#[test]
fn refuses_authentication_without_a_master_key() {
    let (ok, stderr) = run(&[
        "--distributor-url",
        "http://127.0.0.1:8081",
        "--querier-url",
        "http://127.0.0.1:8082",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("no key is configured: set auth.master_key_file or HESTIA_MASTER_KEY"),
        "{stderr}"
    );
}
