//! Which tenants this compactor owns. Every compactor is one instance of the compactors' ring
//! (`[compactor.ring]`, in `[ring]`'s store) with its own tokens; a tenant belongs to the first
//! ACTIVE instance clockwise from the token of its id's hash, if that instance is healthy.
//!
//! A compactor starts a tenant only when the ring's membership has been unchanged for
//! `wait_stability` (or it is alone in the ring), and checks the owner again before uploading
//! a compacted block. When a compactor joins, the one handing tenants over stops starting them
//! at once and drops an output it no longer owns at upload; the newcomer starts only after the
//! wait. Two compactors both working on one tenant would still leave a correct bucket: their
//! outputs have the same sources, and the next pass marks the older one as superseded. The
//! tenants of a compactor that died without leaving wait until `[ring] forget_after` removes it
//! from the ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hestia_model::TenantId;
use hestia_ring::{
    now_ms, token_of, InstanceConfig, InstanceState, Kv, Lifecycler, Ring, RingConfig, RingDesc,
    RingError,
};
use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

struct View {
    ring: Ring,
    desc: RingDesc,
    /// When the membership (not heartbeats) last changed.
    changed_at: Instant,
}

pub(crate) struct Ownership {
    id: String,
    view: Arc<RwLock<View>>,
    wait_stability: Duration,
    /// Set when leaving: nothing is owned any more.
    stopped: AtomicBool,
    lifecycler: Mutex<Option<Lifecycler>>,
    watch: JoinHandle<()>,
}

impl Ownership {
    /// Registers `instance` ACTIVE in the ring `cfg` of `kv` and follows the ring.
    pub async fn start(
        kv: Arc<dyn Kv>,
        cfg: &RingConfig,
        instance: InstanceConfig,
        wait_stability: Duration,
    ) -> Result<Self, RingError> {
        let id = instance.id.clone();
        let lifecycler =
            Lifecycler::start(kv.clone(), cfg, instance, InstanceState::Active).await?;
        let mut watch = kv.watch(&cfg.key).await?;
        let desc = watch
            .borrow_and_update()
            .as_ref()
            .map(|v| v.desc.clone())
            .unwrap_or_default();
        let view = Arc::new(RwLock::new(View {
            ring: Ring::new(&desc, cfg),
            desc,
            changed_at: Instant::now(),
        }));
        let shared = view.clone();
        let cfg = cfg.clone();
        let watch = tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                let desc = watch
                    .borrow_and_update()
                    .as_ref()
                    .map(|v| v.desc.clone())
                    .unwrap_or_default();
                let mut v = shared.write();
                if !v.desc.same_topology(&desc) {
                    v.changed_at = Instant::now();
                }
                v.ring = v.ring.updated(&v.desc, &desc, &cfg);
                v.desc = desc;
            }
        });
        Ok(Self {
            id,
            view,
            wait_stability,
            stopped: AtomicBool::new(false),
            lifecycler: Mutex::new(Some(lifecycler)),
            watch,
        })
    }

    pub fn instance_id(&self) -> &str {
        &self.id
    }

    /// Whether this compactor owns `tenant` now.
    pub fn owns(&self, tenant: &TenantId) -> bool {
        if self.stopped.load(Ordering::Acquire) {
            return false;
        }
        let token = token_of(xxhash_rust::xxh3::xxh3_64(tenant.as_str().as_bytes()));
        let v = self.view.read();
        v.ring
            .replication_set(token, now_ms())
            .is_ok_and(|set| set.instances().any(|i| v.ring.instance(i).id == self.id))
    }

    /// Whether tenants may be started: the membership has been unchanged for
    /// `wait_stability`, or this compactor is alone.
    pub fn stable(&self) -> bool {
        let v = self.view.read();
        v.ring.len() <= 1 || v.changed_at.elapsed() >= self.wait_stability
    }

    /// Leaves the ring, handing the tenants to the other compactors at once.
    pub async fn stop(&self) -> Result<(), RingError> {
        self.stopped.store(true, Ordering::Release);
        self.watch.abort();
        let lifecycler = self.lifecycler.lock().take();
        match lifecycler {
            Some(l) => l.stop().await,
            None => Ok(()),
        }
    }
}

impl Drop for Ownership {
    fn drop(&mut self) {
        self.watch.abort();
    }
}
