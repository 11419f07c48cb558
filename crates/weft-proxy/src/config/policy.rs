//! Route policies that shape how a request goes upstream: retries (`retry_policy`), the
//! request hash for consistent-hash load balancers (`hash_policy`) and shadowing
//! (`request_mirror_policies`).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use weft_xds::envoy::config::route::v3 as rt;
use xxhash_rust::xxh64::xxh64;

use super::filters::runtime_ppm;
use super::route::HeaderMatcher;
use super::{CompileError, Unsupported, duration};

/// `retry_on` conditions as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`: any 5xx, a connect failure, a reset, a per-try timeout.
    pub const FIVE_XX: u32 = 1;
    /// `gateway-error`: 502, 503, 504 (and per-try timeouts).
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    /// `reset`: no response (disconnect, reset, read timeout).
    pub const RESET: u32 = 1 << 2;
    /// `connect-failure`: the connection could not be made.
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    /// `refused-stream`: HTTP/2 `REFUSED_STREAM`.
    pub const REFUSED_STREAM: u32 = 1 << 4;
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: u32 = 1 << 5;
    /// `retriable-status-codes`: the `retriable_status_codes` list.
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 6;
    /// `retriable-headers`: a response header matches `retriable_headers`.
    pub const RETRIABLE_HEADERS: u32 = 1 << 7;
    /// gRPC `cancelled` (1).
    pub const GRPC_CANCELLED: u32 = 1 << 8;
    /// gRPC `deadline-exceeded` (4).
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 9;
    /// gRPC `internal` (13).
    pub const GRPC_INTERNAL: u32 = 1 << 10;
    /// gRPC `resource-exhausted` (8).
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 11;
    /// gRPC `unavailable` (14).
    pub const GRPC_UNAVAILABLE: u32 = 1 << 12;
    /// All gRPC conditions.
    pub const GRPC: u32 = Self::GRPC_CANCELLED
        | Self::GRPC_DEADLINE_EXCEEDED
        | Self::GRPC_INTERNAL
        | Self::GRPC_RESOURCE_EXHAUSTED
        | Self::GRPC_UNAVAILABLE;

    /// Whether any of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    /// Parses Envoy's comma-separated `retry_on`; unknown names are returned.
    pub fn parse(s: &str) -> (RetryOn, Vec<String>) {
        let mut bits = 0;
        let mut unknown = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            bits |= match name {
                "5xx" => Self::FIVE_XX,
                "gateway-error" => Self::GATEWAY_ERROR,
                "reset" => Self::RESET,
                "connect-failure" => Self::CONNECT_FAILURE,
                "refused-stream" => Self::REFUSED_STREAM,
                "retriable-4xx" => Self::RETRIABLE_4XX,
                "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
                "retriable-headers" => Self::RETRIABLE_HEADERS,
                "cancelled" => Self::GRPC_CANCELLED,
                "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
                "internal" => Self::GRPC_INTERNAL,
                "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
                "unavailable" => Self::GRPC_UNAVAILABLE,
                other => {
                    unknown.push(other.to_owned());
                    0
                }
            };
        }
        (RetryOn(bits), unknown)
    }
}

/// A compiled `RetryPolicy`. Cloning is cheap (the matchers are shared), so that a request's
/// `x-envoy-retry-on` / `x-envoy-max-retries` headers can amend a copy.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Conditions.
    pub on: RetryOn,
    /// `num_retries` (default 1).
    pub num_retries: u32,
    /// `per_try_timeout`.
    pub per_try_timeout: Option<Duration>,
    /// `retry_back_off.base_interval` (default 25 ms).
    pub base_interval: Duration,
    /// `retry_back_off.max_interval` (default 10 × base).
    pub max_interval: Duration,
    /// `retry_host_predicate` `envoy.retry_host_predicates.previous_hosts`.
    pub previous_hosts: bool,
    /// `host_selection_retry_max_attempts` (default 1).
    pub host_selection_max_attempts: u32,
    /// `retriable_status_codes`.
    pub retriable_status_codes: Arc<[u16]>,
    /// `retriable_headers`.
    pub retriable_headers: Arc<[HeaderMatcher]>,
    /// `retriable_request_headers`: when set, only requests matching one are retried.
    pub retriable_request_headers: Arc<[HeaderMatcher]>,
}

/// Why an attempt failed, as the retry policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made.
    ConnectFailure,
    /// The stream was reset or the connection closed before a response.
    Reset,
    /// HTTP/2 `REFUSED_STREAM`.
    RefusedStream,
    /// `per_try_timeout` expired.
    PerTryTimeout,
}

/// The gRPC status in `headers`, if any.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl Default for RetryPolicy {
    /// Envoy's defaults for a policy that only request headers asked for.
    fn default() -> Self {
        RetryPolicy {
            on: RetryOn::default(),
            num_retries: 1,
            per_try_timeout: None,
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
            previous_hosts: false,
            host_selection_max_attempts: 1,
            retriable_status_codes: Arc::new([]),
            retriable_headers: Arc::new([]),
            retriable_request_headers: Arc::new([]),
        }
    }
}

/// The request headers through which a client adjusts retries and timeouts (Envoy's
/// `x-envoy-retry-on`, `x-envoy-retry-grpc-on`, `x-envoy-max-retries`,
/// `x-envoy-upstream-rq-timeout-ms`, `x-envoy-upstream-rq-per-try-timeout-ms`). They are
/// consumed: never forwarded upstream.
pub const REQUEST_CONTROL_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-envoy-retry-on"),
    HeaderName::from_static("x-envoy-retry-grpc-on"),
    HeaderName::from_static("x-envoy-max-retries"),
    HeaderName::from_static("x-envoy-upstream-rq-timeout-ms"),
    HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms"),
];

/// The retry policy for one request: the route's, amended by its `x-envoy-retry-on`,
/// `x-envoy-retry-grpc-on`, `x-envoy-max-retries` and `x-envoy-upstream-rq-per-try-timeout-ms`
/// headers. `None` when neither the route nor the headers ask for retries.
pub fn amend_retry(route: Option<&RetryPolicy>, headers: &HeaderMap) -> Option<RetryPolicy> {
    let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let on = text("x-envoy-retry-on");
    let grpc_on = text("x-envoy-retry-grpc-on");
    let max = text("x-envoy-max-retries").and_then(|v| v.trim().parse::<u32>().ok());
    let per_try =
        text("x-envoy-upstream-rq-per-try-timeout-ms").and_then(|v| v.trim().parse::<u64>().ok());
    if on.is_none() && grpc_on.is_none() && route.is_none() {
        return None;
    }
    let mut p = route.cloned().unwrap_or_default();
    for v in [on, grpc_on].into_iter().flatten() {
        p.on.0 |= RetryOn::parse(v).0.0;
    }
    if let Some(n) = max {
        p.num_retries = n;
    }
    if let Some(ms) = per_try {
        p.per_try_timeout = Some(Duration::from_millis(ms)).filter(|d| !d.is_zero());
    }
    Some(p)
}

impl RetryPolicy {
    /// Whether the request may be retried at all (`retriable_request_headers`).
    pub fn applies_to(&self, request: &HeaderMap) -> bool {
        self.retriable_request_headers.is_empty()
            || self
                .retriable_request_headers
                .iter()
                .any(|m| m.matches(request))
    }

    /// Whether a response with `status` and `headers` is retried.
    pub fn retry_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let s = status.as_u16();
        let on = self.on;
        if on.has(RetryOn::FIVE_XX) && status.is_server_error() {
            return true;
        }
        if on.has(RetryOn::GATEWAY_ERROR) && matches!(s, 502..=504) {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_4XX) && s == 409 {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_STATUS_CODES) && self.retriable_status_codes.contains(&s) {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_HEADERS)
            && self.retriable_headers.iter().any(|m| m.matches(headers))
        {
            return true;
        }
        if on.has(RetryOn::GRPC)
            && let Some(g) = grpc_status(headers)
        {
            return self.retry_grpc(g);
        }
        false
    }

    /// Whether a gRPC status (from headers or trailers) is retried.
    pub fn retry_grpc(&self, status: u32) -> bool {
        let on = self.on;
        match status {
            1 => on.has(RetryOn::GRPC_CANCELLED),
            4 => on.has(RetryOn::GRPC_DEADLINE_EXCEEDED),
            8 => on.has(RetryOn::GRPC_RESOURCE_EXHAUSTED),
            13 => on.has(RetryOn::GRPC_INTERNAL),
            14 => on.has(RetryOn::GRPC_UNAVAILABLE),
            _ => false,
        }
    }

    /// Whether an attempt that failed without a response is retried.
    pub fn retry_failure(&self, f: Failure) -> bool {
        let on = self.on;
        match f {
            Failure::ConnectFailure => {
                on.has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::CONNECT_FAILURE)
            }
            Failure::Reset => on.has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET),
            Failure::RefusedStream => on.has(
                RetryOn::FIVE_XX
                    | RetryOn::GATEWAY_ERROR
                    | RetryOn::RESET
                    | RetryOn::REFUSED_STREAM,
            ),
            Failure::PerTryTimeout => {
                on.has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET)
            }
        }
    }

    /// Fully jittered exponential back-off before retry number `n` (1-based): a random time in
    /// `[0, (2^n - 1) × base]`, at most `max_interval`.
    pub fn backoff(&self, n: u32) -> Duration {
        let base = self.base_interval.as_millis() as u64;
        let ceiling = base
            .saturating_mul((1u64 << n.min(32)).saturating_sub(1))
            .min(self.max_interval.as_millis() as u64);
        Duration::from_millis(fastrand::u64(0..=ceiling))
    }
}

/// Compiles a `RetryPolicy`.
pub fn compile_retry(
    r: &rt::RetryPolicy,
    resource: &str,
    path: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<RetryPolicy, CompileError> {
    let (on, unknown) = RetryOn::parse(&r.retry_on);
    for u in unknown {
        warnings.push(Unsupported {
            resource: resource.to_owned(),
            what: format!("{path}.retry_on {u}"),
        });
    }
    let (base, max) = match &r.retry_back_off {
        Some(b) => {
            let base = b
                .base_interval
                .as_ref()
                .map_or(Duration::from_millis(25), duration)
                .max(Duration::from_millis(1));
            let max = b.max_interval.as_ref().map_or(base * 10, duration);
            if max < base {
                return Err(CompileError::Invalid {
                    resource: resource.to_owned(),
                    field: format!("{path}.retry_back_off.max_interval"),
                    reason: "must not be less than base_interval".into(),
                });
            }
            (base, max)
        }
        None => (Duration::from_millis(25), Duration::from_millis(250)),
    };
    let mut previous_hosts = false;
    for (i, p) in r.retry_host_predicate.iter().enumerate() {
        let type_url = match &p.config_type {
            Some(rt::retry_policy::retry_host_predicate::ConfigType::TypedConfig(a)) => {
                super::type_name(&a.type_url)
            }
            None => "",
        };
        if p.name == "envoy.retry_host_predicates.previous_hosts"
            || type_url == "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
        {
            previous_hosts = true;
        } else {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{path}.retry_host_predicate[{i}] {}", p.name),
            });
        }
    }
    let mut retriable_headers = Vec::new();
    for (i, h) in r.retriable_headers.iter().enumerate() {
        retriable_headers.push(super::route::header_matcher(
            h,
            resource,
            &format!("{path}.retriable_headers[{i}]"),
        )?);
    }
    let mut retriable_request_headers = Vec::new();
    for (i, h) in r.retriable_request_headers.iter().enumerate() {
        retriable_request_headers.push(super::route::header_matcher(
            h,
            resource,
            &format!("{path}.retriable_request_headers[{i}]"),
        )?);
    }
    Ok(RetryPolicy {
        on,
        retriable_request_headers: retriable_request_headers.into(),
        num_retries: r.num_retries.as_ref().map_or(1, |n| n.value),
        per_try_timeout: r
            .per_try_timeout
            .as_ref()
            .map(duration)
            .filter(|d| !d.is_zero()),
        base_interval: base,
        max_interval: max,
        previous_hosts,
        host_selection_max_attempts: u32::try_from(r.host_selection_retry_max_attempts)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(1),
        retriable_status_codes: r
            .retriable_status_codes
            .iter()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect(),
        retriable_headers: retriable_headers.into(),
    })
}

/// One `hash_policy` entry.
#[derive(Debug)]
pub enum HashKey {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie; with a TTL, a missing cookie is generated and set on the response.
    Cookie {
        /// Cookie name.
        name: String,
        /// `Max-Age` of a generated cookie.
        ttl: Option<Duration>,
        /// `Path` of a generated cookie.
        path: String,
    },
    /// The downstream peer's IP address.
    SourceIp,
    /// A query parameter.
    Query(String),
}

/// A compiled `hash_policy` entry.
#[derive(Debug)]
pub struct HashPolicy {
    /// What is hashed.
    pub key: HashKey,
    /// Stop at this policy when it produced a hash.
    pub terminal: bool,
}

/// Compiles `hash_policy`.
pub fn compile_hash_policies(
    policies: &[rt::route_action::HashPolicy],
    resource: &str,
    path: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Vec<HashPolicy>, CompileError> {
    use rt::route_action::hash_policy::PolicySpecifier as P;
    let mut out = Vec::with_capacity(policies.len());
    for (i, p) in policies.iter().enumerate() {
        let key = match &p.policy_specifier {
            Some(P::Header(h)) => HashKey::Header(
                HeaderName::from_bytes(h.header_name.as_bytes()).map_err(|e| {
                    CompileError::Invalid {
                        resource: resource.to_owned(),
                        field: format!("{path}.hash_policy[{i}].header.header_name"),
                        reason: e.to_string(),
                    }
                })?,
            ),
            Some(P::Cookie(c)) => HashKey::Cookie {
                name: c.name.clone(),
                ttl: c.ttl.as_ref().map(duration),
                path: c.path.clone(),
            },
            Some(P::ConnectionProperties(c)) if c.source_ip => HashKey::SourceIp,
            Some(P::QueryParameter(q)) => HashKey::Query(q.name.clone()),
            _ => {
                warnings.push(Unsupported {
                    resource: resource.to_owned(),
                    what: format!("{path}.hash_policy[{i}] (only header, cookie, source_ip and query_parameter are supported)"),
                });
                continue;
            }
        };
        out.push(HashPolicy {
            key,
            terminal: p.terminal,
        });
    }
    Ok(out)
}

/// A cookie to set on the response because a hash policy generated it.
#[derive(Debug)]
pub struct NewCookie {
    /// The `Set-Cookie` value.
    pub set_cookie: String,
}

/// Hashes a request with the route's policies (Envoy combines them as
/// `hash = rotl(hash, 1) ^ next`). `None` when no policy produced a value.
pub fn request_hash(
    policies: &[HashPolicy],
    headers: &HeaderMap,
    query: Option<&str>,
    peer: std::net::IpAddr,
    new_cookie: &mut Option<NewCookie>,
) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for p in policies {
        let h = match &p.key {
            HashKey::Header(name) => {
                let mut vals = headers.get_all(name).iter();
                vals.next().map(|first| {
                    let mut h = xxh64(first.as_bytes(), 0);
                    for v in vals {
                        h = h.rotate_left(1) ^ xxh64(v.as_bytes(), 0);
                    }
                    h
                })
            }
            HashKey::Cookie { name, ttl, path } => match cookie(headers, name) {
                Some(v) => Some(xxh64(v.as_bytes(), 0)),
                None => ttl.map(|ttl| {
                    // Envoy generates the value from the downstream address, so that one client
                    // keeps its host until the cookie comes back.
                    let value = format!("{:016x}", xxh64(peer.to_string().as_bytes(), 0));
                    let mut c = format!("{name}=\"{value}\"");
                    if !ttl.is_zero() {
                        c.push_str(&format!("; Max-Age={}", ttl.as_secs()));
                    }
                    if !path.is_empty() {
                        c.push_str(&format!("; Path={path}"));
                    }
                    c.push_str("; HttpOnly");
                    *new_cookie = Some(NewCookie { set_cookie: c });
                    xxh64(value.as_bytes(), 0)
                }),
            },
            HashKey::SourceIp => Some(xxh64(peer.to_string().as_bytes(), 0)),
            HashKey::Query(name) => query.and_then(|q| {
                q.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k == name).then(|| xxh64(v.as_bytes(), 0))
                })
            }),
        };
        if let Some(h) = h {
            hash = Some(hash.map_or(h, |acc| acc.rotate_left(1) ^ h));
            if p.terminal {
                break;
            }
        }
    }
    hash
}

/// A cookie's value from the `Cookie` headers, without surrounding quotes.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

/// A compiled `request_mirror_policies` entry.
#[derive(Debug)]
pub struct Mirror {
    /// The cluster that receives the copies.
    pub cluster: String,
    /// Share of requests mirrored (ppm; `runtime_fraction`, default 100%).
    pub ppm: u32,
    /// Do not append `-shadow` to the host.
    pub keep_host: bool,
}

/// Compiles `request_mirror_policies`.
pub fn compile_mirrors(
    policies: &[rt::route_action::RequestMirrorPolicy],
    resource: &str,
    path: &str,
    warnings: &mut Vec<Unsupported>,
) -> Vec<Mirror> {
    policies
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            if m.cluster.is_empty() {
                warnings.push(Unsupported {
                    resource: resource.to_owned(),
                    what: format!("{path}.request_mirror_policies[{i}].cluster_header"),
                });
                return None;
            }
            Some(Mirror {
                cluster: m.cluster.clone(),
                ppm: runtime_ppm(m.runtime_fraction.as_ref(), 1_000_000),
                keep_host: m.disable_shadow_host_suffix_append,
            })
        })
        .collect()
}

/// `host:port` -> `host-shadow:port` (Envoy's shadow host).
pub fn shadow_host(host: &str) -> String {
    let h = super::route::strip_port(host);
    format!("{h}-shadow{}", &host[h.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_parses() {
        let (on, unknown) = RetryOn::parse("5xx, reset,unavailable,bogus");
        assert!(on.has(RetryOn::FIVE_XX) && on.has(RetryOn::RESET));
        assert!(on.has(RetryOn::GRPC_UNAVAILABLE) && !on.has(RetryOn::GRPC_INTERNAL));
        assert_eq!(unknown, vec!["bogus"]);
    }

    #[test]
    fn shadow_host_keeps_port() {
        assert_eq!(shadow_host("a.com:8080"), "a.com-shadow:8080");
        assert_eq!(shadow_host("a.com"), "a.com-shadow");
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy {
            on: RetryOn::default(),
            num_retries: 1,
            per_try_timeout: None,
            base_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(30),
            previous_hosts: false,
            host_selection_max_attempts: 1,
            ..RetryPolicy::default()
        };
        for n in 1..10 {
            assert!(p.backoff(n) <= Duration::from_millis(30));
        }
        assert!(p.backoff(1) <= Duration::from_millis(10));
    }
}
