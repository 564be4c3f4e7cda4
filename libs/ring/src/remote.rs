//! [`ControlPlaneKv`]: the ring's KV store on the control plane's Raft group, over its gRPC API
//! (`RingGet`, `RingCas`, `RingHeartbeat`, `RingWatch`). Any voter serves every call: followers
//! forward writes to the leader and answer reads after a read barrier.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hestia_proto::control::control_plane_client::ControlPlaneClient;
use hestia_proto::control::{RingCasRequest, RingHeartbeatRequest, RingKeyRequest, RingValue};
use parking_lot::Mutex;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::{Kv, KvWatch, RingDesc, RingError, Versioned};

/// A dead node is skipped after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// One call on one endpoint; the server itself waits up to 10 s for a leader.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a call keeps going around the endpoints before it fails.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a connection to a vanished host (a watch stream would wait forever).
const KEEPALIVE: Duration = Duration::from_secs(10);

type Value = Option<Arc<Versioned>>;

/// The ring KV on the control plane. Calls start at the endpoint that answered last and move to
/// the next one when it is unavailable (dead node, no leader there); a watch is one stream per
/// key, shared by every receiver, reopened with backoff when it breaks, and closed when the last
/// receiver is dropped (it may outlive the `ControlPlaneKv`).
///
/// A CAS whose reply was lost is retried on another endpoint and then reports a conflict even
/// if the first attempt was committed; callers re-read, as [`crate::update`] does.
pub struct ControlPlaneKv {
    endpoints: Arc<Endpoints>,
    watches: Mutex<HashMap<String, watch::Sender<Value>>>,
}

struct Endpoints {
    clients: Vec<(String, ControlPlaneClient<Channel>)>,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
}

impl ControlPlaneKv {
    /// Clients for control-plane gRPC `endpoints` (`http://host:port`), connected lazily. Must
    /// be called inside a tokio runtime.
    pub fn new(endpoints: &[String]) -> Result<ControlPlaneKv, RingError> {
        if endpoints.is_empty() {
            return Err(RingError::Config(
                "the control-plane KV needs at least one endpoint".into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RingError::Config(
                "the control-plane KV must be created inside a tokio runtime".into(),
            ));
        }
        let clients = endpoints
            .iter()
            .map(|url| {
                let channel = Endpoint::from_shared(url.clone())
                    .map_err(|e| RingError::Config(format!("kv endpoint {url}: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(KEEPALIVE)
                    .keep_alive_timeout(KEEPALIVE)
                    .keep_alive_while_idle(true)
                    .connect_lazy();
                Ok((url.clone(), ControlPlaneClient::new(channel)))
            })
            .collect::<Result<_, RingError>>()?;
        Ok(ControlPlaneKv {
            endpoints: Arc::new(Endpoints {
                clients,
                preferred: AtomicUsize::new(0),
            }),
            watches: Mutex::new(HashMap::new()),
        })
    }
}

/// Errors another node may not have: anything but a refusal of the request itself.
fn try_elsewhere(s: &Status) -> bool {
    !matches!(
        s.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
    )
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

impl Endpoints {
    /// Runs `call` on each endpoint in turn, from the preferred one, until one answers; goes
    /// around again with backoff while none does, until `CALL_DEADLINE`.
    async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, RingError>
    where
        F: Fn(ControlPlaneClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + CALL_DEADLINE;
        let mut backoff = MIN_BACKOFF;
        let n = self.clients.len();
        loop {
            let start = self.preferred.load(Ordering::Relaxed);
            let mut last = String::new();
            for idx in (start..start + n).map(|i| i % n) {
                let (url, client) = &self.clients[idx];
                let error = match tokio::time::timeout(REQUEST_TIMEOUT, call(client.clone())).await
                {
                    Ok(Ok(r)) => {
                        self.preferred.store(idx, Ordering::Relaxed);
                        return Ok(r);
                    }
                    Ok(Err(s)) if !try_elsewhere(&s) => {
                        return Err(RingError::Kv(format!("{what} at {url}: {}", s.message())))
                    }
                    Ok(Err(s)) => s.message().to_string(),
                    Err(_) => "timed out".to_string(),
                };
                tracing::debug!(endpoint = %url, %error, "ring {what} failed, trying the next endpoint");
                last = format!("{url}: {error}");
            }
            if Instant::now() + backoff >= deadline {
                return Err(RingError::Kv(format!(
                    "{what}: no control-plane endpoint answered (last: {last})"
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A watch stream of `key` and the first value it sent.
    async fn open_watch(&self, key: &str) -> Result<(Value, Streaming<RingValue>), RingError> {
        let (first, stream) = self
            .call("watch", |mut c| {
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
    endpoints: Arc<Endpoints>,
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
    endpoints: &Endpoints,
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
            match endpoints.open_watch(key).await {
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
            .call("get", |mut c| {
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
            .call("cas", |mut c| {
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
            .call("heartbeat", |mut c| {
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
        let (first, stream) = self.endpoints.open_watch(key).await?;
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
