use std::sync::Arc;

use parking_lot::RwLock;
use tokio::task::JoinHandle;

use crate::{Kv, Ring, RingConfig, RingDesc, RingError};

/// Keeps an up-to-date [`Ring`] for readers of the ring (distributors, queriers).
pub struct RingClient {
    current: Arc<RwLock<Arc<Ring>>>,
    task: JoinHandle<()>,
}

impl RingClient {
    pub async fn start(kv: Arc<dyn Kv>, cfg: &RingConfig) -> Result<RingClient, RingError> {
        cfg.validate()?;
        let mut watch = kv.watch(&cfg.key).await?;
        let desc = watch
            .borrow_and_update()
            .as_ref()
            .map(|v| v.desc.clone())
            .unwrap_or_default();
        let current = Arc::new(RwLock::new(Arc::new(Ring::new(&desc, cfg))));
        let shared = current.clone();
        let cfg = cfg.clone();
        let task = tokio::spawn(async move {
            let mut prev: RingDesc = desc;
            while watch.changed().await.is_ok() {
                let desc = watch
                    .borrow_and_update()
                    .as_ref()
                    .map(|v| v.desc.clone())
                    .unwrap_or_default();
                let next = shared.read().updated(&prev, &desc, &cfg);
                *shared.write() = Arc::new(next);
                prev = desc;
            }
        });
        Ok(RingClient { current, task })
    }

    /// The latest ring; cheap (one `Arc` clone), hold it for one request.
    pub fn ring(&self) -> Arc<Ring> {
        self.current.read().clone()
    }
}

impl Drop for RingClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InstanceConfig, InstanceState, Lifecycler, MemoryKv};
    use std::time::Duration;

    #[tokio::test]
    async fn follows_membership() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::default());
        let cfg = RingConfig::default();
        let client = RingClient::start(kv.clone(), &cfg).await.unwrap();
        assert!(client.ring().is_empty());
        let mut lcs = Vec::new();
        for z in ["a", "b", "c"] {
            let i = InstanceConfig {
                id: format!("ingester-{z}1"),
                addr: format!("127.0.0.1:{}", 9000 + lcs.len()),
                zone: z.into(),
                tokens_file: None,
            };
            lcs.push(
                Lifecycler::start(kv.clone(), &cfg, i, InstanceState::Active)
                    .await
                    .unwrap(),
            );
        }
        for _ in 0..100 {
            if client.ring().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ring = client.ring();
        let set = ring.replication_set(12345, crate::now_ms()).unwrap();
        assert_eq!((set.len(), set.max_errors()), (3, 1));
        for lc in lcs {
            lc.stop().await.unwrap();
        }
    }
}
