//! `hestia all`: gateway, distributor, ingester, querier and a single control-plane voter in one
//! process. The ingester ships closed block ranges to the `[storage]` block store (by default
//! `<data_dir>/blocks`) and the querier reads them there, as in a cluster. The ingester and the
//! control plane still serve gRPC on loopback ports and the other roles reach them through gRPC
//! clients, exactly as in a cluster; only the gateway → distributor/querier hop is an in-process
//! call. The AMP workspace API is served on the public port; the gateway serves the workspaces
//! it creates (or, with `--dev-workspaces`, any id).
//! Every public route is behind the auth middleware (SigV4, tokens, Basic); the first start
//! creates the operator account and writes its key to `<data_dir>/credentials`.

pub mod admin;
pub mod backfill;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use hestia_config::Config;
use hestia_gateway::{Gateway, Upstream};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Command-line overrides of the configuration file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllArgs {
    /// TOML configuration file (see deploy/hestia.example.toml).
    #[arg(long, env = "HESTIA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Public HTTP address [default: 127.0.0.1:8080].
    #[arg(long, env = "HESTIA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for local state [default: ./data].
    #[arg(long, env = "HESTIA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<hestia_config::LogFormat>,
    /// Export traces over OTLP/HTTP to this URL (e.g. http://127.0.0.1:4318/v1/traces).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Accept any well-formed workspace id as its own tenant, without creating it through the
    /// workspace API (tests, quick trials).
    #[arg(long, env = "HESTIA_DEV_WORKSPACES")]
    pub dev_workspaces: bool,
    /// `disabled` turns authentication off: every request acts as the operator account's root
    /// (local trials and tests only).
    #[arg(long, env = "HESTIA_AUTH", value_enum)]
    pub auth: Option<AuthSwitch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthSwitch {
    Enabled,
    Disabled,
}

impl AllArgs {
    /// The configuration file (or defaults) with the flags applied, validated.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        if let Some(l) = self.listen {
            cfg.server.listen = l;
        }
        if let Some(d) = &self.data_dir {
            cfg.server.data_dir = d.clone();
        }
        if let Some(f) = self.log_format {
            cfg.telemetry.log_format = f;
        }
        if let Some(e) = &self.otlp_endpoint {
            cfg.telemetry.otlp_endpoint = Some(e.clone());
        }
        cfg.gateway.dev_workspaces |= self.dev_workspaces;
        if let Some(a) = self.auth {
            cfg.auth.enabled = a == AuthSwitch::Enabled;
        }
        cfg.validate()?;
        Ok(cfg)
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
        let data_dir = cfg.server.data_dir.clone();
        let ingester_cfg = cfg.ingester.clone();
        let db = tokio::task::spawn_blocking(move || {
            hestia_ingester::open_tsdb(&data_dir, &ingester_cfg)
        })
        .await??;

        let (stop, stop_rx) = watch::channel(false);
        let wait_stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let grpc_addr = cfg
            .ingester
            .grpc_listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (grpc_listener, grpc_addr) = hestia_ingester::bind_grpc(grpc_addr)
            .await
            .with_context(|| format!("binding ingester gRPC on {grpc_addr}"))?;
        let overrides = Arc::new(cfg.overrides.load(&cfg.limits)?);
        let reloader = overrides.spawn_reloader(cfg.overrides.reload_period);
        // One ingester holds every series: the global series limits apply to it whole.
        let limiter = hestia_ingester::SeriesLimiter::new(
            overrides.clone(),
            cfg.ingester.max_local_series_per_user,
            cfg.ingester.max_local_series_per_metric,
            None,
            1,
        );
        let ingester = hestia_ingester::IngesterService::new(db.clone(), Arc::new(limiter));
        let grpc = tokio::spawn(hestia_ingester::serve_grpc(
            grpc_listener,
            ingester.clone(),
            wait_stop(stop_rx.clone()),
        ));
        tracing::info!(%grpc_addr, "ingester gRPC listening");

        let listener = TcpListener::bind(cfg.server.listen)
            .await
            .with_context(|| format!("binding {}", cfg.server.listen))?;
        let addr = listener.local_addr()?;
        // One voter of its own: workspaces, limit overrides and the audit log on Raft.
        let public_url = cfg
            .control_plane
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        cfg.control_plane.bootstrap.clear();
        let control_plane = hestia_control_plane::start(
            &cfg.control_plane,
            &cfg.server.data_dir,
            public_url.clone(),
            Arc::new(LocalPurger(db.clone())),
        )
        .await
        .context("starting the control plane")?;
        let cp_endpoints = vec![format!("http://{}", control_plane.grpc_addr)];
        let (auth, identity_follower) = start_auth(&cfg, &control_plane, &public_url).await?;
        let cp_overrides = overrides.spawn_control_plane_watch(&cp_endpoints)?;

        // One ingester, so one replica: the ring lives in this process.
        cfg.ring.kv = hestia_config::KvBackend::Memory;
        cfg.ring.replication_factor = 1;
        cfg.ring.zone_awareness = false;
        cfg.ingester.advertise_addr = None;
        // A stable id: the ingester's blocks name it, and a restart is the same member.
        cfg.ingester
            .instance_id
            .get_or_insert_with(|| "ingester-all".to_string());
        let kv: Arc<dyn hestia_ring::Kv> = Arc::new(hestia_ring::MemoryKv::default());
        let lifecycler = hestia_ingester::join_ring(
            kv.clone(),
            &cfg.ring,
            &cfg.ingester,
            grpc_addr,
            &cfg.server.data_dir,
        )
        .await?;
        let ring = Arc::new(hestia_ring::RingClient::start(kv, &cfg.ring).await?);
        // The distributor and querier call the ingester of this process directly, not over gRPC.
        let pool = Arc::new(hestia_proto::IngesterPool::with_local(
            grpc_addr.to_string(),
            Arc::new(ingester),
        ));
        // HA elections on the voter's Raft log, as in a cluster: they survive restarts.
        let (ha, ha_refresher) =
            hestia_distributor::start_ha_tracker(&cp_endpoints, &cfg.distributor.ha_tracker)?;
        let shipper_overrides = overrides.clone();
        let distributor = Arc::new(hestia_distributor::Distributor::new(
            cfg.distributor.clone(),
            overrides,
            ring.clone(),
            pool.clone(),
            None,
            ha,
        ));
        // Blocks: this ingester ships closed ranges to `[storage]`; the querier reads them.
        let mut querier_cfg = cfg.querier.clone();
        if !cfg.blocks.ship {
            // The ingester keeps every sample: it is asked whatever the time range.
            querier_cfg.query_ingesters_within = std::time::Duration::ZERO;
        }
        let blocks = hestia_querier::BlockStore::open(&cfg).context("opening the block store")?;
        let querier = Arc::new(hestia_querier::Querier::with_blocks(
            querier_cfg,
            ring,
            pool,
            blocks,
        ));
        let shipper = if cfg.blocks.ship {
            let bucket = hestia_bucket::Bucket::open(&cfg.storage, &cfg.server.data_dir)
                .context("opening the block store")?;
            let shipper = hestia_ingester::Shipper::new(
                db.clone(),
                bucket,
                cfg.blocks.clone(),
                hestia_ingester::instance_id(&cfg.ingester, grpc_addr),
                shipper_overrides,
                &cfg.server.data_dir,
            );
            Some(tokio::spawn(shipper.run(wait_stop(stop_rx.clone()))))
        } else {
            None
        };
        let (workspaces, workspace_watch) =
            hestia_gateway::Workspaces::start(&cp_endpoints, cfg.gateway.dev_workspaces, None)?;
        let gateway = Arc::new(Gateway::new(
            workspaces,
            Upstream::InProcess(hestia_distributor::router(distributor.clone())),
            Upstream::InProcess(hestia_querier::router(querier)),
        ));

        let ready = Arc::new(AtomicBool::new(false));
        let app = Router::new()
            .merge(hestia_gateway::router(gateway))
            .merge(control_plane.router(auth.master.clone(), auth.authenticator.clone()))
            .nest(
                "/distributor",
                hestia_distributor::admin_router(distributor.clone()),
            )
            .layer(axum::middleware::from_fn_with_state(
                auth.layer.clone(),
                hestia_auth::layer::authenticate,
            ))
            .merge(hestia_auth::layer::oauth2_router(auth.layer.clone()))
            .layer(axum::middleware::from_fn(hestia_telemetry::track_http))
            .merge(hestia_telemetry::ops_router(ready.clone()));

        let stats_db = db.clone();
        let mut stats_stop = stop_rx.clone();
        let stats = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => hestia_ingester::export_head_stats(&stats_db),
                    _ = stats_stop.wait_for(|s| *s) => break,
                }
            }
        });

        let grace = cfg.server.shutdown_grace;
        let http_stop = wait_stop(stop_rx.clone());
        let task = tokio::spawn(async move {
            let served = axum::serve(
                hestia_telemetry::nodelay(listener),
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(http_stop)
            .await;
            // In-flight pushes finish before the ingester stops and the database closes; a block
            // being cut or uploaded is abandoned (the next start resumes it).
            let _ = tokio::time::timeout(grace, grpc).await;
            if let Some(s) = shipper {
                let _ = s.await;
            }
            if let Err(e) = lifecycler.shutdown(true).await {
                tracing::warn!(error = %e, "leaving the ring");
            }
            stats.abort();
            reloader.abort();
            ha_refresher.abort();
            if let Some(f) = identity_follower {
                f.abort();
            }
            cp_overrides.abort();
            if let Some(w) = workspace_watch {
                w.abort();
            }
            control_plane.shutdown().await;
            tokio::task::spawn_blocking(move || db.close()).await??;
            served.context("serving HTTP")
        });
        ready.store(true, Ordering::Release);
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

    /// Stops serving, lets in-flight requests finish, and closes the database cleanly.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

/// Builds the auth middleware's state (the master key created on first start if none is
/// configured), follows the voter's identities and, on the first start, creates the operator
/// account and prints where its credentials are.
async fn start_auth(
    cfg: &Config,
    control_plane: &hestia_control_plane::Running,
    endpoint: &str,
) -> anyhow::Result<(
    hestia_auth::layer::AuthSetup,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let auth = hestia_auth::layer::from_config(
        cfg,
        Arc::new(control_plane.cp.audit.clone()),
        Some(&cfg.server.data_dir.join("master.key")),
    )?;
    let (Some(authenticator), Some(master)) = (&auth.authenticator, &auth.master) else {
        return Ok((auth, None));
    };
    let follower = hestia_control_plane::identity_api::follow_identities(
        control_plane.cp.clone(),
        authenticator.clone(),
    );
    let created = hestia_control_plane::identity_api::bootstrap_identities(
        &control_plane.cp,
        master,
        &cfg.server.data_dir,
        endpoint,
    )
    .await
    .context("creating the operator account")?;
    if let Some(c) = created {
        authenticator.update(&control_plane.cp.sm.read(|s| s.identities.clone()));
        c.announce(&cfg.control_plane.region, endpoint);
    }
    Ok((auth, Some(follower)))
}
