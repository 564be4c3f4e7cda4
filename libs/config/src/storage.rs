//! `[storage]`: the object store holding TSDB blocks (`hestia-bucket`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A local directory (`hestia all`, tests).
    #[default]
    Filesystem,
    /// Any S3-compatible service: AWS S3, MinIO, Ceph RGW, Garage.
    S3,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub filesystem: FilesystemStorageConfig,
    pub s3: S3StorageConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesystemStorageConfig {
    /// Root directory of the bucket; empty means `<server.data_dir>/blocks`
    /// ([`StorageConfig::filesystem_dir`]).
    pub dir: PathBuf,
}

/// How bucket names go into request URLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressingStyle {
    /// `<endpoint>/<bucket>/<key>`: what MinIO, Ceph and Garage expect.
    #[default]
    Path,
    /// `<bucket>.<endpoint host>/<key>`: AWS S3's preferred form.
    Virtual,
}

/// An S3-compatible bucket. Unset fields fall back to the standard AWS environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then to the shared
/// credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile
/// `AWS_PROFILE` or `default`), then to web identity, ECS task and EC2 instance credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3StorageConfig {
    /// Base URL of the service (`http://127.0.0.1:3900`); empty means AWS S3 in `region`.
    pub endpoint: String,
    pub bucket: String,
    /// Empty means the environment's region, else `us-east-1`.
    pub region: String,
    /// Static credentials; both or neither.
    pub access_key_id: String,
    pub secret_access_key: String,
    pub addressing_style: AddressingStyle,
    /// Allow a plain `http://` endpoint (only this setting does, not `AWS_ALLOW_HTTP`).
    pub allow_http: bool,
    /// Retries of one request that failed with a transient error (connection refused or
    /// reset, a timed-out read, 5xx, 429), with exponential backoff from 100 ms up to 15 s...
    pub max_retries: usize,
    /// ...and no retry starts after this long since the first attempt.
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// Deadline of one HTTP request (reading a 512 MiB chunk segment included).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for S3StorageConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            bucket: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            addressing_style: AddressingStyle::Path,
            allow_http: false,
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            request_timeout: Duration::from_secs(300),
        }
    }
}

impl StorageConfig {
    /// The filesystem backend's root: `filesystem.dir`, or `<data_dir>/blocks` when empty.
    pub fn filesystem_dir(&self, data_dir: &Path) -> PathBuf {
        if self.filesystem.dir.as_os_str().is_empty() {
            data_dir.join("blocks")
        } else {
            self.filesystem.dir.clone()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.backend == StorageBackend::S3 {
            self.s3.validate()?;
        }
        Ok(())
    }
}

impl S3StorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("storage.s3.{m}")));
        if self.bucket.is_empty() {
            return bad("bucket must be set when storage.backend = \"s3\"");
        }
        if self.access_key_id.is_empty() != self.secret_access_key.is_empty() {
            return bad("access_key_id and secret_access_key must be set together");
        }
        if self.endpoint.starts_with("http://") {
            if !self.allow_http {
                return bad("endpoint is plain http:// but allow_http = false");
            }
        } else if !self.endpoint.is_empty() && !self.endpoint.starts_with("https://") {
            return bad("endpoint must be an http:// or https:// URL");
        }
        if self.retry_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad("retry_timeout and request_timeout must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(extra: &str) -> StorageConfig {
        toml::from_str(&format!(
            "backend = \"s3\"\n[s3]\nbucket = \"blocks\"\n{extra}"
        ))
        .expect("storage section parses")
    }

    #[test]
    fn filesystem_dir_defaults_under_the_data_dir() {
        let cfg = StorageConfig::default();
        assert_eq!(cfg.backend, StorageBackend::Filesystem);
        assert_eq!(
            cfg.filesystem_dir(Path::new("/var/lib/hestia")),
            Path::new("/var/lib/hestia/blocks")
        );
        let cfg: StorageConfig = toml::from_str("[filesystem]\ndir = \"/srv/blocks\"").unwrap();
        assert_eq!(
            cfg.filesystem_dir(Path::new("/x")),
            Path::new("/srv/blocks")
        );
    }

    #[test]
    fn s3_is_validated() {
        s3("").validate().unwrap();
        s3("endpoint = \"http://127.0.0.1:3900\"\nallow_http = true\naddressing_style = \"virtual\"")
            .validate()
            .unwrap();
        for bad in [
            "endpoint = \"http://127.0.0.1:3900\"",
            "endpoint = \"127.0.0.1:3900\"",
            "access_key_id = \"GK1\"",
            "secret_access_key = \"s\"",
            "retry_timeout = \"0s\"",
        ] {
            assert!(s3(bad).validate().is_err(), "{bad}");
        }
        let no_bucket: StorageConfig = toml::from_str("backend = \"s3\"").unwrap();
        assert!(no_bucket.validate().is_err());
        // An unused S3 section is not checked.
        let fs: StorageConfig = toml::from_str("[s3]\nendpoint = \"x\"").unwrap();
        fs.validate().unwrap();
        assert!(toml::from_str::<StorageConfig>("backend = \"gcs\"").is_err());
        assert!(toml::from_str::<StorageConfig>("[s3]\nforce_path_style = true").is_err());
    }
}
