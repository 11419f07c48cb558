//! The HTTP filters of the connection manager's chain, run on the request path: fault
//! injection, CORS and the local rate limit. Decoding runs them in configured order before the
//! router; encoding adds their response headers in reverse order. A connection manager with no
//! filter skips all of this.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, ORIGIN,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::Levels;
use super::body::Body;
use super::flags::ResponseFlags;
use crate::config::HttpManager;
use crate::config::filters::{
    AbortKind, ChainFilter, CorsPolicy, DelayKind, Fault, HttpFilter, PerFilter, RateLimit, sample,
};
use crate::config::route::{AppendAction, HeaderAdd};

const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The connection a request came on, for the RBAC and JWT filters.
pub(crate) struct Conn<'a> {
    /// Addresses and peer identity.
    pub downstream: &'a super::rbac::Downstream,
    /// Where JWKS fetches go.
    pub resolver: &'a dyn super::jwt::ClusterResolver,
}

/// A local reply with a plain-text body.
fn local_reply(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// What the decoding filters leave for the encoding side.
#[derive(Debug, Default)]
pub(crate) struct FilterState {
    /// The CORS policy and the request's origin, for a CORS request that is not a preflight.
    cors: Option<(Arc<CorsPolicy>, HeaderValue)>,
    /// `x-ratelimit-*` values: limit, remaining, reset seconds.
    ratelimit: Option<(u64, u64, u64)>,
    /// Dynamic metadata of `envoy.filters.http.jwt_authn`: verified payloads.
    jwt: Option<serde_json::Value>,
    /// Dynamic metadata of `envoy.filters.http.rbac` (shadow effective policy ids).
    rbac: std::collections::HashMap<String, String>,
}

/// The most specific setting of a filter: route, then virtual host, then route configuration.
fn most_specific<'a, T>(
    levels: &'a Levels<'_>,
    get: impl Fn(&'a PerFilter) -> Option<&'a Arc<T>>,
) -> Option<&'a Arc<T>> {
    [
        levels.route.per_filter.as_deref(),
        levels.vhost.per_filter.as_deref(),
        levels.table.per_filter.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find_map(get)
}

/// Whether a chain filter runs for this route: the most specific level that names it decides
/// (`FilterConfig.disabled` turns it off, a config turns it on), else its own `disabled`.
fn enabled(levels: &Levels<'_>, cf: &ChainFilter) -> bool {
    [
        levels.route.per_filter.as_deref(),
        levels.vhost.per_filter.as_deref(),
        levels.table.per_filter.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find_map(|p| {
        p.switches
            .iter()
            .find(|(n, _)| *n == cf.name)
            .map(|(_, off)| !off)
    })
    .unwrap_or(!cf.disabled)
}

/// Runs the decoding side of every filter. `Some` carries a local reply that ends the request.
pub(crate) async fn decode<B>(
    hcm: &HttpManager,
    levels: &Levels<'_>,
    req: &mut Request<B>,
    flags: &mut ResponseFlags,
    state: &mut FilterState,
    conn: &Conn<'_>,
) -> Option<Response<Body>> {
    for cf in &hcm.filters {
        if !enabled(levels, cf) {
            continue;
        }
        match &cf.filter {
            HttpFilter::Fault(listener) => {
                let cfg = most_specific(levels, |p| p.fault.as_ref()).unwrap_or(listener);
                if let Some(r) = fault(hcm, cfg, req.headers(), flags).await {
                    return Some(r);
                }
            }
            HttpFilter::Cors => {
                let Some(policy) = most_specific(levels, |p| p.cors.as_ref()) else {
                    continue;
                };
                if let Some(r) = cors(policy, req, state) {
                    return Some(r);
                }
            }
            HttpFilter::LocalRateLimit(listener) => {
                let cfg = most_specific(levels, |p| p.ratelimit.as_ref()).unwrap_or(listener);
                if let Some(r) = ratelimit(hcm, cfg, req.headers_mut(), flags, state) {
                    return Some(r);
                }
            }
            HttpFilter::Jwt(f) => {
                let method = req.method().clone();
                let uri = req.uri().clone();
                match f
                    .check(&method, &uri, req.headers_mut(), conn.resolver)
                    .await
                {
                    Ok(Some(meta)) => {
                        // Several jwt_authn filters merge their metadata.
                        match (&mut state.jwt, meta) {
                            (Some(serde_json::Value::Object(m)), serde_json::Value::Object(n)) => {
                                m.extend(n)
                            }
                            (slot, meta) => *slot = Some(meta),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let mut r = local_reply(StatusCode::UNAUTHORIZED, e.message());
                        r.headers_mut().insert(
                            http::header::WWW_AUTHENTICATE,
                            HeaderValue::from_static("Bearer realm=\"\", error=\"invalid_token\""),
                        );
                        return Some(r);
                    }
                }
            }
            HttpFilter::ExtAuthz(f) => {
                if !f.enabled(&state.rbac) {
                    continue;
                }
                let method = req.method().clone();
                let uri = req.uri().clone();
                let verdict = f
                    .check(
                        &method,
                        &uri,
                        req.headers_mut(),
                        conn.downstream.remote,
                        conn.resolver,
                    )
                    .await;
                if let super::ext_authz::Verdict::Deny(r) = verdict {
                    flags.set(ResponseFlags::UNAUTHORIZED);
                    return Some(*r);
                }
            }
            HttpFilter::Rbac(f) => {
                let authority = req
                    .uri()
                    .authority()
                    .map(|a| a.as_str())
                    .or_else(|| {
                        req.headers()
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                    })
                    .unwrap_or("");
                let attrs = super::rbac::Attrs {
                    downstream: conn.downstream,
                    remote_ip: conn.downstream.remote.ip(),
                    method: req.method().as_str(),
                    path: req.uri().path_and_query().map_or("", |p| p.as_str()),
                    authority,
                    headers: req.headers(),
                    jwt: state.jwt.as_ref(),
                };
                let (ok, meta) = f.check_with_shadow(&attrs);
                if let Some((k, v)) = meta {
                    state.rbac.insert(k, v);
                }
                if !ok {
                    return Some(local_reply(StatusCode::FORBIDDEN, super::rbac::DENIED_BODY));
                }
            }
        }
    }
    None
}

/// Adds the filters' response headers (in reverse filter order).
pub(crate) fn encode(state: &FilterState, headers: &mut HeaderMap) {
    if let Some((limit, remaining, reset)) = state.ratelimit {
        headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from(limit));
        headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(remaining));
        headers.insert(X_RATELIMIT_RESET, HeaderValue::from(reset));
    }
    if let Some((policy, origin)) = &state.cors {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if policy.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &policy.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Decrements the active-fault count when the fault is over.
struct ActiveFault<'a>(&'a Fault);

impl Drop for ActiveFault<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn fault(
    hcm: &HttpManager,
    cfg: &Fault,
    headers: &HeaderMap,
    flags: &mut ResponseFlags,
) -> Option<Response<Body>> {
    if !cfg.headers.iter().all(|m| m.matches(headers)) {
        return None;
    }
    let delay = match &cfg.delay {
        Some((DelayKind::Fixed(d), share)) if sample(share.ppm) => Some(*d),
        Some((DelayKind::Header, share)) => header_u64(headers, "x-envoy-fault-delay-request")
            .filter(|_| {
                sample(share.with_header(header_u64(
                    headers,
                    "x-envoy-fault-delay-request-percentage",
                )))
            })
            .map(Duration::from_millis),
        _ => None,
    };
    let abort = match &cfg.abort {
        Some((AbortKind::Http(s), share)) if sample(share.ppm) => Some((Some(*s), None)),
        Some((AbortKind::Grpc(g), share)) if sample(share.ppm) => Some((None, Some(*g))),
        Some((AbortKind::Header, share)) => {
            let http = header_u64(headers, "x-envoy-fault-abort-request")
                .and_then(|s| StatusCode::from_u16(s as u16).ok())
                .filter(|s| (200..600).contains(&s.as_u16()));
            let grpc = header_u64(headers, "x-envoy-fault-abort-grpc-request").map(|g| g as u32);
            let pct = share.with_header(header_u64(
                headers,
                "x-envoy-fault-abort-request-percentage",
            ));
            (http.is_some() || grpc.is_some())
                .then_some((http, grpc))
                .filter(|_| sample(pct))
        }
        _ => None,
    };
    if delay.is_none() && abort.is_none() {
        return None;
    }
    if let Some(max) = cfg.max_active
        && cfg.active.load(Ordering::Relaxed) >= max
    {
        hcm.stats
            .fault_faults_overflow
            .fetch_add(1, Ordering::Relaxed);
        return None;
    }
    cfg.active.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveFault(cfg);
    if let Some(d) = delay {
        flags.set(ResponseFlags::DELAY_INJECTED);
        hcm.stats
            .fault_delays_injected
            .fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(d).await;
    }
    // No abort: the (possibly delayed) request continues.
    let (http, grpc) = abort?;
    flags.set(ResponseFlags::FAULT_INJECTED);
    hcm.stats
        .fault_aborts_injected
        .fetch_add(1, Ordering::Relaxed);
    let resp = match (http, grpc) {
        (_, Some(g)) => {
            let mut r = Response::new(Body::Empty);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            r.headers_mut().insert("grpc-status", HeaderValue::from(g));
            if let Ok(m) = HeaderValue::from_bytes(&cfg.abort_body) {
                r.headers_mut().insert("grpc-message", m);
            }
            r
        }
        (Some(s), None) => {
            let mut r = Response::new(Body::full(cfg.abort_body.clone()));
            *r.status_mut() = s;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        (None, None) => return None,
    };
    Some(resp)
}

fn cors<B>(
    policy: &Arc<CorsPolicy>,
    req: &Request<B>,
    state: &mut FilterState,
) -> Option<Response<Body>> {
    if !sample(policy.enabled_ppm) {
        return None;
    }
    // Not a CORS request: continue.
    let origin = req.headers().get(ORIGIN)?;
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .is_some_and(|v| !v.is_empty());
    let allowed = origin.to_str().is_ok_and(|o| policy.allows(o));
    if !allowed {
        if preflight && !policy.forward_not_matching_preflights {
            return Some(Response::new(Body::Empty));
        }
        return None;
    }
    if !preflight {
        state.cors = Some((Arc::clone(policy), origin.clone()));
        return None;
    }
    let mut resp = Response::new(Body::Empty);
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if policy.allow_credentials {
        h.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(v) = &policy.allow_methods {
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, v.clone());
    }
    if let Some(v) = &policy.allow_headers {
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    if let Some(v) = &policy.max_age {
        h.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
    }
    if policy.allow_private_network_access
        && req
            .headers()
            .get("access-control-request-private-network")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        h.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    Some(resp)
}

fn add_headers(adds: &[HeaderAdd], h: &mut HeaderMap) {
    for a in adds {
        match a.action {
            AppendAction::AppendOrAdd => {
                h.append(a.name.clone(), a.value.clone());
            }
            AppendAction::AddIfAbsent if h.contains_key(&a.name) => {}
            AppendAction::OverwriteIfExists if !h.contains_key(&a.name) => {}
            _ => {
                h.insert(a.name.clone(), a.value.clone());
            }
        }
    }
}

fn ratelimit(
    hcm: &HttpManager,
    cfg: &RateLimit,
    headers: &mut HeaderMap,
    flags: &mut ResponseFlags,
    state: &mut FilterState,
) -> Option<Response<Body>> {
    // No bucket at this level: continue.
    let bucket = cfg.bucket.as_ref()?;
    if !sample(cfg.enabled_ppm) {
        return None;
    }
    let stats = &hcm.stats;
    stats.ratelimit_enabled.fetch_add(1, Ordering::Relaxed);
    let (ok, remaining) = bucket.take();
    if cfg.x_ratelimit_headers {
        state.ratelimit = Some((bucket.max_tokens, remaining, bucket.reset_secs()));
    }
    if ok {
        stats.ratelimit_ok.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    stats.ratelimit_rate_limited.fetch_add(1, Ordering::Relaxed);
    if !sample(cfg.enforced_ppm) {
        add_headers(&cfg.request_headers_when_not_enforced, headers);
        return None;
    }
    stats.ratelimit_enforced.fetch_add(1, Ordering::Relaxed);
    flags.set(ResponseFlags::RATE_LIMITED);
    let mut resp = Response::new(Body::full(Bytes::from_static(b"local_rate_limited")));
    *resp.status_mut() = cfg.status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    add_headers(&cfg.response_headers_to_add, resp.headers_mut());
    Some(resp)
}
