//! The ring descriptor's store. Implementations must be linearizable per key: `cas` succeeds only
//! against the latest version, and `watch` eventually shows every key's latest value.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::remote::ControlPlaneKv;
use crate::{KvBackend, RingConfig, RingDesc, RingError};

/// A descriptor with the version `cas` compares against. Versions only grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub desc: RingDesc,
}

/// The latest value of a key, `None` while the key is absent.
pub type KvWatch = watch::Receiver<Option<Arc<Versioned>>>;

#[async_trait]
pub trait Kv: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Arc<Versioned>>, RingError>;

    /// Stores `desc` if the key's version is `expected` (0: the key is absent). Returns the new
    /// version, or `None` when another writer got there first.
    async fn cas(&self, key: &str, expected: u64, desc: RingDesc)
        -> Result<Option<u64>, RingError>;

    /// Raises one instance's heartbeat to `at_ms` (never lowers it). Returns false when the
    /// instance is not registered. Heartbeats commute, so a replicated store may batch them and
    /// keep only the newest per instance instead of logging whole descriptors.
    async fn heartbeat(&self, key: &str, instance: &str, at_ms: i64) -> Result<bool, RingError>;

    async fn watch(&self, key: &str) -> Result<KvWatch, RingError>;
}

/// Opens the store `cfg.kv` names (the control plane's needs a tokio runtime: call it inside one).
pub fn new_kv(cfg: &RingConfig) -> Result<Arc<dyn Kv>, RingError> {
    cfg.validate()?;
    Ok(match cfg.kv {
        KvBackend::Memory => Arc::new(MemoryKv::default()),
        KvBackend::ControlPlane => Arc::new(ControlPlaneKv::new(&cfg.kv_endpoints)?),
    })
}

/// Reads, changes and CASes the descriptor at `key` until it sticks. `change` returns false to
/// leave the descriptor alone. Returns the descriptor as stored.
pub async fn update<F>(kv: &dyn Kv, key: &str, mut change: F) -> Result<RingDesc, RingError>
where
    F: FnMut(&mut RingDesc) -> bool + Send,
{
    const ATTEMPTS: usize = 16;
    for _ in 0..ATTEMPTS {
        let current = kv.get(key).await?;
        let (version, mut desc) = match current {
            Some(v) => (v.version, v.desc.clone()),
            None => (0, RingDesc::default()),
        };
        if !change(&mut desc) {
            return Ok(desc);
        }
        if kv.cas(key, version, desc.clone()).await?.is_some() {
            return Ok(desc);
        }
    }
    Err(RingError::CasConflict(key.to_string()))
}

/// Every key in a process-local map; watchers are `tokio::sync::watch` channels.
#[derive(Default)]
pub struct MemoryKv {
    keys: Mutex<HashMap<String, watch::Sender<Option<Arc<Versioned>>>>>,
}

impl MemoryKv {
    fn with_key<R>(
        &self,
        key: &str,
        f: impl FnOnce(&watch::Sender<Option<Arc<Versioned>>>) -> R,
    ) -> R {
        let mut keys = self.keys.lock();
        let tx = keys
            .entry(key.to_string())
            .or_insert_with(|| watch::channel(None).0);
        f(tx)
    }
}

#[async_trait]
impl Kv for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Arc<Versioned>>, RingError> {
        Ok(self.with_key(key, |tx| tx.borrow().clone()))
    }

    async fn cas(
        &self,
        key: &str,
        expected: u64,
        desc: RingDesc,
    ) -> Result<Option<u64>, RingError> {
        Ok(self.with_key(key, |tx| {
            let current = tx.borrow().as_ref().map_or(0, |v| v.version);
            if current != expected {
                return None;
            }
            let version = current + 1;
            tx.send_replace(Some(Arc::new(Versioned { version, desc })));
            Some(version)
        }))
    }

    async fn heartbeat(&self, key: &str, instance: &str, at_ms: i64) -> Result<bool, RingError> {
        Ok(self.with_key(key, |tx| {
            let Some(current) = tx.borrow().clone() else {
                return false;
            };
            let Some(i) = current.desc.instances.get(instance) else {
                return false;
            };
            if i.heartbeat_ms >= at_ms {
                return true;
            }
            let mut next = Versioned {
                version: current.version + 1,
                desc: current.desc.clone(),
            };
            if let Some(i) = next.desc.instances.get_mut(instance) {
                i.heartbeat_ms = at_ms;
            }
            tx.send_replace(Some(Arc::new(next)));
            true
        }))
    }

    async fn watch(&self, key: &str) -> Result<KvWatch, RingError> {
        Ok(self.with_key(key, |tx| tx.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InstanceDesc, InstanceState};

    fn desc_with(id: &str) -> RingDesc {
        let mut d = RingDesc::default();
        d.instances.insert(
            id.into(),
            InstanceDesc {
                id: id.into(),
                addr: "x".into(),
                zone: "a".into(),
                tokens: vec![1],
                state: InstanceState::Active,
                heartbeat_ms: 10,
            },
        );
        d
    }

    #[tokio::test]
    async fn cas_get_watch_heartbeat() {
        let kv = new_kv(&RingConfig::default()).unwrap();
        let mut w = kv.watch("r").await.unwrap();
        assert!(kv.get("r").await.unwrap().is_none());
        assert_eq!(kv.cas("r", 0, desc_with("a")).await.unwrap(), Some(1));
        assert_eq!(kv.cas("r", 0, desc_with("b")).await.unwrap(), None);
        w.changed().await.unwrap();
        assert_eq!(w.borrow().as_ref().unwrap().version, 1);

        assert!(kv.heartbeat("r", "a", 20).await.unwrap());
        assert!(!kv.heartbeat("r", "zz", 20).await.unwrap());
        // Older heartbeats never win.
        assert!(kv.heartbeat("r", "a", 15).await.unwrap());
        let v = kv.get("r").await.unwrap().unwrap();
        assert_eq!((v.version, v.desc.instances["a"].heartbeat_ms), (2, 20));
    }

    #[tokio::test]
    async fn update_retries_and_skips_no_ops() {
        let kv = MemoryKv::default();
        let d = update(&kv, "r", |d| {
            d.instances.extend(desc_with("a").instances);
            true
        })
        .await
        .unwrap();
        assert_eq!(d.instances.len(), 1);
        update(&kv, "r", |_| false).await.unwrap();
        assert_eq!(kv.get("r").await.unwrap().unwrap().version, 1);
    }
}
