//! The ingester ring's KV store (hestia-ring's `Kv`) on the Raft group. A CAS is one Raft write
//! like any other; heartbeats are buffered by the node that receives them and committed as one
//! `RingHeartbeats` entry per key at most once per flush period, so instances beating every few
//! seconds do not swamp the log.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hestia_ring::RingDesc;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::CpError;
use crate::node::ControlPlane;
use crate::state::{Command, Outcome, RingEntry, State};

/// The newest heartbeat per (key, instance) not yet committed.
#[derive(Default)]
pub struct HeartbeatBuffer {
    pending: Mutex<BTreeMap<String, BTreeMap<String, i64>>>,
    wake: Notify,
    /// The last flush could not commit: heartbeat RPCs send clients to another node.
    failing: AtomicBool,
}

impl HeartbeatBuffer {
    fn add(&self, key: &str, instance: &str, at_ms: i64) {
        let mut pending = self.pending.lock();
        let beat = pending
            .entry(key.to_string())
            .or_default()
            .entry(instance.to_string())
            .or_insert(at_ms);
        *beat = (*beat).max(at_ms);
        drop(pending);
        self.wake.notify_one();
    }

    /// Puts back the beats of a failed flush (newer ones buffered meanwhile win).
    fn restore(&self, key: String, beats: BTreeMap<String, i64>) {
        let mut pending = self.pending.lock();
        let slot = pending.entry(key).or_default();
        for (instance, at_ms) in beats {
            let beat = slot.entry(instance).or_insert(at_ms);
            *beat = (*beat).max(at_ms);
        }
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeMap<String, BTreeMap<String, i64>> {
        std::mem::take(&mut *self.pending.lock())
    }
}

/// Commits buffered heartbeats: waits for one, proposes one command per key, then waits `every`
/// before the next round. Runs until `stop` resolves.
pub async fn flush_heartbeats(
    cp: Arc<ControlPlane>,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = cp.ring_beats.wake.notified() => {}
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = flush(&cp) => {}
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn flush(cp: &ControlPlane) {
    let mut failed = false;
    for (key, beats) in cp.ring_beats.take() {
        let cmd = Command::RingHeartbeats {
            key: key.clone(),
            beats: beats.iter().map(|(i, t)| (i.clone(), *t)).collect(),
        };
        if let Err(e) = cp.write(cmd).await {
            tracing::warn!(%key, error = %e, "committing ring heartbeats failed");
            cp.ring_beats.restore(key, beats);
            failed = true;
        }
    }
    cp.ring_beats.failing.store(failed, Ordering::Relaxed);
}

fn check_key(key: &str) -> Result<(), CpError> {
    if key.is_empty() {
        return Err(CpError::field("key", "must not be empty"));
    }
    Ok(())
}

impl ControlPlane {
    /// A linearizable read of a ring key.
    pub async fn ring_get(&self, key: &str) -> Result<Option<RingEntry>, CpError> {
        check_key(key)?;
        self.read(|s| s.rings.get(key).cloned()).await
    }

    /// Stores `desc` if the key's version is `expected`. Returns whether it did, and the new
    /// (or, on a conflict, the current) version.
    pub async fn ring_cas(
        &self,
        key: &str,
        expected: u64,
        desc: RingDesc,
    ) -> Result<(bool, u64), CpError> {
        check_key(key)?;
        let cmd = Command::RingCas {
            key: key.to_string(),
            expected,
            desc,
        };
        match self.write(cmd).await? {
            Outcome::RingCas { ok, version } => Ok((ok, version)),
            other => Err(CpError::Internal(format!("ring CAS produced {other:?}"))),
        }
    }

    /// Buffers a heartbeat of a registered instance; false when the instance is not registered.
    pub async fn ring_heartbeat(
        &self,
        key: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<bool, CpError> {
        check_key(key)?;
        if instance.is_empty() {
            return Err(CpError::field("instance", "must not be empty"));
        }
        if self.ring_beats.failing.load(Ordering::Relaxed) {
            return Err(CpError::Unavailable(
                "this node cannot commit heartbeats".to_string(),
            ));
        }
        let known = |s: &State| {
            s.rings
                .get(key)
                .is_some_and(|e| e.desc.instances.contains_key(instance))
        };
        // This node may not have applied a registration made through another one yet: a miss
        // is confirmed linearizably.
        let known = self.sm.read(known) || self.read(known).await?;
        if known {
            self.ring_beats.add(key, instance, at_ms);
        }
        Ok(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_keeps_the_newest_beat_per_instance() {
        let b = HeartbeatBuffer::default();
        b.add("r", "a", 10);
        b.add("r", "a", 5);
        b.add("r", "b", 7);
        b.add("s", "a", 1);
        let taken = b.take();
        assert_eq!(
            taken["r"],
            BTreeMap::from([("a".into(), 10), ("b".into(), 7)])
        );
        assert_eq!(taken["s"].len(), 1);
        assert!(b.take().is_empty());
        b.add("r", "a", 20);
        b.restore("r".into(), taken["r"].clone());
        assert_eq!(
            b.take()["r"],
            BTreeMap::from([("a".into(), 20), ("b".into(), 7)])
        );
    }
}
