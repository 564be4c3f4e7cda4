//! Hestia's configuration. One TOML file (see `deploy/hestia.example.toml`) with a section per
//! role; every field has a default, so an empty file is a valid single-process configuration.
//! Command-line flags override the file; `Config::validate` runs after both are applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use blocks::BlocksConfig;
pub use compactor::{CompactorConfig, CompactorRingConfig};
pub use hestia_ha::HaTrackerConfig;
pub use hestia_limits::Limits;
pub use hestia_ring::{KvBackend, RingConfig};
pub use storage::{
    AddressingStyle, FilesystemStorageConfig, S3StorageConfig, StorageBackend, StorageConfig,
};

mod blocks;
mod compactor;
mod storage;

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
    /// Per-workspace limits that differ from `[limits]`.
    pub overrides: OverridesConfig,
    pub telemetry: TelemetryConfig,
    pub control_plane: ControlPlaneConfig,
    /// The ingester ring, shared by ingesters (members) and distributors/queriers (readers).
    pub ring: RingConfig,
    /// Client authentication (SigV4, tokens, Basic) on the public endpoints.
    pub auth: AuthConfig,
    /// The object store holding TSDB blocks.
    pub storage: StorageConfig,
    /// Cutting, shipping and indexing of blocks.
    pub blocks: BlocksConfig,
    /// Merging, retention and deletion of blocks.
    pub compactor: CompactorConfig,
}

/// Client authentication. Every public request is authenticated and authorized unless
/// `enabled = false` (`--auth=disabled`), in which case it acts as `control_plane.account_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub enabled: bool,
    /// The 32-byte master key (hex or base64, mode 0600) sealing stored secrets and signing
    /// bearer tokens; every node of a cluster needs the same one. Unset: `$HESTIA_MASTER_KEY`,
    /// else (`hestia all` only) `<data_dir>/master.key`, created on first start.
    pub master_key_file: Option<PathBuf>,
    /// How far a SigV4 request's time may be from the server's clock.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Lifetime of OAuth2 client-credentials tokens.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Largest request body buffered to check a SigV4 payload hash.
    pub max_body_bytes: usize,
    /// Accept `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the body is then not signed).
    pub allow_unsigned_payload: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            master_key_file: None,
            max_clock_skew: Duration::from_secs(300),
            token_ttl: Duration::from_secs(3600),
            max_body_bytes: 64 << 20,
            allow_unsigned_payload: false,
        }
    }
}

/// The environment variable holding the master key when no file is configured.
pub const MASTER_KEY_ENV: &str = "HESTIA_MASTER_KEY";

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
    /// HTTP address of `hestia-ingester` (`/metrics`, `/ready`); `hestia all` serves these on
    /// `server.listen`.
    pub http_listen: SocketAddr,
    /// gRPC address. Unset: 127.0.0.1:9095 for `hestia-ingester`, an ephemeral loopback port in
    /// `hestia all`.
    pub grpc_listen: Option<SocketAddr>,
    /// How often open chunks are persisted and the WAL truncated behind them.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// RocksDB block cache for persisted chunks and series.
    pub block_cache_bytes: usize,
    /// This ingester's ring id, unique and stable across restarts [default: `ingester-<port>`].
    pub instance_id: Option<String>,
    /// Availability zone; replicas of a series go to distinct zones.
    pub zone: String,
    /// Address distributors and queriers dial [default: the bound gRPC address].
    pub advertise_addr: Option<String>,
    /// Leave the ring on a graceful shutdown. Off by default: the instance keeps its tokens and
    /// its data on disk, and serves the same series again after a restart.
    pub unregister_on_shutdown: bool,
    /// Cap on a workspace's active series on this ingester, whatever the global limit gives
    /// (0: none; the "local limit" of the series-limit message).
    pub max_local_series_per_user: usize,
    /// The same per metric name.
    pub max_local_series_per_metric: usize,
    /// A series with no sample for this long leaves memory at the next checkpoint (its data
    /// stays queryable from disk; a new sample brings it back). At least 5 minutes (the active
    /// series window); "0s" keeps every series in memory.
    #[serde(with = "humantime_serde")]
    pub series_idle_timeout: Duration,
}

/// The runtime-reloaded overrides file (`hestia_limits::Overrides`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverridesConfig {
    /// TOML with `[overrides."<account>_<workspace>"]` tables; unset: every workspace gets
    /// `[limits]`.
    pub file: Option<PathBuf>,
    /// How often the file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_period: Duration,
}

impl Default for OverridesConfig {
    fn default() -> Self {
        Self {
            file: None,
            reload_period: Duration::from_secs(10),
        }
    }
}

impl OverridesConfig {
    /// The overrides of every workspace on top of `defaults`; a configured file must load.
    pub fn load(&self, defaults: &Limits) -> Result<hestia_limits::Overrides, ConfigError> {
        match &self.file {
            Some(path) => hestia_limits::Overrides::from_file(defaults.clone(), path)
                .map_err(|e| ConfigError::Invalid(format!("overrides.file: {e}"))),
            None => Ok(hestia_limits::Overrides::fixed(defaults.clone())),
        }
    }
}

impl Default for IngesterConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9094)),
            grpc_listen: None,
            checkpoint_interval: Duration::from_secs(60),
            block_cache_bytes: 256 << 20,
            instance_id: None,
            zone: String::new(),
            advertise_addr: None,
            unregister_on_shutdown: false,
            max_local_series_per_user: 0,
            max_local_series_per_metric: 0,
            series_idle_timeout: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistributorConfig {
    /// HTTP address of `hestia-distributor` (remote write, `/metrics`, `/ready`); `hestia all`
    /// serves the distributor on `server.listen`.
    pub http_listen: SocketAddr,
    /// Largest compressed remote-write body accepted (AMP: 1 MB); larger → 413.
    pub max_request_body_bytes: usize,
    /// Largest decompressed body; a snappy header declaring more is refused before allocating.
    pub max_decompressed_bytes: usize,
    /// Deadline of one Push to an ingester.
    #[serde(with = "humantime_serde")]
    pub push_timeout: Duration,
    /// HA Prometheus pairs: timing of the replica elections.
    pub ha_tracker: HaTrackerConfig,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            max_request_body_bytes: 1 << 20,
            max_decompressed_bytes: 32 << 20,
            push_timeout: Duration::from_secs(10),
            ha_tracker: HaTrackerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerierConfig {
    /// HTTP address of `hestia-querier` (the Prometheus query API, `/metrics`, `/ready`);
    /// `hestia all` serves the querier on `server.listen`.
    pub http_listen: SocketAddr,
    /// Zone whose ingesters are asked first (the querier's own zone).
    pub preferred_zone: Option<String>,
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
    /// Ingesters are asked only when a query reaches into the last `query_ingesters_within`
    /// (Mimir: 13 h); 0s asks them for every query.
    #[serde(with = "humantime_serde")]
    pub query_ingesters_within: Duration,
    /// Blocks in the object store are read only when a query starts before now minus
    /// `query_store_after` (Mimir: 12 h); 0s reads them for every query.
    #[serde(with = "humantime_serde")]
    pub query_store_after: Duration,
    /// Memory for postings, series entries and chunks fetched from blocks (least recently used
    /// evicted first).
    pub block_cache_bytes: usize,
    /// Directory for block index headers (TOC, symbols, postings offset table) kept between
    /// queries and restarts; empty = `<server.data_dir>/querier/index-headers`.
    pub index_header_dir: PathBuf,
}

impl Default for QuerierConfig {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            preferred_zone: None,
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_query_length: Duration::from_secs(32 * 24 * 3600),
            max_fetched_chunks_per_query: 2_000_000,
            query_ingesters_within: Duration::from_secs(13 * 3600),
            query_store_after: Duration::from_secs(12 * 3600),
            block_cache_bytes: 256 << 20,
            index_header_dir: PathBuf::new(),
        }
    }
}

/// Upstreams of a stand-alone gateway (unused by `hestia all`, which routes in-process).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Distributor base URLs (`http://host:port`), used round-robin with failover.
    pub distributor_urls: Vec<String>,
    /// Querier base URLs.
    pub querier_urls: Vec<String>,
    /// Control-plane gRPC endpoints (`http://host:port`) the gateway learns workspaces from;
    /// empty: dev mode, every well-formed workspace id is accepted as its own tenant.
    pub control_plane_endpoints: Vec<String>,
    /// Dev mode even with a control plane (in `hestia all`: `--dev-workspaces`): every
    /// well-formed workspace id is accepted as its own tenant, without the workspace API.
    pub dev_workspaces: bool,
}

/// The control plane: a Raft group holding workspaces and their limit overrides, and the AMP
/// workspace API. `hestia all` runs a single voter; a cluster runs three `hestia-control-plane`s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// This voter's Raft node id (unique and stable across restarts, > 0).
    pub node_id: u64,
    /// gRPC address for Raft RPCs and the internal API. In `hestia all` unset means an ephemeral
    /// loopback port.
    pub grpc_listen: Option<SocketAddr>,
    /// AMP workspace API address of a stand-alone control plane (`hestia all` serves it on
    /// `server.listen`).
    pub api_listen: SocketAddr,
    /// The operator account the first start creates (with an admin user and access key); with
    /// `auth.enabled = false` every call acts as this 12-digit account.
    pub account_id: String,
    pub region: String,
    /// Base of `prometheusEndpoint` (`<public_url>/workspaces/<id>/`); unset = `http://<server.listen>`.
    pub public_url: Option<String>,
    /// Initialise a new cluster with these voters (`id=host:port` gRPC addresses) when the
    /// log is empty. Empty in `hestia all` = a single voter of itself.
    pub bootstrap: Vec<String>,
    /// Raft heartbeat; elections start after 3–6 heartbeats without a leader.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A snapshot is built (and the log before it purged) every this many applied entries.
    pub snapshot_every_entries: u64,
    /// How long a deleted workspace's data is kept before it is purged from the data plane
    /// (AMP: "permanently deleted within one month").
    #[serde(with = "humantime_serde")]
    pub purge_grace: Duration,
    /// AMP quota: workspaces per account.
    pub max_workspaces_per_account: usize,
    /// AMP quota: workspace-management calls per second and burst, per account.
    pub api_rate: f64,
    pub api_burst: u32,
}

impl Default for ControlPlaneConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            grpc_listen: None,
            api_listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            account_id: "000000000000".to_string(),
            region: "us-east-1".to_string(),
            public_url: None,
            bootstrap: Vec::new(),
            heartbeat_interval: Duration::from_millis(250),
            snapshot_every_entries: 1000,
            purge_grace: Duration::from_secs(30 * 24 * 3600),
            max_workspaces_per_account: 10,
            api_rate: 5.0,
            api_burst: 5,
        }
    }
}

impl ControlPlaneConfig {
    /// The bootstrap voters as `(node id, gRPC address)`.
    pub fn bootstrap_voters(&self) -> Result<Vec<(u64, String)>, ConfigError> {
        self.bootstrap
            .iter()
            .map(|v| {
                let (id, addr) = v.split_once('=').ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "control_plane.bootstrap entry {v:?} is not id=host:port"
                    ))
                })?;
                let id: u64 = id.trim().parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "control_plane.bootstrap entry {v:?}: bad node id"
                    ))
                })?;
                Ok((id, addr.trim().to_string()))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("control_plane.{m}")));
        if self.node_id == 0 {
            return bad("node_id must be positive");
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return bad("account_id must be 12 digits");
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("region must be non-empty lowercase letters, digits and dashes");
        }
        if self.heartbeat_interval < Duration::from_millis(10) {
            return bad("heartbeat_interval must be at least 10ms");
        }
        if self.snapshot_every_entries == 0 {
            return bad("snapshot_every_entries must be positive");
        }
        if self.max_workspaces_per_account == 0 {
            return bad("max_workspaces_per_account must be positive");
        }
        if self.api_rate.is_nan() || self.api_rate <= 0.0 || self.api_burst == 0 {
            return bad("api_rate and api_burst must be positive");
        }
        let voters = self.bootstrap_voters()?;
        if !voters.is_empty() && !voters.iter().any(|(id, _)| *id == self.node_id) {
            return bad("bootstrap must list this node's node_id");
        }
        Ok(())
    }
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
        if self.overrides.reload_period.is_zero() {
            return bad("overrides.reload_period must be positive");
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
        let idle = self.ingester.series_idle_timeout;
        if !idle.is_zero() && idle < Duration::from_secs(300) {
            return bad("ingester.series_idle_timeout must be 0s or at least 5m");
        }
        if self.ingester.checkpoint_interval < Duration::from_secs(1) {
            return bad("ingester.checkpoint_interval must be at least 1s");
        }
        if let Some(e) = &self.telemetry.otlp_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return bad("telemetry.otlp_endpoint must be an http:// or https:// URL");
            }
        }
        if self.auth.max_clock_skew.is_zero() || self.auth.token_ttl.is_zero() {
            return bad("auth.max_clock_skew and auth.token_ttl must be positive");
        }
        if self.auth.max_body_bytes < self.distributor.max_request_body_bytes {
            return bad("auth.max_body_bytes must be at least distributor.max_request_body_bytes");
        }
        self.control_plane.validate()?;
        self.storage.validate()?;
        self.blocks.validate()?;
        self.compactor.validate(
            self.blocks.block_range,
            self.blocks.bucket_index_update_interval,
            &self.server.data_dir,
        )?;
        // Every sample must be readable from ingesters or from visible blocks at any time.
        let (within, after) = (
            self.querier.query_ingesters_within,
            self.querier.query_store_after,
        );
        // A shipped block reaches the bucket index within compactor.cleanup_interval, and
        // queriers reread the index every blocks.bucket_index_update_interval.
        let index_lag = self.blocks.bucket_index_update_interval
            + match self.compactor.enabled {
                true => self
                    .compactor
                    .cleanup_interval(self.blocks.bucket_index_update_interval),
                false => Duration::ZERO,
            };
        if !within.is_zero() && within <= self.blocks.block_range + index_lag {
            return bad("querier.query_ingesters_within must be 0s or longer than blocks.block_range plus blocks.bucket_index_update_interval plus compactor.cleanup_interval (older samples are read from blocks only)");
        }
        if !within.is_zero() && after >= within {
            return bad(
                "querier.query_store_after must be shorter than querier.query_ingesters_within",
            );
        }
        if after > self.blocks.retain_after_upload {
            return bad("querier.query_store_after must not exceed blocks.retain_after_upload (ingesters drop shipped data after it)");
        }
        self.distributor
            .ha_tracker
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.ring
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("ring: {e}")))?;
        self.limits.validate().map_err(ConfigError::Invalid)
    }
}

impl Config {
    /// Checks what a stand-alone ingester, distributor or querier (`role`) needs beyond
    /// [`Config::validate`]: a ring shared between processes.
    pub fn validate_cluster_role(&self, role: &str) -> Result<(), ConfigError> {
        if self.ring.kv == KvBackend::Memory {
            return Err(ConfigError::Invalid(format!(
                "ring.kv = \"memory\" only works inside one process (`hestia all`); a stand-alone {role} needs ring.kv = \"controlplane\" and ring.kv_endpoints"
            )));
        }
        Ok(())
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
    fn the_docker_configurations_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/docker");
        let mut seen = 0;
        for dir in [root.clone(), root.join("cluster")] {
            for entry in std::fs::read_dir(&dir).expect("deploy/docker") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "toml") {
                    Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
                    seen += 1;
                }
            }
        }
        assert!(seen >= 7, "{seen} files");
    }

    #[test]
    fn example_file_parses_and_matches_defaults_where_documented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/hestia.example.toml");
        let cfg = Config::from_file(&path).expect("example config");
        assert_eq!(cfg.server.listen, ServerConfig::default().listen);
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.distributor.max_request_body_bytes, 1 << 20);
        assert_eq!(cfg.storage, StorageConfig::default());
        assert_eq!(cfg.blocks, BlocksConfig::default());
        assert_eq!(cfg.querier, QuerierConfig::default());
        assert_eq!(cfg.compactor, CompactorConfig::default());
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
        for bad in [
            "account_id = \"12\"",
            "node_id = 0",
            "bootstrap = [\"2=127.0.0.1:1\"]",
            "bootstrap = [\"x\"]",
        ] {
            let cfg: Config = toml::from_str(&format!("[control_plane]\n{bad}")).unwrap();
            assert!(cfg.validate().is_err(), "{bad}");
        }
    }
}
