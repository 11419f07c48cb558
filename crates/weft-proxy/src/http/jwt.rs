//! Envoy's JWT authentication filter (`envoy.filters.http.jwt_authn`): finds a token where each
//! provider says (headers with a prefix, query parameters, cookies; `Authorization: Bearer`
//! and `access_token` by default), verifies it against the provider's JWKS (inline, or fetched
//! through a cluster and cached), checks issuer, audiences and lifetime, and applies the
//! requirement of the first rule whose path matches. On success the payload is stored as the
//! filter's dynamic metadata (for RBAC's `request.auth.*`), optionally forwarded as a header,
//! and claims are copied to headers; the token header is removed unless `forward` is set. A
//! failed requirement ends the request with 401.
//!
//! Algorithms: RS256/384/512, PS256/384/512, ES256/384, EdDSA (jsonwebtoken, RustCrypto).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prost::Message;
use serde_json::Value;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::route::v3 as rt;
use weft_xds::envoy::extensions::filters::http::jwt_authn::v3 as pb;

use crate::config::CompileError;

/// Clock skew Envoy allows when checking `exp` and `nbf`, in seconds.
const DEFAULT_CLOCK_SKEW: u64 = 60;
/// JWKS cache lifetime when the config does not set one (Envoy's default).
const DEFAULT_CACHE: Duration = Duration::from_secs(5 * 60);
/// Largest JWKS document fetched.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where JWKS are fetched from: resolves a cluster name to an upstream address.
pub trait ClusterResolver: Send + Sync {
    /// An address of a healthy endpoint of the cluster.
    fn resolve(&self, cluster: &str) -> Option<std::net::SocketAddr>;
}

/// A remote JWKS with its cache.
#[derive(Debug)]
struct Remote {
    uri: http::Uri,
    cluster: String,
    timeout: Duration,
    cache_duration: Duration,
    cached: ArcSwapOption<(Instant, JwkSet)>,
    /// One fetch at a time; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
enum Jwks {
    Local(JwkSet),
    Remote(Remote),
}

#[derive(Debug)]
enum Location {
    Header(HeaderName, String),
    Param(String),
    Cookie(String),
}

/// One compiled `JwtProvider`.
#[derive(Debug)]
struct Provider {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    forward: bool,
    locations: Vec<Location>,
    forward_payload_header: Option<HeaderName>,
    payload_in_metadata: String,
    claim_to_headers: Vec<(HeaderName, String)>,
    clock_skew: u64,
    jwks: Jwks,
    /// Tokens already verified, with their payload and `exp` (as Envoy's `jwt_cache_config`):
    /// a signature is checked once per token, lifetime on every use.
    verified: std::sync::Mutex<std::collections::HashMap<String, (Value, Option<u64>)>>,
}

/// Verified tokens kept per provider; the cache starts over when full.
const VERIFIED_CACHE: usize = 256;

#[derive(Debug)]
enum Req {
    Provider(usize),
    Any(Vec<Req>),
    All(Vec<Req>),
    AllowMissing,
    AllowMissingOrFailed,
}

#[derive(Debug)]
enum PathMatch {
    Prefix(String),
    Exact(String),
}

/// A compiled `JwtAuthentication`.
#[derive(Debug)]
pub struct JwtFilter {
    providers: Vec<Provider>,
    rules: Vec<(PathMatch, Req)>,
    bypass_cors_preflight: bool,
}

/// Why a request is refused (the body Envoy answers with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// No token where the requirement needs one.
    Missing,
    /// The token's issuer has no provider.
    UnknownIssuer,
    /// The token is not a well-formed JWT.
    BadFormat,
    /// The signature does not verify (or no key fits).
    BadSignature,
    /// `exp` is in the past.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// No audience in the token is allowed.
    BadAudience,
    /// The JWKS could not be fetched.
    JwksFetch,
}

impl JwtError {
    /// The 401 body.
    pub fn message(&self) -> &'static str {
        match self {
            JwtError::Missing => "Jwt is missing",
            JwtError::UnknownIssuer => "Jwt issuer is not configured",
            JwtError::BadFormat => "Jwt is not in the form of Header.Payload.Signature",
            JwtError::BadSignature => "Jwt verification fails",
            JwtError::Expired => "Jwt is expired",
            JwtError::NotYetValid => "Jwt not yet valid",
            JwtError::BadAudience => "Audiences in Jwt are not allowed",
            JwtError::JwksFetch => "Jwks remote fetch is failed",
        }
    }
}

/// What one provider made of the request.
enum Outcome {
    Missing,
    Ok(Value),
    Failed(JwtError),
}

fn invalid(resource: &str, field: &str, reason: String) -> CompileError {
    CompileError::Invalid {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason,
    }
}

fn header_name(n: &str, resource: &str, field: &str) -> Result<HeaderName, CompileError> {
    HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
        .map_err(|e| invalid(resource, field, format!("{n:?} is not a header name: {e}")))
}

impl JwtFilter {
    /// Compiles `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`.
    pub fn compile(
        any: &weft_xds::google::protobuf::Any,
        resource: &str,
        field: &str,
    ) -> Result<JwtFilter, CompileError> {
        let cfg = pb::JwtAuthentication::decode(any.value.as_slice()).map_err(|source| {
            CompileError::Decode {
                resource: resource.to_owned(),
                field: field.to_owned(),
                type_url: any.type_url.clone(),
                source,
            }
        })?;
        let mut names: Vec<&String> = cfg.providers.keys().collect();
        names.sort();
        let mut providers = Vec::with_capacity(names.len());
        for name in names {
            let p = &cfg.providers[name];
            let pf = format!("{field}.providers[{name}]");
            providers.push(compile_provider(name, p, resource, &pf)?);
        }
        let index = |n: &str, f: &str| -> Result<usize, CompileError> {
            providers
                .iter()
                .position(|p| p.name == n)
                .ok_or_else(|| invalid(resource, f, format!("provider {n:?} is not defined")))
        };
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let rf = format!("{field}.rules[{i}]");
            let m = r.r#match.as_ref();
            let pm = match m.and_then(|m| m.path_specifier.as_ref()) {
                Some(rt::route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
                Some(rt::route_match::PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
                None => PathMatch::Prefix("/".into()),
                Some(_) => {
                    return Err(invalid(
                        resource,
                        &format!("{rf}.match"),
                        "only prefix and path matches are supported".into(),
                    ));
                }
            };
            let req = match &r.requirement_type {
                Some(pb::requirement_rule::RequirementType::Requires(q)) => {
                    compile_req(q, &index, resource, &format!("{rf}.requires"))?
                }
                Some(pb::requirement_rule::RequirementType::RequirementName(n)) => {
                    let q = cfg.requirement_map.get(n).ok_or_else(|| {
                        invalid(resource, &rf, format!("requirement {n:?} is not defined"))
                    })?;
                    compile_req(q, &index, resource, &format!("{rf}.requirement_name"))?
                }
                None => Req::AllowMissingOrFailed,
            };
            rules.push((pm, req));
        }
        Ok(JwtFilter {
            providers,
            rules,
            bypass_cors_preflight: cfg.bypass_cors_preflight,
        })
    }

    /// Runs the filter on a request: `Ok(metadata)` lets it through (the verified payloads by
    /// `payload_in_metadata` key, `None` when nothing was verified), `Err` refuses it with 401.
    pub async fn check(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        resolver: &dyn ClusterResolver,
    ) -> Result<Option<Value>, JwtError> {
        if self.bypass_cors_preflight
            && method == http::Method::OPTIONS
            && headers.contains_key(http::header::ORIGIN)
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Ok(None);
        }
        let path = uri.path();
        let Some((_, req)) = self.rules.iter().find(|(m, _)| match m {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        }) else {
            return Ok(None);
        };
        let mut outcomes: Vec<Option<Outcome>> = (0..self.providers.len()).map(|_| None).collect();
        let mut used = Vec::new();
        collect(req, &mut used);
        for i in used {
            if outcomes[i].is_none() {
                outcomes[i] = Some(
                    self.verify(&self.providers[i], uri, headers, resolver)
                        .await,
                );
            }
        }
        let any_token = outcomes
            .iter()
            .flatten()
            .any(|o| !matches!(o, Outcome::Missing));
        eval(req, &outcomes, any_token)?;
        let mut meta = serde_json::Map::new();
        for (i, o) in outcomes.iter().enumerate() {
            let Some(Outcome::Ok(payload)) = o else {
                continue;
            };
            let p = &self.providers[i];
            if !p.payload_in_metadata.is_empty() {
                meta.insert(p.payload_in_metadata.clone(), payload.clone());
            }
            if let Some(h) = &p.forward_payload_header {
                let text = serde_json::to_vec(payload).unwrap_or_default();
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
                if let Ok(v) = HeaderValue::from_str(&b64) {
                    headers.insert(h.clone(), v);
                }
            }
            for (h, claim) in &p.claim_to_headers {
                let v = claim
                    .split('.')
                    .try_fold(payload, |v, k| v.get(k))
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    });
                if let Some(v) = v.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    headers.insert(h.clone(), v);
                }
            }
            if !p.forward {
                for l in &p.locations {
                    if let Location::Header(h, _) = l {
                        headers.remove(h);
                    }
                }
            }
        }
        Ok((!meta.is_empty()).then_some(Value::Object(meta)))
    }

    async fn verify(
        &self,
        p: &Provider,
        uri: &http::Uri,
        headers: &HeaderMap,
        resolver: &dyn ClusterResolver,
    ) -> Outcome {
        let Some(token) = find_token(p, uri, headers) else {
            return Outcome::Missing;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let cached = p.verified.lock().ok().and_then(|c| c.get(&token).cloned());
        if let Some((payload, exp)) = cached {
            if exp.is_some_and(|e| e.saturating_add(p.clock_skew) < now) {
                if let Ok(mut c) = p.verified.lock() {
                    c.remove(&token);
                }
                return Outcome::Failed(JwtError::Expired);
            }
            return Outcome::Ok(payload);
        }
        let outcome = self.verify_uncached(p, &token, resolver).await;
        if let Outcome::Ok(payload) = &outcome
            && let Ok(mut c) = p.verified.lock()
        {
            if c.len() >= VERIFIED_CACHE {
                c.clear();
            }
            let exp = payload.get("exp").and_then(Value::as_u64);
            c.insert(token, (payload.clone(), exp));
        }
        outcome
    }

    async fn verify_uncached(
        &self,
        p: &Provider,
        token: &str,
        resolver: &dyn ClusterResolver,
    ) -> Outcome {
        let token = token.to_string();
        let header = match jsonwebtoken::decode_header(&token) {
            Ok(h) => h,
            Err(_) => return Outcome::Failed(JwtError::BadFormat),
        };
        // The issuer decides which provider a token belongs to.
        let Some(claims) = unverified_claims(&token) else {
            return Outcome::Failed(JwtError::BadFormat);
        };
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if !p.issuer.is_empty() && iss != p.issuer {
            return Outcome::Failed(JwtError::UnknownIssuer);
        }
        let keys = match &p.jwks {
            Jwks::Local(set) => std::borrow::Cow::Borrowed(set),
            Jwks::Remote(r) => match fetch(r, resolver).await {
                Some(set) => std::borrow::Cow::Owned(set),
                None => return Outcome::Failed(JwtError::JwksFetch),
            },
        };
        let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
            Some(kid) => keys
                .keys
                .iter()
                .filter(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
                .collect(),
            None => keys.keys.iter().collect(),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = p.clock_skew;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.required_spec_claims.clear();
        let mut last = JwtError::BadSignature;
        for k in candidates {
            if !alg_fits(header.alg, k) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(k) else {
                continue;
            };
            match jsonwebtoken::decode::<Value>(&token, &key, &validation) {
                Ok(data) => {
                    if !p.audiences.is_empty() && !audience_ok(&data.claims, &p.audiences) {
                        return Outcome::Failed(JwtError::BadAudience);
                    }
                    return Outcome::Ok(data.claims);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::ExpiredSignature => return Outcome::Failed(JwtError::Expired),
                        K::ImmatureSignature => return Outcome::Failed(JwtError::NotYetValid),
                        _ => JwtError::BadSignature,
                    };
                }
            }
        }
        Outcome::Failed(last)
    }
}

fn alg_fits(alg: Algorithm, k: &jsonwebtoken::jwk::Jwk) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    match (&k.algorithm, alg) {
        (P::RSA(_), Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)
        | (P::RSA(_), Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512)
        | (P::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384)
        | (P::OctetKeyPair(_), Algorithm::EdDSA) => true,
        (P::OctetKey(_), _) => false,
        _ => false,
    }
}

fn audience_ok(claims: &Value, allowed: &[String]) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => allowed.iter().any(|x| x == a),
        Some(Value::Array(l)) => l
            .iter()
            .filter_map(Value::as_str)
            .any(|a| allowed.iter().any(|x| x == a)),
        _ => false,
    }
}

fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn find_token(p: &Provider, uri: &http::Uri, headers: &HeaderMap) -> Option<String> {
    for l in &p.locations {
        match l {
            Location::Header(h, prefix) => {
                for v in headers.get_all(h) {
                    let Ok(s) = v.to_str() else { continue };
                    if prefix.is_empty() {
                        return Some(s.trim().to_string());
                    }
                    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
                        return Some(s[prefix.len()..].trim().to_string());
                    }
                }
            }
            Location::Param(name) => {
                let q = uri.query().unwrap_or("");
                for pair in q.split('&') {
                    if let Some((k, v)) = pair.split_once('=')
                        && k == name
                        && !v.is_empty()
                    {
                        return Some(v.to_string());
                    }
                }
            }
            Location::Cookie(name) => {
                for v in headers.get_all(http::header::COOKIE) {
                    let Ok(s) = v.to_str() else { continue };
                    for c in s.split(';') {
                        if let Some((k, v)) = c.trim().split_once('=')
                            && k == name
                        {
                            return Some(v.trim_matches('"').to_string());
                        }
                    }
                }
            }
        }
    }
    None
}

fn collect(r: &Req, out: &mut Vec<usize>) {
    match r {
        Req::Provider(i) => out.push(*i),
        Req::Any(v) | Req::All(v) => v.iter().for_each(|r| collect(r, out)),
        Req::AllowMissing | Req::AllowMissingOrFailed => {}
    }
}

fn eval(r: &Req, outcomes: &[Option<Outcome>], any_token: bool) -> Result<(), JwtError> {
    match r {
        Req::Provider(i) => match &outcomes[*i] {
            Some(Outcome::Ok(_)) => Ok(()),
            Some(Outcome::Failed(e)) => Err(e.clone()),
            Some(Outcome::Missing) | None => Err(JwtError::Missing),
        },
        Req::AllowMissingOrFailed => Ok(()),
        Req::AllowMissing => {
            if any_token {
                Err(JwtError::BadSignature)
            } else {
                Ok(())
            }
        }
        Req::All(v) => v.iter().try_for_each(|r| eval(r, outcomes, any_token)),
        Req::Any(v) => {
            let mut err: Option<JwtError> = None;
            for r in v {
                match eval(r, outcomes, any_token) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        // A token that failed explains more than a missing one.
                        if err.is_none() || matches!(err, Some(JwtError::Missing)) {
                            err = Some(e);
                        }
                    }
                }
            }
            // `allow_missing` reports the provider's own failure, not a generic one.
            let provider_err = v.iter().find_map(|r| match r {
                Req::Provider(i) => match &outcomes[*i] {
                    Some(Outcome::Failed(e)) => Some(e.clone()),
                    _ => None,
                },
                _ => None,
            });
            Err(provider_err.or(err).unwrap_or(JwtError::Missing))
        }
    }
}

fn compile_req(
    q: &pb::JwtRequirement,
    index: &dyn Fn(&str, &str) -> Result<usize, CompileError>,
    resource: &str,
    field: &str,
) -> Result<Req, CompileError> {
    use pb::jwt_requirement::RequiresType as T;
    Ok(match &q.requires_type {
        Some(T::ProviderName(n)) => Req::Provider(index(n, field)?),
        Some(T::ProviderAndAudiences(pa)) => Req::Provider(index(&pa.provider_name, field)?),
        Some(T::RequiresAny(l)) => Req::Any(
            l.requirements
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    compile_req(r, index, resource, &format!("{field}.requires_any[{i}]"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(T::RequiresAll(l)) => Req::All(
            l.requirements
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    compile_req(r, index, resource, &format!("{field}.requires_all[{i}]"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(T::AllowMissing(_)) => Req::AllowMissing,
        Some(T::AllowMissingOrFailed(_)) => Req::AllowMissingOrFailed,
        Some(T::ExtractOnlyWithoutValidation(_)) => {
            return Err(invalid(
                resource,
                field,
                "extract_only_without_validation is not supported".into(),
            ));
        }
        None => Req::AllowMissingOrFailed,
    })
}

fn compile_provider(
    name: &str,
    p: &pb::JwtProvider,
    resource: &str,
    field: &str,
) -> Result<Provider, CompileError> {
    let mut locations = Vec::new();
    for (i, h) in p.from_headers.iter().enumerate() {
        locations.push(Location::Header(
            header_name(
                &h.name,
                resource,
                &format!("{field}.from_headers[{i}].name"),
            )?,
            h.value_prefix.clone(),
        ));
    }
    locations.extend(p.from_params.iter().cloned().map(Location::Param));
    locations.extend(p.from_cookies.iter().cloned().map(Location::Cookie));
    if locations.is_empty() {
        locations.push(Location::Header(
            http::header::AUTHORIZATION,
            "Bearer ".to_string(),
        ));
        locations.push(Location::Param("access_token".to_string()));
    }
    use pb::jwt_provider::JwksSourceSpecifier as S;
    let jwks = match &p.jwks_source_specifier {
        Some(S::LocalJwks(ds)) => {
            let text = match &ds.specifier {
                Some(core::data_source::Specifier::InlineString(s)) => s.clone(),
                Some(core::data_source::Specifier::InlineBytes(b)) => {
                    String::from_utf8_lossy(b).into_owned()
                }
                Some(core::data_source::Specifier::Filename(f)) => std::fs::read_to_string(f)
                    .map_err(|e| {
                        invalid(
                            resource,
                            &format!("{field}.local_jwks.filename"),
                            format!("{f}: {e}"),
                        )
                    })?,
                _ => {
                    return Err(invalid(
                        resource,
                        &format!("{field}.local_jwks"),
                        "local_jwks needs inline_string, inline_bytes or filename".into(),
                    ));
                }
            };
            Jwks::Local(serde_json::from_str(&text).map_err(|e| {
                invalid(
                    resource,
                    &format!("{field}.local_jwks"),
                    format!("not a JWKS: {e}"),
                )
            })?)
        }
        Some(S::RemoteJwks(r)) => {
            let hu = r.http_uri.as_ref().ok_or_else(|| {
                invalid(
                    resource,
                    &format!("{field}.remote_jwks"),
                    "http_uri is required".into(),
                )
            })?;
            let uri: http::Uri = hu.uri.parse().map_err(|e| {
                invalid(
                    resource,
                    &format!("{field}.remote_jwks.http_uri.uri"),
                    format!("{e}"),
                )
            })?;
            if uri.scheme_str() != Some("http") {
                return Err(invalid(
                    resource,
                    &format!("{field}.remote_jwks.http_uri.uri"),
                    format!("{}: only http JWKS URIs are fetched by the proxy", hu.uri),
                ));
            }
            let cluster = match &hu.http_upstream_type {
                Some(core::http_uri::HttpUpstreamType::Cluster(c)) => c.clone(),
                None => {
                    return Err(invalid(
                        resource,
                        &format!("{field}.remote_jwks.http_uri.cluster"),
                        "a cluster is required".into(),
                    ));
                }
            };
            let d = |x: Option<&weft_xds::google::protobuf::Duration>, def: Duration| {
                x.map(|x| Duration::new(x.seconds.max(0) as u64, x.nanos.max(0) as u32))
                    .filter(|d| !d.is_zero())
                    .unwrap_or(def)
            };
            Jwks::Remote(Remote {
                uri,
                cluster,
                timeout: d(hu.timeout.as_ref(), Duration::from_secs(5)),
                cache_duration: d(r.cache_duration.as_ref(), DEFAULT_CACHE),
                cached: ArcSwapOption::empty(),
                fetching: tokio::sync::Mutex::new(()),
            })
        }
        None => {
            return Err(invalid(
                resource,
                field,
                "a provider needs local_jwks or remote_jwks".into(),
            ));
        }
    };
    Ok(Provider {
        name: name.to_string(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        forward: p.forward,
        locations,
        forward_payload_header: (!p.forward_payload_header.is_empty())
            .then(|| {
                header_name(
                    &p.forward_payload_header,
                    resource,
                    &format!("{field}.forward_payload_header"),
                )
            })
            .transpose()?,
        payload_in_metadata: p.payload_in_metadata.clone(),
        claim_to_headers: p
            .claim_to_headers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok((
                    header_name(
                        &c.header_name,
                        resource,
                        &format!("{field}.claim_to_headers[{i}]"),
                    )?,
                    c.claim_name.clone(),
                ))
            })
            .collect::<Result<_, CompileError>>()?,
        clock_skew: if p.clock_skew_seconds == 0 {
            DEFAULT_CLOCK_SKEW
        } else {
            u64::from(p.clock_skew_seconds)
        },
        jwks,
        verified: std::sync::Mutex::new(std::collections::HashMap::new()),
    })
}

/// The cached JWKS, fetched again once older than the cache duration.
async fn fetch(r: &Remote, resolver: &dyn ClusterResolver) -> Option<JwkSet> {
    let fresh = |r: &Remote| {
        r.cached
            .load_full()
            .filter(|c| c.0.elapsed() < r.cache_duration)
            .map(|c| c.1.clone())
    };
    if let Some(s) = fresh(r) {
        return Some(s);
    }
    let _one = r.fetching.lock().await;
    if let Some(s) = fresh(r) {
        return Some(s);
    }
    let got = tokio::time::timeout(r.timeout, fetch_once(r, resolver)).await;
    match got {
        Ok(Ok(set)) => {
            r.cached
                .store(Some(Arc::new((Instant::now(), set.clone()))));
            Some(set)
        }
        Ok(Err(e)) => {
            tracing::warn!(uri = %r.uri, cluster = %r.cluster, "JWKS fetch failed: {e}");
            // A stale copy is better than refusing every token.
            r.cached.load_full().map(|c| c.1.clone())
        }
        Err(_) => {
            tracing::warn!(uri = %r.uri, cluster = %r.cluster, "JWKS fetch timed out after {:?}", r.timeout);
            r.cached.load_full().map(|c| c.1.clone())
        }
    }
}

async fn fetch_once(r: &Remote, resolver: &dyn ClusterResolver) -> Result<JwkSet, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    let addr = resolver
        .resolve(&r.cluster)
        .ok_or_else(|| format!("no endpoint in cluster {}", r.cluster))?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = r.uri.authority().map(|a| a.as_str()).unwrap_or("");
    let req = http::Request::get(r.uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, host)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))
}

impl ClusterResolver for crate::config::Snapshot {
    fn resolve(&self, cluster: &str) -> Option<std::net::SocketAddr> {
        let c = self.clusters.get(cluster)?;
        let lease = c.pick()?;
        Some(lease.endpoint.addr)
    }
}
