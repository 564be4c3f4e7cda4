//! hestia-bucket against its two backends: a local directory, and s3s-fs — a real
//! S3-compatible server the tests start themselves (`make deps` installs it; the S3 tests
//! fail without it).

mod cases;
mod harness;

use std::time::{Duration, Instant};

use hestia_bucket::{Bucket, BucketError};
use hestia_config::{S3StorageConfig, StorageBackend, StorageConfig};
use hestia_model::TenantId;
use ulid::Ulid;

use harness::Backend;

/// Each case of `cases.rs` once per backend.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod filesystem {
            $(#[tokio::test]
            async fn $case() {
                crate::cases::$case(crate::harness::Backend::Filesystem).await
            })*
        }
        mod s3 {
            $(#[tokio::test]
            async fn $case() {
                crate::cases::$case(crate::harness::Backend::S3).await
            })*
        }
    };
}

suite!(
    upload_then_read_meta_sizes_and_ranges,
    half_uploaded_block_is_invisible,
    reupload_is_idempotent,
    upload_refuses_another_tenants_block,
    deletion_marks_and_deletion_show_in_the_index,
    index_update_reads_only_new_metas_and_marks,
    tenants_are_isolated_even_when_one_id_prefixes_another,
    download_writes_every_file_meta_last_and_skips_the_mark,
    tenant_deletion_mark_is_written_once_and_removed,
);

fn tenant() -> TenantId {
    TenantId::parse("123456789012_ws-abc").expect("tenant id")
}

#[tokio::test]
async fn filesystem_bucket_defaults_to_blocks_under_the_data_dir() {
    let fx = harness::Fixture::new(Backend::Filesystem).await;
    let block = fx.block_dir(&tenant(), &[10]);
    fx.bucket()
        .tenant(&tenant())
        .upload_block(&block.dir)
        .await
        .expect("upload");
    let stored = fx
        .data_dir
        .path()
        .join("blocks")
        .join(tenant().as_str())
        .join(block.id().to_string())
        .join("meta.json");
    assert!(stored.is_file(), "{}", stored.display());
    assert_eq!(
        fx.bucket().tenants().await.expect("tenants"),
        vec![tenant()]
    );
}

#[tokio::test]
async fn unreachable_s3_is_retried_then_unavailable() {
    let cfg = StorageConfig {
        backend: StorageBackend::S3,
        s3: S3StorageConfig {
            endpoint: format!("http://127.0.0.1:{}", harness::free_port()),
            bucket: "hestia".to_string(),
            region: "us-east-1".to_string(),
            access_key_id: "GKnobody".to_string(),
            secret_access_key: "nobody-secret-00000000".to_string(),
            allow_http: true,
            max_retries: 2,
            ..S3StorageConfig::default()
        },
        ..StorageConfig::default()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let bucket = Bucket::open(&cfg, dir.path())
        .expect("open")
        .tenant(&tenant());
    let started = Instant::now();
    let err = bucket
        .read_meta(Ulid::new())
        .await
        .expect_err("nothing listens");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains("after 2 retries"), "{err}");
    // Backoffs of 100 ms, then 100–200 ms (jitter).
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn wrong_s3_secret_is_denied() {
    let mut cfg = StorageConfig {
        backend: StorageBackend::S3,
        ..StorageConfig::default()
    };
    cfg.s3 = harness::s3_server().await.config();
    cfg.s3.secret_access_key = "not-the-secret-0000000000000000".to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let bucket = Bucket::open(&cfg, dir.path())
        .expect("open")
        .tenant(&tenant());
    match bucket.read_meta(Ulid::new()).await {
        Err(BucketError::Denied { .. }) => {}
        other => panic!("wrong secret: {other:?}"),
    }
}
