//! The gateway role (`hestia_runtime` shape), used by `hestia-gateway` and `hestia all`.

use std::sync::Arc;

use hestia_config::Config;
use hestia_runtime::Role;

use crate::{Gateway, Upstream, Workspaces};

/// The gateway over `distributor` and `querier`, resolving workspaces with `workspaces` (and
/// its watch task, stopped at shutdown). Its routes are not authenticated: the host puts them
/// behind `hestia_auth::layer::protect` (`hestia all` together with its other public routes).
pub fn start(
    workspaces: (Workspaces, Option<tokio::task::JoinHandle<()>>),
    distributor: Upstream,
    querier: Upstream,
) -> Role {
    let (workspaces, watch) = workspaces;
    let gateway = Arc::new(Gateway::new(workspaces, distributor, querier));
    let mut role = Role::new("gateway").with_routes(crate::router(gateway));
    if let Some(w) = watch {
        role.abort_on_shutdown(w);
    }
    role
}

/// A cluster's public endpoint: distributors and queriers from `gateway.distributor_urls` and
/// `gateway.querier_urls`, workspaces and identities from `gateway.control_plane_endpoints`
/// (refusals forwarded to a voter's audit log; without voters, logged and dev workspaces),
/// every route authenticated.
pub fn start_cluster(cfg: &Config) -> anyhow::Result<Role> {
    let distributor = Upstream::remote("distributor", &cfg.gateway.distributor_urls)?;
    let querier = Upstream::remote("querier", &cfg.gateway.querier_urls)?;
    let endpoints = &cfg.gateway.control_plane_endpoints;
    let (audit, forwarder): (Arc<dyn hestia_auth::AuditSink>, _) = if endpoints.is_empty() {
        (Arc::new(hestia_auth::layer::LogAudit), None)
    } else {
        let (sink, task) = crate::audit::forward_to_control_plane(endpoints)?;
        (sink, Some(task))
    };
    let auth = hestia_auth::layer::from_config(cfg, audit, None)?;
    let workspaces = Workspaces::start(endpoints, cfg.gateway.dev_workspaces, auth.authenticator)?;
    let mut role = start(workspaces, distributor, querier);
    if let Some(f) = forwarder {
        role.abort_on_shutdown(f);
    }
    let routes = role.take_routes();
    Ok(role.with_routes(hestia_auth::layer::protect(routes, auth.layer)))
}
