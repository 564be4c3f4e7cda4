use std::convert::Infallible;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

use crate::{metrics, GatewayError};

/// Where the gateway sends a request: a router in the same process (`hestia all`) or a remote
/// service over HTTP (a cluster).
#[derive(Clone)]
pub enum Upstream {
    InProcess(Router),
    Remote(Box<Remote>),
}

#[derive(Clone)]
pub struct Remote {
    name: &'static str,
    base: http::Uri,
    client: Client<HttpConnector, Body>,
}

impl Upstream {
    pub fn remote(name: &'static str, base_url: &str) -> anyhow::Result<Self> {
        let base: http::Uri = base_url.parse()?;
        if base.scheme_str() != Some("http") || base.authority().is_none() {
            anyhow::bail!("{name} upstream {base_url:?} must be an http://host:port URL");
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self::Remote(Box::new(Remote { name, base, client })))
    }

    pub async fn call(&self, mut req: Request) -> Result<Response, GatewayError> {
        match self {
            Upstream::InProcess(router) => {
                let resp: Result<Response, Infallible> = router.clone().oneshot(req).await;
                Ok(resp.into_response())
            }
            Upstream::Remote(r) => {
                let Remote { name, base, client } = r.as_ref();
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let uri = http::Uri::builder()
                    .scheme("http")
                    .authority(base.authority().map(|a| a.as_str()).unwrap_or_default())
                    .path_and_query(pq)
                    .build()
                    .map_err(|e| GatewayError::BadPath(e.to_string()))?;
                *req.uri_mut() = uri;
                req.headers_mut().remove(http::header::HOST);
                match client.request(req).await {
                    Ok(resp) => Ok(resp.map(Body::new)),
                    Err(e) => {
                        metrics::UPSTREAM_ERRORS.with_label_values(&[name]).inc();
                        Err(GatewayError::Upstream(format!("{name}: {e}")))
                    }
                }
            }
        }
    }
}
