//! Runs `amp_cli.py` (the real `aws amp` CLI and boto3) against an in-process control plane.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hestia_config::ControlPlaneConfig;

fn tools_missing() -> Option<String> {
    let aws = Command::new("aws").arg("--version").output();
    if !aws.is_ok_and(|o| o.status.success()) {
        return Some("the aws CLI is not installed (pip install awscli)".to_string());
    }
    let boto = Command::new("python3")
        .args(["-c", "import boto3"])
        .output();
    if !boto.is_ok_and(|o| o.status.success()) {
        return Some("boto3 is not installed (pip install boto3)".to_string());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_and_boto3_drive_the_workspace_api() {
    if let Some(reason) = tools_missing() {
        println!("SKIPPED aws_cli_and_boto3_drive_the_workspace_api: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = hestia_config::Config {
        control_plane: ControlPlaneConfig {
            heartbeat_interval: Duration::from_millis(50),
            // Deleted workspaces are purged at once, so the purge path runs too.
            purge_grace: Duration::ZERO,
            ..ControlPlaneConfig::default()
        },
        ..hestia_config::Config::default()
    };
    let key_file = dir.path().join("master.key");
    hestia_auth::secrets::MasterKey::load_or_create(&key_file).unwrap();
    cfg.auth.master_key_file = Some(key_file);
    let running = hestia_control_plane::start(
        &cfg.control_plane,
        dir.path(),
        "http://127.0.0.1:8080".to_string(),
        Arc::new(hestia_control_plane::NoDataPlane),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Authentication on, as a stand-alone control plane runs it; the first start's operator
    // key lands in <dir>/credentials, profile hestia.
    let auth =
        hestia_auth::layer::from_config(&cfg, Arc::new(running.cp.audit.clone()), None).unwrap();
    let (authenticator, master) = (auth.authenticator.unwrap(), auth.master.unwrap());
    let follower = hestia_control_plane::identity_api::follow_identities(
        running.cp.clone(),
        authenticator.clone(),
    );
    let endpoint = format!("http://{addr}");
    let created = hestia_control_plane::identity_api::bootstrap_identities(
        &running.cp,
        &master,
        dir.path(),
        &endpoint,
    )
    .await
    .unwrap()
    .expect("a first start creates the operator account");
    authenticator.update(&running.cp.sm.read(|s| s.identities.clone()));
    let app = running.router(Some(master), Some(authenticator)).layer(
        axum::middleware::from_fn_with_state(auth.layer, hestia_auth::layer::authenticate),
    );
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/amp_cli.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&endpoint)
        .env("AWS_SHARED_CREDENTIALS_FILE", &created.credentials_file)
        .env("AWS_CONFIG_FILE", &created.config_file)
        .env("AWS_PROFILE", "hestia")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .await
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "amp_cli.py failed");

    // Every call above is in the audit log, oldest first, pageable.
    let client = reqwest::Client::new();
    let page: serde_json::Value = client
        .get(format!("http://{addr}/admin/audit?maxResults=5"))
        .basic_auth(
            &created.access_key_id,
            Some(
                hestia_aws_client::file_credentials(&created.credentials_file, "hestia")
                    .unwrap()
                    .secret_access_key,
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["eventSource"], "aps.amazonaws.com");
    assert_eq!(events[0]["eventName"], "CreateWorkspace");
    assert!(page["nextToken"].is_string());
    follower.abort();
    running.shutdown().await;
}
