use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kv::update;
use crate::{InstanceConfig, InstanceDesc, InstanceState, Kv, RingConfig, RingError};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One instance's membership: registers it with its tokens, heartbeats, forgets instances silent
/// for `forget_after`, and on [`Lifecycler::stop`] goes LEAVING and unregisters. Dropping it
/// only stops the heartbeats.
pub struct Lifecycler {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Shared {
    kv: Arc<dyn Kv>,
    key: String,
    desc: Mutex<InstanceDesc>,
    forget_after_ms: i64,
}

impl Lifecycler {
    /// Registers the instance in `state`. Tokens come from its existing ring entry, else from
    /// `tokens_file`, else are drawn at random (and saved to `tokens_file`).
    pub async fn start(
        kv: Arc<dyn Kv>,
        ring: &RingConfig,
        instance: InstanceConfig,
        state: InstanceState,
    ) -> Result<Lifecycler, RingError> {
        ring.validate()?;
        instance.validate(ring)?;
        let from_file = match &instance.tokens_file {
            Some(p) => read_tokens(p)?,
            None => None,
        };
        let mut chosen = Vec::new();
        let registered = update(kv.as_ref(), &ring.key, |d| {
            let tokens = match d.instances.get(&instance.id) {
                Some(old) if !old.tokens.is_empty() => old.tokens.clone(),
                _ => from_file
                    .clone()
                    .unwrap_or_else(|| d.new_tokens(ring.tokens_per_instance, &mut rand::rng())),
            };
            chosen = tokens.clone();
            d.instances.insert(
                instance.id.clone(),
                InstanceDesc {
                    id: instance.id.clone(),
                    addr: instance.addr.clone(),
                    zone: instance.zone.clone(),
                    tokens,
                    state,
                    heartbeat_ms: now_ms(),
                },
            );
            true
        })
        .await?;
        if let Some(p) = &instance.tokens_file {
            write_tokens(p, &chosen)?;
        }
        let desc = registered
            .instances
            .get(&instance.id)
            .cloned()
            .ok_or_else(|| RingError::UnknownInstance(instance.id.clone()))?;
        let shared = Arc::new(Shared {
            kv,
            key: ring.key.clone(),
            desc: Mutex::new(desc),
            forget_after_ms: i64::try_from(ring.forget_after.as_millis()).unwrap_or(i64::MAX),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(heartbeat_loop(
            shared.clone(),
            ring.heartbeat_period,
            stop_rx,
        ));
        Ok(Lifecycler {
            shared,
            stop_tx,
            task,
        })
    }

    pub fn id(&self) -> String {
        self.shared.desc.lock().id.clone()
    }

    pub fn tokens(&self) -> Vec<u32> {
        self.shared.desc.lock().tokens.clone()
    }

    pub fn state(&self) -> InstanceState {
        self.shared.desc.lock().state
    }

    /// E.g. JOINING → ACTIVE once the WAL is replayed, ACTIVE → LEAVING before a flush.
    pub async fn set_state(&self, state: InstanceState) -> Result<(), RingError> {
        self.shared.desc.lock().state = state;
        self.shared.register().await
    }

    /// Graceful shutdown of a member with a persistent disk: goes LEAVING (writers move to the
    /// next instance of the zone, readers still ask it) and stops heartbeating, keeping its entry
    /// and tokens so that it owns the same series after a restart. `unregister` leaves the ring
    /// instead ([`Lifecycler::stop`]).
    pub async fn shutdown(self, unregister: bool) -> Result<(), RingError> {
        if unregister {
            return self.stop().await;
        }
        self.set_state(InstanceState::Leaving).await?;
        let _ = self.stop_tx.send(true);
        let _ = self.task.await;
        Ok(())
    }

    /// Stops heartbeating, goes LEAVING, then removes the instance from the ring.
    pub async fn stop(self) -> Result<(), RingError> {
        let Lifecycler {
            shared,
            stop_tx,
            task,
        } = self;
        let _ = stop_tx.send(true);
        let _ = task.await;
        let leaving = {
            let mut d = shared.desc.lock();
            std::mem::replace(&mut d.state, InstanceState::Leaving) != InstanceState::Leaving
        };
        if leaving {
            shared.register().await?;
        }
        let id = shared.desc.lock().id.clone();
        update(shared.kv.as_ref(), &shared.key, |d| {
            d.instances.remove(&id).is_some()
        })
        .await?;
        Ok(())
    }
}

impl Shared {
    /// Writes this instance's entry as it is now (also re-adds it after it was forgotten).
    async fn register(&self) -> Result<(), RingError> {
        let mut me = self.desc.lock().clone();
        me.heartbeat_ms = now_ms();
        update(self.kv.as_ref(), &self.key, |d| {
            d.instances.insert(me.id.clone(), me.clone());
            true
        })
        .await?;
        Ok(())
    }

    async fn beat(&self) -> Result<(), RingError> {
        let id = self.desc.lock().id.clone();
        let now = now_ms();
        if !self.kv.heartbeat(&self.key, &id, now).await? {
            tracing::warn!(instance = %id, "instance missing from the ring, registering again");
            self.register().await?;
        }
        let stale = self.kv.get(&self.key).await?.is_some_and(|v| {
            v.desc
                .instances
                .values()
                .any(|i| now - i.heartbeat_ms > self.forget_after_ms)
        });
        if stale {
            let forget_after = self.forget_after_ms;
            update(self.kv.as_ref(), &self.key, |d| {
                d.forget_stale(now, forget_after)
            })
            .await?;
        }
        Ok(())
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, period: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = shared.beat().await {
            tracing::warn!(error = %e, "ring heartbeat failed");
        }
    }
}

fn read_tokens(path: &Path) -> Result<Option<Vec<u32>>, RingError> {
    let err = |m: String| RingError::TokensFile {
        path: path.display().to_string(),
        message: m,
    };
    match std::fs::read(path) {
        Ok(b) => {
            let mut t: Vec<u32> = serde_json::from_slice(&b).map_err(|e| err(e.to_string()))?;
            t.sort_unstable();
            t.dedup();
            Ok((!t.is_empty()).then_some(t))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Written to a temporary file and renamed, so a crash never leaves half a file.
fn write_tokens(path: &Path, tokens: &[u32]) -> Result<(), RingError> {
    let err = |m: String| RingError::TokensFile {
        path: path.display().to_string(),
        message: m,
    };
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec(tokens).map_err(|e| err(e.to_string()))?;
    std::fs::write(&tmp, json).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryKv, Ring};

    fn cfg() -> RingConfig {
        RingConfig {
            heartbeat_period: Duration::from_millis(20),
            heartbeat_timeout: Duration::from_millis(200),
            forget_after: Duration::from_millis(400),
            tokens_per_instance: 16,
            ..Default::default()
        }
    }

    fn inst(id: &str, zone: &str) -> InstanceConfig {
        InstanceConfig {
            id: id.into(),
            addr: format!("{id}:9095"),
            zone: zone.into(),
            tokens_file: None,
        }
    }

    #[tokio::test]
    async fn register_heartbeat_leave() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let c = cfg();
        let lc = Lifecycler::start(kv.clone(), &c, inst("a1", "a"), InstanceState::Joining)
            .await
            .unwrap();
        let d = kv.get(&c.key).await.unwrap().unwrap().desc.clone();
        let me = &d.instances["a1"];
        assert_eq!((me.state, me.tokens.len()), (InstanceState::Joining, 16));
        lc.set_state(InstanceState::Active).await.unwrap();
        let hb0 = me.heartbeat_ms;
        tokio::time::sleep(Duration::from_millis(80)).await;
        let d = kv.get(&c.key).await.unwrap().unwrap().desc.clone();
        assert_eq!(d.instances["a1"].state, InstanceState::Active);
        assert!(d.instances["a1"].heartbeat_ms > hb0);
        lc.stop().await.unwrap();
        assert!(kv
            .get(&c.key)
            .await
            .unwrap()
            .unwrap()
            .desc
            .instances
            .is_empty());
    }

    #[tokio::test]
    async fn silent_instances_become_unhealthy_then_forgotten() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let c = cfg();
        let a = Lifecycler::start(kv.clone(), &c, inst("a1", "a"), InstanceState::Active)
            .await
            .unwrap();
        let b = Lifecycler::start(kv.clone(), &c, inst("b1", "b"), InstanceState::Active)
            .await
            .unwrap();
        // b1 dies without unregistering.
        b.task.abort();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let d = kv.get(&c.key).await.unwrap().unwrap().desc.clone();
        let ring = Ring::new(&d, &c);
        let b_idx = ring.instances().iter().position(|i| i.id == "b1").unwrap();
        assert!(!ring.is_healthy(b_idx, now_ms()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let d = kv.get(&c.key).await.unwrap().unwrap().desc.clone();
        assert_eq!(d.instances.keys().collect::<Vec<_>>(), ["a1"]);
        a.stop().await.unwrap();
    }

    #[tokio::test]
    async fn tokens_survive_restart_via_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg();
        let mut i = inst("a1", "a");
        i.tokens_file = Some(dir.path().join("tokens.json"));
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let lc = Lifecycler::start(kv.clone(), &c, i.clone(), InstanceState::Active)
            .await
            .unwrap();
        let tokens = lc.tokens();
        lc.stop().await.unwrap();
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let lc = Lifecycler::start(kv, &c, i, InstanceState::Active)
            .await
            .unwrap();
        assert_eq!(lc.tokens(), tokens);
        lc.stop().await.unwrap();
    }
}
