//! `hestia all`: every role in one process — gateway, distributor, ingester, querier,
//! compactor and a single control-plane voter — each started by its own library's
//! `role::start` (the `hestia_runtime` shape its stand-alone binary uses) and served on one
//! public port. The ingester ships closed block ranges to the `[storage]` block store (by
//! default `<data_dir>/blocks`), the compactor merges them and applies each workspace's
//! retention, and the querier reads them there, as in a cluster. The rings are in memory; the
//! distributor and querier call the ingester in-process, other roles reach the voter over its
//! loopback gRPC port. The AMP workspace API is served on the public port; the gateway serves
//! the workspaces it creates (or, with `--dev-workspaces`, any id).
//! Every public route is behind the auth middleware (SigV4, tokens, Basic); the first start
//! creates the operator account and writes its key to `<data_dir>/credentials`.

pub mod admin;
pub mod backfill;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use hestia_config::Config;
use hestia_gateway::Upstream;
use hestia_runtime::Role;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// `hestia all`'s flags over the configuration file (`hestia_runtime`'s precedence rule).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub common: hestia_runtime::CommonArgs,
    #[command(flatten)]
    pub flags: AllFlags,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllFlags {
    /// Public HTTP address (server.listen) [default: 127.0.0.1:8080].
    #[arg(long, env = "HESTIA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Accept any well-formed workspace id as its own tenant, without creating it through the
    /// workspace API (tests, quick trials) (gateway.dev_workspaces).
    #[arg(long, env = "HESTIA_DEV_WORKSPACES")]
    pub dev_workspaces: bool,
    /// `disabled` turns authentication off: every request acts as the operator account's root
    /// (local trials and tests only) (auth.enabled).
    #[arg(long, env = "HESTIA_AUTH", value_enum)]
    pub auth: Option<AuthSwitch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthSwitch {
    Enabled,
    Disabled,
}

impl hestia_runtime::RoleFlags for AllFlags {
    fn apply(&self, cfg: &mut Config) {
        if let Some(l) = self.listen {
            cfg.server.listen = l;
        }
        cfg.gateway.dev_workspaces |= self.dev_workspaces;
        if let Some(a) = self.auth {
            cfg.auth.enabled = a == AuthSwitch::Enabled;
        }
    }
}

impl AllArgs {
    /// The configuration file (or defaults) with the environment and flags applied, validated.
    pub fn load(&self) -> anyhow::Result<Config> {
        self.common.load(&self.flags)
    }
}

/// Deletes a purged workspace's data from this process's ingester.
struct LocalPurger(Arc<hestia_storage::Tsdb>);

#[async_trait::async_trait]
impl hestia_control_plane::Purger for LocalPurger {
    async fn purge(
        &self,
        _: &hestia_control_plane::ControlPlane,
        tenant: &hestia_model::TenantId,
    ) -> anyhow::Result<()> {
        let db = self.0.clone();
        let tenant = tenant.clone();
        tokio::task::spawn_blocking(move || db.delete_tenant(&tenant)).await??;
        Ok(())
    }
}

/// A running `hestia all`: its public address and a handle to stop it.
pub struct AllInOne {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl AllInOne {
    /// Starts every role; returns once the public endpoint accepts connections and is ready.
    pub async fn start(mut cfg: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.server.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.server.data_dir.display()))?;
        // One process: one ingester (so one replica) and one compactor, whose rings live here.
        cfg.ring.kv = hestia_config::KvBackend::Memory;
        cfg.ring.replication_factor = 1;
        cfg.ring.zone_awareness = false;
        cfg.ingester.advertise_addr = None;
        // A stable id: the ingester's blocks name it, and a restart is the same member.
        cfg.ingester
            .instance_id
            .get_or_insert_with(|| "ingester-all".to_string());
        // No other compactor can take a tenant over: nothing to wait for.
        cfg.compactor.ring.wait_stability = std::time::Duration::ZERO;
        cfg.control_plane.bootstrap.clear();

        let listener = TcpListener::bind(cfg.server.listen)
            .await
            .with_context(|| format!("binding {}", cfg.server.listen))?;
        let addr = listener.local_addr()?;
        let public_url = cfg
            .control_plane
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let kv: Arc<dyn hestia_ring::Kv> = Arc::new(hestia_ring::MemoryKv::default());
        let overrides = Arc::new(cfg.overrides.load(&cfg.limits)?);
        // Tasks of the process rather than of one role.
        let mut shared = Role::new("hestia all");
        shared.abort_on_shutdown(overrides.spawn_reloader(cfg.overrides.reload_period));

        // Each workspace's retention, followed from the voter once it runs: the ingester and
        // the compactor apply it.
        let retentions = hestia_limits::Retentions::new();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let ingester = hestia_ingester::role::start(
            &cfg,
            kv.clone(),
            overrides.clone(),
            retentions.clone(),
            loopback,
        )
        .await?;
        // One voter of its own: workspaces, limit overrides, identities and the audit log on
        // Raft. A purged workspace leaves this ingester, then the block store.
        let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)
            .context("opening the block store")?;
        let local: Arc<dyn hestia_control_plane::Purger> =
            Arc::new(LocalPurger(ingester.db.clone()));
        let purger = Arc::new(hestia_control_plane::PurgeAll(vec![
            local,
            Arc::new(hestia_control_plane::BucketPurger::new(bucket)),
        ]));
        let mut voter = hestia_control_plane::role::start(
            &cfg,
            public_url.clone(),
            purger,
            Some(&cfg.server.data_dir.join("master.key")),
            public_url.clone(),
            hestia_control_plane::role::OperatorBootstrap::Now,
        )
        .await?;
        let cp_endpoints = vec![format!("http://{}", voter.grpc_addr)];
        shared.abort_on_shutdown(overrides.spawn_control_plane_watch(&cp_endpoints)?);
        shared.abort_on_shutdown(retentions.follow(&cp_endpoints)?);

        let ring = Arc::new(hestia_ring::RingClient::start(kv.clone(), &cfg.ring).await?);
        // The distributor and querier call the ingester of this process directly, not over gRPC.
        let pool = Arc::new(hestia_proto::IngesterPool::with_local(
            ingester.grpc_addr.to_string(),
            Arc::new(ingester.service.clone()),
        ));
        // HA elections on the voter's Raft log, as in a cluster: they survive restarts.
        let mut distributor = hestia_distributor::role::start(
            &cfg,
            ring.clone(),
            pool.clone(),
            overrides,
            &cp_endpoints,
            None,
        )
        .await?;
        let mut querier = hestia_querier::role::start(&cfg, ring, pool)?;
        let compactor = if cfg.compactor.enabled {
            let mut c = hestia_compactor::role::start(&cfg, kv, retentions).await?;
            // Its API is for a cluster's operators; here `hestia admin` reaches it through the
            // control plane.
            let _ = c.role.take_routes();
            voter
                .cp
                .set_compactors(hestia_control_plane::in_process_compactor(
                    c.compactor.clone(),
                ));
            Some(c)
        } else {
            None
        };
        let mut gateway = hestia_gateway::role::start(
            hestia_gateway::Workspaces::start(&cp_endpoints, cfg.gateway.dev_workspaces, None)?,
            Upstream::InProcess(distributor.role.take_routes()),
            Upstream::InProcess(querier.role.take_routes()),
        );
        // One public port: the gateway, the voter's AMP and admin API, the distributor's pages,
        // all behind one authentication layer.
        let public = hestia_auth::layer::protect(
            gateway.take_routes().merge(voter.role.take_routes()).nest(
                "/distributor",
                hestia_distributor::admin_router(distributor.distributor.clone()),
            ),
            voter.auth.layer.clone(),
        );
        let mut roles = vec![
            shared,
            ingester.role,
            voter.role,
            distributor.role,
            querier.role,
        ];
        roles.extend(compactor.map(|c| c.role));
        roles.push(gateway);

        let (stop, mut stop_rx) = watch::channel(false);
        let signal = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let task = tokio::spawn(hestia_runtime::serve(
            listener,
            roles,
            public,
            cfg.server.shutdown_grace,
            signal,
        ));
        let authentication = if cfg.auth.enabled {
            "SigV4, tokens and Basic"
        } else {
            "none (--auth=disabled)"
        };
        if cfg.gateway.dev_workspaces {
            tracing::info!(%addr, authentication, "hestia all ready (dev workspaces: any workspace id is accepted as-is)");
        } else {
            tracing::info!(%addr, authentication, "hestia all ready (create workspaces with the AMP API on this address)");
        }
        Ok(Self { addr, stop, task })
    }

    /// Stops serving, lets in-flight requests finish, stops every role (last started first)
    /// and closes the database cleanly.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}
