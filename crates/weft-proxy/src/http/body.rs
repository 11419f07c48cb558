//! The one body type of the proxy, in both directions, so that no body is boxed per request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use crate::cluster::{Endpoint, EndpointLease, RequestPermit};

/// A request or response body passing through the proxy.
#[derive(Debug)]
pub enum Body {
    /// No body.
    Empty,
    /// A body the proxy made (local replies, direct responses); taken on first poll.
    Full(Option<Bytes>),
    /// A body streaming from a peer.
    Incoming(Incoming),
    /// An upstream response body that gives its connection back to the pool when it ends.
    Upstream(UpstreamBody),
}

impl Body {
    /// A body holding `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        if b.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(b))
        }
    }
}

/// What an upstream response body holds on to until it ends: the connection to return, the
/// circuit-breaker slot and the endpoint's in-flight count.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    /// The HTTP/1.1 connection that carried the response; back to the endpoint's idle queue
    /// once the body is complete, closed if the body is abandoned half-way.
    conn: Option<(http1::SendRequest<Body>, Arc<Endpoint>)>,
    _permit: Option<RequestPermit>,
    _lease: Option<EndpointLease>,
}

impl UpstreamBody {
    /// Wraps an upstream body with the resources it releases at its end.
    pub fn new(
        inner: Incoming,
        conn: Option<(http1::SendRequest<Body>, Arc<Endpoint>)>,
        permit: Option<RequestPermit>,
        lease: Option<EndpointLease>,
    ) -> Self {
        let mut b = UpstreamBody {
            inner,
            conn,
            _permit: permit,
            _lease: lease,
        };
        if b.inner.is_end_stream() {
            b.release();
        }
        b
    }

    fn release(&mut self) {
        if let Some((sender, endpoint)) = self.conn.take() {
            endpoint.pool.put(sender);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Incoming(i) => Pin::new(i).poll_frame(cx),
            Body::Upstream(u) => {
                let r = Pin::new(&mut u.inner).poll_frame(cx);
                if let Poll::Ready(None) = r {
                    u.release();
                } else if let Poll::Ready(Some(Ok(_))) = &r
                    && u.inner.is_end_stream()
                {
                    u.release();
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Incoming(i) => i.is_end_stream(),
            Body::Upstream(u) => u.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(i) => i.size_hint(),
            Body::Upstream(u) => u.inner.size_hint(),
        }
    }
}
