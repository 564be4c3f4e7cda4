//! [`ControlPlaneEndpoints`]: gRPC clients for every control-plane voter, with failover. Any
//! voter serves every call (followers forward writes and answer reads after a read barrier), so
//! a call starts at the endpoint that answered last and moves on when that one is unavailable.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::control::control_plane_client::ControlPlaneClient;

/// A dead node is skipped after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// One call on one endpoint; the server itself waits up to 10 s for a leader.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a call keeps going around the endpoints before it fails.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a connection to a vanished host (a stream would wait forever).
const KEEPALIVE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The endpoints cannot be used (bad URL, no runtime).
    Config(String),
    /// A voter refused the request itself; another would too.
    Refused { endpoint: String, message: String },
    /// No voter answered before the deadline.
    Unavailable(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Config(m) | CallError::Unavailable(m) => f.write_str(m),
            CallError::Refused { endpoint, message } => write!(f, "{endpoint}: {message}"),
        }
    }
}

impl std::error::Error for CallError {}

pub struct ControlPlaneEndpoints {
    clients: Vec<(String, ControlPlaneClient<Channel>)>,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
}

impl ControlPlaneEndpoints {
    /// Clients for `endpoints` (`http://host:port`), connected lazily. Must be called inside a
    /// tokio runtime.
    pub fn new(endpoints: &[String]) -> Result<Self, CallError> {
        if endpoints.is_empty() {
            return Err(CallError::Config(
                "at least one control-plane endpoint is needed".into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CallError::Config(
                "control-plane clients must be created inside a tokio runtime".into(),
            ));
        }
        let clients = endpoints
            .iter()
            .map(|url| {
                let channel = Endpoint::from_shared(url.clone())
                    .map_err(|e| CallError::Config(format!("control-plane endpoint {url}: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(KEEPALIVE)
                    .keep_alive_timeout(KEEPALIVE)
                    .keep_alive_while_idle(true)
                    .connect_lazy();
                Ok((url.clone(), ControlPlaneClient::new(channel)))
            })
            .collect::<Result<_, CallError>>()?;
        Ok(Self {
            clients,
            preferred: AtomicUsize::new(0),
        })
    }

    /// Runs `call` on each endpoint in turn, from the preferred one, until one answers; goes
    /// around again with backoff while none does, until the call deadline (20 s).
    pub async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, CallError>
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
                        return Err(CallError::Refused {
                            endpoint: url.clone(),
                            message: format!("{what}: {}", s.message()),
                        })
                    }
                    Ok(Err(s)) => s.message().to_string(),
                    Err(_) => "timed out".to_string(),
                };
                tracing::debug!(endpoint = %url, %error, "control-plane {what} failed, trying the next endpoint");
                last = format!("{url}: {error}");
            }
            if Instant::now() + backoff >= deadline {
                return Err(CallError::Unavailable(format!(
                    "{what}: no control-plane endpoint answered (last: {last})"
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
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

/// Follows `WatchWorkspaces` on any voter, reopening it with backoff whenever it breaks, and
/// hands every update (revision, every visible workspace, the identities) to `on_update`. Runs
/// until dropped.
pub async fn follow_workspaces(
    endpoints: &ControlPlaneEndpoints,
    mut on_update: impl FnMut(crate::control::WatchReply),
) {
    let mut after = 0;
    let mut backoff = MIN_BACKOFF;
    loop {
        let opened = endpoints
            .call("watch workspaces", |mut c| async move {
                c.watch_workspaces(crate::control::WatchRequest {
                    after_revision: after,
                })
                .await
                .map(|r| r.into_inner())
            })
            .await;
        let error = match opened {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(reply)) => {
                        backoff = MIN_BACKOFF;
                        after = reply.revision;
                        on_update(reply);
                    }
                    Ok(None) => break "stream ended".to_string(),
                    Err(s) => break s.message().to_string(),
                }
            },
            Err(e) => e.to_string(),
        };
        tracing::warn!(%error, "workspace watch interrupted, reopening");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
