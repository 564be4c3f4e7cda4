//! Per-workspace limit overrides ("request a quota increase"), read from a TOML file and
//! reloaded while running:
//!
//! ```toml
//! [overrides."123456789012_ws-0f8c…"]
//! ingestion_rate = 200000
//! max_global_series_per_user = 5000000
//! ```
//!
//! A tenant's entry only names what differs; everything else is the configured default. A file
//! that does not parse or validate is reported and the previous overrides stay in force.
//!
//! The control plane's per-workspace overrides (its admin API, pushed through its workspace
//! watch) are a second layer over the file's: where both set a field, the control plane wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::Limits;

#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    overrides: HashMap<String, toml::Table>,
}

/// The limits of every tenant: defaults plus the overrides file's entries.
#[derive(Debug)]
pub struct Overrides {
    defaults: Arc<Limits>,
    path: Option<PathBuf>,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    file: HashMap<String, toml::Table>,
    control_plane: HashMap<String, toml::Table>,
    /// Defaults + file + control plane, per tenant with any override.
    by_tenant: HashMap<String, Arc<Limits>>,
    loaded_mtime: Option<SystemTime>,
}

impl Overrides {
    /// Every tenant gets `defaults`.
    pub fn fixed(defaults: Limits) -> Self {
        Self {
            defaults: Arc::new(defaults),
            path: None,
            state: RwLock::default(),
        }
    }

    /// `defaults` with the overrides of the file at `path`, which must load now.
    pub fn from_file(defaults: Limits, path: &Path) -> Result<Self, OverridesError> {
        let o = Self {
            defaults: Arc::new(defaults),
            path: Some(path.to_path_buf()),
            state: RwLock::default(),
        };
        o.reload()?;
        Ok(o)
    }

    pub fn defaults(&self) -> &Limits {
        &self.defaults
    }

    /// The limits of `tenant`.
    pub fn get(&self, tenant: &str) -> Arc<Limits> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .by_tenant
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    /// Re-reads the file if it changed; true if new overrides took effect. On an error the
    /// previous overrides stay.
    pub fn reload(&self) -> Result<bool, OverridesError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let read_err = |source| OverridesError::Read {
            path: path.clone(),
            source,
        };
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(read_err)?;
        if self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .loaded_mtime
            == Some(mtime)
        {
            return Ok(false);
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let file = parse(&text, &self.defaults).map_err(|message| OverridesError::Invalid {
            path: path.clone(),
            message,
        })?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.file = file;
        state.loaded_mtime = Some(mtime);
        self.rebuild(&mut state);
        Ok(true)
    }

    /// Replaces the control plane's layer: tenant → JSON object of `[limits]` fields. An entry
    /// that does not make valid limits is ignored (with a warning) rather than applied in part.
    pub fn set_control_plane(&self, entries: HashMap<String, serde_json::Value>) {
        let mut layer = HashMap::with_capacity(entries.len());
        for (tenant, v) in entries {
            match toml::Table::try_from(&v) {
                Ok(t) => {
                    layer.insert(tenant, t);
                }
                Err(e) => tracing::warn!(%tenant, error = %e, "unusable limit overrides"),
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.control_plane == layer {
            return;
        }
        state.control_plane = layer;
        self.rebuild(&mut state);
    }

    fn rebuild(&self, state: &mut State) {
        let base = match toml::Table::try_from(&*self.defaults) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "limits do not serialize");
                return;
            }
        };
        let tenants: std::collections::HashSet<&String> = state
            .file
            .keys()
            .chain(state.control_plane.keys())
            .collect();
        let mut by_tenant = HashMap::with_capacity(tenants.len());
        for tenant in tenants {
            let file = state.file.get(tenant).cloned().unwrap_or_default();
            let mut merged = base.clone();
            merged.extend(file.clone());
            merged.extend(state.control_plane.get(tenant).cloned().unwrap_or_default());
            let limits = match to_limits(merged, tenant) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "control-plane limit overrides ignored");
                    let mut merged = base.clone();
                    merged.extend(file);
                    match to_limits(merged, tenant) {
                        Ok(l) => l,
                        Err(_) => continue,
                    }
                }
            };
            by_tenant.insert(tenant.clone(), Arc::new(limits));
        }
        state.by_tenant = by_tenant;
    }

    /// Follows the control plane's workspaces (at gRPC `endpoints`) and keeps its layer of
    /// overrides current until the returned task is aborted.
    pub fn spawn_control_plane_watch(
        self: &Arc<Self>,
        endpoints: &[String],
    ) -> Result<tokio::task::JoinHandle<()>, hestia_proto::CallError> {
        let endpoints = hestia_proto::ControlPlaneEndpoints::new(endpoints)?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            hestia_proto::follow_workspaces(&endpoints, |reply| {
                let workspaces = reply.workspaces;
                let layer = workspaces
                    .into_iter()
                    .filter(|w| !w.limit_overrides_json.is_empty())
                    .filter_map(|w| match serde_json::from_str(&w.limit_overrides_json) {
                        Ok(v) => Some((w.tenant_id, v)),
                        Err(e) => {
                            tracing::warn!(tenant = %w.tenant_id, error = %e, "undecodable limit overrides");
                            None
                        }
                    })
                    .collect();
                this.set_control_plane(layer);
            })
            .await
        }))
    }

    /// Reloads every `period` until the returned task is aborted.
    pub fn spawn_reloader(self: &Arc<Self>, period: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let o = this.clone();
                match tokio::task::spawn_blocking(move || o.reload()).await {
                    Ok(Ok(true)) => tracing::info!("limit overrides reloaded"),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "limit overrides not reloaded"),
                    Err(e) => tracing::warn!(error = %e, "limit overrides reload panicked"),
                }
            }
        })
    }
}

/// The file's entries, each checked to make valid limits over `defaults`.
fn parse(text: &str, defaults: &Limits) -> Result<HashMap<String, toml::Table>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let base = toml::Table::try_from(defaults).map_err(|e| e.to_string())?;
    for (tenant, entry) in &file.overrides {
        let mut merged = base.clone();
        merged.extend(entry.clone());
        to_limits(merged, tenant)?;
    }
    Ok(file.overrides)
}

fn to_limits(merged: toml::Table, tenant: &str) -> Result<Limits, String> {
    let limits: Limits = merged
        .try_into()
        .map_err(|e: toml::de::Error| format!("overrides.{tenant:?}: {e}"))?;
    limits
        .validate()
        .map_err(|e| format!("overrides.{tenant:?}: {e}"))?;
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_override_named_fields_and_keep_the_rest() {
        let defaults = Limits {
            ingestion_rate: 10.0,
            ..Limits::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overrides.toml");
        std::fs::write(
            &path,
            "[overrides.\"1_ws-a\"]\ningestion_rate = 500.0\nmax_global_series_per_user = 7\n",
        )
        .unwrap();
        let o = Overrides::from_file(defaults.clone(), &path).unwrap();
        let a = o.get("1_ws-a");
        assert_eq!(a.ingestion_rate, 500.0);
        assert_eq!(a.max_global_series_per_user, 7);
        assert_eq!(
            a.max_label_names_per_series,
            defaults.max_label_names_per_series
        );
        assert_eq!(*o.get("1_ws-b"), defaults);

        // A bad file is refused and the previous overrides stay; a good one replaces them.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "[overrides.\"1_ws-a\"]\ningestion_rate = -1.0\n").unwrap();
        let err = o.reload().unwrap_err().to_string();
        assert!(
            err.contains("ingestion_rate must be a positive number"),
            "{err}"
        );
        std::fs::write(&path, "[overrides.\"1_ws-a\"]\nno_such_limit = 1\n").unwrap();
        let err = o.reload().unwrap_err().to_string();
        assert!(err.contains("no_such_limit"), "{err}");
        assert_eq!(o.get("1_ws-a").ingestion_rate, 500.0);
        std::fs::write(&path, "[overrides.\"1_ws-b\"]\ningestion_burst_size = 3\n").unwrap();
        assert!(o.reload().unwrap());
        assert_eq!(o.get("1_ws-b").ingestion_burst_size, 3);
        assert_eq!(*o.get("1_ws-a"), defaults);
        assert!(!o.reload().unwrap(), "unchanged file is not re-read");
    }

    #[test]
    fn the_control_plane_layer_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overrides.toml");
        std::fs::write(
            &path,
            "[overrides.a]\ningestion_rate = 500.0\ningestion_burst_size = 7\n",
        )
        .unwrap();
        let o = Overrides::from_file(Limits::default(), &path).unwrap();
        let cp = |v: serde_json::Value| HashMap::from([("a".to_string(), v)]);
        o.set_control_plane(cp(serde_json::json!({"ingestion_rate": 900})));
        assert_eq!(o.get("a").ingestion_rate, 900.0);
        assert_eq!(
            o.get("a").ingestion_burst_size,
            7,
            "the file's other fields stay"
        );
        // Invalid control-plane values are not applied; the file's still are.
        o.set_control_plane(cp(serde_json::json!({"ingestion_rate": -1})));
        assert_eq!(o.get("a").ingestion_rate, 500.0);
        o.set_control_plane(HashMap::from([(
            "b".to_string(),
            serde_json::json!({"max_global_series_per_user": 3}),
        )]));
        assert_eq!(o.get("b").max_global_series_per_user, 3);
        o.set_control_plane(HashMap::new());
        assert_eq!(*o.get("b"), Limits::default());
        assert_eq!(o.get("a").ingestion_rate, 500.0);
    }

    #[test]
    fn a_missing_file_is_an_error_at_start() {
        let err =
            Overrides::from_file(Limits::default(), Path::new("/nonexistent/o.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/o.toml"), "{err}");
    }
}
