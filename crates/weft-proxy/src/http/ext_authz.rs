//! Envoy's external authorization filter (`envoy.filters.http.ext_authz`), as Istio's CUSTOM
//! action uses it: it runs only when the RBAC filter's shadow rules matched a CUSTOM policy
//! (`filter_enabled_metadata` on `istio_ext_authz_shadow_effective_policy_id`), asks the
//! authorizer over HTTP (a request to `path_prefix` + the original path with selected headers)
//! or gRPC (`envoy.service.auth.v3.Authorization/Check`), and either lets the request go on,
//! with the headers the authorizer adds, or answers with the authorizer's denial. An authorizer
//! that cannot be reached fails closed with `status_on_error` (403) unless `failure_mode_allow`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use prost::Message;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::extensions::filters::http::ext_authz::v3 as pb;
use weft_xds::envoy::r#type::matcher::v3 as mpb;

use super::body::Body;
use super::jwt::ClusterResolver;
use crate::config::CompileError;
use crate::config::route::{StringMatch, string_match};

/// The filter whose metadata enables this one.
const RBAC_FILTER: &str = "envoy.filters.http.rbac";
/// Headers Envoy always sends to an HTTP authorizer.
const ALWAYS_SENT: &[&str] = &["authorization", "host", "content-length"];
/// Largest authorizer response body kept.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug)]
enum Service {
    Http {
        cluster: String,
        path_prefix: String,
        headers_to_add: Vec<(HeaderName, HeaderValue)>,
        allowed_upstream: Vec<StringMatch>,
        allowed_client: Vec<StringMatch>,
        allowed_client_on_success: Vec<StringMatch>,
    },
    Grpc {
        cluster: String,
        authority: String,
        /// The HTTP/2 channel to the last endpoint used, kept across checks.
        channel: std::sync::Mutex<Option<(SocketAddr, tonic::transport::Channel)>>,
    },
}

/// A compiled `ExtAuthz`.
#[derive(Debug)]
pub struct ExtAuthzFilter {
    service: Service,
    timeout: Duration,
    failure_mode_allow: bool,
    status_on_error: StatusCode,
    /// Request headers sent to the authorizer (besides the ones always sent).
    allowed_headers: Vec<StringMatch>,
    /// `(metadata key, matcher)` on the RBAC filter's metadata; `None`: always runs.
    enabled_by: Option<(String, StringMatch)>,
}

/// The outcome of a check.
#[derive(Debug)]
pub enum Verdict {
    /// Go on (headers already added to the request).
    Allow,
    /// Answer with this response.
    Deny(Box<Response<Body>>),
}

fn invalid(resource: &str, field: &str, reason: impl Into<String>) -> CompileError {
    CompileError::Invalid {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn matchers(
    l: Option<&mpb::ListStringMatcher>,
    resource: &str,
    field: &str,
) -> Result<Vec<StringMatch>, CompileError> {
    l.map(|l| {
        l.patterns
            .iter()
            .enumerate()
            .map(|(i, m)| string_match(m, resource, &format!("{field}.patterns[{i}]")))
            .collect()
    })
    .unwrap_or(Ok(Vec::new()))
}

fn duration(d: Option<&weft_xds::google::protobuf::Duration>, def: Duration) -> Duration {
    d.map(|x| Duration::new(x.seconds.max(0) as u64, x.nanos.max(0) as u32))
        .filter(|d| !d.is_zero())
        .unwrap_or(def)
}

impl ExtAuthzFilter {
    /// Compiles `envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`.
    pub fn compile(
        any: &weft_xds::google::protobuf::Any,
        resource: &str,
        field: &str,
    ) -> Result<ExtAuthzFilter, CompileError> {
        let c =
            pb::ExtAuthz::decode(any.value.as_slice()).map_err(|source| CompileError::Decode {
                resource: resource.to_owned(),
                field: field.to_owned(),
                type_url: any.type_url.clone(),
                source,
            })?;
        let default_timeout = Duration::from_millis(200);
        let (service, timeout) = match &c.services {
            Some(pb::ext_authz::Services::HttpService(h)) => {
                let uri = h.server_uri.as_ref().ok_or_else(|| {
                    invalid(
                        resource,
                        &format!("{field}.http_service"),
                        "server_uri is required",
                    )
                })?;
                let cluster = match &uri.http_upstream_type {
                    Some(core::http_uri::HttpUpstreamType::Cluster(c)) => c.clone(),
                    None => {
                        return Err(invalid(
                            resource,
                            &format!("{field}.http_service.server_uri"),
                            "cluster is required",
                        ));
                    }
                };
                let mut headers_to_add = Vec::new();
                if let Some(r) = &h.authorization_request {
                    for (i, hv) in r.headers_to_add.iter().enumerate() {
                        let f = format!(
                            "{field}.http_service.authorization_request.headers_to_add[{i}]"
                        );
                        let n = HeaderName::from_bytes(hv.key.to_ascii_lowercase().as_bytes())
                            .map_err(|e| invalid(resource, &f, e.to_string()))?;
                        let v = HeaderValue::from_str(&hv.value)
                            .map_err(|e| invalid(resource, &f, e.to_string()))?;
                        headers_to_add.push((n, v));
                    }
                }
                let resp = h.authorization_response.as_ref();
                let rf = format!("{field}.http_service.authorization_response");
                (
                    Service::Http {
                        cluster,
                        path_prefix: h.path_prefix.clone(),
                        headers_to_add,
                        allowed_upstream: matchers(
                            resp.and_then(|r| r.allowed_upstream_headers.as_ref()),
                            resource,
                            &format!("{rf}.allowed_upstream_headers"),
                        )?,
                        allowed_client: matchers(
                            resp.and_then(|r| r.allowed_client_headers.as_ref()),
                            resource,
                            &format!("{rf}.allowed_client_headers"),
                        )?,
                        allowed_client_on_success: matchers(
                            resp.and_then(|r| r.allowed_client_headers_on_success.as_ref()),
                            resource,
                            &format!("{rf}.allowed_client_headers_on_success"),
                        )?,
                    },
                    duration(uri.timeout.as_ref(), default_timeout),
                )
            }
            Some(pb::ext_authz::Services::GrpcService(g)) => {
                let (cluster, authority) = match &g.target_specifier {
                    Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(e)) => {
                        (e.cluster_name.clone(), e.authority.clone())
                    }
                    _ => {
                        return Err(invalid(
                            resource,
                            &format!("{field}.grpc_service"),
                            "only envoy_grpc (a cluster) is supported",
                        ));
                    }
                };
                (
                    Service::Grpc {
                        cluster,
                        authority,
                        channel: std::sync::Mutex::new(None),
                    },
                    duration(g.timeout.as_ref(), default_timeout),
                )
            }
            None => {
                return Err(invalid(
                    resource,
                    field,
                    "http_service or grpc_service is required",
                ));
            }
        };
        let status_on_error = c
            .status_on_error
            .as_ref()
            .and_then(|s| u16::try_from(s.code).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::FORBIDDEN);
        let enabled_by = match &c.filter_enabled_metadata {
            None => None,
            Some(m) => {
                let f = format!("{field}.filter_enabled_metadata");
                if m.filter != RBAC_FILTER || m.path.len() != 1 {
                    return Err(invalid(
                        resource,
                        &f,
                        "only a key of envoy.filters.http.rbac metadata is supported",
                    ));
                }
                let key = match &m.path[0].segment {
                    Some(mpb::metadata_matcher::path_segment::Segment::Key(k)) => k.clone(),
                    None => return Err(invalid(resource, &f, "path segment without a key")),
                };
                let sm = match m.value.as_ref().and_then(|v| v.match_pattern.as_ref()) {
                    Some(mpb::value_matcher::MatchPattern::StringMatch(s)) => {
                        string_match(s, resource, &format!("{f}.value.string_match"))?
                    }
                    _ => {
                        return Err(invalid(
                            resource,
                            &f,
                            "only a string_match value is supported",
                        ));
                    }
                };
                Some((key, sm))
            }
        };
        Ok(ExtAuthzFilter {
            service,
            timeout,
            failure_mode_allow: c.failure_mode_allow,
            status_on_error,
            allowed_headers: matchers(
                c.allowed_headers.as_ref(),
                resource,
                &format!("{field}.allowed_headers"),
            )?,
            enabled_by,
        })
    }

    /// Whether the filter runs for a request, given the RBAC filter's metadata.
    pub fn enabled(&self, rbac_metadata: &HashMap<String, String>) -> bool {
        match &self.enabled_by {
            None => true,
            Some((key, m)) => rbac_metadata.get(key).is_some_and(|v| m.matches(v)),
        }
    }

    fn error(&self) -> Verdict {
        if self.failure_mode_allow {
            Verdict::Allow
        } else {
            let mut r = Response::new(Body::full(Bytes::new()));
            *r.status_mut() = self.status_on_error;
            Verdict::Deny(Box::new(r))
        }
    }

    /// Asks the authorizer about a request.
    pub async fn check(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        peer: SocketAddr,
        resolver: &dyn ClusterResolver,
    ) -> Verdict {
        let cluster = match &self.service {
            Service::Http { cluster, .. } | Service::Grpc { cluster, .. } => cluster,
        };
        let Some(addr) = resolver.resolve(cluster) else {
            tracing::warn!(%cluster, "ext_authz: no endpoint");
            return self.error();
        };
        let r = tokio::time::timeout(self.timeout, async {
            match &self.service {
                Service::Http { .. } => self.check_http(addr, method, uri, headers).await,
                Service::Grpc {
                    authority, channel, ..
                } => {
                    let cached = channel.lock().ok().and_then(|c| {
                        c.as_ref()
                            .filter(|(a, _)| *a == addr)
                            .map(|(_, ch)| ch.clone())
                    });
                    let ch = match cached {
                        Some(ch) => ch,
                        None => {
                            let ch = grpc_channel(addr, authority).await?;
                            if let Ok(mut c) = channel.lock() {
                                *c = Some((addr, ch.clone()));
                            }
                            ch
                        }
                    };
                    self.check_grpc(ch, method, uri, headers, peer).await
                }
            }
        })
        .await;
        match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(%cluster, "ext_authz check failed: {e}");
                self.error()
            }
            Err(_) => {
                tracing::warn!(%cluster, "ext_authz check timed out after {:?}", self.timeout);
                self.error()
            }
        }
    }

    fn sent(&self, name: &HeaderName) -> bool {
        ALWAYS_SENT.contains(&name.as_str())
            || self
                .allowed_headers
                .iter()
                .any(|m| m.matches(name.as_str()))
    }

    async fn check_http(
        &self,
        addr: SocketAddr,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
    ) -> Result<Verdict, String> {
        use http_body_util::{BodyExt, Empty, Limited};
        let Service::Http {
            path_prefix,
            headers_to_add,
            allowed_upstream,
            allowed_client,
            allowed_client_on_success,
            ..
        } = &self.service
        else {
            return Err("not an HTTP service".into());
        };
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
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(format!("{path_prefix}{pq}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        for (n, v) in headers.iter() {
            if self.sent(n) && n != http::header::CONTENT_LENGTH {
                req.headers_mut().append(n.clone(), v.clone());
            }
        }
        if let Some(a) = uri.authority()
            && !req.headers().contains_key(http::header::HOST)
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            req.headers_mut().insert(http::header::HOST, v);
        }
        for (n, v) in headers_to_add {
            req.headers_mut().insert(n.clone(), v.clone());
        }
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let pick =
            |list: &[StringMatch], n: &HeaderName| list.iter().any(|m| m.matches(n.as_str()));
        if parts.status == StatusCode::OK {
            for (n, v) in parts.headers.iter() {
                if pick(allowed_upstream, n) {
                    headers.insert(n.clone(), v.clone());
                }
            }
            let _ = allowed_client_on_success;
            return Ok(Verdict::Allow);
        }
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut r = Response::new(Body::full(body));
        *r.status_mut() = if parts.status.is_success() {
            StatusCode::FORBIDDEN
        } else {
            parts.status
        };
        for (n, v) in parts.headers.iter() {
            let hop = matches!(
                n.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "host"
            );
            if !hop && (allowed_client.is_empty() || pick(allowed_client, n)) {
                r.headers_mut().append(n.clone(), v.clone());
            }
        }
        Ok(Verdict::Deny(Box::new(r)))
    }

    async fn check_grpc(
        &self,
        channel: tonic::transport::Channel,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        peer: SocketAddr,
    ) -> Result<Verdict, String> {
        use weft_xds::envoy::service::auth::v3 as auth;
        let mut client = auth::authorization_client::AuthorizationClient::new(channel);
        let mut hdrs = HashMap::new();
        for (n, v) in headers.iter() {
            if let Ok(s) = v.to_str() {
                hdrs.entry(n.as_str().to_string())
                    .and_modify(|e: &mut String| {
                        e.push(',');
                        e.push_str(s);
                    })
                    .or_insert_with(|| s.to_string());
            }
        }
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let request = auth::CheckRequest {
            attributes: Some(auth::AttributeContext {
                source: Some(auth::attribute_context::Peer {
                    address: Some(socket(peer)),
                    ..Default::default()
                }),
                request: Some(auth::attribute_context::Request {
                    http: Some(auth::attribute_context::HttpRequest {
                        method: method.to_string(),
                        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
                        host,
                        headers: hdrs,
                        scheme: "http".into(),
                        protocol: "HTTP/1.1".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let resp = client
            .check(request)
            .await
            .map_err(|s| format!("check: {s}"))?
            .into_inner();
        let ok = resp.status.as_ref().is_none_or(|s| s.code == 0);
        use auth::check_response::HttpResponse as H;
        if ok {
            if let Some(H::OkResponse(o)) = &resp.http_response {
                for h in &o.headers {
                    if let Some(hv) = &h.header
                        && let (Ok(n), Ok(v)) = (
                            HeaderName::from_bytes(hv.key.to_ascii_lowercase().as_bytes()),
                            HeaderValue::from_str(&hv.value),
                        )
                    {
                        headers.insert(n, v);
                    }
                }
                for n in &o.headers_to_remove {
                    headers.remove(n.as_str());
                }
            }
            return Ok(Verdict::Allow);
        }
        let mut r = Response::new(Body::full(Bytes::new()));
        *r.status_mut() = StatusCode::FORBIDDEN;
        if let Some(H::DeniedResponse(d)) = resp.http_response {
            if let Some(s) = d
                .status
                .and_then(|s| u16::try_from(s.code).ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                *r.status_mut() = s;
            }
            for h in &d.headers {
                if let Some(hv) = &h.header
                    && let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(hv.key.to_ascii_lowercase().as_bytes()),
                        HeaderValue::from_str(&hv.value),
                    )
                {
                    r.headers_mut().insert(n, v);
                }
            }
            *r.body_mut() = Body::full(Bytes::from(d.body));
        }
        Ok(Verdict::Deny(Box::new(r)))
    }
}

/// A channel to the authorizer at `addr`, with the `:authority` the config names.
async fn grpc_channel(
    addr: SocketAddr,
    authority: &str,
) -> Result<tonic::transport::Channel, String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?;
    if !authority.is_empty() {
        let origin: http::Uri = format!("http://{authority}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        endpoint = endpoint.origin(origin);
    }
    endpoint.connect().await.map_err(|e| e.to_string())
}

fn socket(a: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                a.port(),
            ))),
            ..Default::default()
        })),
    }
}
