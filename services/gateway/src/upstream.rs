use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

use crate::{metrics, GatewayError};

/// Largest request body the gateway buffers for a remote upstream (the upstream applies its own,
/// smaller limits and answers with its own error).
const MAX_BUFFERED_BODY: usize = 64 << 20;

/// Where the gateway sends a request: a router in the same process (`hestia all`) or replicas of
/// a remote service over HTTP (a cluster).
#[derive(Clone)]
pub enum Upstream {
    InProcess(Router),
    Remote(Arc<Remote>),
}

/// Stateless replicas of one service. Requests go round-robin; a replica that refuses the
/// connection is skipped and the next one tried (the request was not sent, so this is safe for
/// every method).
pub struct Remote {
    name: &'static str,
    authorities: Vec<String>,
    next: AtomicUsize,
    client: Client<HttpConnector, Body>,
}

impl Upstream {
    pub fn remote(name: &'static str, base_urls: &[String]) -> anyhow::Result<Self> {
        if base_urls.is_empty() {
            anyhow::bail!("no {name} upstream configured");
        }
        let authorities = base_urls
            .iter()
            .map(|u| {
                let base: http::Uri = u.parse()?;
                match (base.scheme_str(), base.authority()) {
                    (Some("http"), Some(a)) => Ok(a.to_string()),
                    _ => anyhow::bail!("{name} upstream {u:?} must be an http://host:port URL"),
                }
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self::Remote(Arc::new(Remote {
            name,
            authorities,
            next: AtomicUsize::new(0),
            client,
        })))
    }

    pub async fn call(&self, req: Request) -> Result<Response, GatewayError> {
        match self {
            Upstream::InProcess(router) => {
                let resp: Result<Response, Infallible> = router.clone().oneshot(req).await;
                Ok(resp.into_response())
            }
            Upstream::Remote(r) => r.call(req).await,
        }
    }
}

impl Remote {
    async fn call(&self, req: Request) -> Result<Response, GatewayError> {
        let (mut parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BUFFERED_BODY)
            .await
            .map_err(|e| GatewayError::BadPath(format!("reading request body: {e}")))?;
        parts.headers.remove(http::header::HOST);
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let n = self.authorities.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_err = String::new();
        for k in 0..n {
            let authority = &self.authorities[(first + k) % n];
            let uri = http::Uri::builder()
                .scheme("http")
                .authority(authority.as_str())
                .path_and_query(pq.as_str())
                .build()
                .map_err(|e| GatewayError::BadPath(e.to_string()))?;
            let mut req = http::Request::from_parts(parts.clone(), Body::from(body.clone()));
            *req.uri_mut() = uri;
            match self.client.request(req).await {
                Ok(resp) => return Ok(resp.map(Body::new)),
                Err(e) => {
                    metrics::UPSTREAM_ERRORS
                        .with_label_values(&[self.name])
                        .inc();
                    last_err = format!("{} {authority}: {e}", self.name);
                    if !e.is_connect() {
                        break;
                    }
                    tracing::warn!(upstream = self.name, %authority, error = %e, "upstream refused the connection, trying the next one");
                }
            }
        }
        Err(GatewayError::Upstream(last_err))
    }
}
