//! The HTTP connection manager: serves HTTP/1.1 (keep-alive, chunked, upgrades) and h2c on a
//! downstream connection, runs the HTTP filters, routes each request with the current snapshot
//! and proxies it, with retries, timeouts, circuit breaking and mirroring.

pub mod body;
pub mod ext_authz;
mod filters;
pub mod flags;
mod framing;
mod headers;
pub mod jwt;
pub mod rbac;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, TRANSFER_ENCODING};
use http::uri::{PathAndQuery, Scheme};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::Shared;
use crate::cluster::outlier::now_ms;
use crate::cluster::pool::{ConnectError, Pooled};
use crate::cluster::{Cluster, Endpoint, Outcome, PickCtx, Priority, UpstreamProtocol};
use crate::config::filters::sample;
use crate::config::policy::{
    Failure, REQUEST_CONTROL_HEADERS, RetryPolicy, amend_retry, grpc_status, request_hash,
    shadow_host,
};
use crate::config::route::{
    Action, Forward, HeaderRules, Redirect, RedirectPath, Route, RouteTable, VirtualHost,
};
use crate::config::{Codec, HttpManager};
use body::{Body, Buffered, Deadline, Read, Tee, TeeHandle, TeeParts, UpstreamBody};
use flags::ResponseFlags;
use http_body::Body as _;

const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
const X_ENVOY_OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");

/// The downstream connection an HTTP connection manager serves.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// Where the client connected to (the original destination of a redirected connection).
    pub local: SocketAddr,
    /// What the TLS handshake established, when the filter chain terminates TLS.
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
}

/// What one downstream connection's requests share.
struct ConnCtx {
    shared: Arc<Shared>,
    hcm: Arc<HttpManager>,
    peer: SocketAddr,
    /// Where the connection was going (`ORIGINAL_DST` clusters).
    local: SocketAddr,
    /// The TLS facts of the connection (peer certificate, SNI, ALPN), when TLS.
    tls: Option<Arc<crate::tls::TlsInfo>>,
    /// Requests in progress on this connection (the idle timeout only runs at zero).
    active: AtomicU32,
    /// Requests served, against `max_requests_per_connection`.
    served: AtomicU32,
    /// [`now_ms`] when the last request ended.
    last_active: AtomicU64,
    /// Signalled to close the connection gracefully (`max_requests_per_connection`).
    close: Notify,
    /// Requests started, in order (matches the framing watch's request index on HTTP/1).
    started: AtomicU32,
    /// What the framing watch found in the raw bytes.
    findings: Arc<framing::Findings>,
    /// Addresses and peer identity, for the RBAC and JWT filters.
    downstream: rbac::Downstream,
}

/// The per-request context: what happened to the request, for logs and stats.
#[derive(Debug, Default)]
pub struct RequestCtx {
    /// Envoy's response flags.
    pub flags: ResponseFlags,
    /// Upstream attempts made (1 + retries).
    pub attempts: u32,
    /// The cluster the request went to (kept only when telemetry needs it).
    pub cluster: Option<Arc<Cluster>>,
    /// The endpoint of the last attempt.
    pub upstream_host: Option<SocketAddr>,
    /// `x-request-id` (kept only when telemetry needs it).
    pub request_id: Option<HeaderValue>,
}

/// Serves one downstream connection until it closes, or until `drain` turns true, at which point
/// the connection is closed gracefully (in-flight requests finish, keep-alive stops, h2 GOAWAY).
/// The connection is also closed gracefully when it has been idle (no request in flight) for
/// the connection manager's `idle_timeout`, or served `max_requests_per_connection`.
pub(crate) async fn serve<S>(
    stream: S,
    down: Downstream,
    hcm: Arc<HttpManager>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = down.peer;
    let sni = down.tls.as_ref().and_then(|t| t.sni.as_deref());
    let downstream = rbac::Downstream::of_connection(peer, down.local, down.tls.as_deref(), sni);
    let ctx = Arc::new(ConnCtx {
        shared,
        hcm,
        peer,
        local: down.local,
        tls: down.tls,
        active: AtomicU32::new(0),
        served: AtomicU32::new(0),
        last_active: AtomicU64::new(now_ms()),
        close: Notify::new(),
        started: AtomicU32::new(0),
        findings: Arc::new(framing::Findings::default()),
        downstream,
    });
    let hcm = Arc::clone(&ctx.hcm);
    let svc_ctx = Arc::clone(&ctx);
    let svc = service_fn(move |req| {
        let ctx = Arc::clone(&svc_ctx);
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let header_bytes = (hcm.max_request_headers_kb as usize) * 1024;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // hyper's own header timer also runs while a keep-alive connection waits for its next
        // request; the framing watch below times heads from their first byte instead.
        .header_read_timeout(None)
        .max_buf_size(header_bytes.max(8192))
        .max_headers(hcm.max_headers_count as usize);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(header_bytes as u32);
    let builder = match hcm.codec {
        Codec::Http1 => builder.http1_only(),
        Codec::Http2 => builder.http2_only(),
        Codec::Auto => builder,
    };
    let io = framing::Watched::new(stream, Arc::clone(&ctx.findings));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle_limit = hcm.idle_timeout.map(|d| d.as_millis() as u64);
    let header_limit = (hcm.request_headers_timeout.as_millis() as u64).max(1);
    let mut closing = false;
    loop {
        let now = now_ms();
        // request_headers_timeout: from the first byte of a head to its end. Checked at least
        // every `header_limit`, so a head is cut within twice the timeout.
        let started = ctx.findings.head_started.load(Ordering::Relaxed);
        let mut wait = header_limit;
        if started != 0 {
            let elapsed = now.saturating_sub(started);
            if elapsed >= header_limit {
                tracing::debug!(%peer, "request headers not received within {header_limit} ms: closing");
                hcm.stats
                    .downstream_rq_header_timeout
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            wait = header_limit - elapsed;
        }
        if let Some(limit) = idle_limit
            && !closing
        {
            let idle = now.saturating_sub(ctx.last_active.load(Ordering::Relaxed));
            if ctx.active.load(Ordering::Relaxed) == 0 && started == 0 && idle >= limit {
                tracing::debug!(%peer, "downstream connection idle for {idle} ms: closing");
                hcm.stats
                    .downstream_cx_idle_timeout
                    .fetch_add(1, Ordering::Relaxed);
                conn.as_mut().graceful_shutdown();
                closing = true;
            } else {
                wait = wait.min(limit.saturating_sub(idle).max(1));
            }
        }
        let wait = Duration::from_millis(wait);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "downstream connection ended: {e}");
                }
                return;
            }
            _ = async { let _ = drain.wait_for(|d| *d).await; }, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = ctx.close.notified(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why a request got a local reply instead of an upstream response, with Envoy's response flag.
#[derive(Clone, Copy, Debug)]
enum Local {
    NoRoute,
    NoCluster(StatusCode),
    NoHealthyUpstream,
    Overflow,
    ConnectFailure,
    UpstreamReset,
    Timeout,
    StreamIdle,
    UpgradeRefused,
    BadRequest,
    HeadersTooLarge,
}

impl Local {
    fn reply(self, rq: &mut RequestCtx) -> Response<Body> {
        let (status, body, flag): (StatusCode, &'static str, ResponseFlags) = match self {
            Local::NoRoute => (StatusCode::NOT_FOUND, "", ResponseFlags::NO_ROUTE_FOUND),
            Local::NoCluster(s) => (s, "", ResponseFlags::NO_CLUSTER_FOUND),
            Local::NoHealthyUpstream => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no healthy upstream",
                ResponseFlags::NO_HEALTHY_UPSTREAM,
            ),
            Local::Overflow => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                ResponseFlags::UPSTREAM_OVERFLOW,
            ),
            Local::ConnectFailure => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
            ),
            Local::UpstreamReset => (
                StatusCode::BAD_GATEWAY,
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
                ResponseFlags::UPSTREAM_REMOTE_RESET,
            ),
            Local::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream request timeout",
                ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
            ),
            Local::StreamIdle => (
                StatusCode::REQUEST_TIMEOUT,
                "stream timeout",
                ResponseFlags::STREAM_IDLE_TIMEOUT,
            ),
            Local::UpgradeRefused => (
                StatusCode::FORBIDDEN,
                "upgrade not allowed",
                ResponseFlags::UPSTREAM_PROTOCOL_ERROR,
            ),
            Local::BadRequest => (
                StatusCode::BAD_REQUEST,
                "Bad Request",
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            ),
            Local::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            ),
        };
        rq.flags.set(flag);
        tracing::debug!(status = status.as_u16(), flags = %rq.flags, "local reply");
        let mut resp = Response::new(Body::full(Bytes::from_static(body.as_bytes())));
        *resp.status_mut() = status;
        if !body.is_empty() {
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        if matches!(self, Local::Overflow) {
            resp.headers_mut()
                .insert(X_ENVOY_OVERLOADED, HeaderValue::from_static("true"));
        }
        if matches!(self, Local::BadRequest | Local::HeadersTooLarge) {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// HTTP/1 framing that a proxy must refuse, because two hops could read it differently
/// (request smuggling): both `Content-Length` and `Transfer-Encoding`, several
/// `Content-Length` values, or a `Transfer-Encoding` other than a plain `chunked`.
fn smuggling<B>(req: &Request<B>) -> bool {
    if req.version() >= Version::HTTP_2 {
        return false;
    }
    let h = req.headers();
    let te: Vec<&HeaderValue> = h.get_all(TRANSFER_ENCODING).iter().collect();
    let cl = h.get_all(CONTENT_LENGTH).iter().count();
    if cl > 1 || (cl > 0 && !te.is_empty()) {
        return true;
    }
    te.len() > 1
        || te
            .first()
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked"))
}

/// Whether the request's headers are larger than `max_request_headers_kb` (names, values and
/// the request line, as Envoy counts them). hyper's read buffer bounds them roughly; this makes
/// the limit exact.
fn headers_too_large<B>(req: &Request<B>, kb: u32) -> bool {
    let limit = kb as usize * 1024;
    let mut total = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    for (k, v) in req.headers() {
        total += k.as_str().len() + v.len();
        if total > limit {
            return true;
        }
    }
    false
}

async fn handle(ctx: &ConnCtx, mut req: Request<Incoming>) -> Response<Body> {
    let stats = &ctx.hcm.stats;
    stats.downstream_rq_total.fetch_add(1, Ordering::Relaxed);
    stats.downstream_rq_active.fetch_add(1, Ordering::Relaxed);
    ctx.active.fetch_add(1, Ordering::Relaxed);
    let mut rq = RequestCtx::default();
    let exchange = ctx
        .hcm
        .telemetry
        .as_ref()
        .map(|t| t.start(&mut req, ctx.peer));
    let h1 = req.version() < Version::HTTP_2;
    let index = ctx.started.fetch_add(1, Ordering::Relaxed);
    let mut resp = if smuggling(&req)
        || (h1 && ctx.findings.smuggling_request.load(Ordering::Relaxed) == index + 1)
    {
        stats.downstream_rq_rejected.fetch_add(1, Ordering::Relaxed);
        Local::BadRequest.reply(&mut rq)
    } else if headers_too_large(&req, ctx.hcm.max_request_headers_kb) {
        Local::HeadersTooLarge.reply(&mut rq)
    } else {
        route(ctx, req, &mut rq).await
    };
    let served = ctx.served.fetch_add(1, Ordering::Relaxed) + 1;
    if ctx
        .hcm
        .max_requests_per_connection
        .is_some_and(|max| served >= max)
    {
        if served == ctx.hcm.max_requests_per_connection.unwrap_or(0) {
            stats
                .downstream_cx_max_requests_reached
                .fetch_add(1, Ordering::Relaxed);
        }
        if h1 {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        ctx.close.notify_one();
    }
    ctx.last_active.store(now_ms(), Ordering::Relaxed);
    ctx.active.fetch_sub(1, Ordering::Relaxed);
    stats.downstream_rq_active.fetch_sub(1, Ordering::Relaxed);
    stats.response(resp.status().as_u16());
    if !rq.flags.is_empty() {
        tracing::debug!(status = resp.status().as_u16(), flags = %rq.flags, attempts = rq.attempts, "request done");
    }
    if let (Some(t), Some(ex)) = (&ctx.hcm.telemetry, exchange) {
        resp = t.finish(ex, resp, &mut rq);
    }
    resp
}

async fn route(ctx: &ConnCtx, mut req: Request<Incoming>, rq: &mut RequestCtx) -> Response<Body> {
    let snapshot = ctx.shared.snapshot.load_full();
    let Some(table) = snapshot.routes.get(&ctx.hcm.route_config) else {
        ctx.hcm.stats.no_route.fetch_add(1, Ordering::Relaxed);
        return Local::NoRoute.reply(rq);
    };
    let found = table.find_vhost(authority(&req)).and_then(|vh| {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        vh.find_route(pq, req.headers()).map(|r| (vh, r))
    });
    let Some((vhost, route)) = found else {
        ctx.hcm.stats.no_route.fetch_add(1, Ordering::Relaxed);
        return Local::NoRoute.reply(rq);
    };
    let request_id = headers::request_id(ctx.hcm.as_ref(), req.headers_mut());
    if ctx.hcm.telemetry.is_some() {
        rq.request_id = request_id.clone();
    }
    let levels = Levels {
        table,
        vhost,
        route,
    };
    let mut fstate = filters::FilterState::default();
    let filtered = if ctx.hcm.filters.is_empty() {
        None
    } else {
        let conn = filters::Conn {
            downstream: &ctx.downstream,
            resolver: snapshot.as_ref(),
        };
        filters::decode(
            &ctx.hcm,
            &levels,
            &mut req,
            &mut rq.flags,
            &mut fstate,
            &conn,
        )
        .await
    };
    let mut resp = match filtered {
        Some(resp) => resp,
        None => match &route.action {
            Action::Direct(d) => {
                ctx.hcm
                    .stats
                    .rq_direct_response
                    .fetch_add(1, Ordering::Relaxed);
                let mut resp = Response::new(Body::full(d.body.clone()));
                *resp.status_mut() = d.status;
                if !d.body.is_empty() {
                    resp.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                }
                levels.response(None, resp.headers_mut());
                resp
            }
            Action::Redirect(r) => {
                ctx.hcm.stats.rq_redirect.fetch_add(1, Ordering::Relaxed);
                let mut resp = redirect(r, route, &req);
                levels.response(None, resp.headers_mut());
                resp
            }
            Action::Forward(f) => forward(ctx, &snapshot, &levels, f, req, rq).await,
        },
    };
    if !ctx.hcm.filters.is_empty() {
        filters::encode(&fstate, resp.headers_mut());
    }
    if ctx.hcm.always_set_request_id_in_response
        && let Some(id) = request_id
    {
        resp.headers_mut().insert(headers::X_REQUEST_ID, id);
    }
    resp
}

/// The authority a request is for: `:authority` (h2, absolute-form) or `Host`.
fn authority<B>(req: &Request<B>) -> &str {
    match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    }
}

/// The route, its virtual host and its table: header rules apply from the most specific level
/// to the least, so that the route configuration's rules win on conflicts (Envoy's default).
struct Levels<'a> {
    table: &'a RouteTable,
    vhost: &'a VirtualHost,
    route: &'a Route,
}

impl Levels<'_> {
    fn rules<'a>(
        &'a self,
        extra: Option<&'a HeaderRules>,
    ) -> impl Iterator<Item = &'a HeaderRules> {
        extra
            .into_iter()
            .chain([
                &self.route.headers,
                &self.vhost.headers,
                &self.table.headers,
            ])
            .filter(|r| !r.is_empty())
    }

    fn request(&self, extra: Option<&HeaderRules>, h: &mut http::HeaderMap) {
        for r in self.rules(extra) {
            r.apply_request(h);
        }
    }

    fn response(&self, extra: Option<&HeaderRules>, h: &mut http::HeaderMap) {
        for r in self.rules(extra) {
            r.apply_response(h);
        }
    }
}

fn redirect<B>(r: &Redirect, route: &Route, req: &Request<B>) -> Response<Body> {
    let original = authority(req);
    let orig_host = crate::config::route::strip_port(original);
    let orig_port = original
        .get(orig_host.len() + 1..)
        .filter(|p| !p.is_empty());
    let forwarded_https = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let scheme = r
        .scheme
        .as_deref()
        .unwrap_or(if forwarded_https { "https" } else { "http" });
    let host = r.host.as_deref().unwrap_or(orig_host);
    let port = match (r.port, r.scheme.is_some()) {
        (Some(p), _) => Some(p.to_string()),
        (None, true) => None,
        (None, false) if r.host.is_some() => None,
        (None, false) => orig_port.map(str::to_owned),
    };
    let port =
        port.filter(|p| !((scheme == "http" && p == "80") || (scheme == "https" && p == "443")));
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let (path, query) = match pq.find('?') {
        Some(i) => (&pq[..i], Some(&pq[i + 1..])),
        None => (pq, None),
    };
    let mut new_path = match &r.path {
        RedirectPath::Keep => path.to_owned(),
        RedirectPath::Path(p) => p.clone(),
        RedirectPath::Prefix(p) => {
            let n = route.matched_prefix_len().unwrap_or(0);
            format!("{p}{}", path.get(n..).unwrap_or(""))
        }
        RedirectPath::Regex(re, sub) => re.replace_all(path, sub.as_str()).into_owned(),
    };
    if !r.strip_query
        && !new_path.contains('?')
        && let Some(q) = query
    {
        new_path.push('?');
        new_path.push_str(q);
    }
    if r.strip_query
        && let Some(i) = new_path.find('?')
    {
        new_path.truncate(i);
    }
    let location = match port {
        Some(p) => format!("{scheme}://{host}:{p}{new_path}"),
        None => format!("{scheme}://{host}{new_path}"),
    };
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = r.status;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// Why sending upstream failed.
enum SendError {
    Connect(ConnectError),
    Http(hyper::Error),
}

/// The upstream request head, prepared once and rebuilt for each attempt and mirror.
struct Head {
    method: Method,
    uri: Uri,
    pq: PathAndQuery,
    host: HeaderValue,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl Head {
    /// The request for `protocol`; `clone` keeps the head for another attempt.
    fn request(
        &mut self,
        protocol: UpstreamProtocol,
        body: Body,
        keep: bool,
    ) -> Option<Request<Body>> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.headers_mut() = if keep {
            self.headers.clone()
        } else {
            std::mem::take(&mut self.headers)
        };
        if !keep {
            *req.extensions_mut() = std::mem::take(&mut self.extensions);
        }
        match protocol {
            UpstreamProtocol::Http1 => {
                *req.version_mut() = Version::HTTP_11;
                *req.uri_mut() =
                    if self.uri.scheme().is_none() && self.uri.path_and_query() == Some(&self.pq) {
                        if keep {
                            self.uri.clone()
                        } else {
                            std::mem::take(&mut self.uri)
                        }
                    } else {
                        Uri::from(self.pq.clone())
                    };
                req.headers_mut().insert(HOST, self.host.clone());
            }
            UpstreamProtocol::Http2 => {
                *req.version_mut() = Version::HTTP_2;
                let mut up = http::uri::Parts::default();
                up.scheme = Some(Scheme::HTTP);
                up.authority = http::uri::Authority::from_maybe_shared(Bytes::copy_from_slice(
                    self.host.as_bytes(),
                ))
                .ok();
                up.path_and_query = Some(self.pq.clone());
                *req.uri_mut() = Uri::from_parts(up).ok()?;
                req.headers_mut().remove(HOST);
            }
        }
        Some(req)
    }
}

/// The request body: replayable from memory (empty, or read whole for mirrors), streamed once
/// (no retries), or streamed with a copy kept for retries.
enum ReqBody {
    Replay(Buffered),
    Once(Option<Body>),
    Tee {
        /// What the next attempt starts from (None while an attempt holds the body).
        next: Option<TeeParts>,
        /// The current attempt's handles.
        current: Option<TeeHandle>,
        limit: usize,
    },
}

impl ReqBody {
    fn take(&mut self) -> Body {
        match self {
            ReqBody::Replay(b) if b.data.is_none() && b.trailers.is_none() => Body::Empty,
            ReqBody::Replay(b) => Body::Buffered(b.clone()),
            ReqBody::Once(b) => b.take().unwrap_or(Body::Empty),
            ReqBody::Tee {
                next,
                current,
                limit,
            } => match next.take() {
                Some(parts) => {
                    let (body, handle) = Tee::start(parts, *limit);
                    *current = Some(handle);
                    body
                }
                None => Body::Empty,
            },
        }
    }

    /// Gets the body back from the attempt that had it, for another attempt; false when it
    /// cannot be replayed (streamed once, or more than the buffer limit went by).
    async fn reclaim(&mut self, until: Option<Instant>) -> bool {
        match self {
            ReqBody::Replay(_) => true,
            ReqBody::Once(_) => false,
            ReqBody::Tee { next, current, .. } => {
                let Some(TeeHandle { stop, back }) = current.take() else {
                    return next.as_ref().is_some_and(|p| !p.overflow);
                };
                // Stops the abandoned attempt's body if the upstream still reads it.
                drop(stop);
                let parts = match until {
                    Some(at) => tokio::time::timeout_at(at, back)
                        .await
                        .ok()
                        .and_then(Result::ok),
                    None => back.await.ok(),
                };
                match parts {
                    Some(p) if !p.overflow => {
                        *next = Some(p);
                        true
                    }
                    _ => false,
                }
            }
        }
    }
}

/// How one attempt ended.
enum Attempt {
    /// A response, its connection, and body bytes already read from it (to send first).
    Response(Response<Incoming>, Option<Pooled>, Option<Bytes>),
    /// A response read whole (a gRPC response whose trailers were checked).
    Buffered(Response<Buffered>),
    Failed(Failure, Local),
    Overflow,
    RouteTimeout,
    StreamIdle,
}

/// Whether an HTTP/2 error is `REFUSED_STREAM` (safe to retry: the server did not process it).
fn refused_stream(e: &hyper::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(h2e) = err.downcast_ref::<h2::Error>() {
            return h2e.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        src = err.source();
    }
    false
}

async fn forward(
    ctx: &ConnCtx,
    snapshot: &crate::config::Snapshot,
    levels: &Levels<'_>,
    f: &Forward,
    mut req: Request<Incoming>,
    rq: &mut RequestCtx,
) -> Response<Body> {
    let (cluster_name, target) = f.clusters.pick();
    let Some(cluster) = snapshot.clusters.get(cluster_name) else {
        ctx.hcm.stats.no_cluster.fetch_add(1, Ordering::Relaxed);
        return Local::NoCluster(f.cluster_not_found).reply(rq);
    };
    if ctx.hcm.telemetry.is_some() {
        rq.cluster = Some(Arc::clone(cluster));
    }
    let cs = &cluster.stats;
    let original_dst = match &cluster.original_dst {
        None => None,
        Some(od) => od
            .use_http_header
            .then(|| req.headers().get(&od.http_header_name))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<SocketAddr>().ok())
            .or(Some(ctx.local)),
    };
    let upgrade = headers::is_upgrade(&req);
    if upgrade && (!ctx.hcm.websocket || !headers::is_websocket(&req)) {
        return Local::UpgradeRefused.reply(rq);
    }
    let Some(permit) = cluster.try_acquire(f.priority) else {
        cs.upstream_rq_pending_overflow
            .fetch_add(1, Ordering::Relaxed);
        return Local::Overflow.reply(rq);
    };
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let route_retry: Option<&RetryPolicy> = if upgrade {
        None
    } else {
        f.retry
            .as_deref()
            .or(levels.vhost.retry.as_deref())
            .filter(|r| r.applies_to(req.headers()))
    };
    // Envoy's request control headers: consumed here, never forwarded.
    let controlled = REQUEST_CONTROL_HEADERS
        .iter()
        .any(|h| req.headers().contains_key(h));
    let amended = if controlled && !upgrade {
        amend_retry(route_retry, req.headers())
    } else {
        None
    };
    let retry: Option<&RetryPolicy> = amended.as_ref().or(route_retry);
    let route_timeout = match controlled
        .then(|| req.headers().get(&REQUEST_CONTROL_HEADERS[3]))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => f.timeout,
    };

    // Path rewrites.
    let new_pq: Option<String> = {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Some(prefix) = &f.prefix_rewrite {
            let n = levels.route.matched_prefix_len().unwrap_or(0);
            Some(format!("{prefix}{}", pq.get(n..).unwrap_or("")))
        } else if let Some((re, sub)) = &f.regex_rewrite {
            let (path, query) = pq.split_at(pq.find('?').unwrap_or(pq.len()));
            Some(format!("{}{query}", re.replace_all(path, sub.as_str())))
        } else {
            None
        }
    };
    let host_rewrite = target
        .and_then(|t| t.host_rewrite.as_ref())
        .or(f.host_rewrite.as_ref());
    let host: HeaderValue = match host_rewrite {
        Some(h) => h.clone(),
        None => match req.uri().authority() {
            Some(a) => {
                HeaderValue::from_str(a.as_str()).unwrap_or_else(|_| HeaderValue::from_static(""))
            }
            None => req
                .headers()
                .get(HOST)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("")),
        },
    };
    let mut new_cookie = None;
    let hash = if f.hash_policy.is_empty() {
        None
    } else {
        request_hash(
            &f.hash_policy,
            req.headers(),
            req.uri().query(),
            ctx.peer.ip(),
            &mut new_cookie,
        )
    };

    let (mut parts, body) = req.into_parts();
    if controlled {
        for h in &REQUEST_CONTROL_HEADERS {
            parts.headers.remove(h);
        }
    }
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if ctx.tls.is_some() && !parts.headers.contains_key("x-forwarded-proto") {
        parts
            .headers
            .insert("x-forwarded-proto", HeaderValue::from_static("https"));
    }
    headers::forwarded(ctx.hcm.as_ref(), ctx.peer, &mut parts.headers);
    ctx.hcm
        .client_cert_details
        .apply(ctx.tls.as_deref(), &mut parts.headers);
    levels.request(target.map(|t| &t.headers), &mut parts.headers);
    let pq = match new_pq {
        Some(s) => PathAndQuery::from_maybe_shared(Bytes::from(s)).ok(),
        None => parts.uri.path_and_query().cloned(),
    }
    .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut head = Head {
        method: parts.method,
        uri: parts.uri,
        pq,
        host,
        headers: parts.headers,
        extensions: parts.extensions,
    };

    let deadline = route_timeout.map(|t| Instant::now() + t);
    let idle = match f.idle_timeout {
        Some(route_idle) => route_idle,
        None => ctx.hcm.stream_idle_timeout,
    };

    // A body that mirrors copy is read first, up to the buffer limit (a larger one streams,
    // unmirrored and without retries). With retries only, the body streams at once and a copy
    // is kept (up to the limit) for the next attempt.
    let limit = levels
        .route
        .buffer_limit
        .or(levels.vhost.buffer_limit)
        .unwrap_or(1 << 20) as usize;
    let mut retry = retry;
    let mut req_body = if body.is_end_stream() && !upgrade {
        ReqBody::Replay(Buffered::default())
    } else if !f.mirrors.is_empty() {
        match body::buffer(body, limit).await {
            Ok(Read::Whole(b)) => ReqBody::Replay(b),
            Ok(Read::Partial(head_bytes, rest)) => {
                retry = None;
                ReqBody::Once(Some(Body::Prefixed(Some(head_bytes), rest)))
            }
            Err(e) => {
                tracing::debug!("downstream request body failed: {e}");
                return Local::BadRequest.reply(rq);
            }
        }
    } else if retry.is_some_and(|r| r.num_retries > 0) {
        ReqBody::Tee {
            next: Some(TeeParts::new(body)),
            current: None,
            limit,
        }
    } else {
        ReqBody::Once(Some(Body::Incoming(body)))
    };

    if !f.mirrors.is_empty()
        && let ReqBody::Replay(b) = &req_body
    {
        for m in &f.mirrors {
            if !sample(m.ppm) {
                continue;
            }
            let Some(mc) = snapshot.clusters.get(&m.cluster) else {
                continue;
            };
            let mut mhead = Head {
                method: head.method.clone(),
                uri: head.uri.clone(),
                pq: head.pq.clone(),
                host: if m.keep_host {
                    head.host.clone()
                } else {
                    HeaderValue::from_str(&shadow_host(head.host.to_str().unwrap_or("")))
                        .unwrap_or_else(|_| head.host.clone())
                },
                headers: head.headers.clone(),
                extensions: http::Extensions::new(),
            };
            let body = if b.data.is_none() && b.trailers.is_none() {
                Body::Empty
            } else {
                Body::Buffered(b.clone())
            };
            if let Some(mreq) = mhead.request(mc.protocol, body, false) {
                tokio::spawn(mirror(Arc::clone(mc), mreq));
            }
        }
    }

    let max_attempts = retry.map_or(1, |r| r.num_retries + 1);
    let previous_hosts = retry.is_some_and(|r| r.previous_hosts);
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut _retry_slot = None;
    let start = Instant::now();
    loop {
        rq.attempts += 1;
        let attempt = rq.attempts;
        let last = attempt >= max_attempts;
        let pick = PickCtx {
            hash,
            exclude: &tried,
            max_attempts: retry.map_or(1, |r| r.host_selection_max_attempts),
            original_dst,
        };
        let Some(lease) = cluster.pick_with(&pick) else {
            cs.upstream_cx_none_healthy.fetch_add(1, Ordering::Relaxed);
            return Local::NoHealthyUpstream.reply(rq);
        };
        rq.upstream_host = Some(lease.endpoint.addr);
        if previous_hosts {
            tried.push(lease.endpoint.addr);
        }
        cs.upstream_rq_total.fetch_add(1, Ordering::Relaxed);
        let Some(mut up_req) = head.request(cluster.protocol, req_body.take(), !last) else {
            return Local::UpstreamReset.reply(rq);
        };
        if levels.vhost.attempt_count_in_request {
            up_req
                .headers_mut()
                .insert(X_ENVOY_ATTEMPT_COUNT, HeaderValue::from(attempt));
        }
        let endpoint = Arc::clone(&lease.endpoint);
        let now = Instant::now();
        let per_try = retry.and_then(|r| r.per_try_timeout).map(|t| now + t);
        let idle_at = idle.map(|d| now + d);
        let try_deadline = [deadline, per_try, idle_at].into_iter().flatten().min();
        let sent = send(cluster, &endpoint, up_req, upgrade, f.priority);
        let outcome = match try_deadline {
            Some(at) => match tokio::time::timeout_at(at, sent).await {
                Ok(r) => Ok(r),
                Err(_) => Err(()),
            },
            None => Ok(sent.await),
        };
        let result = match outcome {
            Err(()) => {
                cluster.report(&endpoint, Outcome::LocalFailure);
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    Attempt::RouteTimeout
                } else if per_try.is_some_and(|d| now >= d) {
                    cs.upstream_rq_per_try_timeout
                        .fetch_add(1, Ordering::Relaxed);
                    Attempt::Failed(Failure::PerTryTimeout, Local::Timeout)
                } else {
                    Attempt::StreamIdle
                }
            }
            Ok(Err(SendError::Connect(ConnectError::Overflow))) => Attempt::Overflow,
            Ok(Err(SendError::Connect(e))) => {
                tracing::debug!(cluster = %cluster.name, "{e}");
                cs.upstream_cx_connect_fail.fetch_add(1, Ordering::Relaxed);
                cluster.report(&endpoint, Outcome::LocalFailure);
                Attempt::Failed(Failure::ConnectFailure, Local::ConnectFailure)
            }
            Ok(Err(SendError::Http(e))) => {
                tracing::debug!(cluster = %cluster.name, "upstream request failed: {e}");
                cs.upstream_rq_tx_reset.fetch_add(1, Ordering::Relaxed);
                cluster.report(&endpoint, Outcome::LocalFailure);
                if refused_stream(&e) {
                    Attempt::Failed(Failure::RefusedStream, Local::UpstreamReset)
                } else {
                    Attempt::Failed(Failure::Reset, Local::UpstreamReset)
                }
            }
            Ok(Ok((resp, sender))) => {
                if cluster.outlier.is_some() {
                    cluster.report(&endpoint, Outcome::LocalSuccess);
                    cluster.report(&endpoint, Outcome::Status(resp.status().as_u16()));
                }
                Attempt::Response(resp, sender, None)
            }
        };
        // Decide whether to retry.
        let (retriable, result) = match (retry, result) {
            (Some(r), Attempt::Response(resp, sender, prefix)) => {
                let mut yes = r.retry_response(resp.status(), resp.headers());
                let mut result = Attempt::Response(resp, sender, prefix);
                // gRPC status in trailers: a unary response is read to its trailers.
                if !yes
                    && !last
                    && r.on.has(crate::config::policy::RetryOn::GRPC)
                    && let Attempt::Response(resp, sender, None) = result
                {
                    let (checked, again) = grpc_trailers(r, resp, sender).await;
                    yes = again;
                    result = checked;
                }
                (yes, result)
            }
            (Some(r), Attempt::Failed(fail, local)) => {
                (r.retry_failure(fail), Attempt::Failed(fail, local))
            }
            (_, other) => (false, other),
        };
        if retriable && !last && !req_body.reclaim(deadline).await {
            // The body cannot be sent again: this answer stands.
            cs.upstream_rq_retry_limit_exceeded
                .fetch_add(1, Ordering::Relaxed);
        } else if retriable && !last {
            match cluster.breakers.retry(f.priority) {
                Some(slot) => {
                    _retry_slot = Some(slot);
                    cs.upstream_rq_retry.fetch_add(1, Ordering::Relaxed);
                    let backoff = retry.map_or(Duration::ZERO, |r| r.backoff(attempt));
                    if deadline.is_some_and(|d| Instant::now() + backoff >= d) {
                        if let Some(d) = deadline {
                            tokio::time::sleep_until(d).await;
                        }
                        cs.upstream_rq_timeout.fetch_add(1, Ordering::Relaxed);
                        ctx.hcm
                            .stats
                            .downstream_rq_timeout
                            .fetch_add(1, Ordering::Relaxed);
                        cs.response(504);
                        return Local::Timeout.reply(rq);
                    }
                    drop(result);
                    drop(lease);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                None => {
                    cs.upstream_rq_retry_overflow
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        } else if retriable {
            cs.upstream_rq_retry_limit_exceeded
                .fetch_add(1, Ordering::Relaxed);
            rq.flags.set(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        } else if attempt > 1 {
            cs.upstream_rq_retry_success.fetch_add(1, Ordering::Relaxed);
        }
        let (mut resp, sender, prefix) = match result {
            Attempt::Response(resp, sender, prefix) => (resp, sender, prefix),
            Attempt::Buffered(resp) => {
                cs.response(resp.status().as_u16());
                let (mut parts, b) = resp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers, false);
                levels.response(target.map(|t| &t.headers), &mut parts.headers);
                finish_headers(
                    levels,
                    &mut parts.headers,
                    start,
                    attempt,
                    new_cookie.take(),
                );
                return Response::from_parts(parts, Body::Buffered(b));
            }
            Attempt::Failed(_, local) => {
                cs.response(local.status());
                return Local::reply(local, rq);
            }
            Attempt::Overflow => {
                cs.upstream_rq_pending_overflow
                    .fetch_add(1, Ordering::Relaxed);
                return Local::Overflow.reply(rq);
            }
            Attempt::RouteTimeout => {
                cs.upstream_rq_timeout.fetch_add(1, Ordering::Relaxed);
                ctx.hcm
                    .stats
                    .downstream_rq_timeout
                    .fetch_add(1, Ordering::Relaxed);
                cs.response(504);
                return Local::Timeout.reply(rq);
            }
            Attempt::StreamIdle => {
                ctx.hcm
                    .stats
                    .downstream_rq_idle_timeout
                    .fetch_add(1, Ordering::Relaxed);
                return Local::StreamIdle.reply(rq);
            }
        };
        cs.response(resp.status().as_u16());

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(down) = downstream_upgrade
        {
            ctx.hcm
                .stats
                .downstream_cx_upgrades_total
                .fetch_add(1, Ordering::Relaxed);
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let _lease = lease;
                let _permit = permit;
                match tokio::join!(up, down) {
                    (Ok(up), Ok(down)) => {
                        let mut up = TokioIo::new(up);
                        let mut down = TokioIo::new(down);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
                            tracing::debug!("upgraded connection ended: {e}");
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => tracing::debug!("upgrade failed: {e}"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, Body::Empty);
        }

        headers::strip_hop_by_hop(resp.headers_mut(), false);
        levels.response(target.map(|t| &t.headers), resp.headers_mut());
        finish_headers(
            levels,
            resp.headers_mut(),
            start,
            attempt,
            new_cookie.take(),
        );
        let (parts, incoming) = resp.into_parts();
        let conn = sender.map(|s| (s, endpoint));
        let timer = Deadline::new(deadline, idle);
        return Response::from_parts(
            parts,
            Body::Upstream(UpstreamBody::new(
                incoming,
                conn,
                Some(permit),
                Some(lease),
                timer,
                prefix,
            )),
        );
    }
}

/// Headers the router adds to every upstream response.
fn finish_headers(
    levels: &Levels<'_>,
    h: &mut HeaderMap,
    start: Instant,
    attempt: u32,
    new_cookie: Option<crate::config::policy::NewCookie>,
) {
    let ms = start.elapsed().as_millis() as u64;
    h.insert("x-envoy-upstream-service-time", HeaderValue::from(ms));
    if levels.vhost.attempt_count_in_response {
        h.insert(X_ENVOY_ATTEMPT_COUNT, HeaderValue::from(attempt));
    }
    if let Some(c) = new_cookie
        && let Ok(v) = HeaderValue::from_str(&c.set_cookie)
    {
        h.append(http::header::SET_COOKIE, v);
    }
}

impl Local {
    fn status(self) -> u16 {
        match self {
            Local::ConnectFailure | Local::NoHealthyUpstream | Local::Overflow => 503,
            Local::UpstreamReset => 502,
            Local::Timeout => 504,
            _ => 500,
        }
    }
}

/// How long the trailer check waits for each next frame of a gRPC response: a unary response's
/// message and trailers follow its headers at once; a stream that pauses longer is forwarded
/// as it comes instead of being held.
const GRPC_TRAILER_WAIT: Duration = Duration::from_millis(10);
/// How much of a gRPC response the trailer check holds at most.
const GRPC_TRAILER_BUDGET: usize = 64 * 1024;

/// Looks for `grpc-status` in the trailers of a gRPC response that has none in its headers, so
/// that the retry policy can judge it: a unary response (message and trailers arriving right
/// after the headers, within a small budget) is read whole; anything else streams on with what
/// was read put back in front. Returns the attempt and whether to retry.
async fn grpc_trailers(
    r: &RetryPolicy,
    resp: Response<Incoming>,
    sender: Option<Pooled>,
) -> (Attempt, bool) {
    use http_body_util::BodyExt;
    let is_grpc = resp
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if !is_grpc || grpc_status(resp.headers()).is_some() {
        return (Attempt::Response(resp, sender, None), false);
    }
    let (parts, mut body) = resp.into_parts();
    let mut data = bytes::BytesMut::new();
    while data.len() <= GRPC_TRAILER_BUDGET {
        match tokio::time::timeout(GRPC_TRAILER_WAIT, body.frame()).await {
            // A pause: a stream, forwarded as it comes.
            Err(_) => break,
            Ok(None) => {
                let b = Buffered {
                    data: (!data.is_empty()).then(|| data.freeze()),
                    trailers: None,
                };
                return (Attempt::Buffered(Response::from_parts(parts, b)), false);
            }
            Ok(Some(Err(e))) => {
                tracing::debug!("upstream gRPC response failed: {e}");
                return (Attempt::Failed(Failure::Reset, Local::UpstreamReset), false);
            }
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => {
                    let Ok(trailers) = frame.into_trailers() else {
                        continue;
                    };
                    let again = grpc_status(&trailers).is_some_and(|g| r.retry_grpc(g));
                    let b = Buffered {
                        data: (!data.is_empty()).then(|| data.freeze()),
                        trailers: Some(trailers),
                    };
                    return (Attempt::Buffered(Response::from_parts(parts, b)), again);
                }
            },
        }
    }
    let prefix = (!data.is_empty()).then(|| data.freeze());
    (
        Attempt::Response(Response::from_parts(parts, body), sender, prefix),
        false,
    )
}

/// Sends a copy of a request to a mirror cluster and throws the response away.
async fn mirror(cluster: Arc<Cluster>, req: Request<Body>) {
    let Some(_permit) = cluster.try_acquire(Priority::Default) else {
        cluster
            .stats
            .upstream_rq_pending_overflow
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(lease) = cluster.pick() else {
        cluster
            .stats
            .upstream_cx_none_healthy
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    cluster
        .stats
        .upstream_rq_total
        .fetch_add(1, Ordering::Relaxed);
    let endpoint = Arc::clone(&lease.endpoint);
    let sent = tokio::time::timeout(
        Duration::from_secs(15),
        send(&cluster, &endpoint, req, false, Priority::Default),
    )
    .await;
    if let Ok(Ok((resp, sender))) = sent {
        cluster.stats.response(resp.status().as_u16());
        use http_body_util::BodyExt;
        if resp.into_body().collect().await.is_ok()
            && let Some(s) = sender
        {
            endpoint.pool.put(s);
        }
    }
}

type Sent = (Response<Incoming>, Option<Pooled>);

async fn send(
    cluster: &Cluster,
    endpoint: &Endpoint,
    req: Request<Body>,
    upgrade: bool,
    priority: Priority,
) -> Result<Sent, SendError> {
    let cs = &cluster.stats;
    let pool = &endpoint.pool;
    match cluster.protocol {
        UpstreamProtocol::Http2 => {
            let opened = pool.connections_opened.load(Ordering::Relaxed);
            let mut sender = pool
                .http2(cluster.connect_timeout, priority)
                .await
                .map_err(SendError::Connect)?;
            if pool.connections_opened.load(Ordering::Relaxed) != opened {
                cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
            }
            let resp = sender.send_request(req).await.map_err(SendError::Http)?;
            Ok((resp, None))
        }
        UpstreamProtocol::Http1 if upgrade => {
            let mut conn = pool
                .connect_http1(cluster.connect_timeout, priority)
                .await
                .map_err(SendError::Connect)?;
            cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
            let resp = conn
                .sender
                .send_request(req)
                .await
                .map_err(SendError::Http)?;
            Ok((resp, None))
        }
        UpstreamProtocol::Http1 => {
            let (mut conn, reused) = pool
                .checkout_http1(cluster.connect_timeout, priority, cs)
                .await
                .map_err(SendError::Connect)?;
            if !reused {
                cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
            }
            match conn.sender.try_send_request(req).await {
                Ok(resp) => Ok((resp, Some(conn))),
                Err(mut e) => {
                    // A reused connection the server closed just as the request went out: the
                    // request was never written, so it is safe to send it on a new connection.
                    match e.take_message() {
                        Some(req) if reused => {
                            drop(conn);
                            let mut conn = pool
                                .connect_http1(cluster.connect_timeout, priority)
                                .await
                                .map_err(SendError::Connect)?;
                            cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
                            let resp = conn
                                .sender
                                .send_request(req)
                                .await
                                .map_err(SendError::Http)?;
                            Ok((resp, Some(conn)))
                        }
                        _ => Err(SendError::Http(e.into_error())),
                    }
                }
            }
        }
    }
}
