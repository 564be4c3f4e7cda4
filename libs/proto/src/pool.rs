//! Ingester gRPC clients, one lazily connected channel per address, shared by all requests.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::ingester::ingester_client::IngesterClient;

/// Largest gRPC message between ingesters and their clients (query answers can be large).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

#[derive(Default)]
pub struct IngesterPool {
    clients: RwLock<HashMap<String, IngesterClient<Channel>>>,
}

impl IngesterPool {
    /// The client for `addr` (`host:port` or a URL), created on first use. Creating it does not
    /// connect; the first call does.
    pub fn get(&self, addr: &str) -> Result<IngesterClient<Channel>, tonic::transport::Error> {
        if let Some(c) = self
            .clients
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
        {
            return Ok(c.clone());
        }
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(url)?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        let client = IngesterClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_insert(client.clone());
        Ok(client)
    }

    /// Drops clients of addresses no longer in `keep` (instances that left the ring).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.clients
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| keep(a));
    }
}
