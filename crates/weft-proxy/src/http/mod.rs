//! The HTTP connection manager: serves HTTP/1.1 (keep-alive, chunked, upgrades) and h2c on a
//! downstream connection, routes each request with the current snapshot and proxies it.

pub mod body;
mod headers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::Shared;
use crate::cluster::UpstreamProtocol;
use crate::cluster::pool::ConnectError;
use crate::config::route::{
    Action, Forward, HeaderRules, Redirect, RedirectPath, Route, RouteTable, VirtualHost,
};
use crate::config::{Codec, HttpManager};
use body::{Body, UpstreamBody};

/// What one downstream connection's requests share.
struct ConnCtx {
    shared: Arc<Shared>,
    hcm: Arc<HttpManager>,
    peer: SocketAddr,
}

/// Serves one downstream connection until it closes, or until `drain` turns true, at which point
/// the connection is closed gracefully (in-flight requests finish, keep-alive stops, h2 GOAWAY).
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    hcm: Arc<HttpManager>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) {
    let ctx = Arc::new(ConnCtx { shared, hcm, peer });
    let codec = ctx.hcm.codec;
    let svc = service_fn(move |req| {
        let ctx = Arc::clone(&ctx);
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = match codec {
        Codec::Http1 => builder.http1_only(),
        Codec::Http2 => builder.http2_only(),
        Codec::Auto => builder,
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "downstream connection ended: {e}");
            }
        }
        _ = async { let _ = drain.wait_for(|d| *d).await; } => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "downstream connection ended while draining: {e}");
            }
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
    UpgradeRefused,
}

impl Local {
    fn reply(self) -> Response<Body> {
        let (status, body, flag): (StatusCode, &'static str, &'static str) = match self {
            Local::NoRoute => (StatusCode::NOT_FOUND, "", "NR"),
            Local::NoCluster(s) => (s, "", "NC"),
            Local::NoHealthyUpstream => {
                (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream", "UH")
            }
            Local::Overflow => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                "UO",
            ),
            Local::ConnectFailure => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                "UF",
            ),
            Local::UpstreamReset => (
                StatusCode::BAD_GATEWAY,
                "upstream connect error or disconnect/reset before headers. reset reason: protocol error",
                "UPE",
            ),
            Local::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream request timeout",
                "UT",
            ),
            Local::UpgradeRefused => (StatusCode::FORBIDDEN, "upgrade not allowed", "UPE"),
        };
        tracing::debug!(status = status.as_u16(), flag, "local reply");
        let mut resp = Response::new(Body::full(Bytes::from_static(body.as_bytes())));
        *resp.status_mut() = status;
        if !body.is_empty() {
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        resp
    }
}

async fn handle(ctx: &ConnCtx, req: Request<Incoming>) -> Response<Body> {
    let stats = &ctx.hcm.stats;
    stats.downstream_rq_total.fetch_add(1, Ordering::Relaxed);
    stats.downstream_rq_active.fetch_add(1, Ordering::Relaxed);
    let resp = route(ctx, req).await;
    stats.downstream_rq_active.fetch_sub(1, Ordering::Relaxed);
    stats.response(resp.status().as_u16());
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

async fn route(ctx: &ConnCtx, mut req: Request<Incoming>) -> Response<Body> {
    let snapshot = ctx.shared.snapshot.load_full();
    let Some(table) = snapshot.routes.get(&ctx.hcm.route_config) else {
        ctx.hcm.stats.no_route.fetch_add(1, Ordering::Relaxed);
        return Local::NoRoute.reply();
    };
    let found = table.find_vhost(authority(&req)).and_then(|vh| {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        vh.find_route(pq, req.headers()).map(|r| (vh, r))
    });
    let Some((vhost, route)) = found else {
        ctx.hcm.stats.no_route.fetch_add(1, Ordering::Relaxed);
        return Local::NoRoute.reply();
    };
    let request_id = headers::request_id(ctx.hcm.as_ref(), req.headers_mut());
    let levels = Levels {
        table,
        vhost,
        route,
    };
    let mut resp = match &route.action {
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
        Action::Forward(f) => forward(ctx, &snapshot, &levels, f, req).await,
    };
    if ctx.hcm.always_set_request_id_in_response
        && let Some(id) = request_id
    {
        resp.headers_mut().insert(headers::X_REQUEST_ID, id);
    }
    resp
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

async fn forward(
    ctx: &ConnCtx,
    snapshot: &crate::config::Snapshot,
    levels: &Levels<'_>,
    f: &Forward,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let (cluster_name, target) = f.clusters.pick();
    let Some(cluster) = snapshot.clusters.get(cluster_name) else {
        ctx.hcm.stats.no_cluster.fetch_add(1, Ordering::Relaxed);
        return Local::NoCluster(f.cluster_not_found).reply();
    };
    let cs = &cluster.stats;
    let upgrade = headers::is_upgrade(&req);
    if upgrade && (!ctx.hcm.websocket || !headers::is_websocket(&req)) {
        return Local::UpgradeRefused.reply();
    }
    let Some(permit) = cluster.try_acquire() else {
        cs.upstream_rq_pending_overflow
            .fetch_add(1, Ordering::Relaxed);
        return Local::Overflow.reply();
    };
    let Some(lease) = cluster.pick() else {
        cs.upstream_cx_none_healthy.fetch_add(1, Ordering::Relaxed);
        return Local::NoHealthyUpstream.reply();
    };
    cs.upstream_rq_total.fetch_add(1, Ordering::Relaxed);
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

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

    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    headers::forwarded(ctx.hcm.as_ref(), ctx.peer, &mut parts.headers);
    levels.request(target.map(|t| &t.headers), &mut parts.headers);
    let pq = match new_pq {
        Some(s) => PathAndQuery::from_maybe_shared(Bytes::from(s)).ok(),
        None => parts.uri.path_and_query().cloned(),
    }
    .unwrap_or_else(|| PathAndQuery::from_static("/"));
    match cluster.protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            if parts.uri.scheme().is_some() || parts.uri.path_and_query() != Some(&pq) {
                parts.uri = Uri::from(pq);
            }
            parts.headers.insert(HOST, host);
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            let mut up = http::uri::Parts::default();
            up.scheme = Some(Scheme::HTTP);
            up.authority =
                http::uri::Authority::from_maybe_shared(Bytes::copy_from_slice(host.as_bytes()))
                    .ok();
            up.path_and_query = Some(pq);
            match Uri::from_parts(up) {
                Ok(u) => parts.uri = u,
                Err(_) => return Local::UpstreamReset.reply(),
            }
            parts.headers.remove(HOST);
        }
    }
    let up_req = Request::from_parts(parts, Body::Incoming(body));

    let endpoint = Arc::clone(&lease.endpoint);
    let start = Instant::now();
    let send = send(cluster, &endpoint, up_req, upgrade);
    let result = match f.timeout {
        Some(t) => match tokio::time::timeout(t, send).await {
            Ok(r) => r,
            Err(_) => {
                cs.upstream_rq_timeout.fetch_add(1, Ordering::Relaxed);
                cs.response(504);
                return Local::Timeout.reply();
            }
        },
        None => send.await,
    };
    let (mut resp, sender) = match result {
        Ok(r) => r,
        Err(SendError::Connect(e)) => {
            tracing::debug!(cluster = %cluster.name, "{e}");
            cs.upstream_cx_connect_fail.fetch_add(1, Ordering::Relaxed);
            cs.response(503);
            return Local::ConnectFailure.reply();
        }
        Err(SendError::Http(e)) => {
            tracing::debug!(cluster = %cluster.name, "upstream request failed: {e}");
            cs.response(502);
            return Local::UpstreamReset.reply();
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
    let ms = start.elapsed().as_millis() as u64;
    resp.headers_mut()
        .insert("x-envoy-upstream-service-time", HeaderValue::from(ms));
    let (parts, incoming) = resp.into_parts();
    let conn = sender.map(|s| (s, endpoint));
    Response::from_parts(
        parts,
        Body::Upstream(UpstreamBody::new(incoming, conn, Some(permit), Some(lease))),
    )
}

type Sent = (
    Response<Incoming>,
    Option<hyper::client::conn::http1::SendRequest<Body>>,
);

async fn send(
    cluster: &crate::cluster::Cluster,
    endpoint: &crate::cluster::Endpoint,
    req: Request<Body>,
    upgrade: bool,
) -> Result<Sent, SendError> {
    let cs = &cluster.stats;
    let pool = &endpoint.pool;
    match cluster.protocol {
        UpstreamProtocol::Http2 => {
            let opened = pool.connections_opened.load(Ordering::Relaxed);
            let mut sender = pool
                .http2(cluster.connect_timeout)
                .await
                .map_err(SendError::Connect)?;
            if pool.connections_opened.load(Ordering::Relaxed) != opened {
                cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
            }
            let resp = sender.send_request(req).await.map_err(SendError::Http)?;
            Ok((resp, None))
        }
        UpstreamProtocol::Http1 if upgrade => {
            let mut sender = pool
                .connect_http1(cluster.connect_timeout)
                .await
                .map_err(SendError::Connect)?;
            cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
            let resp = sender.send_request(req).await.map_err(SendError::Http)?;
            Ok((resp, None))
        }
        UpstreamProtocol::Http1 => {
            let (mut sender, reused) = pool
                .checkout_http1(cluster.connect_timeout)
                .await
                .map_err(SendError::Connect)?;
            if !reused {
                cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
            }
            match sender.try_send_request(req).await {
                Ok(resp) => Ok((resp, Some(sender))),
                Err(mut e) => {
                    // A reused connection the server closed just as the request went out: the
                    // request was never written, so it is safe to send it on a new connection.
                    match e.take_message() {
                        Some(req) if reused => {
                            let mut sender = pool
                                .connect_http1(cluster.connect_timeout)
                                .await
                                .map_err(SendError::Connect)?;
                            cs.upstream_cx_total.fetch_add(1, Ordering::Relaxed);
                            let resp = sender.send_request(req).await.map_err(SendError::Http)?;
                            Ok((resp, Some(sender)))
                        }
                        _ => Err(SendError::Http(e.into_error())),
                    }
                }
            }
        }
    }
}
