//! How every Hestia process runs. One shape for roles, used by each role's binary and by
//! `hestia all`:
//!
//! - **start**: a role's library has `start(&Config, …) -> Role` (its dependencies as
//!   arguments, so `hestia all` can hand it in-process ones). A [`Role`] is the HTTP routes it
//!   serves, the background tasks it spawned (each told when to stop through a [`Shutdown`]),
//!   and the steps that close it, in order.
//! - **host**: [`serve`] serves the routes of one or more roles (plus `/metrics`, `/ready`,
//!   `/health`) on one listener until a signal, then shuts the roles down in reverse order of
//!   start: each role's tasks get the stop signal and up to `server.shutdown_grace` to finish
//!   (then they are aborted), and its closing steps run.
//! - **flags over the file**: [`CommonArgs::load`] is the one precedence rule of every binary:
//!   defaults < the TOML file (`--config`) < environment variables < flags. A role's own flags
//!   ([`RoleFlags`]) are all optional and override only what they name.
//! - [`run`] is a role binary's whole `main`: parse, load, log, bind, start, serve, stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hestia_config::{Config, LogFormat};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Tells a role's tasks to stop. Clones observe the same signal.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the role is shutting down (at once if it already is).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

type Step = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A started role: routes, background tasks and closing steps.
pub struct Role {
    name: &'static str,
    routes: Router,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    /// Loops that have no stop signal of their own (watches, reloaders): aborted first.
    aborts: Vec<JoinHandle<()>>,
    closing: Vec<(&'static str, Step)>,
}

impl Role {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            routes: Router::new(),
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            aborts: Vec::new(),
            closing: Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The signal this role's tasks stop on.
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
    }

    /// Adds routes to what the role serves.
    pub fn with_routes(mut self, routes: Router) -> Self {
        self.routes = std::mem::take(&mut self.routes).merge(routes);
        self
    }

    /// The role's routes, to serve or to compose (`hestia all` puts some behind its auth
    /// layer); the role keeps none.
    pub fn take_routes(&mut self) -> Router {
        std::mem::take(&mut self.routes)
    }

    /// Spawns a background task; it gets the stop signal and is awaited at shutdown (at most
    /// the grace period, then aborted).
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let fut = task(self.shutdown_signal());
        self.tasks.push((name, tokio::spawn(fut)));
    }

    /// A task that runs until aborted (a watch, a reloader): aborted when shutdown starts.
    pub fn abort_on_shutdown(&mut self, handle: JoinHandle<()>) {
        self.aborts.push(handle);
    }

    /// A closing step, run after the tasks have ended, in the order they were added.
    pub fn on_shutdown<Fut>(&mut self, name: &'static str, step: Fut)
    where
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.closing.push((name, Box::pin(step)));
    }

    /// Stops the tasks (each has until `grace` to end, then is aborted) and runs the closing
    /// steps. Every step runs even if one fails; the first error is returned.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        let role = self.name;
        let _ = self.stop.send(true);
        for a in &self.aborts {
            a.abort();
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut first: Option<anyhow::Error> = None;
        for (task, mut handle) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(role, task, error = %format!("{e:#}"), "task failed");
                    first.get_or_insert(e.context(format!("{role}: {task}")));
                }
                Ok(Err(e)) => {
                    tracing::warn!(role, task, error = %e, "task panicked");
                    first.get_or_insert(anyhow::anyhow!("{role}: {task}: {e}"));
                }
                Err(_) => {
                    tracing::warn!(role, task, ?grace, "task did not stop in time: aborted");
                    handle.abort();
                }
            }
        }
        for (step, fut) in self.closing {
            if let Err(e) = fut.await {
                tracing::warn!(role, step, error = %format!("{e:#}"), "closing step failed");
                first.get_or_insert(e.context(format!("{role}: {step}")));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Flags every binary has. Each also reads its environment variable; a flag wins over it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file (see deploy/hestia.example.toml).
    #[arg(long, env = "HESTIA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for local state (server.data_dir).
    #[arg(long, env = "HESTIA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format (telemetry.log_format).
    #[arg(long, env = "HESTIA_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Export traces over OTLP/HTTP to this URL (telemetry.otlp_endpoint).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// A role's own flags: each optional, each naming one configuration key it overrides.
pub trait RoleFlags: clap::Args {
    fn apply(&self, cfg: &mut Config);
}

/// A role without flags of its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NoFlags {}

impl RoleFlags for NoFlags {
    fn apply(&self, _: &mut Config) {}
}

impl CommonArgs {
    /// Defaults < the file < environment < flags, then validation.
    pub fn load(&self, role: &impl RoleFlags) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        self.apply(&mut cfg);
        role.apply(&mut cfg);
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply(&self, cfg: &mut Config) {
        if let Some(d) = &self.data_dir {
            cfg.server.data_dir = d.clone();
        }
        if let Some(f) = self.log_format {
            cfg.telemetry.log_format = f;
        }
        if let Some(e) = &self.otlp_endpoint {
            cfg.telemetry.otlp_endpoint = Some(e.clone());
        }
    }
}

#[derive(clap::Parser)]
#[command(version)]
struct Cli<F: RoleFlags> {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    role: F,
}

/// A role binary's `main`: flags and file → configuration (checked by `check`), logging, the
/// HTTP listener (`http` names the key of its address; bound before the role starts, so a port
/// in use fails before the role joins a ring), the role, and serving until SIGINT/SIGTERM.
pub async fn run<F, Start, Fut>(
    name: &'static str,
    check: impl FnOnce(&Config) -> anyhow::Result<()>,
    http: impl FnOnce(&Config) -> SocketAddr,
    start: Start,
) -> anyhow::Result<()>
where
    F: RoleFlags,
    Start: FnOnce(Config) -> Fut,
    Fut: Future<Output = anyhow::Result<Role>>,
{
    use clap::{CommandFactory, FromArgMatches};
    hestia_telemetry::disable_transparent_huge_pages();
    let matches = Cli::<F>::command().name(name).get_matches();
    let cli = Cli::<F>::from_arg_matches(&matches)?;
    let cfg = cli.common.load(&cli.role)?;
    check(&cfg)?;
    let _telemetry = hestia_telemetry::init_tracing(&cfg.telemetry);
    let addr = http(&cfg);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let grace = cfg.server.shutdown_grace;
    let role = start(cfg).await?;
    tracing::info!(%addr, role = role.name(), "listening");
    serve(
        listener,
        vec![role],
        Router::new(),
        grace,
        hestia_telemetry::shutdown_signal(),
    )
    .await
}

/// Serves `extra` and the routes of `roles` (with `/metrics`, `/ready`, `/health`) until
/// `signal`, then lets in-flight requests finish and shuts the roles down, last started first.
pub async fn serve(
    listener: TcpListener,
    mut roles: Vec<Role>,
    extra: Router,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ready = Arc::new(AtomicBool::new(true));
    let mut app = extra;
    for r in &mut roles {
        app = app.merge(r.take_routes());
    }
    let app = app
        .layer(axum::middleware::from_fn(hestia_telemetry::track_http))
        .merge(hestia_telemetry::ops_router(ready.clone()));
    let stopping = ready.clone();
    let served = axum::serve(
        hestia_telemetry::nodelay(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        signal.await;
        stopping.store(false, Ordering::Release);
    })
    .await
    .context("serving HTTP");
    let stopped = shutdown_all(roles, grace).await;
    served.and(stopped)
}

/// Shuts roles down, last started first; every role is shut down even if one fails.
pub async fn shutdown_all(roles: Vec<Role>, grace: Duration) -> anyhow::Result<()> {
    let mut first = Ok(());
    for role in roles.into_iter().rev() {
        let r = role.shutdown(grace).await;
        if first.is_ok() {
            first = r;
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Clone, Default, clap::Args)]
    struct ListenFlag {
        #[arg(long)]
        listen: Option<SocketAddr>,
    }

    impl RoleFlags for ListenFlag {
        fn apply(&self, cfg: &mut Config) {
            if let Some(l) = self.listen {
                cfg.server.listen = l;
            }
        }
    }

    fn parse(args: &[&str]) -> Cli<ListenFlag> {
        use clap::Parser;
        Cli::<ListenFlag>::try_parse_from(std::iter::once("role").chain(args.iter().copied()))
            .expect("parse")
    }

    #[test]
    fn flags_override_the_file_and_only_what_they_name() {
        let dir = std::env::temp_dir().join(format!("hestia-runtime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:7000\"\ndata_dir = \"/tmp/from-file\"\n",
        )
        .expect("write");
        let f = file.to_str().expect("utf-8");

        let cli = parse(&["--config", f]);
        let cfg = cli.common.load(&cli.role).expect("load");
        assert_eq!(cfg.server.listen, "127.0.0.1:7000".parse().expect("addr"));
        assert_eq!(cfg.server.data_dir, PathBuf::from("/tmp/from-file"));

        let cli = parse(&["--config", f, "--listen", "127.0.0.1:7001"]);
        let cfg = cli.common.load(&cli.role).expect("load");
        assert_eq!(cfg.server.listen, "127.0.0.1:7001".parse().expect("addr"));
        assert_eq!(cfg.server.data_dir, PathBuf::from("/tmp/from-file"));

        let cli = parse(&["--config", f, "--data-dir", "/tmp/from-flag"]);
        let cfg = cli.common.load(&cli.role).expect("load");
        assert_eq!(cfg.server.listen, "127.0.0.1:7000".parse().expect("addr"));
        assert_eq!(cfg.server.data_dir, PathBuf::from("/tmp/from-flag"));

        // No file: defaults, with the flags on top.
        let cfg = parse(&[])
            .common
            .load(&ListenFlag::default())
            .expect("load");
        assert_eq!(cfg, Config::default());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_invalid_file_is_refused_with_its_path() {
        let cli = parse(&["--config", "/nonexistent/hestia.toml"]);
        let err = cli.common.load(&cli.role).expect_err("missing file");
        assert!(
            format!("{err:#}").contains("/nonexistent/hestia.toml"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_tasks_then_runs_closing_steps_in_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut role = Role::new("test");
        let l = log.clone();
        role.spawn("worker", move |stop| async move {
            stop.wait().await;
            l.lock().expect("log").push("worker stopped");
            Ok(())
        });
        role.spawn("stubborn", |_| async move {
            std::future::pending::<()>().await;
            Ok(())
        });
        role.abort_on_shutdown(tokio::spawn(std::future::pending::<()>()));
        let (l1, l2) = (log.clone(), log.clone());
        role.on_shutdown("first", async move {
            l1.lock().expect("log").push("first");
            Err(anyhow::anyhow!("boom"))
        });
        role.on_shutdown("second", async move {
            l2.lock().expect("log").push("second");
            Ok(())
        });
        let err = role
            .shutdown(Duration::from_millis(50))
            .await
            .expect_err("first step fails");
        assert_eq!(format!("{err:#}"), "test: first: boom");
        assert_eq!(
            *log.lock().expect("log"),
            vec!["worker stopped", "first", "second"]
        );
    }

    #[tokio::test]
    async fn serve_answers_role_routes_and_ops_then_shuts_roles_down_last_first() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut roles = Vec::new();
        for name in ["a", "b"] {
            let mut role = Role::new(name).with_routes(Router::new().route(
                &format!("/{name}"),
                axum::routing::get(move || async move { name }),
            ));
            let l = log.clone();
            role.on_shutdown("close", async move {
                l.lock().expect("log").push(name);
                Ok(())
            });
            roles.push(role);
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            roles,
            Router::new(),
            Duration::from_secs(1),
            async move {
                let _ = rx.await;
            },
        ));
        let client = reqwest::Client::new();
        for (path, body) in [("a", "a"), ("b", "b"), ("ready", "ready")] {
            let r = client
                .get(format!("http://{addr}/{path}"))
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200);
            assert_eq!(r.text().await.expect("body"), body);
        }
        tx.send(()).expect("signal");
        server.await.expect("join").expect("serve");
        assert_eq!(*log.lock().expect("log"), vec!["b", "a"]);
    }
}
