use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::LoadgenError;

/// Everything a run needs. A scenario file holds any subset of these fields; flags override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Series per workspace.
    pub series: usize,
    /// Labels per series including `__name__`, `job` and `series` (at least 3).
    pub labels_per_series: usize,
    /// Distinct metric names the series are spread over.
    pub metric_names: usize,
    /// Sample timestamps of one series are this far apart.
    #[serde(with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// Share of series replaced by new ones every scrape interval.
    pub churn_percent: f64,
    /// Samples (one per series) per remote-write request.
    pub batch_size: usize,
    /// Target samples per second over all workspaces; 0 sends as fast as the server answers.
    pub samples_per_second: u64,
    /// Workspaces `ws-load-0` … `ws-load-<n-1>`, each with its own series.
    pub workspaces: usize,
    /// Remote-write URL; `{ws}` is replaced by the workspace id.
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Sample time runs this many times faster than the wall clock, starting in the past so
    /// the run ends near now; never more than a few seconds ahead of now. 1 is real time.
    pub time_compression: f64,
    /// Requests in flight.
    pub concurrency: usize,
    #[serde(with = "humantime_serde")]
    pub report_every: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Signs requests with SigV4 (service `aps`).
    pub sigv4: bool,
    pub region: String,
    /// AWS shared credentials file; default `$AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`.
    pub credentials_file: Option<PathBuf>,
    /// Profile in the credentials file; default `$AWS_PROFILE` or `default`.
    pub profile: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            series: 10_000,
            labels_per_series: 10,
            metric_names: 100,
            scrape_interval: Duration::from_secs(15),
            churn_percent: 0.0,
            batch_size: 1000,
            samples_per_second: 10_000,
            workspaces: 1,
            url: "http://127.0.0.1:8080/workspaces/{ws}/api/v1/remote_write".into(),
            duration: Duration::from_secs(60),
            time_compression: 1.0,
            concurrency: 8,
            report_every: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            sigv4: false,
            region: "us-east-1".into(),
            credentials_file: None,
            profile: None,
        }
    }
}

impl Settings {
    pub fn from_toml_file(path: &std::path::Path) -> Result<Settings, LoadgenError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadgenError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| LoadgenError::Scenario {
            path: path.display().to_string(),
            source: Box::new(e),
        })
    }

    pub fn validate(&self) -> Result<(), LoadgenError> {
        let bad = |m: &str| Err(LoadgenError::Invalid(m.into()));
        if self.series == 0 || self.workspaces == 0 || self.batch_size == 0 {
            return bad("series, workspaces and batch_size must be positive");
        }
        if !(3..=999).contains(&self.labels_per_series) {
            return bad("labels_per_series must be between 3 and 999");
        }
        if self.metric_names == 0 || self.concurrency == 0 {
            return bad("metric_names and concurrency must be positive");
        }
        if self.scrape_interval < Duration::from_millis(1) || self.report_every.is_zero() {
            return bad("scrape_interval and report_every must be positive");
        }
        if !(0.0..=100.0).contains(&self.churn_percent) {
            return bad("churn_percent must be between 0 and 100");
        }
        if !(self.time_compression >= 1.0 && self.time_compression.is_finite()) {
            return bad("time_compression must be at least 1");
        }
        // Built without TLS to keep the build light.
        if !self.url.starts_with("http://") {
            return bad("url must start with http://");
        }
        Ok(())
    }

    pub fn workspace(i: usize) -> String {
        format!("ws-load-{i}")
    }

    pub fn url_for(&self, workspace: &str) -> String {
        self.url.replace("{ws}", workspace)
    }
}

/// Command line: `--scenario` loads a file, every other flag overrides one of its fields.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "hestia-loadgen",
    about = "Remote-write load generator for Hestia"
)]
pub struct Args {
    /// TOML scenario file (see loadtest/scenarios/).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    #[arg(long)]
    pub series: Option<usize>,
    #[arg(long)]
    pub labels_per_series: Option<usize>,
    #[arg(long)]
    pub metric_names: Option<usize>,
    /// e.g. 15s
    #[arg(long, value_parser = humantime::parse_duration)]
    pub scrape_interval: Option<Duration>,
    #[arg(long)]
    pub churn_percent: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub samples_per_second: Option<u64>,
    #[arg(long)]
    pub workspaces: Option<usize>,
    /// Remote-write URL template with `{ws}`.
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    #[arg(long)]
    pub time_compression: Option<f64>,
    #[arg(long)]
    pub concurrency: Option<usize>,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub report_every: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    #[arg(long)]
    pub sigv4: bool,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    #[arg(long)]
    pub profile: Option<String>,
}

impl Args {
    pub fn into_settings(self) -> Result<Settings, LoadgenError> {
        let mut s = match &self.scenario {
            Some(p) => Settings::from_toml_file(p)?,
            None => Settings::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => {$(if let Some(v) = self.$f { s.$f = v; })*};
        }
        set!(
            series,
            labels_per_series,
            metric_names,
            scrape_interval,
            churn_percent,
            batch_size,
            samples_per_second,
            workspaces,
            url,
            duration,
            time_compression,
            concurrency,
            report_every,
            request_timeout,
            region
        );
        s.sigv4 |= self.sigv4;
        if self.credentials_file.is_some() {
            s.credentials_file = self.credentials_file;
        }
        if self.profile.is_some() {
            s.profile = self.profile;
        }
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse_and_validate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let s = Settings::from_toml_file(&p).unwrap();
            s.validate().unwrap();
            n += 1;
        }
        assert!(n >= 3);
    }

    #[test]
    fn flags_override_the_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(
            &p,
            "series = 5\nscrape_interval = \"30s\"\nworkspaces = 3\n",
        )
        .unwrap();
        let s = Args {
            scenario: Some(p),
            workspaces: Some(2),
            ..Default::default()
        }
        .into_settings()
        .unwrap();
        assert_eq!((s.series, s.workspaces), (5, 2));
        assert_eq!(s.scrape_interval, Duration::from_secs(30));
        assert_eq!(
            s.url_for("ws-load-1"),
            "http://127.0.0.1:8080/workspaces/ws-load-1/api/v1/remote_write"
        );
        assert!(Args {
            labels_per_series: Some(2),
            ..Default::default()
        }
        .into_settings()
        .is_err());
    }
}
