//! [`ControlPlaneKv`]: the ring's KV store on the control plane's Raft group, over its gRPC API
//! (`RingGet`, `RingCas`, `RingHeartbeat`, `RingWatch`). Any voter serves every call: followers
//! forward writes to the leader and answer reads after a read barrier.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use hestia_proto::control::{RingCasRequest, RingHeartbeatRequest, RingKeyRequest, RingValue};
use hestia_proto::{CallError, ControlPlaneEndpoints, MAX_BACKOFF, MIN_BACKOFF};
use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::{Status, Streaming};

use crate::{Kv, KvWatch, RingDesc, RingError, Versioned};

type Value = Option<Arc<Versioned>>;

/// The ring KV on the control plane. Calls start at the endpoint that answered last and move to
/// the next one when it is unavailable (dead node, no leader there); a watch is one stream per
/// key, shared by every receiver, reopened with backoff when it breaks, and closed when the last
/// receiver is dropped (it may outlive the `ControlPlaneKv`).
///
/// A CAS whose reply was lost is retried on another endpoint and then reports a conflict even
/// if the first attempt was committed; callers re-read, as [`crate::update`] does.
pub struct ControlPlaneKv {
    endpoints: Arc<ControlPlaneEndpoints>,
    watches: Mutex<HashMap<String, watch::Sender<Value>>>,
}

impl From<CallError> for RingError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Config(m) => RingError::Config(m),
            e => RingError::Kv(e.to_string()),
        }
    }
}

impl ControlPlaneKv {
    /// Clients for control-plane gRPC `endpoints` (`http://host:port`), connected lazily. Must
    /// be called inside a tokio runtime.
    pub fn new(endpoints: &[String]) -> Result<ControlPlaneKv, RingError> {
        Ok(ControlPlaneKv {
            endpoints: Arc::new(ControlPlaneEndpoints::new(endpoints)?),
            watches: Mutex::new(HashMap::new()),
        })
    }
}

fn decode(v: RingValue) -> Result<Value, RingError> {
    if !v.found {
        return Ok(None);
    }
    let desc: RingDesc = serde_json::from_str(&v.desc_json)
        .map_err(|e| RingError::Kv(format!("undecodable ring descriptor: {e}")))?;
    Ok(Some(Arc::new(Versioned {
        version: v.version,
        desc,
    })))
}

/// A watch stream of `key` and the first value it sent.
async fn open_watch(
    endpoints: &ControlPlaneEndpoints,
    key: &str,
) -> Result<(Value, Streaming<RingValue>), RingError> {
    let (first, stream) = endpoints
        .call("ring watch", |mut c| {
            let req = RingKeyRequest { key: key.into() };
            async move {
                let mut stream = c.ring_watch(req).await?.into_inner();
                let first = stream
                    .message()
                    .await?
                    .ok_or_else(|| Status::unavailable("ring watch ended at once"))?;
                Ok((first, stream))
            }
        })
        .await?;
    Ok((decode(first)?, stream))
}

/// Publishes `v` unless the receivers already have that version or a newer one.
fn publish(tx: &watch::Sender<Value>, v: Value) {
    tx.send_if_modified(|current| {
        let newer = match (current.as_ref(), v.as_ref()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(c), Some(n)) => n.version > c.version,
        };
        if newer {
            *current = v;
        }
        newer
    });
}

/// Feeds `tx` from `stream` until every receiver is gone.
async fn follow(
    endpoints: Arc<ControlPlaneEndpoints>,
    key: String,
    tx: watch::Sender<Value>,
    stream: Streaming<RingValue>,
) {
    tokio::select! {
        _ = feed(&endpoints, &key, &tx, stream) => {}
        _ = tx.closed() => {}
    }
}

/// Feeds `tx` from `stream`, reopening it (on any endpoint, with backoff) whenever it breaks.
async fn feed(
    endpoints: &ControlPlaneEndpoints,
    key: &str,
    tx: &watch::Sender<Value>,
    mut stream: Streaming<RingValue>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let error = loop {
            match stream.message().await {
                Ok(Some(v)) => match decode(v) {
                    Ok(v) => {
                        publish(tx, v);
                        backoff = MIN_BACKOFF;
                    }
                    Err(e) => break e.to_string(),
                },
                Ok(None) => break "stream ended".to_string(),
                Err(s) => break s.message().to_string(),
            }
        };
        tracing::warn!(%key, %error, "ring watch interrupted, reopening");
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match open_watch(endpoints, key).await {
                Ok((first, s)) => {
                    publish(tx, first);
                    stream = s;
                    break;
                }
                Err(e) => tracing::warn!(%key, error = %e, "reopening the ring watch failed"),
            }
        }
    }
}

#[async_trait]
impl Kv for ControlPlaneKv {
    async fn get(&self, key: &str) -> Result<Value, RingError> {
        let v = self
            .endpoints
            .call("ring get", |mut c| {
                let req = RingKeyRequest { key: key.into() };
                async move { c.ring_get(req).await.map(tonic::Response::into_inner) }
            })
            .await?;
        decode(v)
    }

    async fn cas(
        &self,
        key: &str,
        expected: u64,
        desc: RingDesc,
    ) -> Result<Option<u64>, RingError> {
        let desc_json = serde_json::to_string(&desc).map_err(|e| RingError::Kv(e.to_string()))?;
        let r = self
            .endpoints
            .call("ring cas", |mut c| {
                let req = RingCasRequest {
                    key: key.into(),
                    expected,
                    desc_json: desc_json.clone(),
                };
                async move { c.ring_cas(req).await.map(tonic::Response::into_inner) }
            })
            .await?;
        Ok(r.ok.then_some(r.version))
    }

    async fn heartbeat(&self, key: &str, instance: &str, at_ms: i64) -> Result<bool, RingError> {
        let r = self
            .endpoints
            .call("ring heartbeat", |mut c| {
                let req = RingHeartbeatRequest {
                    key: key.into(),
                    instance: instance.into(),
                    at_ms,
                };
                async move { c.ring_heartbeat(req).await.map(tonic::Response::into_inner) }
            })
            .await?;
        Ok(r.known)
    }

    /// The first call for a key opens its stream and returns once the current value arrived.
    async fn watch(&self, key: &str) -> Result<KvWatch, RingError> {
        // A channel without receivers is never fed again: its task has ended or is ending.
        let open = |watches: &HashMap<String, watch::Sender<Value>>| {
            watches
                .get(key)
                .filter(|tx| !tx.is_closed())
                .map(watch::Sender::subscribe)
        };
        if let Some(rx) = open(&self.watches.lock()) {
            return Ok(rx);
        }
        let (first, stream) = open_watch(&self.endpoints, key).await?;
        let mut watches = self.watches.lock();
        // Another caller opened it meanwhile.
        if let Some(rx) = open(&watches) {
            return Ok(rx);
        }
        let (tx, rx) = watch::channel(first);
        tokio::spawn(follow(
            self.endpoints.clone(),
            key.to_string(),
            tx.clone(),
            stream,
        ));
        watches.insert(key.to_string(), tx);
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_endpoints_and_a_runtime() {
        assert!(matches!(
            ControlPlaneKv::new(&[]),
            Err(RingError::Config(_))
        ));
        assert!(matches!(
            ControlPlaneKv::new(&["http://127.0.0.1:1".into()]),
            Err(RingError::Config(_))
        ));
    }

    #[tokio::test]
    async fn rejects_bad_endpoints() {
        assert!(matches!(
            ControlPlaneKv::new(&["http://127.0.0.1:1".into(), "not a url".into()]),
            Err(RingError::Config(_))
        ));
        assert!(ControlPlaneKv::new(&["http://127.0.0.1:1".into()]).is_ok());
    }

    #[test]
    fn publish_never_goes_back() {
        let (tx, rx) = watch::channel(None);
        let v = |version| {
            Some(Arc::new(Versioned {
                version,
                desc: RingDesc::default(),
            }))
        };
        publish(&tx, v(2));
        publish(&tx, v(1));
        publish(&tx, None);
        assert_eq!(rx.borrow().as_ref().map(|v| v.version), Some(2));
        publish(&tx, v(3));
        assert_eq!(rx.borrow().as_ref().map(|v| v.version), Some(3));
    }
}
