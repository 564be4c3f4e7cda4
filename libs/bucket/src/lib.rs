//! The object store holding TSDB blocks, through the `object_store` crate: a local directory
//! (`[storage] backend = "filesystem"`) or any S3-compatible service (`"s3"`).
//!
//! Layout, one prefix per tenant as Mimir's:
//!
//! ```text
//! <tenant>/                                  a hestia_model::TenantId ([A-Za-z0-9_-]+)
//!   <block ULID>/
//!     chunks/000001, 000002, ...             chunk segments
//!     index                                  series and postings
//!     tombstones                             when the block has one
//!     meta.json                              written last: without it the block is partial
//!                                            and no reader looks at it
//!     deletion-mark.json                     {id, deletion_time, version}: the block is
//!                                            deleted after a delay
//!   markers/<block ULID>-deletion-mark.json  the same mark, so that marks are found by
//!                                            listing one small prefix
//!   markers/tenant-deletion-mark.json        {deletion_time}: the tenant's workspace was
//!                                            deleted; every block goes after a delay (tenant.rs)
//!   bucket-index.json.gz                     complete blocks and deletion marks (index.rs),
//!                                            so queriers never list the bucket
//! ```
//!
//! A block is uploaded files first and `meta.json` last; uploading it again rewrites the same
//! objects. It is deleted `meta.json` first (it turns partial), then its other files, its
//! deletion marks last.

mod block;
mod error;
mod index;
pub mod metrics;
mod tenant;

use std::path::Path as FsPath;
use std::sync::Arc;

use futures::TryStreamExt;
use hestia_aws_client::{AwsClientError, AwsCredentials, AwsEnv};
use hestia_config::{AddressingStyle, S3StorageConfig, StorageBackend, StorageConfig};
use hestia_model::TenantId;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

pub use block::{DeletionMark, DELETION_MARK_FILENAME, DELETION_MARK_VERSION, MARKERS_DIR};
pub use error::BucketError;
pub use index::{
    BucketIndex, IndexBlock, IndexDeletionMark, PartialBlock, PartialReason, UpdateReport,
    INDEX_FILENAME, INDEX_VERSION,
};
pub use tenant::{TenantDeletionMark, TENANT_DELETION_MARK_FILENAME};

pub type Result<T, E = BucketError> = std::result::Result<T, E>;

/// The whole bucket: every tenant's blocks.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
}

impl Bucket {
    /// The configured object store. The filesystem backend's directory (by default
    /// `<data_dir>/blocks`, see [`StorageConfig::filesystem_dir`]) is created if missing.
    pub fn open(cfg: &StorageConfig, data_dir: &FsPath) -> Result<Self> {
        Ok(Self::new(Self::open_store(cfg, data_dir)?))
    }

    /// The configured `object_store` client, for [`Bucket::new`] behind a wrapper.
    pub fn open_store(cfg: &StorageConfig, data_dir: &FsPath) -> Result<Arc<dyn ObjectStore>> {
        Ok(match cfg.backend {
            StorageBackend::Filesystem => {
                let dir = cfg.filesystem_dir(data_dir);
                std::fs::create_dir_all(&dir).map_err(|e| BucketError::io(&dir, e))?;
                // Deleting a block's last object removes its then-empty directories.
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| BucketError::Config(format!("{}: {e}", dir.display())))?
                    .with_automatic_cleanup(true);
                Arc::new(fs)
            }
            StorageBackend::S3 => Arc::new(
                s3_builder(&cfg.s3, &AwsEnv::from_process())?
                    .build()
                    .map_err(|e| BucketError::Config(e.to_string()))?,
            ),
        })
    }

    /// A bucket over any object store (tests wrap one to count requests).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// The view of one tenant's prefix.
    pub fn tenant(&self, tenant: &TenantId) -> TenantBucket {
        TenantBucket {
            store: Arc::clone(&self.store),
            root: Path::from(tenant.as_str()),
            tenant: tenant.clone(),
        }
    }

    /// Tenants with at least one object, sorted; top-level names that are not tenant ids
    /// are skipped.
    pub async fn tenants(&self) -> Result<Vec<TenantId>> {
        let listing = self.store.list_with_delimiter(None).await;
        record("list", &listing);
        let mut tenants: Vec<TenantId> = listing?
            .common_prefixes
            .iter()
            .filter_map(|p| TenantId::parse(p.as_ref()).ok())
            .collect();
        tenants.sort();
        Ok(tenants)
    }
}

/// One tenant's part of the bucket: every path is under `<tenant>/`.
#[derive(Debug, Clone)]
pub struct TenantBucket {
    store: Arc<dyn ObjectStore>,
    root: Path,
    tenant: TenantId,
}

impl TenantBucket {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// `<tenant>/<rel>`, with `rel` a relative object name (`01H.../chunks/000001`).
    fn path(&self, rel: &str) -> Result<Path> {
        let full = format!("{}/{rel}", self.root);
        Path::parse(&full).map_err(|e| BucketError::Corrupt {
            path: full,
            reason: format!("invalid object name: {e}"),
        })
    }

    /// Every object under the tenant's prefix (one listing, paged by the store).
    async fn list_all(&self) -> Result<Vec<object_store::ObjectMeta>> {
        let listing = self
            .store
            .list(Some(&self.root))
            .try_collect::<Vec<_>>()
            .await;
        record("list", &listing);
        Ok(listing?)
    }
}

/// Counts one object store request in [`metrics::OPERATIONS`].
fn record<T>(operation: &str, result: &std::result::Result<T, object_store::Error>) {
    let outcome = match result {
        Ok(_) => "success",
        Err(object_store::Error::NotFound { .. }) => "not_found",
        Err(_) => "error",
    };
    metrics::OPERATIONS
        .with_label_values(&[operation, outcome])
        .inc();
}

/// The S3 client of `cfg`: the standard AWS environment first, the explicit settings of `cfg`
/// over it, static credentials from the shared credentials file when neither has keys.
fn s3_builder(cfg: &S3StorageConfig, env: &AwsEnv) -> Result<AmazonS3Builder> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&cfg.bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: cfg.max_retries,
            retry_timeout: cfg.retry_timeout,
        })
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(cfg.allow_http)
                .with_timeout(cfg.request_timeout),
        )
        .with_virtual_hosted_style_request(cfg.addressing_style == AddressingStyle::Virtual);
    if !cfg.region.is_empty() {
        b = b.with_region(&cfg.region);
    }
    if !cfg.endpoint.is_empty() {
        b = b.with_endpoint(endpoint_url(cfg)?);
    }
    if let Some(c) = static_credentials(cfg, env)? {
        b = b
            .with_access_key_id(c.access_key_id)
            .with_secret_access_key(c.secret_access_key);
        if let Some(token) = c.session_token {
            b = b.with_token(token);
        }
    }
    Ok(b)
}

/// `cfg.endpoint`; with virtual-hosted addressing the bucket is put in front of the host, as
/// `object_store` expects the endpoint to name it.
fn endpoint_url(cfg: &S3StorageConfig) -> Result<String> {
    if cfg.addressing_style == AddressingStyle::Path {
        return Ok(cfg.endpoint.clone());
    }
    let (scheme, host) = cfg
        .endpoint
        .split_once("://")
        .ok_or_else(|| BucketError::Config(format!("endpoint {:?} is not a URL", cfg.endpoint)))?;
    Ok(format!("{scheme}://{}.{host}", cfg.bucket))
}

/// Keys from the configuration, else from the shared credentials file when the environment
/// has none; `None` leaves the rest of the chain (web identity, ECS task, EC2 instance
/// metadata) to `object_store`.
fn static_credentials(cfg: &S3StorageConfig, env: &AwsEnv) -> Result<Option<AwsCredentials>> {
    if !cfg.access_key_id.is_empty() {
        return Ok(Some(AwsCredentials {
            access_key_id: cfg.access_key_id.clone(),
            secret_access_key: cfg.secret_access_key.clone(),
            session_token: None,
        }));
    }
    if env.access_key_id.is_some() || env.secret_access_key.is_some() {
        return Ok(None);
    }
    let Some(path) = env.credentials_path().filter(|p| p.is_file()) else {
        return Ok(None);
    };
    let profile = env
        .profile
        .as_deref()
        .unwrap_or(hestia_aws_client::DEFAULT_PROFILE);
    match hestia_aws_client::file_credentials(&path, profile) {
        Ok(c) => Ok(Some(c)),
        Err(AwsClientError::NoCredentials { .. }) => Ok(None),
        Err(e) => Err(BucketError::Config(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(endpoint: &str, style: AddressingStyle) -> S3StorageConfig {
        S3StorageConfig {
            endpoint: endpoint.to_string(),
            bucket: "blocks".to_string(),
            addressing_style: style,
            ..S3StorageConfig::default()
        }
    }

    #[test]
    fn virtual_hosted_endpoints_name_the_bucket() {
        let path = s3("http://127.0.0.1:3900", AddressingStyle::Path);
        assert_eq!(endpoint_url(&path).unwrap(), "http://127.0.0.1:3900");
        let virt = s3("https://s3.example.com", AddressingStyle::Virtual);
        assert_eq!(
            endpoint_url(&virt).unwrap(),
            "https://blocks.s3.example.com"
        );
    }

    #[test]
    fn credentials_come_from_config_then_shared_file_unless_the_environment_has_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = GKfile\naws_secret_access_key = filesecret\n\
             [other]\naws_access_key_id = GKother\naws_secret_access_key = othersecret\n\
             aws_session_token = tok\n",
        )
        .unwrap();
        let env = AwsEnv {
            credentials_file: Some(file.clone()),
            ..AwsEnv::default()
        };
        let none = s3("", AddressingStyle::Path);
        let got = static_credentials(&none, &env).unwrap().unwrap();
        assert_eq!(got.access_key_id, "GKfile");

        let other = AwsEnv {
            profile: Some("other".to_string()),
            ..env.clone()
        };
        let got = static_credentials(&none, &other).unwrap().unwrap();
        assert_eq!(
            (got.access_key_id.as_str(), got.session_token.as_deref()),
            ("GKother", Some("tok"))
        );
        let missing = AwsEnv {
            profile: Some("absent".to_string()),
            ..env.clone()
        };
        assert!(static_credentials(&none, &missing).unwrap().is_none());

        let explicit = S3StorageConfig {
            access_key_id: "GKcfg".to_string(),
            secret_access_key: "cfgsecret".to_string(),
            ..none.clone()
        };
        let got = static_credentials(&explicit, &env).unwrap().unwrap();
        assert_eq!(got.access_key_id, "GKcfg");

        // object_store reads the environment's keys itself.
        let from_env = AwsEnv {
            access_key_id: Some("GKenv".to_string()),
            secret_access_key: Some("envsecret".to_string()),
            ..env.clone()
        };
        assert!(static_credentials(&none, &from_env).unwrap().is_none());

        std::fs::write(&file, "[default]\naws_access_key_id = GKhalf\n").unwrap();
        assert!(static_credentials(&none, &env).is_err());
    }
}
