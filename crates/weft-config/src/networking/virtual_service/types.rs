//! The `VirtualService` API (`networking.istio.io`, `virtual_service.proto`) as serde types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::serde_util::{base64_bytes, is_default, is_false, is_zero_i32, is_zero_u32};

/// `VirtualService` spec: routing rules applied to traffic addressed to a set of hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts the rules apply to (DNS names, optionally wildcarded, or IPs);
    /// empty for a delegate VirtualService.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Gateways (`namespace/name`) and/or the reserved `mesh` that apply these rules;
    /// empty means `mesh`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Ordered HTTP rules; the first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// Ordered rules for unterminated TLS traffic, matched on SNI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// Ordered rules for opaque TCP traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces that can see this VirtualService (`.` own, `*` all); empty means all.
    #[serde(default, alias = "export_to", skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

/// A service (and optionally subset and port) that traffic is sent to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service name from the registry (short names resolve in the rule's namespace).
    #[serde(default)]
    pub host: String,
    /// Subset name declared in a DestinationRule for the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// Port of the host; may be omitted when the service has a single port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// Selects a port of a destination by number (`networking.v1alpha3.PortSelector`, used by
/// VirtualService destinations and DestinationRule port-level settings). A zero number is
/// left out when written, as protobuf JSON does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// The port number.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub number: u32,
}

/// One HTTP routing rule: match conditions and what to do with matching requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Name for debugging and access logs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Match blocks, ORed; conditions inside one block are ANDed. Empty matches everything.
    #[serde(rename = "match", default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<HttpMatchRequest>,
    /// Weighted destinations to forward to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer directly with a fixed response instead of forwarding.
    #[serde(
        default,
        alias = "direct_response",
        skip_serializing_if = "Option::is_none"
    )]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand the rule over to another (delegate) VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite the URI and/or authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout; unset means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection applied on the client side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Single destination that receives a copy of the traffic (see `mirrors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Deprecated integer percentage of traffic mirrored to `mirror`.
    #[serde(
        default,
        alias = "mirror_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror_percent: Option<u32>,
    /// Percentage of traffic mirrored to `mirror` (100 when unset).
    #[serde(
        default,
        alias = "mirror_percentage",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror_percentage: Option<Percent>,
    /// Destinations that each receive a copy of the traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Cross-origin resource sharing policy.
    #[serde(
        default,
        alias = "cors_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub cors_policy: Option<CorsPolicy>,
    /// Header changes applied for every destination of the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// Names the VirtualService a root rule delegates to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its namespace; the root's namespace when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// Header changes for requests and responses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Changes to the request before it is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Changes to the response before it is returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// Set, append and remove operations on headers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Headers to overwrite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Headers to append.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Header names to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// One rule for unterminated TLS traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Match blocks (at least one), ORed.
    #[serde(rename = "match", default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<TlsMatchAttributes>,
    /// Weighted destinations for the connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// One rule for opaque TCP traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Match blocks, ORed; empty matches every connection.
    #[serde(rename = "match", default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<L4MatchAttributes>,
    /// Weighted destinations for the connection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// Conditions on an HTTP request; all set conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Name for debugging; appended to the route name in access logs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Condition on the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// Condition on the URI scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// Condition on the HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Condition on the authority (Host) header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Conditions on request headers (lowercase names), or on JWT claims with
    /// `@request.auth.claims.<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Destination port the request was addressed to.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port: u32,
    /// Labels the calling workload must carry.
    #[serde(
        default,
        alias = "source_labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this condition applies to, overriding the VirtualService's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Conditions on query parameters.
    #[serde(
        default,
        alias = "query_params",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Match the URI case-insensitively.
    #[serde(default, alias = "ignore_uri_case", skip_serializing_if = "is_false")]
    pub ignore_uri_case: bool,
    /// Headers that must be absent (or not match).
    #[serde(
        default,
        alias = "without_headers",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace of the calling workload.
    #[serde(
        default,
        alias = "source_namespace",
        skip_serializing_if = "String::is_empty"
    )]
    pub source_namespace: String,
    /// Prefix for the route's statistics.
    #[serde(
        default,
        alias = "stat_prefix",
        skip_serializing_if = "String::is_empty"
    )]
    pub stat_prefix: String,
}

/// A string condition: exactly one of exact, prefix or RE2 regex.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    /// The value must equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value must start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value must fully match this RE2 regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    /// The match kind and its text, when exactly one is set (the first of several otherwise).
    pub fn kind(&self) -> Option<(StringMatchKind, &str)> {
        if let Some(v) = &self.exact {
            Some((StringMatchKind::Exact, v))
        } else if let Some(v) = &self.prefix {
            Some((StringMatchKind::Prefix, v))
        } else {
            self.regex.as_deref().map(|v| (StringMatchKind::Regex, v))
        }
    }

    /// How many of exact/prefix/regex are set (the API allows at most one).
    pub fn set_count(&self) -> usize {
        [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    }
}

/// Which alternative of a [`StringMatch`] is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StringMatchKind {
    /// Equality.
    Exact,
    /// Prefix.
    Prefix,
    /// RE2 regex.
    Regex,
}

/// A weighted HTTP destination with its own header changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where requests go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Relative share of traffic.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub weight: i32,
    /// Header changes applied only for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// A weighted TCP/TLS destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where connections go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Relative share of traffic.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub weight: i32,
}

/// Conditions on a TCP connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPs or CIDR blocks.
    #[serde(
        default,
        alias = "destination_subnets",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port: u32,
    /// Deprecated and unused: source subnet.
    #[serde(
        default,
        alias = "source_subnet",
        skip_serializing_if = "String::is_empty"
    )]
    pub source_subnet: String,
    /// Labels the calling workload must carry.
    #[serde(
        default,
        alias = "source_labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this condition applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(
        default,
        alias = "source_namespace",
        skip_serializing_if = "String::is_empty"
    )]
    pub source_namespace: String,
}

/// Conditions on an unterminated TLS connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI values to match (at least one), each a subset of the VirtualService hosts.
    #[serde(default, alias = "sni_hosts", skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
    /// Destination IPs or CIDR blocks.
    #[serde(
        default,
        alias = "destination_subnets",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub port: u32,
    /// Labels the calling workload must carry.
    #[serde(
        default,
        alias = "source_labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this condition applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(
        default,
        alias = "source_namespace",
        skip_serializing_if = "String::is_empty"
    )]
    pub source_namespace: String,
}

/// A redirect response (301 by default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replace the whole path with this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Replace the matched path prefix with this (exclusive with `uri`).
    #[serde(
        default,
        alias = "prefix_rewrite",
        skip_serializing_if = "String::is_empty"
    )]
    pub prefix_rewrite: String,
    /// Replace the authority (host) with this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// Replace the port with this (exclusive with `derivePort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Choose the port dynamically (exclusive with `port`).
    #[serde(
        default,
        alias = "derive_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub derive_port: Option<RedirectPortSelection>,
    /// Replace the scheme (`http` or `https`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    /// Status code of the redirect (3xx); 301 when unset.
    #[serde(default, alias = "redirect_code", skip_serializing_if = "is_zero_u32")]
    pub redirect_code: u32,
}

/// How a redirect picks its port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RedirectPortSelection {
    /// 80 for http, 443 for https.
    #[default]
    #[serde(rename = "FROM_PROTOCOL_DEFAULT")]
    FromProtocolDefault,
    /// The port the request arrived on.
    #[serde(rename = "FROM_REQUEST_PORT")]
    FromRequestPort,
}

/// A fixed response returned without contacting any backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// HTTP status code.
    #[serde(default)]
    pub status: u32,
    /// Response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// A response body: text or bytes (base64 in YAML/JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    /// Body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Body as raw bytes.
    #[serde(
        default,
        with = "base64_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub bytes: Option<Vec<u8>>,
}

/// URI and authority rewrites applied before forwarding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replace the matched path or prefix with this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Replace the authority (host) with this.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// Rewrite the path with a regex substitution (exclusive with `uri`).
    #[serde(
        default,
        alias = "uri_regex_rewrite",
        skip_serializing_if = "Option::is_none"
    )]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// A regex substitution on the path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 regex to find.
    #[serde(rename = "match", default, skip_serializing_if = "String::is_empty")]
    pub r#match: String,
    /// Replacement, with `\1`-style group references.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rewrite: String,
}

/// When and how often to retry a failed request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries (0 disables retries).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub attempts: i32,
    /// Timeout of each attempt.
    #[serde(
        default,
        alias = "per_try_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy retry conditions or HTTP status codes.
    #[serde(default, alias = "retry_on", skip_serializing_if = "String::is_empty")]
    pub retry_on: String,
    /// Whether retries may go to other localities.
    #[serde(
        default,
        alias = "retry_remote_localities",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_remote_localities: Option<bool>,
    /// Whether retries avoid hosts already tried (default true).
    #[serde(
        default,
        alias = "retry_ignore_previous_hosts",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

/// Cross-origin resource sharing policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated exact origins; use `allowOrigins`.
    #[serde(default, alias = "allow_origin", skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    /// Origins allowed, as string matches.
    #[serde(
        default,
        alias = "allow_origins",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_origins: Vec<StringMatch>,
    /// Methods allowed (`Access-Control-Allow-Methods`).
    #[serde(
        default,
        alias = "allow_methods",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_methods: Vec<String>,
    /// Request headers allowed (`Access-Control-Allow-Headers`).
    #[serde(
        default,
        alias = "allow_headers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_headers: Vec<String>,
    /// Response headers browsers may read (`Access-Control-Expose-Headers`).
    #[serde(
        default,
        alias = "expose_headers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose_headers: Vec<String>,
    /// How long preflight results may be cached.
    #[serde(default, alias = "max_age", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Whether credentials are allowed (`Access-Control-Allow-Credentials`).
    #[serde(
        default,
        alias = "allow_credentials",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_credentials: Option<bool>,
    /// What to do with preflight requests whose origin is not allowed.
    #[serde(
        default,
        alias = "unmatched_preflights",
        skip_serializing_if = "is_default"
    )]
    pub unmatched_preflights: UnmatchedPreflights,
}

/// Handling of preflight requests that match no allowed origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnmatchedPreflights {
    /// Not set (forwarded).
    #[default]
    #[serde(rename = "UNSPECIFIED")]
    Unspecified,
    /// Forward them upstream.
    #[serde(rename = "FORWARD")]
    Forward,
    /// Answer them without CORS headers, not forwarding.
    #[serde(rename = "IGNORE")]
    Ignore,
}

/// Faults injected into matching requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HttpFaultInjectionDelay>,
    /// Fail requests with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<HttpFaultInjectionAbort>,
}

/// An injected delay.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjectionDelay {
    /// Deprecated integer percentage; use `percentage`.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub percent: i32,
    /// Fixed delay (exclusive with `exponentialDelay`).
    #[serde(
        default,
        alias = "fixed_delay",
        skip_serializing_if = "Option::is_none"
    )]
    pub fixed_delay: Option<Duration>,
    /// Exponential delay (not supported by Istio yet).
    #[serde(
        default,
        alias = "exponential_delay",
        skip_serializing_if = "Option::is_none"
    )]
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// An injected error; exactly one of the error kinds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjectionAbort {
    /// HTTP status to answer with.
    #[serde(
        default,
        alias = "http_status",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_status: Option<i32>,
    /// gRPC status name to answer with (`UNAVAILABLE`, ...).
    #[serde(
        default,
        alias = "grpc_status",
        skip_serializing_if = "Option::is_none"
    )]
    pub grpc_status: Option<String>,
    /// HTTP/2 error (not supported by Istio yet).
    #[serde(
        default,
        alias = "http2_error",
        skip_serializing_if = "Option::is_none"
    )]
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// One mirror destination with its share of traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Where copies go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Share of traffic copied (100 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// A percentage in 0.0..=100.0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    /// The percentage.
    #[serde(default)]
    pub value: f64,
}
