//! What the data plane learns from the control plane about a workspace's blocks: its retention
//! in the workspace watch, and, once it is deleted and purged, a tenant deletion mark in the
//! block store, recorded in the audit log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hestia_config::{ControlPlaneConfig, FilesystemStorageConfig, StorageConfig};
use hestia_control_plane::state::{Command, WorkspaceConfiguration};
use hestia_control_plane::{BucketPurger, NoDataPlane, PurgeAll};
use hestia_model::{TenantId, WorkspaceId};
use hestia_proto::control::WorkspaceInfo;

const ACCOUNT: &str = "123456789012";

/// Waits up to 20 s for `f` to return `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_watched_and_a_purge_marks_the_tenant_for_the_compactor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ControlPlaneConfig {
        heartbeat_interval: Duration::from_millis(50),
        purge_grace: Duration::ZERO,
        ..ControlPlaneConfig::default()
    };
    let storage = StorageConfig {
        filesystem: FilesystemStorageConfig {
            dir: dir.path().join("blocks"),
        },
        ..StorageConfig::default()
    };
    let bucket = hestia_bucket::Bucket::open(&storage, dir.path()).unwrap();
    let purger = PurgeAll(vec![
        Arc::new(NoDataPlane),
        Arc::new(BucketPurger::new(bucket.clone())),
    ]);
    let running = hestia_control_plane::start(
        &cfg,
        &dir.path().join("cp"),
        "http://127.0.0.1:8080".to_string(),
        Arc::new(purger),
    )
    .await
    .unwrap();
    let cp = running.cp.clone();
    let id = format!("ws-{}", hestia_control_plane::api::uuid_v4());
    cp.write(Command::CreateWorkspace {
        id: id.clone(),
        account: ACCOUNT.to_string(),
        alias: None,
        tags: Default::default(),
        client_token: None,
        now_ms: chrono::Utc::now().timestamp_millis(),
        max_per_account: 10,
    })
    .await
    .unwrap();
    let tenant = TenantId::for_workspace(Some(ACCOUNT), &WorkspaceId::parse(&id).unwrap()).unwrap();

    let latest: Arc<parking_lot::Mutex<Vec<WorkspaceInfo>>> = Arc::default();
    let endpoints =
        hestia_proto::ControlPlaneEndpoints::new(&[format!("http://{}", running.grpc_addr)])
            .unwrap();
    let seen = latest.clone();
    let watch = tokio::spawn(async move {
        hestia_proto::follow_workspaces(&endpoints, |reply| *seen.lock() = reply.workspaces).await
    });
    let retention = |want: Option<u32>| {
        let found = latest
            .lock()
            .iter()
            .find(|w| w.tenant_id == tenant.as_str() && w.status == "ACTIVE")
            .map(|w| w.retention_period_in_days)
            .filter(|d| want.is_none_or(|w| w == *d));
        async move { found }
    };
    // AMP's default until the workspace configures one.
    assert_eq!(eventually("the workspace", || retention(None)).await, 150);
    cp.write(Command::UpdateConfiguration {
        id: id.clone(),
        configuration: WorkspaceConfiguration {
            retention_period_in_days: Some(30),
            ..WorkspaceConfiguration::default()
        },
    })
    .await
    .unwrap();
    eventually("the new retention", || retention(Some(30))).await;

    cp.write(Command::Delete {
        id: id.clone(),
        now_ms: chrono::Utc::now().timestamp_millis(),
    })
    .await
    .unwrap();
    let t = bucket.tenant(&tenant);
    let mark = eventually("the tenant deletion mark", || {
        let t = t.clone();
        async move { t.tenant_deletion_mark().await.unwrap() }
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    assert!((now - 60..=now).contains(&mark.deletion_time), "{mark:?}");
    let event = eventually("the audited purge", || {
        let (events, _) = cp.audit.range(0, i64::MAX, 1000, None).unwrap();
        let found = events
            .into_iter()
            .find(|e| e["eventName"] == "PurgeWorkspace");
        async move { found }
    })
    .await;
    assert_eq!(event["requestParameters"]["workspaceId"], id.as_str());
    assert_eq!(event["requestParameters"]["tenantId"], tenant.as_str());
    assert_eq!(event["recipientAccountId"], ACCOUNT);
    assert_eq!(event["userIdentity"]["type"], "AWSService");
    watch.abort();
    running.shutdown().await;
}
