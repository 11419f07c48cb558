//! HTTP filters of the connection manager's chain (`envoy.filters.http.fault`,
//! `envoy.filters.http.cors`, `envoy.filters.http.local_ratelimit`) and their per-route
//! configurations, compiled once. The request path only reads these and touches atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use prost::Message;
use weft_xds::envoy::config::core::v3::RuntimeFractionalPercent;
use weft_xds::envoy::config::route::v3 as rt;
use weft_xds::envoy::extensions::filters::common::fault::v3 as cfault;
use weft_xds::envoy::extensions::filters::http::cors::v3 as cors;
use weft_xds::envoy::extensions::filters::http::fault::v3 as fault;
use weft_xds::envoy::extensions::filters::http::local_ratelimit::v3 as lrl;
use weft_xds::envoy::r#type::v3::{FractionalPercent, fractional_percent};

use super::route::{HeaderAdd, HeaderMatcher, StringMatch};
use super::{CompileError, Unsupported, duration, supported};
use crate::cluster::outlier::now_ms;

/// `type.googleapis.com/` names of the filters weft implements.
pub const FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";
/// The CORS filter (listener level: no settings).
pub const CORS: &str = "envoy.extensions.filters.http.cors.v3.Cors";
/// The CORS per-route policy.
pub const CORS_POLICY: &str = "envoy.extensions.filters.http.cors.v3.CorsPolicy";
/// The local rate limit filter (listener and per-route).
pub const LOCAL_RATELIMIT: &str = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
/// The RBAC filter (`envoy.filters.http.rbac`).
pub const RBAC: &str = "envoy.extensions.filters.http.rbac.v3.RBAC";
/// The JWT authentication filter (`envoy.filters.http.jwt_authn`).
pub const JWT_AUTHN: &str = "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
/// The external authorization filter (`envoy.filters.http.ext_authz`).
pub const EXT_AUTHZ: &str = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";
/// The wrapper of per-route configs (`is_optional`, `disabled`).
pub const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";

/// A percentage as parts per million, the finest unit Envoy's `FractionalPercent` has.
pub fn ppm(p: Option<&FractionalPercent>, default: u32) -> u32 {
    let Some(p) = p else { return default };
    let scale = match fractional_percent::DenominatorType::try_from(p.denominator) {
        Ok(fractional_percent::DenominatorType::TenThousand) => 100,
        Ok(fractional_percent::DenominatorType::Million) => 1,
        _ => 10_000,
    };
    p.numerator.saturating_mul(scale).min(1_000_000)
}

/// `RuntimeFractionalPercent.default_value` as parts per million.
pub fn runtime_ppm(p: Option<&RuntimeFractionalPercent>, default: u32) -> u32 {
    match p {
        Some(r) => ppm(r.default_value.as_ref(), 0),
        None => default,
    }
}

/// One draw against a rate in parts per million.
pub fn sample(ppm: u32) -> bool {
    ppm >= 1_000_000 || (ppm > 0 && fastrand::u32(0..1_000_000) < ppm)
}

/// A filter in the connection manager's chain, in configuration order.
#[derive(Debug)]
pub enum HttpFilter {
    /// `envoy.filters.http.fault` with its listener-level settings.
    Fault(Arc<Fault>),
    /// `envoy.filters.http.cors` (policies come from routes and virtual hosts).
    Cors,
    /// `envoy.filters.http.local_ratelimit` with its listener-level bucket.
    LocalRateLimit(Arc<RateLimit>),
    /// `envoy.filters.http.rbac`.
    Rbac(Arc<crate::http::rbac::RbacFilter>),
    /// `envoy.filters.http.jwt_authn`.
    Jwt(Arc<crate::http::jwt::JwtFilter>),
    /// `envoy.filters.http.ext_authz`.
    ExtAuthz(Arc<crate::http::ext_authz::ExtAuthzFilter>),
}

/// One filter of the connection manager's chain.
#[derive(Debug)]
pub struct ChainFilter {
    /// The filter's name, as `typed_per_filter_config` keys refer to it.
    pub name: String,
    /// The filter.
    pub filter: HttpFilter,
    /// `disabled`: off unless a route, virtual host or route configuration enables it.
    pub disabled: bool,
}

/// Per-route (or virtual host, or route configuration) filter settings
/// (`typed_per_filter_config`), by filter type.
#[derive(Debug, Default)]
pub struct PerFilter {
    /// `HTTPFault` override.
    pub fault: Option<Arc<Fault>>,
    /// CORS policy (`CorsPolicy`, or the legacy `cors` field).
    pub cors: Option<Arc<CorsPolicy>>,
    /// Local rate limit with its own bucket.
    pub ratelimit: Option<Arc<RateLimit>>,
    /// Filter names this level mentions, with `true` when it disables them
    /// (`FilterConfig.disabled`) and `false` when it configures (so enables) them.
    pub switches: Vec<(String, bool)>,
}

impl PerFilter {
    /// True when nothing is set (the level is skipped).
    pub fn is_empty(&self) -> bool {
        self.fault.is_none()
            && self.cors.is_none()
            && self.ratelimit.is_none()
            && self.switches.is_empty()
    }
}

/// Reads a `typed_per_filter_config` map.
pub fn per_filter(
    map: &std::collections::HashMap<String, weft_xds::google::protobuf::Any>,
    resource: &str,
    path: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Option<Box<PerFilter>>, CompileError> {
    if map.is_empty() {
        return Ok(None);
    }
    let mut out = PerFilter::default();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let mut any = map[key].clone();
        let field = format!("{path}.typed_per_filter_config[{key}]");
        let decode_err = |type_url: &str, source| CompileError::Decode {
            resource: resource.to_owned(),
            field: field.clone(),
            type_url: type_url.to_owned(),
            source,
        };
        if super::type_name(&any.type_url) == FILTER_CONFIG {
            let fc = rt::FilterConfig::decode(any.value.as_slice())
                .map_err(|e| decode_err(&any.type_url, e))?;
            if fc.disabled {
                out.switches.push((key.clone(), true));
                continue;
            }
            match fc.config {
                Some(c) => any = c,
                None => continue,
            }
        }
        out.switches.push((key.clone(), false));
        match super::type_name(&any.type_url) {
            FAULT => {
                let f = fault::HttpFault::decode(any.value.as_slice())
                    .map_err(|e| decode_err(&any.type_url, e))?;
                supported::check(&f, resource, &field, warnings);
                out.fault = Some(Arc::new(Fault::compile(&f, resource, &field)?));
            }
            CORS_POLICY => {
                let c = cors::CorsPolicy::decode(any.value.as_slice())
                    .map_err(|e| decode_err(&any.type_url, e))?;
                supported::check(&c, resource, &field, warnings);
                out.cors = Some(Arc::new(CorsPolicy::compile(&c, resource, &field)?));
            }
            LOCAL_RATELIMIT => {
                let r = lrl::LocalRateLimit::decode(any.value.as_slice())
                    .map_err(|e| decode_err(&any.type_url, e))?;
                supported::check(&r, resource, &field, warnings);
                out.ratelimit = Some(Arc::new(RateLimit::compile(
                    &r, resource, &field, warnings,
                )?));
            }
            other => warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{field} ({other})"),
            }),
        }
    }
    Ok((!out.is_empty()).then(|| Box::new(out)))
}

/// Compiles one `http_filters` entry that is not the router; `None` for a filter weft does not
/// implement (the caller reports it).
pub fn compile_http_filter(
    type_name: &str,
    any: &weft_xds::google::protobuf::Any,
    resource: &str,
    field: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Option<HttpFilter>, CompileError> {
    let decode_err = |source| CompileError::Decode {
        resource: resource.to_owned(),
        field: field.to_owned(),
        type_url: any.type_url.clone(),
        source,
    };
    Ok(Some(match type_name {
        FAULT => {
            let f = fault::HttpFault::decode(any.value.as_slice()).map_err(decode_err)?;
            supported::check(&f, resource, field, warnings);
            HttpFilter::Fault(Arc::new(Fault::compile(&f, resource, field)?))
        }
        CORS => HttpFilter::Cors,
        LOCAL_RATELIMIT => {
            let r = lrl::LocalRateLimit::decode(any.value.as_slice()).map_err(decode_err)?;
            supported::check(&r, resource, field, warnings);
            HttpFilter::LocalRateLimit(Arc::new(RateLimit::compile(&r, resource, field, warnings)?))
        }
        RBAC => {
            use weft_xds::envoy::extensions::filters::http::rbac::v3::Rbac;
            let r = Rbac::decode(any.value.as_slice()).map_err(decode_err)?;
            supported::check(&r, resource, field, warnings);
            HttpFilter::Rbac(Arc::new(crate::http::rbac::RbacFilter::compile_http(
                any, resource, field,
            )?))
        }
        JWT_AUTHN => {
            use weft_xds::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
            let j = JwtAuthentication::decode(any.value.as_slice()).map_err(decode_err)?;
            supported::check(&j, resource, field, warnings);
            HttpFilter::Jwt(Arc::new(crate::http::jwt::JwtFilter::compile(
                any, resource, field,
            )?))
        }
        EXT_AUTHZ => {
            use weft_xds::envoy::extensions::filters::http::ext_authz::v3::ExtAuthz;
            let e = ExtAuthz::decode(any.value.as_slice()).map_err(decode_err)?;
            supported::check(&e, resource, field, warnings);
            HttpFilter::ExtAuthz(Arc::new(crate::http::ext_authz::ExtAuthzFilter::compile(
                any, resource, field,
            )?))
        }
        _ => return Ok(None),
    }))
}

/// The share of requests a fault applies to: parts per million, and the ppm of one unit of
/// the configured denominator (what `x-envoy-fault-*-request-percentage` headers count in).
#[derive(Clone, Copy, Debug)]
pub struct Share {
    /// Configured share, ppm.
    pub ppm: u32,
    /// ppm per unit of the configured denominator (10000 for HUNDRED).
    pub unit: u32,
}

impl Share {
    fn of(p: Option<&FractionalPercent>) -> Self {
        let unit = match p.map(|p| fractional_percent::DenominatorType::try_from(p.denominator)) {
            Some(Ok(fractional_percent::DenominatorType::TenThousand)) => 100,
            Some(Ok(fractional_percent::DenominatorType::Million)) => 1,
            _ => 10_000,
        };
        Share {
            ppm: ppm(p, 0),
            unit,
        }
    }

    /// The share for one request: a percentage header may lower the configured one.
    pub fn with_header(self, numerator: Option<u64>) -> u32 {
        match numerator {
            Some(n) => (n.min(u64::from(u32::MAX)) as u32)
                .saturating_mul(self.unit)
                .min(self.ppm),
            None => self.ppm,
        }
    }
}

/// How a fault delay is chosen.
#[derive(Debug)]
pub enum DelayKind {
    /// `fixed_delay`.
    Fixed(Duration),
    /// `header_delay`: milliseconds from `x-envoy-fault-delay-request`.
    Header,
}

/// How a fault abort answers.
#[derive(Debug)]
pub enum AbortKind {
    /// `http_status`.
    Http(StatusCode),
    /// `grpc_status` (HTTP 200 with `grpc-status`).
    Grpc(u32),
    /// `header_abort`: status from `x-envoy-fault-abort-request` or
    /// `x-envoy-fault-abort-grpc-request`.
    Header,
}

/// A compiled `HTTPFault`.
#[derive(Debug)]
pub struct Fault {
    /// The delay and the share of requests it applies to.
    pub delay: Option<(DelayKind, Share)>,
    /// The abort and its share.
    pub abort: Option<(AbortKind, Share)>,
    /// Body of an aborted response (`response_body`), `fault filter abort` by default.
    pub abort_body: Bytes,
    /// Only requests matching all of these are faulted.
    pub headers: Vec<HeaderMatcher>,
    /// `max_active_faults`.
    pub max_active: Option<u64>,
    /// Faults in progress (delays waiting, aborts answering), against `max_active_faults`.
    pub active: AtomicU64,
}

impl Fault {
    fn compile(f: &fault::HttpFault, resource: &str, path: &str) -> Result<Self, CompileError> {
        let delay = f.delay.as_ref().and_then(|d| {
            let kind = match &d.fault_delay_secifier {
                Some(cfault::fault_delay::FaultDelaySecifier::FixedDelay(x)) => {
                    DelayKind::Fixed(duration(x))
                }
                Some(cfault::fault_delay::FaultDelaySecifier::HeaderDelay(_)) => DelayKind::Header,
                None => return None,
            };
            Some((kind, Share::of(d.percentage.as_ref())))
        });
        let abort = match &f.abort {
            Some(a) => {
                let kind = match &a.error_type {
                    Some(fault::fault_abort::ErrorType::HttpStatus(s)) => AbortKind::Http(
                        StatusCode::from_u16(*s as u16)
                            .ok()
                            .filter(|_| (200..600).contains(s))
                            .ok_or_else(|| CompileError::Invalid {
                                resource: resource.to_owned(),
                                field: format!("{path}.abort.http_status"),
                                reason: format!("{s} is not an HTTP status in [200, 600)"),
                            })?,
                    ),
                    Some(fault::fault_abort::ErrorType::GrpcStatus(s)) => AbortKind::Grpc(*s),
                    Some(fault::fault_abort::ErrorType::HeaderAbort(_)) => AbortKind::Header,
                    None => {
                        return Err(CompileError::Invalid {
                            resource: resource.to_owned(),
                            field: format!("{path}.abort"),
                            reason: "an abort needs http_status, grpc_status or header_abort"
                                .into(),
                        });
                    }
                };
                Some((kind, Share::of(a.percentage.as_ref())))
            }
            None => None,
        };
        let mut headers = Vec::with_capacity(f.headers.len());
        for (i, h) in f.headers.iter().enumerate() {
            headers.push(super::route::header_matcher(
                h,
                resource,
                &format!("{path}.headers[{i}]"),
            )?);
        }
        let abort_body = f
            .abort
            .as_ref()
            .filter(|a| !a.response_body.is_empty())
            .map_or_else(
                || Bytes::from_static(b"fault filter abort"),
                |a| Bytes::from(a.response_body.clone()),
            );
        Ok(Fault {
            delay,
            abort,
            abort_body,
            headers,
            max_active: f.max_active_faults.as_ref().map(|m| u64::from(m.value)),
            active: AtomicU64::new(0),
        })
    }
}

/// A compiled CORS policy (the filter's `CorsPolicy` or the legacy route `cors` field).
#[derive(Debug)]
pub struct CorsPolicy {
    /// Allowed origins.
    pub origins: Vec<StringMatch>,
    /// `access-control-allow-methods`.
    pub allow_methods: Option<HeaderValue>,
    /// `access-control-allow-headers`.
    pub allow_headers: Option<HeaderValue>,
    /// `access-control-expose-headers`.
    pub expose_headers: Option<HeaderValue>,
    /// `access-control-max-age`.
    pub max_age: Option<HeaderValue>,
    /// `access-control-allow-credentials: true`.
    pub allow_credentials: bool,
    /// `access-control-allow-private-network: true` on preflights that ask for it.
    pub allow_private_network_access: bool,
    /// Share of requests the policy is enforced on (`filter_enabled`, default 100%).
    pub enabled_ppm: u32,
    /// Preflights whose origin does not match go upstream (default true) instead of being
    /// answered without CORS headers.
    pub forward_not_matching_preflights: bool,
}

fn opt_value(s: &str, resource: &str, field: &str) -> Result<Option<HeaderValue>, CompileError> {
    if s.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(s)
        .map(Some)
        .map_err(|e| CompileError::Invalid {
            resource: resource.to_owned(),
            field: field.to_owned(),
            reason: e.to_string(),
        })
}

impl CorsPolicy {
    fn compile(c: &cors::CorsPolicy, resource: &str, path: &str) -> Result<Self, CompileError> {
        let mut origins = Vec::new();
        for (i, m) in c.allow_origin_string_match.iter().enumerate() {
            origins.push(super::route::string_match(
                m,
                resource,
                &format!("{path}.allow_origin_string_match[{i}]"),
            )?);
        }
        Ok(CorsPolicy {
            origins,
            allow_methods: opt_value(&c.allow_methods, resource, path)?,
            allow_headers: opt_value(&c.allow_headers, resource, path)?,
            expose_headers: opt_value(&c.expose_headers, resource, path)?,
            max_age: opt_value(&c.max_age, resource, path)?,
            allow_credentials: c.allow_credentials.as_ref().is_some_and(|b| b.value),
            allow_private_network_access: c
                .allow_private_network_access
                .as_ref()
                .is_some_and(|b| b.value),
            enabled_ppm: runtime_ppm(c.filter_enabled.as_ref(), 1_000_000),
            forward_not_matching_preflights: c
                .forward_not_matching_preflights
                .as_ref()
                .is_none_or(|b| b.value),
        })
    }

    /// The legacy `cors` field of a virtual host or route action.
    pub fn compile_legacy(
        c: &rt::CorsPolicy,
        resource: &str,
        path: &str,
    ) -> Result<Self, CompileError> {
        let as_filter = cors::CorsPolicy {
            allow_origin_string_match: c.allow_origin_string_match.clone(),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age: c.max_age.clone(),
            allow_credentials: c.allow_credentials,
            filter_enabled: c
                .enabled_specifier
                .as_ref()
                .map(|rt::cors_policy::EnabledSpecifier::FilterEnabled(f)| f.clone()),
            shadow_enabled: c.shadow_enabled.clone(),
            allow_private_network_access: c.allow_private_network_access,
            forward_not_matching_preflights: c.forward_not_matching_preflights,
        };
        Self::compile(&as_filter, resource, path)
    }

    /// Whether `origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|m| m.matches(origin) || matches!(m, StringMatch::Exact(s, _) if s == "*"))
    }
}

/// A token bucket refilled lazily: `tokens_per_fill` every `fill_interval`, at most
/// `max_tokens`, with two atomics and no timer.
#[derive(Debug)]
pub struct TokenBucket {
    /// `max_tokens`.
    pub max_tokens: u64,
    /// `tokens_per_fill` (default 1).
    pub tokens_per_fill: u64,
    /// `fill_interval` in milliseconds.
    pub interval_ms: u64,
    tokens: AtomicU64,
    /// The last fill, in intervals since the process clock started.
    last_fill: AtomicU64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(max_tokens: u64, tokens_per_fill: u64, interval: Duration) -> Self {
        let interval_ms = (interval.as_millis() as u64).max(1);
        TokenBucket {
            max_tokens,
            tokens_per_fill,
            interval_ms,
            tokens: AtomicU64::new(max_tokens),
            last_fill: AtomicU64::new(now_ms() / interval_ms),
        }
    }

    fn refill(&self) {
        let tick = now_ms() / self.interval_ms;
        let last = self.last_fill.load(Ordering::Relaxed);
        if tick > last
            && self
                .last_fill
                .compare_exchange(last, tick, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let add = (tick - last).saturating_mul(self.tokens_per_fill);
            let _ = self
                .tokens
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                    Some(t.saturating_add(add).min(self.max_tokens))
                });
        }
    }

    /// Takes a token; returns whether there was one and how many are left.
    pub fn take(&self) -> (bool, u64) {
        self.refill();
        match self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| t.checked_sub(1))
        {
            Ok(prev) => (true, prev - 1),
            Err(_) => (false, 0),
        }
    }

    /// Seconds until the next fill, rounded up (`x-ratelimit-reset`).
    pub fn reset_secs(&self) -> u64 {
        let now = now_ms();
        let next = (now / self.interval_ms + 1) * self.interval_ms;
        (next - now).div_ceil(1000)
    }
}

/// A compiled `LocalRateLimit`.
#[derive(Debug)]
pub struct RateLimit {
    /// The bucket; `None` makes this level a pass-through (a per-route config enables it).
    pub bucket: Option<TokenBucket>,
    /// Status of limited requests (429 by default).
    pub status: StatusCode,
    /// `filter_enabled` (default 0%: the filter only counts).
    pub enabled_ppm: u32,
    /// `filter_enforced` (default 0%: limited requests pass, marked).
    pub enforced_ppm: u32,
    /// Added to limited responses.
    pub response_headers_to_add: Vec<HeaderAdd>,
    /// Added to requests that were limited but not enforced.
    pub request_headers_when_not_enforced: Vec<HeaderAdd>,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`.
    pub x_ratelimit_headers: bool,
}

impl RateLimit {
    fn compile(
        r: &lrl::LocalRateLimit,
        resource: &str,
        path: &str,
        warnings: &mut Vec<Unsupported>,
    ) -> Result<Self, CompileError> {
        let bucket = match &r.token_bucket {
            Some(b) => {
                let interval = b.fill_interval.as_ref().map(duration).unwrap_or_default();
                if interval < Duration::from_millis(50) {
                    return Err(CompileError::Invalid {
                        resource: resource.to_owned(),
                        field: format!("{path}.token_bucket.fill_interval"),
                        reason: "must be at least 50ms".into(),
                    });
                }
                Some(TokenBucket::new(
                    u64::from(b.max_tokens),
                    b.tokens_per_fill.as_ref().map_or(1, |t| u64::from(t.value)),
                    interval,
                ))
            }
            None => None,
        };
        let status = r
            .status
            .as_ref()
            .and_then(|s| StatusCode::from_u16(s.code as u16).ok())
            .filter(|s| s.as_u16() >= 400)
            .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        Ok(RateLimit {
            bucket,
            status,
            enabled_ppm: runtime_ppm(r.filter_enabled.as_ref(), 0),
            enforced_ppm: runtime_ppm(r.filter_enforced.as_ref(), 0),
            response_headers_to_add: super::route::header_adds(
                &r.response_headers_to_add,
                resource,
                &format!("{path}.response_headers_to_add"),
                warnings,
            )?,
            request_headers_when_not_enforced: super::route::header_adds(
                &r.request_headers_to_add_when_not_enforced,
                resource,
                &format!("{path}.request_headers_to_add_when_not_enforced"),
                warnings,
            )?,
            x_ratelimit_headers: r.enable_x_ratelimit_headers == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        let p = FractionalPercent {
            numerator: 50,
            denominator: 0,
        };
        assert_eq!(ppm(Some(&p), 0), 500_000);
        let p = FractionalPercent {
            numerator: 5,
            denominator: 1,
        };
        assert_eq!(ppm(Some(&p), 0), 500);
        assert!(sample(1_000_000));
        assert!(!sample(0));
    }

    #[test]
    fn bucket_takes_and_runs_dry() {
        let b = TokenBucket::new(2, 1, Duration::from_secs(60));
        assert_eq!(b.take(), (true, 1));
        assert_eq!(b.take(), (true, 0));
        assert_eq!(b.take(), (false, 0));
        assert!(b.reset_secs() <= 60);
    }
}
