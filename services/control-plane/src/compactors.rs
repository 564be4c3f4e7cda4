//! The compactors as the admin API reaches them (`GET /admin/workspaces/{id}/blocks`,
//! `POST /admin/compactor/compact`): the operator's call is authenticated, authorized and
//! audited here, and the control plane asks the compactors.
//!
//! In a cluster ([`RingCompactors`]) the compactors are the members of their ring
//! (`compactor.ring.key`), which lives in this group's state like the ingesters' ring: each
//! registers its `compactor.http_listen`, and the control plane calls it over HTTP
//! (`hestia_compactor::router`). `hestia all` runs its compactor in-process
//! ([`in_process_compactor`]). A running voter uses the ring under the default key until
//! [`crate::Running::set_compactors`] installs another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use hestia_compactor::{Compactor, CompactorError, ErrorBody};
use hestia_config::Config;
use hestia_model::TenantId;
use hestia_ring::{InstanceDesc, InstanceState};
use serde::{Deserialize, Serialize};

pub use hestia_compactor::{BlockRow, PartialRow, PassReport, TenantBlocks, TenantReport};

use crate::error::CpError;
use crate::node::ControlPlane;

/// How long a compactor may take to list a tenant's blocks (one bucket listing).
const LIST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a compactor may take for a pass it was asked for; passes over big tenants are long.
const PASS_TIMEOUT: Duration = Duration::from_secs(3600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What one compactor answered to `POST /admin/compactor/compact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactorPass {
    /// Its id in the compactors' ring.
    pub instance: String,
    /// Where it was called (`in-process` in `hestia all`).
    pub addr: String,
    /// Its pass, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PassReport>,
    /// Why there is no report: unreachable, failed, or not healthy in the ring (not called).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A tenant's blocks and the compactor that listed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub instance: String,
    pub blocks: TenantBlocks,
}

/// The compactors of the data plane, as the control plane asks them.
#[async_trait::async_trait]
pub trait Compactors: Send + Sync + 'static {
    /// The tenant's blocks as the bucket holds them now, from any compactor that answers;
    /// `Unavailable` when none does.
    async fn tenant_blocks(&self, cp: &ControlPlane, tenant: &TenantId)
        -> Result<Listing, CpError>;

    /// One compaction pass now on every compactor (over `tenant` alone when given), one entry
    /// per compactor; `Unavailable` when there is no compactor to ask.
    async fn compact(
        &self,
        cp: &ControlPlane,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<CompactorPass>, CpError>;
}

/// The compactors `cfg` describes for a control-plane voter: the members of the ring
/// `compactor.ring.key` in this group's state, healthy while their heartbeat is younger than
/// `ring.heartbeat_timeout`, called over HTTP at the address each registered.
pub fn compactors_from_config(cfg: &Config) -> Result<Arc<dyn Compactors>, CpError> {
    Ok(Arc::new(RingCompactors::new(
        &cfg.compactor.ring.key,
        cfg.ring.heartbeat_timeout,
    )?))
}

/// `compactor`, running in this process (`hestia all`), as the only compactor.
pub fn in_process_compactor(compactor: Compactor) -> Arc<dyn Compactors> {
    Arc::new(LocalCompactor(compactor))
}

/// The compactors' ring in this control plane's state, each member called over HTTP.
pub struct RingCompactors {
    key: String,
    heartbeat_timeout_ms: i64,
    client: reqwest::Client,
}

impl RingCompactors {
    pub fn new(key: &str, heartbeat_timeout: Duration) -> Result<Self, CpError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("hestia-control-plane/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CpError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            key: key.to_string(),
            heartbeat_timeout_ms: i64::try_from(heartbeat_timeout.as_millis()).unwrap_or(i64::MAX),
            client,
        })
    }

    /// The ring's members (by id), each with the reason it is not called, if any.
    async fn members(
        &self,
        cp: &ControlPlane,
    ) -> Result<Vec<(InstanceDesc, Option<String>)>, CpError> {
        let desc = cp
            .ring_get(&self.key)
            .await?
            .map(|e| e.desc)
            .unwrap_or_default();
        if desc.instances.is_empty() {
            return Err(CpError::Unavailable(format!(
                "no compactor in the ring \"{}\": no hestia-compactor has registered in this control plane",
                self.key
            )));
        }
        let now = hestia_ring::now_ms();
        let members: Vec<_> = desc
            .instances
            .into_values()
            .map(|i| {
                let skip = self.unusable(&i, now);
                (i, skip)
            })
            .collect();
        if members.iter().all(|(_, skip)| skip.is_some()) {
            let why: Vec<String> = members
                .iter()
                .map(|(i, skip)| format!("{}: {}", i.id, skip.as_deref().unwrap_or_default()))
                .collect();
            return Err(CpError::Unavailable(format!(
                "no healthy compactor in the ring \"{}\" ({})",
                self.key,
                why.join("; ")
            )));
        }
        Ok(members)
    }

    /// Why `i` is not called, if it is not.
    fn unusable(&self, i: &InstanceDesc, now_ms: i64) -> Option<String> {
        if i.state != InstanceState::Active {
            return Some(format!("{:?} in the ring", i.state).to_lowercase());
        }
        if !i.is_healthy(now_ms, self.heartbeat_timeout_ms) {
            return Some(format!(
                "unhealthy: last heartbeat {:.1}s ago",
                (now_ms - i.heartbeat_ms) as f64 / 1000.0
            ));
        }
        match i.addr.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => Some(format!(
                "registered {}, which cannot be dialed: set compactor.ring.advertise_addr (or http_listen) to an address the control plane reaches",
                i.addr
            )),
            _ => None,
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        addr: &str,
    ) -> Result<T, String> {
        let response = request.send().await.map_err(|e| {
            let e = if e.is_timeout() {
                "timed out".to_string()
            } else {
                e.to_string()
            };
            format!("calling {addr}: {e}")
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer of {addr}: {e}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
            return Err(format!("{addr} answered {status}: {message}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{addr} answered unreadable JSON: {e}"))
    }
}

#[async_trait::async_trait]
impl Compactors for RingCompactors {
    async fn tenant_blocks(
        &self,
        cp: &ControlPlane,
        tenant: &TenantId,
    ) -> Result<Listing, CpError> {
        let mut failures = Vec::new();
        for (i, skip) in self.members(cp).await? {
            if skip.is_some() {
                continue;
            }
            let url = format!("http://{}/compactor/tenants/{tenant}/blocks", i.addr);
            let request = self.client.get(url).timeout(LIST_TIMEOUT);
            match self.call::<TenantBlocks>(request, &i.addr).await {
                Ok(blocks) => {
                    return Ok(Listing {
                        instance: i.id,
                        blocks,
                    })
                }
                Err(e) => {
                    tracing::warn!(compactor = %i.id, error = %e, "listing a tenant's blocks");
                    failures.push(format!("{}: {e}", i.id));
                }
            }
        }
        Err(CpError::Unavailable(format!(
            "no compactor could list the blocks ({})",
            failures.join("; ")
        )))
    }

    async fn compact(
        &self,
        cp: &ControlPlane,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<CompactorPass>, CpError> {
        let members = self.members(cp).await?;
        let passes = members.into_iter().map(|(i, skip)| async move {
            let (report, error) = match skip {
                Some(why) => (None, Some(why)),
                None => {
                    let url = format!("http://{}/compactor/compact", i.addr);
                    let mut request = self.client.post(url).timeout(PASS_TIMEOUT);
                    if let Some(t) = tenant {
                        request = request.query(&[("tenant", t.as_str())]);
                    }
                    match self.call::<PassReport>(request, &i.addr).await {
                        Ok(r) => (Some(r), None),
                        Err(e) => (None, Some(e)),
                    }
                }
            };
            CompactorPass {
                instance: i.id,
                addr: i.addr,
                report,
                error,
            }
        });
        Ok(join_all(passes).await)
    }
}

/// The compactor of this process.
struct LocalCompactor(Compactor);

fn cp_error(e: CompactorError) -> CpError {
    match e.status().as_u16() {
        503 => CpError::Unavailable(e.to_string()),
        _ => CpError::Internal(e.to_string()),
    }
}

#[async_trait::async_trait]
impl Compactors for LocalCompactor {
    async fn tenant_blocks(&self, _: &ControlPlane, tenant: &TenantId) -> Result<Listing, CpError> {
        Ok(Listing {
            instance: self.0.instance_id().to_string(),
            blocks: self.0.tenant_blocks(tenant).await.map_err(cp_error)?,
        })
    }

    async fn compact(
        &self,
        _: &ControlPlane,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<CompactorPass>, CpError> {
        let (c, tenant) = (self.0.clone(), tenant.cloned());
        // A task of its own: a client going away does not stop the pass halfway.
        let pass = tokio::spawn(async move {
            match tenant {
                Some(t) => c.run_once_for(&t).await,
                None => c.run_once().await,
            }
        });
        let report = pass
            .await
            .map_err(|e| CpError::Internal(format!("the pass failed: {e}")))?;
        Ok(vec![CompactorPass {
            instance: self.0.instance_id().to_string(),
            addr: "in-process".to_string(),
            report: Some(report),
            error: None,
        }])
    }
}
