//! The one body type of the proxy, in both directions, so that no body is boxed per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::cluster::pool::Pooled;
use crate::cluster::{Endpoint, EndpointLease, Slot};

/// Why a body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The peer's stream failed (reset, protocol error, connection closed).
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// The route timeout or the stream idle timeout expired while the body was streaming.
    #[error("{0} timeout expired while the body was streaming")]
    Timeout(&'static str),
    /// The attempt this request body belonged to was abandoned (a retry follows).
    #[error("request attempt abandoned for a retry")]
    Abandoned,
}

/// A request or response body passing through the proxy.
#[derive(Debug)]
pub enum Body {
    /// No body.
    Empty,
    /// A body the proxy made (local replies, direct responses); taken on first poll.
    Full(Option<Bytes>),
    /// A body held in memory with its trailers, replayable by cloning (retries, mirrors).
    Buffered(Buffered),
    /// The first bytes of a body read into memory, then the rest still streaming (a request
    /// too large to be buffered for retries).
    Prefixed(Option<Bytes>, Incoming),
    /// A body streaming from a peer.
    Incoming(Incoming),
    /// An upstream response body that gives its connection back to the pool when it ends.
    Upstream(UpstreamBody),
    /// A request body streamed upstream while a copy is kept for retries.
    Tee(Box<Tee>),
    /// A response body whose end (or drop) completes the request's telemetry.
    Observed(Box<crate::telemetry::Observed>),
}

/// A whole body in memory.
#[derive(Clone, Debug, Default)]
pub struct Buffered {
    /// The data, not yet sent.
    pub data: Option<Bytes>,
    /// The trailers, sent after the data.
    pub trailers: Option<HeaderMap>,
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

/// How much of an incoming body [`buffer`] read.
#[derive(Debug)]
pub enum Read {
    /// All of it.
    Whole(Buffered),
    /// More than the limit: what was read, and the rest.
    Partial(Bytes, Incoming),
}

/// Reads `body` into memory up to `limit` bytes (retries and mirrors need to replay it).
pub async fn buffer(mut body: Incoming, limit: usize) -> Result<Read, hyper::Error> {
    use http_body_util::BodyExt;
    let mut data = bytes::BytesMut::new();
    let mut first: Option<Bytes> = None;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(d) => {
                if first.is_none() && data.is_empty() {
                    first = Some(d);
                } else {
                    if let Some(f) = first.take() {
                        data.extend_from_slice(&f);
                    }
                    data.extend_from_slice(&d);
                }
                let len = first.as_ref().map_or(data.len(), Bytes::len);
                if len > limit {
                    let head = first.take().unwrap_or_else(|| data.split().freeze());
                    return Ok(Read::Partial(head, body));
                }
            }
            Err(f) => {
                if let Ok(t) = f.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let data = first.or_else(|| (!data.is_empty()).then(|| data.freeze()));
    Ok(Read::Whole(Buffered { data, trailers }))
}

/// What a request body streamed for one attempt leaves for the next: what was sent (kept up to
/// the buffer limit), the trailers, and the part not read from downstream yet.
#[derive(Debug, Default)]
pub struct TeeParts {
    /// Data sent so far, in order (emptied once over the limit).
    pub kept: Vec<Bytes>,
    kept_len: usize,
    /// Trailers received from downstream.
    pub trailers: Option<HeaderMap>,
    /// The rest of the downstream body, when it has not ended.
    pub rest: Option<Incoming>,
    /// More than the buffer limit went by: the body cannot be replayed.
    pub overflow: bool,
}

impl TeeParts {
    /// Parts for a body not read at all yet.
    pub fn new(rest: Incoming) -> Self {
        TeeParts {
            rest: Some(rest),
            ..TeeParts::default()
        }
    }
}

/// A request body for one attempt of a request with a retry policy: it replays what earlier
/// attempts sent, streams the rest from downstream as it arrives (no waiting for the whole
/// body, so streaming gRPC works), keeps a copy up to the buffer limit, and hands everything
/// back when the attempt drops it. An attempt abandoned for a retry is stopped through `stop`.
#[derive(Debug)]
pub struct Tee {
    parts: TeeParts,
    /// Index into `parts.kept` of the next chunk to replay.
    replay: usize,
    limit: usize,
    trailers_sent: bool,
    stop: tokio::sync::oneshot::Receiver<()>,
    back: Option<tokio::sync::oneshot::Sender<TeeParts>>,
}

/// The handles an attempt keeps on its [`Tee`]: dropping `stop` abandons it, `back` brings the
/// parts back.
#[derive(Debug)]
pub struct TeeHandle {
    /// Dropped to stop the attempt's body.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Receives the parts when the body is dropped.
    pub back: tokio::sync::oneshot::Receiver<TeeParts>,
}

impl Tee {
    /// A body for the next attempt from `parts`, keeping at most `limit` bytes.
    pub fn start(parts: TeeParts, limit: usize) -> (Body, TeeHandle) {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (back_tx, back_rx) = tokio::sync::oneshot::channel();
        let tee = Tee {
            parts,
            replay: 0,
            limit,
            trailers_sent: false,
            stop: stop_rx,
            back: Some(back_tx),
        };
        (
            Body::Tee(Box::new(tee)),
            TeeHandle {
                stop: stop_tx,
                back: back_rx,
            },
        )
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if Pin::new(&mut self.stop).poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyError::Abandoned)));
        }
        if let Some(d) = self.parts.kept.get(self.replay) {
            self.replay += 1;
            return Poll::Ready(Some(Ok(Frame::data(d.clone()))));
        }
        if let Some(rest) = &mut self.parts.rest {
            return match Pin::new(rest).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => {
                    self.parts.rest = None;
                    self.trailers_sent = true;
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        if !self.parts.overflow {
                            self.parts.kept_len += d.len();
                            if self.parts.kept_len > self.limit {
                                self.parts.overflow = true;
                                self.parts.kept = Vec::new();
                            } else {
                                self.parts.kept.push(d.clone());
                            }
                        }
                        self.replay = self.parts.kept.len();
                    } else if let Some(t) = frame.trailers_ref() {
                        self.parts.trailers = Some(t.clone());
                        self.trailers_sent = true;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
            };
        }
        if !self.trailers_sent {
            self.trailers_sent = true;
            if let Some(t) = &self.parts.trailers {
                return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.replay >= self.parts.kept.len()
            && self.parts.rest.is_none()
            && (self.trailers_sent || self.parts.trailers.is_none())
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if let Some(back) = self.back.take() {
            let _ = back.send(std::mem::take(&mut self.parts));
        }
    }
}

/// The timer of a response body: the route timeout's deadline and the stream idle timeout,
/// reset by every frame. The timer itself is only made the first time the body has to wait,
/// so a body that arrives with its headers costs no timer at all.
#[derive(Debug)]
pub struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    route: Option<Instant>,
    idle: Option<Duration>,
}

impl Deadline {
    /// A timer for a body that must end by `route` and may not stall for longer than `idle`;
    /// `None` when neither is set.
    pub fn new(route: Option<Instant>, idle: Option<Duration>) -> Option<Self> {
        (route.is_some() || idle.is_some()).then_some(Deadline {
            sleep: None,
            route,
            idle,
        })
    }

    fn next(&self) -> Option<Instant> {
        let idle_at = self.idle.map(|d| Instant::now() + d);
        match (self.route, idle_at) {
            (Some(r), Some(i)) => Some(r.min(i)),
            (r, i) => r.or(i),
        }
    }

    fn activity(&mut self) {
        if self.idle.is_some()
            && let Some(at) = self.next()
            && let Some(sleep) = &mut self.sleep
        {
            sleep.as_mut().reset(at);
        }
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<&'static str> {
        if self.sleep.is_none() {
            self.sleep = Some(Box::pin(tokio::time::sleep_until(self.next()?)));
        }
        let sleep = self.sleep.as_mut()?;
        if sleep.as_mut().poll(cx).is_ready() {
            return Some(if self.route.is_some_and(|r| Instant::now() >= r) {
                "route"
            } else {
                "stream idle"
            });
        }
        None
    }
}

/// What an upstream response body holds on to until it ends: the connection to return, the
/// circuit-breaker slot, the endpoint's in-flight count and the timeouts that still run.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    /// The HTTP/1.1 connection that carried the response; back to the endpoint's idle queue
    /// once the body is complete, closed if the body is abandoned half-way.
    conn: Option<(Pooled, Arc<Endpoint>)>,
    _permit: Option<Slot>,
    _lease: Option<EndpointLease>,
    deadline: Option<Deadline>,
    /// Body bytes read before the body was handed on (the gRPC trailer check), sent first.
    prefix: Option<Bytes>,
}

impl UpstreamBody {
    /// Wraps an upstream body with the resources it releases at its end.
    pub fn new(
        inner: Incoming,
        conn: Option<(Pooled, Arc<Endpoint>)>,
        permit: Option<Slot>,
        lease: Option<EndpointLease>,
        deadline: Option<Deadline>,
        prefix: Option<Bytes>,
    ) -> Self {
        let mut b = UpstreamBody {
            inner,
            conn,
            _permit: permit,
            _lease: lease,
            deadline,
            prefix,
        };
        if b.inner.is_end_stream() {
            b.release();
            b.deadline = None;
        }
        b
    }

    fn release(&mut self) {
        if let Some((conn, endpoint)) = self.conn.take() {
            endpoint.pool.put(conn);
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
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Buffered(b) => Poll::Ready(match b.data.take() {
                Some(d) => Some(Ok(Frame::data(d))),
                None => b.trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
            Body::Prefixed(head, rest) => match head.take() {
                Some(d) => Poll::Ready(Some(Ok(Frame::data(d)))),
                None => Pin::new(rest)
                    .poll_frame(cx)
                    .map(|r| r.map(|f| f.map_err(BodyError::from))),
            },
            Body::Incoming(i) => Pin::new(i)
                .poll_frame(cx)
                .map(|r| r.map(|f| f.map_err(BodyError::from))),
            Body::Tee(t) => t.poll_frame(cx),
            Body::Observed(o) => o.poll_frame(cx),
            Body::Upstream(u) => {
                if let Some(p) = u.prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                let r = Pin::new(&mut u.inner).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => {
                        u.release();
                        u.deadline = None;
                    }
                    Poll::Ready(Some(Ok(_))) => {
                        if u.inner.is_end_stream() {
                            u.release();
                            u.deadline = None;
                        } else if let Some(d) = &mut u.deadline {
                            d.activity();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => u.deadline = None,
                    Poll::Pending => {
                        if let Some(which) = u.deadline.as_mut().and_then(|d| d.poll_expired(cx)) {
                            u.deadline = None;
                            // Dropping the connection (not returned) resets the upstream.
                            u.conn = None;
                            return Poll::Ready(Some(Err(BodyError::Timeout(which))));
                        }
                    }
                }
                r.map(|o| o.map(|f| f.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Buffered(b) => b.data.is_none() && b.trailers.is_none(),
            Body::Prefixed(h, rest) => h.is_none() && rest.is_end_stream(),
            Body::Incoming(i) => i.is_end_stream(),
            Body::Tee(t) => t.is_end_stream(),
            Body::Observed(o) => o.body.is_end_stream(),
            Body::Upstream(u) => u.prefix.is_none() && u.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Buffered(b) => {
                SizeHint::with_exact(b.data.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::Prefixed(h, rest) => {
                let n = h.as_ref().map_or(0, |b| b.len() as u64);
                let r = rest.size_hint();
                let mut s = SizeHint::new();
                s.set_lower(r.lower() + n);
                if let Some(u) = r.upper() {
                    s.set_upper(u + n);
                }
                s
            }
            Body::Incoming(i) => i.size_hint(),
            Body::Observed(o) => o.body.size_hint(),
            Body::Tee(t) => {
                let replay: u64 = t.parts.kept[t.replay.min(t.parts.kept.len())..]
                    .iter()
                    .map(|b| b.len() as u64)
                    .sum();
                match &t.parts.rest {
                    None => SizeHint::with_exact(replay),
                    Some(rest) => {
                        let r = rest.size_hint();
                        let mut h = SizeHint::new();
                        h.set_lower(r.lower() + replay);
                        if let Some(u) = r.upper() {
                            h.set_upper(u + replay);
                        }
                        h
                    }
                }
            }
            Body::Upstream(u) => {
                let n = u.prefix.as_ref().map_or(0, |p| p.len() as u64);
                let r = u.inner.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(r.lower() + n);
                if let Some(up) = r.upper() {
                    h.set_upper(up + n);
                }
                h
            }
        }
    }
}
