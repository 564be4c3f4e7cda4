//! Ingester gRPC clients, one lazily connected channel per address, shared by all requests, and
//! Push with a request encoded by the caller.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::ingester::ingester_client::IngesterClient;
use crate::ingester::PushResponse;

/// Largest gRPC message between ingesters and their clients (query answers can be large).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

#[derive(Default)]
pub struct IngesterPool {
    channels: RwLock<HashMap<String, Channel>>,
}

impl IngesterPool {
    /// The client for `addr` (`host:port` or a URL), created on first use. Creating it does not
    /// connect; the first call does.
    pub fn get(&self, addr: &str) -> Result<IngesterClient<Channel>, tonic::transport::Error> {
        Ok(IngesterClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// `Ingester/Push` with `request`, an encoded `PushRequest` (the distributor encodes each
    /// series once for all its replicas instead of building a message per ingester).
    pub async fn push_encoded(&self, addr: &str, request: Bytes) -> Result<PushResponse, Status> {
        let channel = self
            .channel(addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("ingester {addr} not ready: {e}")))?;
        let path = PathAndQuery::from_static("/hestia.ingester.Ingester/Push");
        let response = grpc
            .unary(tonic::Request::new(request), path, EncodedPushCodec)
            .await?;
        Ok(response.into_inner())
    }

    fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        if let Some(c) = self
            .channels
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
        Ok(self
            .channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_insert(channel)
            .clone())
    }

    /// Drops clients of addresses no longer in `keep` (instances that left the ring).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.channels
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| keep(a));
    }
}

/// Sends pre-encoded request bytes as they are; decodes the `PushResponse`.
#[derive(Clone, Copy, Default)]
struct EncodedPushCodec;

impl Codec for EncodedPushCodec {
    type Encode = Bytes;
    type Decode = PushResponse;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        *self
    }

    fn decoder(&mut self) -> Self {
        *self
    }
}

impl Encoder for EncodedPushCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for EncodedPushCodec {
    type Item = PushResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<PushResponse>, Status> {
        let response = PushResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| Status::internal(format!("decoding PushResponse: {e}")))?;
        Ok(Some(response))
    }
}
