//! Responses as they go on the wire, and the gRPC service that sends them.
//!
//! A discovery response is a few per-stream fields (version, type URL, nonce) and a list of
//! resources. Protobuf lets a message's fields come in any order, so a response is encoded as
//! its own fields followed by the resources' entries (field 2), each of which is encoded once
//! per resource version ([`crate::cache::Resource::sotw_entry`]) and shared by every stream
//! that sends it. Sending a config to thousands of nodes then costs one copy of its bytes per
//! node, not one protobuf encoding (and one deep copy of every resource) per node.

use std::convert::Infallible;
use std::marker::PhantomData;

use bytes::{BufMut, Bytes};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::{AdsServer, MAX_MESSAGE_SIZE, STREAM_BUFFER, StreamProtocol, delta, run_stream, sotw};

/// One encoded `DiscoveryResponse` or `DeltaDiscoveryResponse`: this stream's fields, then the
/// shared resource entries.
#[derive(Debug)]
pub(crate) struct Wire {
    head: Vec<u8>,
    parts: Vec<Bytes>,
}

fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, buf);
        prost::encoding::encode_varint(s.len() as u64, buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

impl Wire {
    /// A state-of-the-world response: `version_info` (1), `type_url` (4), `nonce` (5), then the
    /// `resources` (2) entries.
    pub(crate) fn sotw(version: &str, type_url: &str, nonce: &str, parts: Vec<Bytes>) -> Wire {
        let mut head = Vec::with_capacity(version.len() + type_url.len() + nonce.len() + 12);
        put_str(1, version, &mut head);
        put_str(4, type_url, &mut head);
        put_str(5, nonce, &mut head);
        Wire { head, parts }
    }

    /// A delta response: `system_version_info` (1), `type_url` (4), `nonce` (5),
    /// `removed_resources` (6), then the `resources` (2) entries.
    pub(crate) fn delta(
        version: &str,
        type_url: &str,
        nonce: &str,
        removed: &[String],
        parts: Vec<Bytes>,
    ) -> Wire {
        let mut head = Vec::with_capacity(version.len() + type_url.len() + nonce.len() + 12);
        put_str(1, version, &mut head);
        put_str(4, type_url, &mut head);
        put_str(5, nonce, &mut head);
        for name in removed {
            // Repeated strings keep empty entries: an empty name is still a name.
            prost::encoding::encode_key(6, prost::encoding::WireType::LengthDelimited, &mut head);
            prost::encoding::encode_varint(name.len() as u64, &mut head);
            head.extend_from_slice(name.as_bytes());
        }
        Wire { head, parts }
    }

    /// The encoded length.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.parts.iter().map(Bytes::len).sum::<usize>()
    }
}

/// Writes [`Wire`]s and reads requests with prost.
pub(crate) struct WireCodec<Req>(PhantomData<fn() -> Req>);

impl<Req> Default for WireCodec<Req> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

/// Encodes [`Wire`]s: a copy of their bytes into the stream's buffer.
pub(crate) struct WireEncoder;

impl Encoder for WireEncoder {
    type Item = Wire;
    type Error = Status;

    fn encode(&mut self, item: Wire, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.len());
        dst.put_slice(&item.head);
        for p in &item.parts {
            dst.put_slice(p);
        }
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Decodes requests with prost.
pub(crate) struct RequestDecoder<Req>(PhantomData<fn() -> Req>);

impl<Req: Message + Default> Decoder for RequestDecoder<Req> {
    type Item = Req;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Req>, Status> {
        Req::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed xDS request: {e}")))
    }
}

impl<Req: Message + Default + Send + 'static> Codec for WireCodec<Req> {
    type Encode = Wire;
    type Decode = Req;
    type Encoder = WireEncoder;
    type Decoder = RequestDecoder<Req>;

    fn encoder(&mut self) -> WireEncoder {
        WireEncoder
    }

    fn decoder(&mut self) -> RequestDecoder<Req> {
        RequestDecoder(PhantomData)
    }
}

/// One RPC method: a stream loop of protocol `P`.
struct Method<P>(AdsServer, PhantomData<fn() -> P>);

impl<P> StreamingService<P::Request> for Method<P>
where
    P: StreamProtocol<Response = Wire>,
    P::Request: Message + Default,
{
    type Response = Wire;
    type ResponseStream = ReceiverStream<Result<Wire, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<P::Request>>) -> Self::Future {
        let server = self.0.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            tokio::spawn(run_stream::<P>(server, request.into_inner(), tx));
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// The `envoy.service.discovery.v3.AggregatedDiscoveryService` gRPC service of an
/// [`AdsServer`] (both methods), for a tonic server's `add_service`.
#[derive(Clone, Debug)]
pub struct AdsService {
    server: AdsServer,
}

impl AdsService {
    pub(crate) fn new(server: AdsServer) -> Self {
        AdsService { server }
    }
}

const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

impl NamedService for AdsService {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

async fn serve_method<P, B>(
    server: AdsServer,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    P: StreamProtocol<Response = Wire>,
    P::Request: Message + Default,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let mut grpc = Grpc::new(WireCodec::<P::Request>::default())
        .apply_max_message_size_config(Some(MAX_MESSAGE_SIZE), Some(MAX_MESSAGE_SIZE));
    grpc.streaming(Method::<P>(server, PhantomData), req).await
}

impl<B> Service<http::Request<B>> for AdsService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let server = self.server.clone();
        match req.uri().path() {
            SOTW_PATH => {
                Box::pin(async move { Ok(serve_method::<sotw::SotwStream, B>(server, req).await) })
            }
            DELTA_PATH => {
                Box::pin(
                    async move { Ok(serve_method::<delta::DeltaStream, B>(server, req).await) },
                )
            }
            _ => Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Resource;
    use crate::envoy::config::cluster::v3::Cluster;
    use crate::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};

    fn cluster(name: &str) -> Resource {
        Resource::from_message(&Cluster {
            name: name.into(),
            ..Default::default()
        })
        .expect("named")
    }

    fn bytes(w: &Wire) -> Vec<u8> {
        let mut v = w.head.clone();
        for p in &w.parts {
            v.extend_from_slice(p);
        }
        assert_eq!(v.len(), w.len());
        v
    }

    #[test]
    fn sotw_wire_decodes_as_the_response_prost_would_build() {
        let rs = [cluster("a"), cluster("b")];
        let w = Wire::sotw(
            "v1",
            crate::type_url::CLUSTER,
            "7",
            rs.iter().map(|r| r.sotw_entry()).collect(),
        );
        let got = DiscoveryResponse::decode(bytes(&w).as_slice()).expect("decodes");
        let want = DiscoveryResponse {
            version_info: "v1".into(),
            resources: rs.iter().map(|r| r.body.clone()).collect(),
            type_url: crate::type_url::CLUSTER.into(),
            nonce: "7".into(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn delta_wire_decodes_as_the_response_prost_would_build() {
        let rs = [cluster("a")];
        let removed = vec!["x".to_string(), "y".to_string()];
        let w = Wire::delta(
            "v2",
            crate::type_url::CLUSTER,
            "3",
            &removed,
            rs.iter().map(|r| r.delta_entry()).collect(),
        );
        let got = DeltaDiscoveryResponse::decode(bytes(&w).as_slice()).expect("decodes");
        let want = DeltaDiscoveryResponse {
            system_version_info: "v2".into(),
            resources: rs.iter().map(|r| r.to_delta()).collect(),
            type_url: crate::type_url::CLUSTER.into(),
            removed_resources: removed,
            nonce: "3".into(),
            ..Default::default()
        };
        assert_eq!(got, want);
    }
}
