//! Ingester gRPC clients, one lazily connected channel per address, shared by all requests, and
//! Push with a request encoded by the caller. An ingester running in the caller's process
//! (`hestia all`) is called directly: no protobuf encoding, HTTP/2 or socket in between.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::ingester::ingester_client::IngesterClient;
use crate::ingester::ingester_server::Ingester;
use crate::ingester::{self as pb, PushRequestEncoded, PushResponse};

/// Largest gRPC message between ingesters and their clients (query answers can be large).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The answer stream of `QueryStream`, from a remote or an in-process ingester.
pub type QueryStreamAnswers =
    Pin<Box<dyn Stream<Item = Result<pb::QueryStreamResponse, Status>> + Send>>;

/// An ingester service in this process, called without going through gRPC.
pub type LocalIngester = Arc<dyn Ingester<QueryStreamStream = QueryStreamAnswers>>;

#[derive(Default)]
pub struct IngesterPool {
    channels: RwLock<HashMap<String, Channel>>,
    /// The ingester of this process and the address it has in the ring.
    local: Option<(String, LocalIngester)>,
}

/// One ingester to call: a gRPC client, or the service itself when it runs in this process.
#[derive(Clone)]
pub enum IngesterConn {
    Remote(IngesterClient<Channel>),
    Local(LocalIngester),
}

macro_rules! unary_calls {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {$(
        pub async fn $method(&mut self, req: $req) -> Result<$resp, Status> {
            match self {
                Self::Remote(c) => c.$method(req).await,
                Self::Local(s) => s.$method(Request::new(req)).await,
            }
            .map(Response::into_inner)
        }
    )*};
}

impl IngesterConn {
    pub async fn query_stream(
        &mut self,
        req: pb::QueryRequest,
    ) -> Result<QueryStreamAnswers, Status> {
        match self {
            Self::Remote(c) => Ok(Box::pin(c.query_stream(req).await?.into_inner())),
            Self::Local(s) => Ok(s.query_stream(Request::new(req)).await?.into_inner()),
        }
    }

    unary_calls! {
        label_names(pb::LabelNamesRequest) -> pb::LabelNamesResponse;
        label_values(pb::LabelValuesRequest) -> pb::LabelValuesResponse;
        series(pb::SeriesRequest) -> pb::SeriesResponse;
        metrics_metadata(pb::MetricsMetadataRequest) -> pb::MetricsMetadataResponse;
        query_exemplars(pb::ExemplarsRequest) -> pb::ExemplarsResponse;
        purge_tenant(pb::PurgeTenantRequest) -> pb::PurgeTenantResponse;
    }
}

impl IngesterPool {
    /// A pool whose calls to `addr` go to `service`, the ingester running in this process.
    pub fn with_local(addr: impl Into<String>, service: LocalIngester) -> Self {
        Self {
            channels: RwLock::default(),
            local: Some((addr.into(), service)),
        }
    }

    fn local(&self, addr: &str) -> Option<&LocalIngester> {
        self.local
            .as_ref()
            .and_then(|(a, s)| (a == addr).then_some(s))
    }

    /// The ingester at `addr` (`host:port` or a URL); a gRPC client is created on first use.
    /// Creating it does not connect; the first call does.
    pub fn get(&self, addr: &str) -> Result<IngesterConn, tonic::transport::Error> {
        if let Some(s) = self.local(addr) {
            return Ok(IngesterConn::Local(s.clone()));
        }
        Ok(IngesterConn::Remote(
            IngesterClient::new(self.channel(addr)?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        ))
    }

    /// `Ingester/Push` with `request`, an encoded `PushRequest` (the distributor encodes each
    /// series once for all its replicas instead of building a message per ingester).
    pub async fn push_encoded(&self, addr: &str, request: Bytes) -> Result<PushResponse, Status> {
        if let Some(s) = self.local(addr) {
            // Series stay the encoded bytes they are, as a gRPC server would leave them.
            let request = PushRequestEncoded::decode(request)
                .map_err(|e| Status::internal(format!("decoding PushRequest: {e}")))?;
            return s
                .push(Request::new(request))
                .await
                .map(Response::into_inner);
        }
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
