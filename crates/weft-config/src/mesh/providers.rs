//! MeshConfig `extensionProviders`: external authorizers, tracers, metrics and access-log
//! backends that Telemetry and AuthorizationPolicy refer to by name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::proxy::TraceContext;
use crate::duration::Duration;
use crate::serde_util::{is_false, is_zero_u32};
use crate::validate::addresses::validate_ip_address;
use crate::validate::hosts::{validate_fqdn, validate_namespace_slash_wildcard_hostname};
use crate::validate::ports::validate_port;

/// A named extension provider; exactly one provider kind is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Unique provider name.
    #[serde(default)]
    pub name: String,
    /// External authorization over HTTP.
    #[serde(
        default,
        alias = "envoy_ext_authz_http",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_ext_authz_http: Option<EnvoyExternalAuthorizationHttpProvider>,
    /// External authorization over gRPC.
    #[serde(
        default,
        alias = "envoy_ext_authz_grpc",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_ext_authz_grpc: Option<EnvoyExternalAuthorizationGrpcProvider>,
    /// Zipkin tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<ZipkinTracingProvider>,
    /// Lightstep tracing (deprecated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightstep: Option<LightstepTracingProvider>,
    /// Datadog tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<DatadogTracingProvider>,
    /// Stackdriver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stackdriver: Option<StackdriverProvider>,
    /// OpenCensus agent tracing (deprecated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opencensus: Option<OpenCensusAgentTracingProvider>,
    /// Apache SkyWalking tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skywalking: Option<SkyWalkingTracingProvider>,
    /// OpenTelemetry tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opentelemetry: Option<OpenTelemetryTracingProvider>,
    /// Prometheus metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetricsProvider>,
    /// Envoy file access log.
    #[serde(
        default,
        alias = "envoy_file_access_log",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_file_access_log: Option<EnvoyFileAccessLogProvider>,
    /// Envoy gRPC access-log service for HTTP.
    #[serde(
        default,
        alias = "envoy_http_als",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_http_als: Option<EnvoyHttpGrpcV3LogProvider>,
    /// Envoy gRPC access-log service for TCP.
    #[serde(
        default,
        alias = "envoy_tcp_als",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_tcp_als: Option<EnvoyTcpGrpcV3LogProvider>,
    /// Envoy OpenTelemetry access log.
    #[serde(
        default,
        alias = "envoy_otel_als",
        skip_serializing_if = "Option::is_none"
    )]
    pub envoy_otel_als: Option<EnvoyOpenTelemetryLogProvider>,
    /// SDS-based provider (secrets by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds: Option<SdsProvider>,
}

/// Request-body settings of an external authorization check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyExternalAuthorizationRequestBody {
    /// Maximum body bytes buffered.
    #[serde(
        default,
        alias = "max_request_bytes",
        skip_serializing_if = "is_zero_u32"
    )]
    pub max_request_bytes: u32,
    /// Send a partial body instead of failing with 413.
    #[serde(
        default,
        alias = "allow_partial_message",
        skip_serializing_if = "is_false"
    )]
    pub allow_partial_message: bool,
    /// Send the body as raw bytes (gRPC only).
    #[serde(default, alias = "pack_as_bytes", skip_serializing_if = "is_false")]
    pub pack_as_bytes: bool,
}

/// External authorization service over HTTP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyExternalAuthorizationHttpProvider {
    /// `[namespace/]hostname` of the service.
    #[serde(default)]
    pub service: String,
    /// Service port.
    #[serde(default)]
    pub port: u32,
    /// Check timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Prefix added to the check request path.
    #[serde(
        default,
        alias = "path_prefix",
        skip_serializing_if = "String::is_empty"
    )]
    pub path_prefix: String,
    /// Allow requests when the service fails.
    #[serde(default, alias = "fail_open", skip_serializing_if = "is_false")]
    pub fail_open: bool,
    /// HTTP status returned when the service is unreachable.
    #[serde(
        default,
        alias = "status_on_error",
        skip_serializing_if = "String::is_empty"
    )]
    pub status_on_error: String,
    /// Deprecated: request headers sent to the service.
    #[serde(
        default,
        alias = "include_headers_in_check",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub include_headers_in_check: Vec<String>,
    /// Request headers sent to the service.
    #[serde(
        default,
        alias = "include_request_headers_in_check",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub include_request_headers_in_check: Vec<String>,
    /// Fixed headers added to the check request.
    #[serde(
        default,
        alias = "include_additional_headers_in_check",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Body sent to the service.
    #[serde(
        default,
        alias = "include_request_body_in_check",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_request_body_in_check: Option<EnvoyExternalAuthorizationRequestBody>,
    /// Service headers forwarded upstream on allow.
    #[serde(
        default,
        alias = "headers_to_upstream_on_allow",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Service headers returned downstream on deny.
    #[serde(
        default,
        alias = "headers_to_downstream_on_deny",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Service headers returned downstream on allow.
    #[serde(
        default,
        alias = "headers_to_downstream_on_allow",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// External authorization service over gRPC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyExternalAuthorizationGrpcProvider {
    /// `[namespace/]hostname` of the service.
    #[serde(default)]
    pub service: String,
    /// Service port.
    #[serde(default)]
    pub port: u32,
    /// Check timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Allow requests when the service fails.
    #[serde(default, alias = "fail_open", skip_serializing_if = "is_false")]
    pub fail_open: bool,
    /// HTTP status returned when the service is unreachable.
    #[serde(
        default,
        alias = "status_on_error",
        skip_serializing_if = "String::is_empty"
    )]
    pub status_on_error: String,
    /// Body sent to the service.
    #[serde(
        default,
        alias = "include_request_body_in_check",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_request_body_in_check: Option<EnvoyExternalAuthorizationRequestBody>,
}

/// Trace-context headers a Zipkin tracer uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TraceContextOption {
    /// B3 headers only.
    #[default]
    #[serde(rename = "USE_B3")]
    UseB3,
    /// B3 and W3C trace context.
    #[serde(rename = "USE_B3_WITH_W3C_PROPAGATION")]
    UseB3WithW3cPropagation,
}

/// Zipkin tracer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZipkinTracingProvider {
    /// `[namespace/]hostname` of the collector.
    #[serde(default)]
    pub service: String,
    /// Collector port.
    #[serde(default)]
    pub port: u32,
    /// Maximum tag length.
    #[serde(default, alias = "max_tag_length", skip_serializing_if = "is_zero_u32")]
    pub max_tag_length: u32,
    /// Use 64-bit trace IDs.
    #[serde(
        default,
        alias = "enable_64bit_trace_id",
        rename = "enable64bitTraceId",
        skip_serializing_if = "is_false"
    )]
    pub enable_64bit_trace_id: bool,
    /// Collector endpoint path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Trace-context headers.
    #[serde(
        default,
        alias = "trace_context_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub trace_context_option: Option<TraceContextOption>,
    /// Export timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Headers added to export requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}

/// Lightstep tracer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LightstepTracingProvider {
    /// `[namespace/]hostname` of the collector.
    #[serde(default)]
    pub service: String,
    /// Collector port.
    #[serde(default)]
    pub port: u32,
    /// Access token.
    #[serde(
        default,
        alias = "access_token",
        skip_serializing_if = "String::is_empty"
    )]
    pub access_token: String,
    /// Maximum tag length.
    #[serde(default, alias = "max_tag_length", skip_serializing_if = "is_zero_u32")]
    pub max_tag_length: u32,
}

/// Datadog tracer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatadogTracingProvider {
    /// `[namespace/]hostname` of the agent.
    #[serde(default)]
    pub service: String,
    /// Agent port.
    #[serde(default)]
    pub port: u32,
    /// Maximum tag length.
    #[serde(default, alias = "max_tag_length", skip_serializing_if = "is_zero_u32")]
    pub max_tag_length: u32,
}

/// SkyWalking tracer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkyWalkingTracingProvider {
    /// `[namespace/]hostname` of the receiver.
    #[serde(default)]
    pub service: String,
    /// Receiver port.
    #[serde(default)]
    pub port: u32,
    /// OAP access token.
    #[serde(
        default,
        alias = "access_token",
        skip_serializing_if = "String::is_empty"
    )]
    pub access_token: String,
}

/// Stackdriver provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackdriverProvider {
    /// Deprecated: print traces to stdout.
    #[serde(default, skip_serializing_if = "is_false")]
    pub debug: bool,
    /// Deprecated: maximum attributes per span.
    #[serde(
        default,
        alias = "max_number_of_attributes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_number_of_attributes: Option<i64>,
    /// Deprecated: maximum annotations per span.
    #[serde(
        default,
        alias = "max_number_of_annotations",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_number_of_annotations: Option<i64>,
    /// Deprecated: maximum message events per span.
    #[serde(
        default,
        alias = "max_number_of_message_events",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_number_of_message_events: Option<i64>,
    /// Maximum tag length.
    #[serde(default, alias = "max_tag_length", skip_serializing_if = "is_zero_u32")]
    pub max_tag_length: u32,
    /// Logging settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<StackdriverLogging>,
}

/// Stackdriver logging labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackdriverLogging {
    /// Tag name to expression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// OpenCensus agent tracer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenCensusAgentTracingProvider {
    /// `[namespace/]hostname` of the agent.
    #[serde(default)]
    pub service: String,
    /// Agent port.
    #[serde(default)]
    pub port: u32,
    /// Propagation formats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<TraceContext>,
    /// Maximum tag length.
    #[serde(default, alias = "max_tag_length", skip_serializing_if = "is_zero_u32")]
    pub max_tag_length: u32,
}

/// Prometheus metrics (no settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusMetricsProvider {}

/// Envoy access log written to a file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFileAccessLogProvider {
    /// File path (`/dev/stdout` when unset).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Log format.
    #[serde(default, alias = "log_format", skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// Format of a file access log: text or JSON labels (oneof).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogFormat {
    /// Text format with Envoy command operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// JSON format: field name to command operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Value>,
    /// Leave out empty values.
    #[serde(
        default,
        alias = "omit_empty_values",
        skip_serializing_if = "Option::is_none"
    )]
    pub omit_empty_values: Option<bool>,
}

/// Envoy gRPC access-log service for HTTP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyHttpGrpcV3LogProvider {
    /// `[namespace/]hostname` of the service.
    #[serde(default)]
    pub service: String,
    /// Service port.
    #[serde(default)]
    pub port: u32,
    /// Log name.
    #[serde(default, alias = "log_name", skip_serializing_if = "String::is_empty")]
    pub log_name: String,
    /// Extra filter-state objects.
    #[serde(
        default,
        alias = "filter_state_objects_to_log",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub filter_state_objects_to_log: Vec<String>,
    /// Extra request headers.
    #[serde(
        default,
        alias = "additional_request_headers_to_log",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_request_headers_to_log: Vec<String>,
    /// Extra response headers.
    #[serde(
        default,
        alias = "additional_response_headers_to_log",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_response_headers_to_log: Vec<String>,
    /// Extra response trailers.
    #[serde(
        default,
        alias = "additional_response_trailers_to_log",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub additional_response_trailers_to_log: Vec<String>,
}

/// Envoy gRPC access-log service for TCP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyTcpGrpcV3LogProvider {
    /// `[namespace/]hostname` of the service.
    #[serde(default)]
    pub service: String,
    /// Service port.
    #[serde(default)]
    pub port: u32,
    /// Log name.
    #[serde(default, alias = "log_name", skip_serializing_if = "String::is_empty")]
    pub log_name: String,
    /// Extra filter-state objects.
    #[serde(
        default,
        alias = "filter_state_objects_to_log",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub filter_state_objects_to_log: Vec<String>,
}

/// Envoy OpenTelemetry access log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyOpenTelemetryLogProvider {
    /// `[namespace/]hostname` of the collector.
    #[serde(default)]
    pub service: String,
    /// Collector port.
    #[serde(default)]
    pub port: u32,
    /// Log name.
    #[serde(default, alias = "log_name", skip_serializing_if = "String::is_empty")]
    pub log_name: String,
    /// Log format.
    #[serde(default, alias = "log_format", skip_serializing_if = "Option::is_none")]
    pub log_format: Option<OtelLogFormat>,
}

/// Format of an OpenTelemetry access log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelLogFormat {
    /// Body text with Envoy command operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Attributes: name to command operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Value>,
}

/// OpenTelemetry tracer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetryTracingProvider {
    /// `[namespace/]hostname` of the OTLP endpoint.
    #[serde(default)]
    pub service: String,
    /// Endpoint port.
    #[serde(default)]
    pub port: u32,
    /// Maximum tag length.
    #[serde(default, alias = "max_tag_length", skip_serializing_if = "is_zero_u32")]
    pub max_tag_length: u32,
    /// Export over HTTP (gRPC when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpService>,
    /// gRPC export settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcService>,
    /// Resource detectors.
    #[serde(
        default,
        alias = "resource_detectors",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_detectors: Option<ResourceDetectors>,
    /// Dynatrace sampler (oneof sampler).
    #[serde(
        default,
        alias = "dynatrace_sampler",
        skip_serializing_if = "Option::is_none"
    )]
    pub dynatrace_sampler: Option<DynatraceSampler>,
}

/// An HTTP endpoint of a provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpService {
    /// Request path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
}

/// gRPC export settings of a provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcService {
    /// Request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Extra request metadata.
    #[serde(
        default,
        alias = "initial_metadata",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub initial_metadata: Vec<HttpHeader>,
}

/// An HTTP header name and value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    /// Header name.
    #[serde(default)]
    pub name: String,
    /// Header value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// Take the value from this environment variable.
    #[serde(default, alias = "env_name", skip_serializing_if = "String::is_empty")]
    pub env_name: String,
}

/// OpenTelemetry resource detectors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDetectors {
    /// Reads `OTEL_RESOURCE_ATTRIBUTES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentResourceDetector>,
    /// Reads Dynatrace enrichment files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynatrace: Option<DynatraceResourceDetector>,
}

/// Environment resource detector (no settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentResourceDetector {}

/// Dynatrace resource detector (no settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DynatraceResourceDetector {}

/// Dynatrace sampler.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DynatraceSampler {
    /// Dynatrace tenant.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    /// Dynatrace cluster ID.
    #[serde(default, alias = "cluster_id")]
    pub cluster_id: i32,
    /// Dynatrace API used to fetch sampling settings.
    #[serde(
        default,
        alias = "http_service",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_service: Option<DynatraceApi>,
    /// Root spans per minute.
    #[serde(
        default,
        alias = "root_spans_per_minute",
        skip_serializing_if = "Option::is_none"
    )]
    pub root_spans_per_minute: Option<u32>,
}

/// Dynatrace API endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DynatraceApi {
    /// `[namespace/]hostname` of the API.
    #[serde(default)]
    pub service: String,
    /// API port.
    #[serde(default)]
    pub port: u32,
    /// HTTP settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpService>,
}

/// A provider served over SDS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SdsProvider {
    /// Secret name.
    #[serde(default)]
    pub name: String,
}

/// Istio's `validateExtensionProviderService`.
fn validate_service(service: &str) -> Vec<String> {
    if service.is_empty() {
        return vec!["service must not be empty".into()];
    }
    if !service.contains('/') {
        if validate_fqdn(service).is_err()
            && let Err(e) = validate_ip_address(service)
        {
            return vec![format!("invalid service fmt {service}: {e}")];
        }
        return vec![];
    }
    validate_namespace_slash_wildcard_hostname(service, false)
}

fn service_and_port(service: &str, port: u32, port_prefix: &str, errs: &mut Vec<String>) {
    if let Err(e) = validate_port(i64::from(port)) {
        errs.push(format!("{port_prefix}{e}"));
    }
    errs.extend(validate_service(service));
}

/// Envoy's `StatusCode` values (HTTP statuses Envoy names).
const ENVOY_STATUS_CODES: &[i64] = &[
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

fn validate_status_on_error(status: &str, errs: &mut Vec<String>) {
    if status.is_empty() {
        return;
    }
    match status.parse::<i32>() {
        Err(e) => errs.push(format!("invalid statusOnError value {status}: {e}")),
        Ok(code) if !ENVOY_STATUS_CODES.contains(&i64::from(code)) => errs.push(format!(
            "unsupported statusOnError value {status}, supported values are Envoy's HTTP status codes"
        )),
        Ok(_) => {}
    }
}

impl ExtensionProvider {
    /// Names of the provider kinds that are set.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        macro_rules! kind {
            ($($f:ident => $n:literal),*) => {$( if self.$f.is_some() { k.push($n); } )*};
        }
        kind!(
            envoy_ext_authz_http => "envoyExtAuthzHttp",
            envoy_ext_authz_grpc => "envoyExtAuthzGrpc",
            zipkin => "zipkin",
            lightstep => "lightstep",
            datadog => "datadog",
            stackdriver => "stackdriver",
            opencensus => "opencensus",
            skywalking => "skywalking",
            opentelemetry => "opentelemetry",
            prometheus => "prometheus",
            envoy_file_access_log => "envoyFileAccessLog",
            envoy_http_als => "envoyHttpAls",
            envoy_tcp_als => "envoyTcpAls",
            envoy_otel_als => "envoyOtelAls",
            sds => "sds"
        );
        k
    }

    /// Istio's per-provider checks (without the name checks); each entry is one problem.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let kinds = self.kinds();
        if kinds.is_empty() {
            errs.push("unsupported provider: no provider kind is set".into());
        } else if kinds.len() > 1 {
            errs.push(format!(
                "only one provider kind may be set, found {}",
                kinds.join(", ")
            ));
        }
        let svc = "invalid service port: ";
        if let Some(p) = &self.envoy_ext_authz_http {
            service_and_port(&p.service, p.port, "", &mut errs);
            validate_status_on_error(&p.status_on_error, &mut errs);
            if !p.path_prefix.is_empty() && !p.path_prefix.starts_with('/') {
                errs.push(format!(
                    "pathPrefix should begin with `/` but found {:?}",
                    p.path_prefix
                ));
            }
        }
        if let Some(p) = &self.envoy_ext_authz_grpc {
            service_and_port(&p.service, p.port, svc, &mut errs);
            validate_status_on_error(&p.status_on_error, &mut errs);
        }
        if let Some(p) = &self.zipkin {
            service_and_port(&p.service, p.port, svc, &mut errs);
        }
        if let Some(p) = &self.lightstep {
            service_and_port(&p.service, p.port, svc, &mut errs);
            if p.access_token.is_empty() {
                errs.push("access token is required".into());
            }
        }
        if let Some(p) = &self.datadog {
            service_and_port(&p.service, p.port, svc, &mut errs);
        }
        if let Some(p) = &self.opencensus {
            service_and_port(&p.service, p.port, svc, &mut errs);
        }
        if let Some(p) = &self.skywalking {
            service_and_port(&p.service, p.port, svc, &mut errs);
        }
        if let Some(p) = &self.opentelemetry {
            service_and_port(&p.service, p.port, "", &mut errs);
            if p.grpc.is_some() && p.http.is_some() {
                errs.push("OpenTelemetryTracingProvider cannot specify both grpc and http".into());
            }
        }
        if let Some(p) = &self.envoy_file_access_log
            && let Some(f) = &p.log_format
            && f.text.is_some()
            && f.labels.is_some()
        {
            errs.push("logFormat: only one of text or labels may be set".into());
        }
        if let Some(p) = &self.envoy_http_als {
            service_and_port(&p.service, p.port, "", &mut errs);
        }
        if let Some(p) = &self.envoy_tcp_als {
            service_and_port(&p.service, p.port, "", &mut errs);
        }
        if let Some(p) = &self.envoy_otel_als {
            service_and_port(&p.service, p.port, "", &mut errs);
        }
        errs
    }
}
