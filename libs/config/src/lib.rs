//! Hestia's configuration. One TOML file (see `deploy/hestia.example.toml`) with a section per
//! role; every field has a default, so an empty file is a valid single-process configuration.
//! Command-line flags override the file; `Config::validate` runs after both are applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hestia_limits::Limits;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub ingester: IngesterConfig,
    pub distributor: DistributorConfig,
    pub querier: QuerierConfig,
    pub gateway: GatewayConfig,
    pub limits: Limits,
    pub telemetry: TelemetryConfig,
}

/// The public HTTP endpoint (gateway in a cluster, everything in `hestia all`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Directory for all local state (the ingester's RocksDB lives in `<data_dir>/ingester`).
    pub data_dir: PathBuf,
    /// How long in-flight requests may take to finish on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngesterConfig {
    /// gRPC address. In `hestia all` unset means an ephemeral loopback port.
    pub grpc_listen: Option<SocketAddr>,
    /// How often open chunks are persisted and the WAL truncated behind them.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// RocksDB block cache for persisted chunks and series.
    pub block_cache_bytes: usize,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            grpc_listen: None,
            checkpoint_interval: Duration::from_secs(60),
            block_cache_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// Largest compressed remote-write body accepted (AMP: 1 MB); larger → 413.
    pub max_request_body_bytes: usize,
    /// Largest decompressed body; a snappy header declaring more is refused before allocating.
    pub max_decompressed_bytes: usize,
    /// Ingester gRPC endpoints (`http://host:port`). Filled in automatically by `hestia all`.
    pub ingesters: Vec<String>,
    /// Deadline of one Push to an ingester.
    #[serde(with = "humantime_serde")]
    pub push_timeout: Duration,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            max_request_body_bytes: 1 << 20,
            max_decompressed_bytes: 32 << 20,
            ingesters: Vec::new(),
            push_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierConfig {
    /// Ingester gRPC endpoints. Filled in automatically by `hestia all`.
    pub ingesters: Vec<String>,
    /// How far back an instant selector looks for a sample.
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
    /// Per-query deadline (AMP: 2 minutes).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most samples a query may hold in memory at once.
    pub max_samples: usize,
    /// Longest time range one query may read (AMP: 32 days, not adjustable).
    #[serde(with = "humantime_serde")]
    pub max_query_length: Duration,
    /// Most chunks (of up to 120 samples) one query may fetch (AMP: 2,000,000).
    pub max_fetched_chunks_per_query: usize,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            ingesters: Vec::new(),
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_query_length: Duration::from_secs(32 * 24 * 3600),
            max_fetched_chunks_per_query: 2_000_000,
        }
    }
}

/// Upstreams of a stand-alone gateway (unused by `hestia all`, which routes in-process).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub distributor_url: Option<String>,
    pub querier_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// A tracing-subscriber filter, e.g. `info` or `hestia_ingester=debug,info`. `RUST_LOG` wins.
    pub log_level: String,
    /// OTLP/HTTP traces endpoint (e.g. `http://127.0.0.1:4318/v1/traces`); unset = no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            otlp_endpoint: None,
            service_name: "hestia".to_string(),
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.distributor.max_request_body_bytes == 0 {
            return bad("distributor.max_request_body_bytes must be positive");
        }
        if self.distributor.max_decompressed_bytes < self.distributor.max_request_body_bytes {
            return bad(
                "distributor.max_decompressed_bytes must be at least max_request_body_bytes",
            );
        }
        if self.distributor.push_timeout.is_zero() || self.querier.timeout.is_zero() {
            return bad("distributor.push_timeout and querier.timeout must be positive");
        }
        if self.querier.lookback_delta.is_zero() {
            return bad("querier.lookback_delta must be positive");
        }
        if self.querier.max_samples == 0 {
            return bad("querier.max_samples must be positive");
        }
        if self.querier.max_query_length.is_zero() || self.querier.max_fetched_chunks_per_query == 0
        {
            return bad("querier.max_query_length and querier.max_fetched_chunks_per_query must be positive");
        }
        if self.ingester.checkpoint_interval < Duration::from_secs(1) {
            return bad("ingester.checkpoint_interval must be at least 1s");
        }
        if let Some(e) = &self.telemetry.otlp_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return bad("telemetry.otlp_endpoint must be an http:// or https:// URL");
            }
        }
        self.limits.validate().map_err(ConfigError::Invalid)
    }
}

/// Renders a configuration as TOML (for `hestia config`).
pub fn to_toml(cfg: &Config) -> Result<String, ConfigError> {
    toml::to_string_pretty(cfg).map_err(|e| ConfigError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_and_matches_defaults_where_documented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/hestia.example.toml");
        let cfg = Config::from_file(&path).expect("example config");
        assert_eq!(cfg.server.listen, ServerConfig::default().listen);
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.distributor.max_request_body_bytes, 1 << 20);
    }

    #[test]
    fn empty_file_is_the_default() {
        let cfg: Config = toml::from_str("").unwrap();
        assert_eq!(cfg, Config::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("[server]\nlisten_addr = \"x\"").is_err());
        let cfg: Config = toml::from_str("[distributor]\nmax_request_body_bytes = 0").unwrap();
        assert!(cfg.validate().is_err());
        let cfg: Config = toml::from_str("[limits]\nreject_old_samples_max_age = \"0s\"").unwrap();
        assert!(cfg.validate().is_err());
    }
}
