//! Which workspaces exist, and their tenants. With a control plane, the gateway keeps a copy of
//! every visible workspace, fed by the control plane's `WatchWorkspaces` stream, so requests
//! never wait on Raft. A workspace missing from the copy (created a moment ago) is resolved
//! once through `ResolveWorkspace` (a linearizable read); ids found nowhere are remembered
//! as unknown for a second, so a client hammering a wrong id cannot load the Raft group. The
//! same stream carries the identities, which keep the authenticator current.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hestia_auth::identity::Identities;
use hestia_auth::Authenticator;
use hestia_model::{TenantId, WorkspaceId};
use hestia_proto::control::{ResolveWorkspaceRequest, WorkspaceInfo};
use hestia_proto::{follow_workspaces, CallError, ControlPlaneEndpoints};

const UNKNOWN_TTL: Duration = Duration::from_secs(1);
/// The unknown-id memory is cleared when it grows past this.
const MAX_UNKNOWN: usize = 100_000;

pub enum Workspaces {
    /// Dev mode: every well-formed workspace id is a workspace, its own tenant.
    Any,
    /// Dev mode next to a control plane: the workspaces it holds resolve as in
    /// [`Workspaces::ControlPlane`] (so data written, queried and backfilled through the AMP API
    /// meet in one tenant); any other well-formed id is its own tenant.
    Dev(Arc<Directory>),
    ControlPlane(Arc<Directory>),
}

/// Why a workspace id cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    NotFound,
    /// Exists but is not ACTIVE yet (CREATING).
    NotActive(String),
    /// The control plane could not be asked.
    Unavailable(String),
}

impl Workspaces {
    /// The workspaces of the control plane at `endpoints`, with the task following its watch
    /// (which also feeds `auth` the identities); dev mode when `endpoints` is empty or `dev` is
    /// set (the task then only follows identities, if there is a control plane and `auth`).
    pub fn start(
        endpoints: &[String],
        dev: bool,
        auth: Option<Arc<Authenticator>>,
    ) -> Result<(Workspaces, Option<tokio::task::JoinHandle<()>>), CallError> {
        if endpoints.is_empty() {
            tracing::warn!("dev workspaces: any well-formed workspace id is accepted as-is");
            return Ok((Workspaces::Any, None));
        }
        let directory = Directory::new(endpoints)?;
        if dev {
            tracing::warn!("dev workspaces: any well-formed workspace id is accepted as-is");
            let watch = directory.spawn_watch(true, auth);
            return Ok((Workspaces::Dev(directory), Some(watch)));
        }
        let watch = directory.spawn_watch(true, auth);
        Ok((Workspaces::ControlPlane(directory), Some(watch)))
    }

    /// The tenant of `workspace` when it is ACTIVE and belongs to `account`.
    pub async fn resolve(&self, workspace: &str, account: &str) -> Result<TenantId, Unresolved> {
        let ws = WorkspaceId::parse(workspace).map_err(|_| Unresolved::NotFound)?;
        match self {
            Workspaces::Any => TenantId::for_workspace(None, &ws).map_err(|_| Unresolved::NotFound),
            Workspaces::Dev(d) => match d.resolve(ws.as_str(), account).await {
                Err(Unresolved::NotFound) if d.lookup(ws.as_str()).await?.is_none() => {
                    TenantId::for_workspace(None, &ws).map_err(|_| Unresolved::NotFound)
                }
                other => other,
            },
            Workspaces::ControlPlane(d) => d.resolve(ws.as_str(), account).await,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tenant: TenantId,
    account: String,
    status: String,
}

pub struct Directory {
    endpoints: ControlPlaneEndpoints,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    by_id: HashMap<String, Entry>,
    unknown: HashMap<String, Instant>,
}

fn entry(w: &WorkspaceInfo) -> Option<(String, Entry)> {
    let tenant = TenantId::parse(&w.tenant_id).ok()?;
    Some((
        w.workspace_id.clone(),
        Entry {
            tenant,
            account: w.account_id.clone(),
            status: w.status.clone(),
        },
    ))
}

impl Directory {
    /// A directory over the control plane at `endpoints`; call [`Directory::spawn_watch`] to
    /// keep it current. Must be called inside a tokio runtime.
    pub fn new(endpoints: &[String]) -> Result<Arc<Self>, CallError> {
        Ok(Arc::new(Self {
            endpoints: ControlPlaneEndpoints::new(endpoints)?,
            state: RwLock::default(),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Another account's workspace is not found, as in AMP.
    pub async fn resolve(&self, id: &str, account: &str) -> Result<TenantId, Unresolved> {
        let Some(e) = self.lookup(id).await? else {
            return Err(Unresolved::NotFound);
        };
        if e.account != account {
            Err(Unresolved::NotFound)
        } else if e.status == "ACTIVE" {
            Ok(e.tenant)
        } else {
            Err(Unresolved::NotActive(e.status))
        }
    }

    /// The workspace `id` as the control plane holds it; `None` when it holds none.
    async fn lookup(&self, id: &str) -> Result<Option<Entry>, Unresolved> {
        {
            let state = self.read();
            if let Some(e) = state.by_id.get(id) {
                return Ok(Some(e.clone()));
            }
            if state
                .unknown
                .get(id)
                .is_some_and(|at| at.elapsed() < UNKNOWN_TTL)
            {
                return Ok(None);
            }
        }
        match self.ask(id).await {
            Ok(e) => Ok(Some(e)),
            Err(Unresolved::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn ask(&self, id: &str) -> Result<Entry, Unresolved> {
        let reply = self
            .endpoints
            .call("resolve workspace", |mut c| {
                let req = ResolveWorkspaceRequest {
                    workspace_id: id.to_string(),
                };
                async move { c.resolve_workspace(req).await.map(|r| r.into_inner()) }
            })
            .await
            .map_err(|e| Unresolved::Unavailable(e.to_string()))?;
        let mut state = self.write();
        match reply.workspace.as_ref().and_then(entry) {
            Some((id, e)) => {
                state.by_id.insert(id, e.clone());
                Ok(e)
            }
            None => {
                if state.unknown.len() >= MAX_UNKNOWN {
                    state.unknown.clear();
                }
                state.unknown.insert(id.to_string(), Instant::now());
                Err(Unresolved::NotFound)
            }
        }
    }

    /// Keeps the copy (when `keep_workspaces`) and `auth`'s identities current from
    /// `WatchWorkspaces` until the task is aborted.
    fn spawn_watch(
        self: &Arc<Self>,
        keep_workspaces: bool,
        auth: Option<Arc<Authenticator>>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            follow_workspaces(&this.endpoints, |reply| {
                if let Some(auth) = &auth {
                    match serde_json::from_slice::<Identities>(&reply.identities_json) {
                        Ok(ids) => auth.update(&ids),
                        Err(e) => tracing::error!(error = %e, "undecodable identities"),
                    }
                }
                if keep_workspaces {
                    let by_id = reply.workspaces.iter().filter_map(entry).collect();
                    let mut state = this.write();
                    state.by_id = by_id;
                    state.unknown.clear();
                }
            })
            .await
        })
    }
}
