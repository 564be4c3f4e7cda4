//! The replicated write and read paths in one process: six ingesters in three zones on their own
//! 127.0.0.x addresses, a shared in-memory ring at RF=3, two distributors and a querier. An
//! ingester "crashes" (its gRPC server and heartbeats stop at once): writes stay 2xx and queries
//! exact. A second crash in another zone: writes of series replicated on both fail with 5xx,
//! never 2xx, and queries fail rather than answer partially. After a restart on the same disk
//! everything acknowledged is there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hestia_config::{Config, RingConfig};
use hestia_distributor::{Distributor, Protocol};
use hestia_model::TenantId;
use hestia_proto::IngesterPool;
use hestia_querier::Querier;
use hestia_ring::{Kv, Lifecycler, MemoryKv, RingClient};
use tokio::sync::watch;
use tower::ServiceExt;

const TENANT: &str = "000000000000_ws-ring";

struct Ingester {
    name: String,
    zone: String,
    ip: [u8; 4],
    dir: PathBuf,
    running: Option<Running>,
}

struct Running {
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    lifecycler: Lifecycler,
    db: Arc<hestia_storage::Tsdb>,
}

impl Ingester {
    async fn start(&mut self, kv: Arc<dyn Kv>, ring: &RingConfig) {
        let mut cfg = Config::default();
        cfg.ingester.instance_id = Some(self.name.clone());
        cfg.ingester.zone = self.zone.clone();
        let db = hestia_ingester::open_tsdb(&self.dir, &cfg.ingester).expect("open tsdb");
        let (listener, addr) = hestia_ingester::bind_grpc(SocketAddr::from((self.ip, 0)))
            .await
            .expect("bind");
        let (stop, mut stop_rx) = watch::channel(false);
        let server = tokio::spawn({
            let db = db.clone();
            async move {
                let service = hestia_ingester::IngesterService::new(
                    db,
                    Arc::new(hestia_ingester::SeriesLimiter::unlimited()),
                );
                let _ = hestia_ingester::serve_grpc(listener, service, async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                })
                .await;
            }
        });
        let lifecycler = hestia_ingester::join_ring(kv, ring, &cfg.ingester, addr, &self.dir)
            .await
            .expect("join ring");
        self.running = Some(Running {
            stop,
            server,
            lifecycler,
            db,
        });
    }

    /// As the rest of the cluster sees a crash: the instance stops answering and heartbeating
    /// but stays ACTIVE in the ring. Its database is dropped without a flush, so a restart
    /// replays the WAL. (The server stops gracefully only so that every handle on the database
    /// is gone and RocksDB can be reopened in this process.)
    async fn crash(&mut self) {
        let r = self.running.take().expect("running");
        drop(r.lifecycler);
        let _ = r.stop.send(true);
        tokio::time::timeout(Duration::from_secs(10), r.server)
            .await
            .expect("server stops")
            .expect("join");
        drop(r.db);
    }
}

struct Cluster {
    kv: Arc<dyn Kv>,
    ring_cfg: RingConfig,
    ingesters: Vec<Ingester>,
    distributors: Vec<Arc<Distributor>>,
    querier: axum::Router,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let ring_cfg = RingConfig::default();
        let mut ingesters = Vec::new();
        for (z, zone) in ["a", "b", "c"].iter().enumerate() {
            for k in 1..=2u8 {
                let name = format!("ingester-{zone}{k}");
                let mut ing = Ingester {
                    dir: dir.path().join(&name),
                    name,
                    zone: zone.to_string(),
                    ip: [127, 0, 0, 21 + 2 * z as u8 + (k - 1)],
                    running: None,
                };
                ing.start(kv.clone(), &ring_cfg).await;
                ingesters.push(ing);
            }
        }
        let ring = Arc::new(
            RingClient::start(kv.clone(), &ring_cfg)
                .await
                .expect("ring"),
        );
        wait_for(|| ring.ring().len() == 6).await;
        let pool = Arc::new(IngesterPool::default());
        let cfg = Config::default();
        // Both distributors decide HA elections in one store, as a cluster's do on Raft.
        let ha_store: Arc<dyn hestia_ha::HaStore> = Arc::new(hestia_ha::MemoryHaStore::default());
        let distributors = (0..2)
            .map(|_| {
                Arc::new(Distributor::new(
                    cfg.distributor.clone(),
                    Arc::new(hestia_limits::Overrides::fixed(cfg.limits.clone())),
                    ring.clone(),
                    pool.clone(),
                    None,
                    hestia_ha::HaTracker::new(ha_store.clone(), cfg.distributor.ha_tracker.clone()),
                ))
            })
            .collect();
        let querier =
            hestia_querier::router(Arc::new(Querier::new(cfg.querier.clone(), ring, pool)));
        Cluster {
            kv,
            ring_cfg,
            ingesters,
            distributors,
            querier,
            _dir: dir,
        }
    }

    fn ingester(&mut self, name: &str) -> &mut Ingester {
        self.ingesters
            .iter_mut()
            .find(|i| i.name == name)
            .expect("known ingester")
    }

    async fn restart(&mut self, name: &str) {
        let (kv, ring) = (self.kv.clone(), self.ring_cfg.clone());
        self.ingester(name).start(kv, &ring).await;
    }

    /// Writes `series` series with one sample at `t`, alternating distributors; true on 2xx.
    async fn write(&self, round: usize, series: usize, t: i64) -> bool {
        let ts = (0..series)
            .map(|i| {
                crate::common::series(
                    &[("__name__", "ring_test"), ("i", &i.to_string())],
                    &[(t, round as f64)],
                )
            })
            .collect();
        let body = crate::common::encode(ts);
        let tenant = TenantId::parse(TENANT).expect("tenant");
        self.distributors[round % 2]
            .push(&tenant, Protocol::V1, &body)
            .await
            .is_ok()
    }

    /// `count(ring_test)` and `sum(ring_test)` at `t`, or the HTTP status on failure.
    async fn count_and_sum(&self, t: i64) -> Result<(f64, f64), u16> {
        let q = |expr: &str| {
            let uri = format!(
                "/api/v1/query?query={}&time={}",
                urlencode(expr),
                t as f64 / 1000.0
            );
            http::Request::get(uri)
                .header("x-scope-orgid", TENANT)
                .body(Body::empty())
                .expect("request")
        };
        let mut out = [0.0; 2];
        for (k, expr) in ["count(ring_test)", "sum(ring_test)"].iter().enumerate() {
            let resp = self.querier.clone().oneshot(q(expr)).await.expect("call");
            let status = resp.status().as_u16();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body");
            if status != 200 {
                return Err(status);
            }
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            out[k] = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
        }
        Ok((out[0], out[1]))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicated_writes_survive_one_zone_and_fail_loudly_beyond() {
    let mut c = Cluster::start().await;
    let t0 = crate::common::now_ms() - 60_000;
    const N: usize = 200;

    assert!(c.write(0, N, t0).await, "healthy cluster accepts");
    assert_eq!(c.count_and_sum(t0).await, Ok((N as f64, 0.0)));

    // One ingester down: every write is acknowledged, reads fall back to another zone.
    c.ingester("ingester-a1").crash().await;
    for round in 1..=4 {
        let t = t0 + round as i64 * 1000;
        assert!(c.write(round, N, t).await, "round {round} with a1 down");
        assert_eq!(c.count_and_sum(t).await, Ok((N as f64, (N * round) as f64)));
    }
    // The whole zone a down: still fine.
    c.ingester("ingester-a2").crash().await;
    let t5 = t0 + 5000;
    assert!(c.write(5, N, t5).await, "zone a down");
    assert_eq!(c.count_and_sum(t5).await, Ok((N as f64, (N * 5) as f64)));

    // A second zone loses an instance: series replicated on a and b1 lose their quorum. The
    // write must fail (5xx) and reads must refuse rather than answer without zone b1's series.
    c.ingester("ingester-b1").crash().await;
    assert!(
        !c.write(6, N, t0 + 6000).await,
        "no quorum must not be acknowledged"
    );
    assert_eq!(c.count_and_sum(t5).await, Err(503));

    // Back up on the same disks: every acknowledged sample is there.
    for name in ["ingester-a1", "ingester-a2", "ingester-b1"] {
        c.restart(name).await;
    }
    for round in 0..=5 {
        let t = t0 + round as i64 * 1000;
        assert_eq!(
            c.count_and_sum(t).await,
            Ok((N as f64, (N * round) as f64)),
            "round {round} after restarts"
        );
    }
    assert!(c.write(7, N, t0 + 7000).await);
}
