//! Responses as they go on the wire, and the gRPC service that sends them.
//!
//! A discovery response is a few per-stream fields (version, type URL, nonce) and a list of
//! resources. Protobuf lets a message's fields come in any order, so a response is encoded as
//! its own fields followed by the resources' entries (field 2), each of which is encoded once
//! per resource version ([`crate::cache::Resource::sotw_entry`]) and shared by every stream
//! that sends it. The response body hands those shared bytes to HTTP/2 as they are (small
//! entries are gathered into one frame), so sending a config to thousands of nodes costs
//! neither a protobuf encoding nor a copy of the config per node, and what waits in the send
//! queues of slow nodes is the same memory for all of them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::Message;
use tokio::sync::mpsc;
use tonic::codec::{DecodeBuf, Decoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, StdError, http};
use tonic::server::NamedService;
use tonic::{Status, Streaming};

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

/// Small resource entries are copied into one frame up to this size; larger ones go out as
/// they are, shared with every other stream that sends them.
const COALESCE: usize = 16 * 1024;

/// The response body of one ADS stream: gRPC messages made of [`Wire`]s, sent as HTTP/2 data
/// frames that point into the shared resource bytes (no per-stream copy of a big resource;
/// what waits in a slow node's send queue is shared too), then the `grpc-status` trailers.
struct WireBody {
    rx: mpsc::Receiver<Result<Wire, Status>>,
    /// Frames of the current message not yet handed to HTTP/2.
    pending: VecDeque<Bytes>,
    done: bool,
}

impl WireBody {
    fn queue(&mut self, w: Wire) {
        let len = w.len();
        let mut first = BytesMut::with_capacity(5 + w.head.len() + COALESCE.min(len));
        // gRPC message prefix: not compressed, then the length (big-endian u32; responses are
        // bounded by MAX_MESSAGE_SIZE).
        first.put_u8(0);
        first.put_u32(len as u32);
        first.put_slice(&w.head);
        let mut acc = first;
        for p in w.parts {
            if p.len() >= COALESCE / 4 {
                if !acc.is_empty() {
                    self.pending.push_back(acc.split().freeze());
                }
                self.pending.push_back(p);
            } else {
                if acc.len() + p.len() > COALESCE && !acc.is_empty() {
                    self.pending.push_back(acc.split().freeze());
                }
                acc.put_slice(&p);
            }
        }
        if !acc.is_empty() {
            self.pending.push_back(acc.freeze());
        }
    }
}

fn trailers(status: Option<Status>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    match status {
        None => {
            h.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("0"));
        }
        Some(s) => {
            if s.add_header(&mut h).is_err() {
                h.insert(Status::GRPC_STATUS, (tonic::Code::Internal as i32).into());
            }
        }
    }
    h
}

impl tonic::codegen::Body for WireBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(w))) => self.queue(w),
                Poll::Ready(Some(Err(status))) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(Some(status))))));
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(None)))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        false
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
    // Requests are read uncompressed only (the server announces no encodings).
    let encoding = req
        .headers()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    if encoding != "identity" {
        return Status::unimplemented(format!(
            "grpc-encoding {encoding} is not supported by this xDS server: send identity"
        ))
        .into_http();
    }
    let inbound = Streaming::new_request(
        RequestDecoder::<P::Request>(PhantomData),
        req.into_body(),
        None,
        Some(MAX_MESSAGE_SIZE),
    );
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(run_stream::<P>(server, inbound, tx));
    let body = WireBody {
        rx,
        pending: VecDeque::new(),
        done: false,
    };
    let mut response = http::Response::new(tonic::body::Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
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

    #[tokio::test]
    async fn body_is_the_grpc_message_and_big_entries_go_out_uncopied() {
        use crate::google::protobuf::Any;
        let big = Resource::new(
            "big",
            Any {
                type_url: crate::type_url::CLUSTER.into(),
                value: vec![7u8; 3 * COALESCE],
            },
        );
        let (a, b) = (cluster("a"), cluster("b"));
        let parts = vec![a.sotw_entry(), big.sotw_entry(), b.sotw_entry()];
        let w = Wire::sotw("v", crate::type_url::CLUSTER, "1", parts);
        let message = bytes(&w);
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(w)).await.expect("open");
        tx.send(Err(Status::invalid_argument("bad request")))
            .await
            .expect("open");
        drop(tx);
        let mut body = WireBody {
            rx,
            pending: VecDeque::new(),
            done: false,
        };
        let mut data = Vec::new();
        let mut ptrs = Vec::new();
        let mut trailers = None;
        while let Some(frame) =
            std::future::poll_fn(|cx| tonic::codegen::Body::poll_frame(Pin::new(&mut body), cx))
                .await
        {
            let frame = frame.expect("no body error");
            match frame.into_data() {
                Ok(d) => {
                    ptrs.push(d.as_ptr());
                    data.extend_from_slice(&d);
                }
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        assert_eq!(data[0], 0, "not compressed");
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        assert_eq!(len, message.len());
        assert_eq!(&data[5..], message.as_slice());
        assert!(
            ptrs.contains(&big.sotw_entry().as_ptr()),
            "the big entry is shared"
        );
        let t = trailers.expect("trailers");
        assert_eq!(t.get("grpc-status").map(|v| v.as_bytes()), Some(&b"3"[..]));
    }
}
