//! `istio.mesh.v1alpha1.ProxyConfig` (MeshConfig `defaultConfig` and the
//! `proxy.istio.io/config` annotation) and the messages it uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::networking::proxy_config::ProxyImage;
use crate::serde_util::{is_false, is_zero_f64, is_zero_i32, is_zero_u32};
use crate::validate::addresses::validate_proxy_address;
use crate::validate::durations::validate_duration;
use crate::validate::ports::validate_port;
use crate::validate::{Path, Report};

/// How a proxy authenticates to the control plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthenticationPolicy {
    /// Plain text.
    #[default]
    #[serde(rename = "NONE")]
    None,
    /// Mutual TLS.
    #[serde(rename = "MUTUAL_TLS")]
    MutualTls,
    /// Use the parent scope's policy (not allowed mesh-wide).
    #[serde(rename = "INHERIT")]
    Inherit,
}

/// Tracing performed by the proxy (legacy mesh-wide tracing settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    /// Zipkin tracer (oneof tracer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<Zipkin>,
    /// Lightstep tracer (deprecated; oneof tracer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightstep: Option<Lightstep>,
    /// Datadog tracer (oneof tracer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<Datadog>,
    /// Stackdriver tracer (oneof tracer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stackdriver: Option<Stackdriver>,
    /// OpenCensus agent tracer (oneof tracer).
    #[serde(
        default,
        alias = "open_census_agent",
        skip_serializing_if = "Option::is_none"
    )]
    pub open_census_agent: Option<OpenCensusAgent>,
    /// Tags added to every span, by tag name.
    #[serde(
        default,
        alias = "custom_tags",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Maximum request-path length in the URL tag.
    #[serde(
        default,
        alias = "max_path_tag_length",
        skip_serializing_if = "is_zero_u32"
    )]
    pub max_path_tag_length: u32,
    /// Sampling percentage (0.0-100.0).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub sampling: f64,
    /// TLS to the tracing backend.
    #[serde(
        default,
        alias = "tls_settings",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_settings: Option<crate::networking::destination_rule::ClientTlsSettings>,
    /// Whether Istio-specific tags are added to spans.
    #[serde(
        default,
        alias = "enable_istio_tags",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_istio_tags: Option<bool>,
}

/// Zipkin collector address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Zipkin {
    /// `host:port` of the collector.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
}

/// Lightstep satellite settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lightstep {
    /// `host:port` of the satellite pool.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Access token.
    #[serde(
        default,
        alias = "access_token",
        skip_serializing_if = "String::is_empty"
    )]
    pub access_token: String,
}

/// Datadog agent address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Datadog {
    /// `host:port` of the agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
}

/// Stackdriver tracer limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stackdriver {
    /// Print traces to stdout.
    #[serde(default, skip_serializing_if = "is_false")]
    pub debug: bool,
    /// Maximum attributes per span.
    #[serde(
        default,
        alias = "max_number_of_attributes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_number_of_attributes: Option<i64>,
    /// Maximum annotations per span.
    #[serde(
        default,
        alias = "max_number_of_annotations",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_number_of_annotations: Option<i64>,
    /// Maximum message events per span.
    #[serde(
        default,
        alias = "max_number_of_message_events",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_number_of_message_events: Option<i64>,
}

/// Trace-context propagation formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TraceContext {
    /// Unset.
    #[default]
    #[serde(rename = "UNSPECIFIED")]
    Unspecified,
    /// W3C `traceparent`.
    #[serde(rename = "W3C_TRACE_CONTEXT")]
    W3cTraceContext,
    /// gRPC `grpc-trace-bin`.
    #[serde(rename = "GRPC_BIN")]
    GrpcBin,
    /// `X-Cloud-Trace-Context`.
    #[serde(rename = "CLOUD_TRACE_CONTEXT")]
    CloudTraceContext,
    /// Multi-header B3.
    #[serde(rename = "B3")]
    B3,
}

/// OpenCensus agent tracer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenCensusAgent {
    /// gRPC address of the agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Propagation formats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<TraceContext>,
}

/// A custom span tag; exactly one source is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomTag {
    /// A fixed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<crate::telemetry::Literal>,
    /// A proxy environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<crate::telemetry::Environment>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<crate::telemetry::RequestHeader>,
}

/// Legacy SDS settings of the proxy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sds {
    /// SDS enabled.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Path of the service-account JWT.
    #[serde(
        default,
        alias = "k8s_sa_jwt_path",
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_sa_jwt_path: String,
}

/// Client-certificate (XFCC) header handling at gateways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForwardClientCertDetails {
    /// Unset.
    #[default]
    #[serde(rename = "UNDEFINED")]
    Undefined,
    /// Drop the header.
    #[serde(rename = "SANITIZE")]
    Sanitize,
    /// Forward it for mTLS clients.
    #[serde(rename = "FORWARD_ONLY")]
    ForwardOnly,
    /// Append client details and forward.
    #[serde(rename = "APPEND_FORWARD")]
    AppendForward,
    /// Replace with client details.
    #[serde(rename = "SANITIZE_SET")]
    SanitizeSet,
    /// Always forward.
    #[serde(rename = "ALWAYS_FORWARD_ONLY")]
    AlwaysForwardOnly,
}

/// Where a gateway sits relative to trusted proxies in front of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// Number of trusted proxies in front of the gateway.
    #[serde(
        default,
        alias = "num_trusted_proxies",
        skip_serializing_if = "is_zero_u32"
    )]
    pub num_trusted_proxies: u32,
    /// XFCC header handling.
    #[serde(
        default,
        alias = "forward_client_cert_details",
        skip_serializing_if = "Option::is_none"
    )]
    pub forward_client_cert_details: Option<ForwardClientCertDetails>,
    /// Enables the PROXY protocol on the gateway's listeners.
    #[serde(
        default,
        alias = "proxy_protocol",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy_protocol: Option<ProxyProtocolConfiguration>,
}

/// PROXY protocol on gateway listeners (no settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocolConfiguration {}

/// Hardware-accelerated private-key operations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivateKeyProvider {
    /// Intel CryptoMB (oneof provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cryptomb: Option<CryptoMb>,
    /// Intel QAT (oneof provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat: Option<Qat>,
}

/// CryptoMB settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CryptoMb {
    /// How long to wait before processing a partly full queue (non-zero).
    #[serde(default, alias = "poll_delay", skip_serializing_if = "Option::is_none")]
    pub poll_delay: Option<Duration>,
    /// Fall back to software when the hardware is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<bool>,
}

/// QAT settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Qat {
    /// How long to wait before polling the hardware (non-zero).
    #[serde(default, alias = "poll_delay", skip_serializing_if = "Option::is_none")]
    pub poll_delay: Option<Duration>,
    /// Fall back to software when the hardware is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<bool>,
}

/// Service names used in trace spans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TracingServiceName {
    /// `app` label and namespace.
    #[default]
    #[serde(rename = "APP_LABEL_AND_NAMESPACE")]
    AppLabelAndNamespace,
    /// Canonical name only.
    #[serde(rename = "CANONICAL_NAME_ONLY")]
    CanonicalNameOnly,
    /// Canonical name and namespace.
    #[serde(rename = "CANONICAL_NAME_AND_NAMESPACE")]
    CanonicalNameAndNamespace,
}

/// How inbound traffic is redirected to the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InboundInterceptionMode {
    /// iptables REDIRECT.
    #[default]
    #[serde(rename = "REDIRECT")]
    Redirect,
    /// iptables TPROXY.
    #[serde(rename = "TPROXY")]
    Tproxy,
    /// No redirection.
    #[serde(rename = "NONE")]
    None,
}

/// Extra Envoy stats to create.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyStatsMatcher {
    /// Stat-name prefixes.
    #[serde(
        default,
        alias = "inclusion_prefixes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub inclusion_prefixes: Vec<String>,
    /// Stat-name suffixes.
    #[serde(
        default,
        alias = "inclusion_suffixes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub inclusion_suffixes: Vec<String>,
    /// Stat-name regexes.
    #[serde(
        default,
        alias = "inclusion_regexps",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub inclusion_regexps: Vec<String>,
}

/// A remote service the proxy talks to (access-log or metrics service).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteService {
    /// `host:port` of the service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// TLS to the service.
    #[serde(
        default,
        alias = "tls_settings",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_settings: Option<crate::networking::destination_rule::ClientTlsSettings>,
    /// TCP keepalive.
    #[serde(
        default,
        alias = "tcp_keepalive",
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_keepalive: Option<crate::networking::destination_rule::TcpKeepalive>,
}

/// Headers the proxy adds or passes on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyHeaders {
    /// XFCC header handling.
    #[serde(
        default,
        alias = "forwarded_client_cert",
        skip_serializing_if = "Option::is_none"
    )]
    pub forwarded_client_cert: Option<ForwardClientCertDetails>,
    /// Which client-certificate details go into XFCC.
    #[serde(
        default,
        alias = "set_current_client_cert_details",
        skip_serializing_if = "Option::is_none"
    )]
    pub set_current_client_cert_details: Option<SetCurrentClientCertDetails>,
    /// `x-request-id` generation.
    #[serde(default, alias = "request_id", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// `server` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
    /// `x-envoy-attempt-count` header.
    #[serde(
        default,
        alias = "attempt_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_count: Option<AttemptCount>,
    /// `x-envoy-*` debug headers.
    #[serde(
        default,
        alias = "envoy_debug_headers",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_debug_headers: Option<EnvoyDebugHeaders>,
    /// Metadata-exchange headers.
    #[serde(
        default,
        alias = "metadata_exchange_headers",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_exchange_headers: Option<MetadataExchangeHeaders>,
    /// Keep the case of HTTP/1 header names.
    #[serde(
        default,
        alias = "preserve_http1_header_case",
        skip_serializing_if = "Option::is_none"
    )]
    pub preserve_http1_header_case: Option<bool>,
    /// `x-forwarded-host` header.
    #[serde(
        default,
        alias = "x_forwarded_host",
        skip_serializing_if = "Option::is_none"
    )]
    pub x_forwarded_host: Option<XForwardedHost>,
    /// `x-forwarded-port` header.
    #[serde(
        default,
        alias = "x_forwarded_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub x_forwarded_port: Option<XForwardedPort>,
}

/// Client-certificate fields copied into XFCC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetCurrentClientCertDetails {
    /// Subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<bool>,
    /// Whole certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<bool>,
    /// Certificate chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<bool>,
    /// DNS SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<bool>,
    /// URI SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<bool>,
}

/// `x-request-id` settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestId {
    /// Do not generate request IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// `server` header settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// Do not set the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Header value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// `x-envoy-attempt-count` settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttemptCount {
    /// Do not set the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// Envoy debug-header settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyDebugHeaders {
    /// Do not add debug headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// Metadata-exchange header settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataExchangeHeaders {
    /// When the headers are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MetadataExchangeMode>,
}

/// When metadata-exchange headers are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetadataExchangeMode {
    /// Always.
    #[default]
    #[serde(rename = "UNDEFINED")]
    Undefined,
    /// Only to destinations in the mesh.
    #[serde(rename = "IN_MESH")]
    InMesh,
}

/// `x-forwarded-host` settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XForwardedHost {
    /// Add the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `x-forwarded-port` settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XForwardedPort {
    /// Add the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Mesh `ProxyConfig`: settings of every Envoy proxy (defaults, overridable per workload).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Directory for generated configuration.
    #[serde(
        default,
        alias = "config_path",
        skip_serializing_if = "String::is_empty"
    )]
    pub config_path: String,
    /// Path of the proxy binary.
    #[serde(
        default,
        alias = "binary_path",
        skip_serializing_if = "String::is_empty"
    )]
    pub binary_path: String,
    /// Envoy `service_cluster` (oneof cluster_name).
    #[serde(
        default,
        alias = "service_cluster",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_cluster: Option<String>,
    /// Naming scheme for the `service_cluster` (oneof cluster_name).
    #[serde(
        default,
        alias = "tracing_service_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub tracing_service_name: Option<TracingServiceName>,
    /// Connection drain time on hot restart (whole seconds).
    #[serde(
        default,
        alias = "drain_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain_duration: Option<Duration>,
    /// Parent shutdown time on hot restart.
    #[serde(
        default,
        alias = "parent_shutdown_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_shutdown_duration: Option<Duration>,
    /// `host:port` of the xDS server.
    #[serde(
        default,
        alias = "discovery_address",
        skip_serializing_if = "String::is_empty"
    )]
    pub discovery_address: String,
    /// Deprecated discovery refresh delay.
    #[serde(
        default,
        alias = "discovery_refresh_delay",
        skip_serializing_if = "Option::is_none"
    )]
    pub discovery_refresh_delay: Option<Duration>,
    /// Deprecated Zipkin address (use `tracing`).
    #[serde(
        default,
        alias = "zipkin_address",
        skip_serializing_if = "String::is_empty"
    )]
    pub zipkin_address: String,
    /// `host:port` of a statsd UDP listener.
    #[serde(
        default,
        alias = "statsd_udp_address",
        skip_serializing_if = "String::is_empty"
    )]
    pub statsd_udp_address: String,
    /// Deprecated metrics-service address (use `envoy_metrics_service`).
    #[serde(
        default,
        alias = "envoy_metrics_service_address",
        skip_serializing_if = "String::is_empty"
    )]
    pub envoy_metrics_service_address: String,
    /// Envoy admin port.
    #[serde(
        default,
        alias = "proxy_admin_port",
        skip_serializing_if = "is_zero_i32"
    )]
    pub proxy_admin_port: i32,
    /// Deprecated availability zone.
    #[serde(
        default,
        alias = "availability_zone",
        skip_serializing_if = "String::is_empty"
    )]
    pub availability_zone: String,
    /// Authentication to the control plane.
    #[serde(
        default,
        alias = "control_plane_auth_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub control_plane_auth_policy: Option<AuthenticationPolicy>,
    /// Custom proxy configuration file.
    #[serde(
        default,
        alias = "custom_config_file",
        skip_serializing_if = "String::is_empty"
    )]
    pub custom_config_file: String,
    /// Maximum length of metric names.
    #[serde(
        default,
        alias = "stat_name_length",
        skip_serializing_if = "is_zero_i32"
    )]
    pub stat_name_length: i32,
    /// Worker threads (0: one per core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// Path of the bootstrap template.
    #[serde(
        default,
        alias = "proxy_bootstrap_template_path",
        skip_serializing_if = "String::is_empty"
    )]
    pub proxy_bootstrap_template_path: String,
    /// Inbound redirection mode.
    #[serde(
        default,
        alias = "interception_mode",
        skip_serializing_if = "Option::is_none"
    )]
    pub interception_mode: Option<InboundInterceptionMode>,
    /// Tracing settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    /// Deprecated SDS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds: Option<Sds>,
    /// Envoy access-log service.
    #[serde(
        default,
        alias = "envoy_access_log_service",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_access_log_service: Option<RemoteService>,
    /// Envoy metrics service.
    #[serde(
        default,
        alias = "envoy_metrics_service",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_metrics_service: Option<RemoteService>,
    /// Extra proxy environment (`ISTIO_META_*` goes to the xDS server).
    #[serde(
        default,
        alias = "proxy_metadata",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub proxy_metadata: BTreeMap<String, String>,
    /// Envoy runtime values set at bootstrap.
    #[serde(
        default,
        alias = "runtime_values",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub runtime_values: BTreeMap<String, String>,
    /// Agent status port.
    #[serde(default, alias = "status_port", skip_serializing_if = "is_zero_i32")]
    pub status_port: i32,
    /// Extra stat tags to extract.
    #[serde(
        default,
        alias = "extra_stat_tags",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extra_stat_tags: Vec<String>,
    /// Gateway topology.
    #[serde(
        default,
        alias = "gateway_topology",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_topology: Option<Topology>,
    /// Time allowed for connections to finish at shutdown.
    #[serde(
        default,
        alias = "termination_drain_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub termination_drain_duration: Option<Duration>,
    /// Mesh ID.
    #[serde(default, alias = "mesh_id", skip_serializing_if = "String::is_empty")]
    pub mesh_id: String,
    /// VM readiness probe.
    #[serde(
        default,
        alias = "readiness_probe",
        skip_serializing_if = "Option::is_none"
    )]
    pub readiness_probe: Option<crate::networking::workload::ReadinessProbe>,
    /// Extra Envoy stats.
    #[serde(
        default,
        alias = "proxy_stats_matcher",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy_stats_matcher: Option<ProxyStatsMatcher>,
    /// Hold the application until the proxy is ready.
    #[serde(
        default,
        alias = "hold_application_until_proxy_starts",
        skip_serializing_if = "Option::is_none"
    )]
    pub hold_application_until_proxy_starts: Option<bool>,
    /// Extra root certificates (PEM).
    #[serde(
        default,
        alias = "ca_certificates_pem",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ca_certificates_pem: Vec<String>,
    /// Proxy image variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ProxyImage>,
    /// Private-key provider.
    #[serde(
        default,
        alias = "private_key_provider",
        skip_serializing_if = "Option::is_none"
    )]
    pub private_key_provider: Option<PrivateKeyProvider>,
    /// Header handling.
    #[serde(
        default,
        alias = "proxy_headers",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy_headers: Option<ProxyHeaders>,
    /// Access-log file flush interval.
    #[serde(
        default,
        alias = "file_flush_interval",
        skip_serializing_if = "Option::is_none"
    )]
    pub file_flush_interval: Option<Duration>,
    /// Access-log buffer size (KiB) before a flush.
    #[serde(
        default,
        alias = "file_flush_min_size_kb",
        skip_serializing_if = "Option::is_none"
    )]
    pub file_flush_min_size_kb: Option<u32>,
}

fn err(report: &mut Report, path: &Path, msg: String) {
    report.error(path, msg);
}

/// Istio's `ValidateMeshConfigProxyConfig`, applied to the fields that are written (Istio
/// validates after filling in its defaults, which always pass).
pub(crate) fn validate_proxy_config(pc: &ProxyConfig, path: &Path, report: &mut Report) {
    if pc.service_cluster.is_some() && pc.tracing_service_name.is_some() {
        err(
            report,
            path,
            "only one of serviceCluster or tracingServiceName may be set".into(),
        );
    }
    if pc.service_cluster.as_deref() == Some("") {
        err(
            report,
            &path.field("serviceCluster"),
            "service cluster must be specified".into(),
        );
    }
    if let Some(d) = pc.drain_duration {
        let p = path.field("drainDuration");
        match validate_duration(d) {
            Err(e) => err(report, &p, format!("invalid drain duration: {e}")),
            Ok(()) if d.get().subsec_nanos() != 0 => err(
                report,
                &p,
                "drain time only supports durations to seconds precision".into(),
            ),
            Ok(()) => {}
        }
    }
    if !pc.discovery_address.is_empty()
        && let Err(e) = validate_proxy_address(&pc.discovery_address)
    {
        err(
            report,
            &path.field("discoveryAddress"),
            format!("invalid discovery address: {e}"),
        );
    }
    if let Some(t) = &pc.tracing {
        let tp = path.field("tracing");
        let tracers = usize::from(t.zipkin.is_some())
            + usize::from(t.lightstep.is_some())
            + usize::from(t.datadog.is_some())
            + usize::from(t.stackdriver.is_some())
            + usize::from(t.open_census_agent.is_some());
        if tracers > 1 {
            err(
                report,
                &tp,
                "only one of zipkin, lightstep, datadog, stackdriver or openCensusAgent may be set"
                    .into(),
            );
        }
        if let Some(ls) = &t.lightstep {
            let lp = tp.field("lightstep");
            if ls.address.is_empty() {
                err(
                    report,
                    &lp.field("address"),
                    "invalid lightstep config: address is required".into(),
                );
            }
            if let Err(e) = validate_proxy_address(&ls.address) {
                err(
                    report,
                    &lp.field("address"),
                    format!("invalid lightstep config: invalid lightstep address: {e}"),
                );
            }
            if ls.access_token.is_empty() {
                err(
                    report,
                    &lp.field("accessToken"),
                    "invalid lightstep config: access token is required".into(),
                );
            }
        }
        if let Some(z) = &t.zipkin
            && let Err(e) =
                validate_proxy_address(&z.address.replacen("$(HOST_IP)", "127.0.0.1", 1))
        {
            err(
                report,
                &tp.field("zipkin").field("address"),
                format!("invalid zipkin config: {e}"),
            );
        }
        if let Some(d) = &t.datadog
            && let Err(e) =
                validate_proxy_address(&d.address.replacen("$(HOST_IP)", "127.0.0.1", 1))
        {
            err(
                report,
                &tp.field("datadog").field("address"),
                format!("invalid datadog config: {e}"),
            );
        }
        if !(0.0..=100.0).contains(&t.sampling) {
            err(
                report,
                &tp.field("sampling"),
                format!("sampling {} must be in the range 0.0..100.0", t.sampling),
            );
        }
        for (name, tag) in &t.custom_tags {
            let n = usize::from(tag.literal.is_some())
                + usize::from(tag.environment.is_some())
                + usize::from(tag.header.is_some());
            if n > 1 {
                err(
                    report,
                    &tp.field("customTags").key(name),
                    "invalid tracing custom tags: only one of literal, environment or header may be set".into(),
                );
            }
        }
    }
    if !pc.statsd_udp_address.is_empty()
        && let Err(e) = validate_proxy_address(&pc.statsd_udp_address)
    {
        err(
            report,
            &path.field("statsdUdpAddress"),
            format!(
                "invalid statsd udp address {:?}: {e}",
                pc.statsd_udp_address
            ),
        );
    }
    if !pc.envoy_metrics_service_address.is_empty() {
        let p = path.field("envoyMetricsServiceAddress");
        match validate_proxy_address(&pc.envoy_metrics_service_address) {
            Err(e) => err(
                report,
                &p,
                format!(
                    "invalid envoy metrics service address {:?}: {e}",
                    pc.envoy_metrics_service_address
                ),
            ),
            Ok(()) => report.warning(
                &p,
                "EnvoyMetricsServiceAddress is deprecated, use EnvoyMetricsService instead.",
            ),
        }
    }
    for (field, svc, what) in [
        (
            "envoyMetricsService",
            &pc.envoy_metrics_service,
            "envoy metrics service",
        ),
        (
            "envoyAccessLogService",
            &pc.envoy_access_log_service,
            "envoy access log service",
        ),
    ] {
        if let Some(s) = svc
            && !s.address.is_empty()
            && let Err(e) = validate_proxy_address(&s.address)
        {
            err(
                report,
                &path.field(field).field("address"),
                format!("invalid {what} address {:?}: {e}", s.address),
            );
        }
    }
    if pc.proxy_admin_port != 0
        && let Err(e) = validate_port(i64::from(pc.proxy_admin_port))
    {
        err(
            report,
            &path.field("proxyAdminPort"),
            format!("invalid proxy admin port: {e}"),
        );
    }
    if pc.control_plane_auth_policy == Some(AuthenticationPolicy::Inherit) {
        err(
            report,
            &path.field("controlPlaneAuthPolicy"),
            "invalid authentication policy: unrecognized control plane auth policy \"INHERIT\" (allowed: NONE, MUTUAL_TLS)".into(),
        );
    }
    if pc.status_port != 0
        && let Err(e) = validate_port(i64::from(pc.status_port))
    {
        err(
            report,
            &path.field("statusPort"),
            format!("invalid status port: {e}"),
        );
    }
    if let Some(c) = pc.concurrency
        && c < 0
    {
        err(
            report,
            &path.field("concurrency"),
            "concurrency must be greater than or equal to 0".into(),
        );
    }
    if let Some(pkp) = &pc.private_key_provider {
        let pp = path.field("privateKeyProvider");
        let prefix = "invalid private key provider configuration";
        match (&pkp.cryptomb, &pkp.qat) {
            (None, None) => err(
                report,
                &pp,
                format!("{prefix}: private key provider configuration is required"),
            ),
            (Some(_), Some(_)) => err(
                report,
                &pp,
                format!("{prefix}: only one of cryptomb or qat may be set"),
            ),
            _ => {}
        }
        for (name, delay) in [
            ("cryptomb", pkp.cryptomb.as_ref().map(|c| c.poll_delay)),
            ("qat", pkp.qat.as_ref().map(|q| q.poll_delay)),
        ] {
            match delay {
                Some(None) => err(
                    report,
                    &pp.field(name).field("pollDelay"),
                    format!("{prefix}: pollDelay is required"),
                ),
                Some(Some(d)) if d.get().is_zero() => err(
                    report,
                    &pp.field(name).field("pollDelay"),
                    format!("{prefix}: pollDelay must be non zero"),
                ),
                _ => {}
            }
        }
    }
}
