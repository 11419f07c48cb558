//! The list of Envoy fields weft implements, and the walk that reports every other field by name.
//!
//! Envoy ignores nothing it was told, so weft must not either: a field that is set in a resource
//! but is not in [`SUPPORTED`] becomes an [`Unsupported`] finding at compile time, naming the
//! resource and the field path. Messages that are not in the table (addresses, durations, wrapper
//! types, ...) are plain values and accepted whole. `google.protobuf.Any` (`typed_config`) is
//! checked by the compiler itself, by extension type.

use prost::{Message, Name};
use prost_reflect::{DynamicMessage, ReflectMessage, Value};

/// A field or extension that is set in the configuration but that weft does not implement.
///
/// These are warnings by default (weft serves the rest of the configuration and logs each one at
/// start-up); `Options::reject_unsupported` turns them into errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The resource, e.g. `listener "http"` or `cluster "backend"`.
    pub resource: String,
    /// What is not supported: a field path such as `filter_chains[0].use_proxy_proto`, or an
    /// extension such as `listener_filters envoy.filters.listener.proxy_protocol`.
    pub what: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} is not supported by weft",
            self.resource, self.what
        )
    }
}

/// Per message type (full proto name), the fields weft reads. Fields with no data-plane effect
/// that weft accepts on purpose (names, stat prefixes, metadata, locality) are listed too.
pub const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.config.bootstrap.v3.Bootstrap",
        &["node", "static_resources", "admin", "layered_runtime"],
    ),
    (
        "envoy.config.bootstrap.v3.Bootstrap.StaticResources",
        &["listeners", "clusters", "secrets"],
    ),
    ("envoy.config.bootstrap.v3.Admin", &["address"]),
    (
        "envoy.config.listener.v3.Listener",
        &[
            "name",
            "address",
            "stat_prefix",
            "filter_chains",
            "default_filter_chain",
            "listener_filters",
            "traffic_direction",
            "metadata",
            "drain_type",
            "bind_to_port",
            "use_original_dst",
            "listener_filters_timeout",
            "continue_on_listener_filters_timeout",
        ],
    ),
    (
        "envoy.config.listener.v3.FilterChain",
        &[
            "filter_chain_match",
            "filters",
            "name",
            "metadata",
            "transport_socket",
        ],
    ),
    (
        "envoy.config.listener.v3.FilterChainMatch",
        &[
            "destination_port",
            "prefix_ranges",
            "direct_source_prefix_ranges",
            "source_prefix_ranges",
            "source_ports",
            "transport_protocol",
            "server_names",
            "application_protocols",
        ],
    ),
    ("envoy.config.listener.v3.Filter", &["name", "typed_config"]),
    (
        "envoy.config.listener.v3.ListenerFilter",
        &["name", "typed_config"],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        &[
            "codec_type",
            "stat_prefix",
            "route_config",
            "http_filters",
            "use_remote_address",
            "skip_xff_append",
            "generate_request_id",
            "preserve_external_request_id",
            "always_set_request_id_in_response",
            "upgrade_configs",
            "stream_idle_timeout",
            "request_headers_timeout",
            "common_http_protocol_options",
            "max_request_headers_kb",
            "forward_client_cert_details",
            "set_current_client_cert_details",
            "access_log",
            "tracing",
        ],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.SetCurrentClientCertDetails",
        &["subject", "dns", "uri"],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
        &["name", "typed_config", "is_optional", "disabled"],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig",
        &["upgrade_type", "enabled"],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        &["stat_prefix", "cluster", "weighted_clusters"],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster",
        &["clusters"],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight",
        &["name", "weight"],
    ),
    ("envoy.extensions.filters.http.router.v3.Router", &[]),
    (
        "envoy.config.route.v3.RouteConfiguration",
        &[
            "name",
            "virtual_hosts",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "validate_clusters",
            "max_direct_response_body_size_bytes",
            "ignore_port_in_host_matching",
            "typed_per_filter_config",
        ],
    ),
    (
        "envoy.config.route.v3.VirtualHost",
        &[
            "name",
            "domains",
            "routes",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "retry_policy",
            "include_request_attempt_count",
            "include_attempt_count_in_response",
            "typed_per_filter_config",
            "cors",
            "per_request_buffer_limit_bytes",
        ],
    ),
    (
        "envoy.config.route.v3.Route",
        &[
            "name",
            "match",
            "route",
            "redirect",
            "direct_response",
            "metadata",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "typed_per_filter_config",
            "per_request_buffer_limit_bytes",
        ],
    ),
    (
        "envoy.config.route.v3.RouteMatch",
        &[
            "prefix",
            "path",
            "safe_regex",
            "path_separated_prefix",
            "case_sensitive",
            "headers",
            "query_parameters",
        ],
    ),
    (
        "envoy.config.route.v3.HeaderMatcher",
        &[
            "name",
            "invert_match",
            "exact_match",
            "safe_regex_match",
            "present_match",
            "prefix_match",
            "suffix_match",
            "contains_match",
            "string_match",
            "treat_missing_header_as_empty",
        ],
    ),
    (
        "envoy.config.route.v3.QueryParameterMatcher",
        &["name", "string_match", "present_match"],
    ),
    (
        "envoy.type.matcher.v3.StringMatcher",
        &[
            "exact",
            "prefix",
            "suffix",
            "safe_regex",
            "contains",
            "ignore_case",
        ],
    ),
    (
        "envoy.type.matcher.v3.RegexMatcher",
        &["regex", "google_re2"],
    ),
    (
        "envoy.config.route.v3.RouteAction",
        &[
            "cluster",
            "weighted_clusters",
            "prefix_rewrite",
            "regex_rewrite",
            "host_rewrite_literal",
            "timeout",
            "cluster_not_found_response_code",
            "retry_policy",
            "hash_policy",
            "request_mirror_policies",
            "priority",
            "idle_timeout",
            "cors",
        ],
    ),
    (
        "envoy.config.route.v3.WeightedCluster",
        &["clusters", "total_weight"],
    ),
    (
        "envoy.config.route.v3.WeightedCluster.ClusterWeight",
        &[
            "name",
            "weight",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "host_rewrite_literal",
        ],
    ),
    (
        "envoy.config.route.v3.RedirectAction",
        &[
            "host_redirect",
            "port_redirect",
            "response_code",
            "strip_query",
            "https_redirect",
            "scheme_redirect",
            "path_redirect",
            "prefix_rewrite",
            "regex_rewrite",
        ],
    ),
    (
        "envoy.config.route.v3.DirectResponseAction",
        &["status", "body"],
    ),
    (
        "envoy.config.core.v3.DataSource",
        &[
            "filename",
            "inline_bytes",
            "inline_string",
            "environment_variable",
        ],
    ),
    (
        "envoy.config.core.v3.TransportSocket",
        &["name", "typed_config"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        &["common_tls_context", "require_client_certificate"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        &["common_tls_context", "sni"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext",
        &[
            "tls_params",
            "tls_certificates",
            "tls_certificate_sds_secret_configs",
            "alpn_protocols",
            "validation_context",
            "validation_context_sds_secret_config",
            "combined_validation_context",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext",
        &[
            "default_validation_context",
            "validation_context_sds_secret_config",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext",
        &[
            "trusted_ca",
            "match_subject_alt_names",
            "match_typed_subject_alt_names",
            "allow_expired_certificate",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher",
        &["san_type", "matcher"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.TlsParameters",
        &[
            "tls_minimum_protocol_version",
            "tls_maximum_protocol_version",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.TlsCertificate",
        &["certificate_chain", "private_key"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig",
        &["name", "sds_config"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.Secret",
        &["name", "tls_certificate", "validation_context"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.TransportSocketMatch",
        &["name", "match", "transport_socket"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.OriginalDstLbConfig",
        &[
            "use_http_header",
            "http_header_name",
            "upstream_port_override",
        ],
    ),
    (
        "envoy.config.core.v3.HeaderValueOption",
        &["header", "append", "append_action", "keep_empty_value"],
    ),
    (
        "envoy.config.cluster.v3.Cluster",
        &[
            "name",
            "alt_stat_name",
            "type",
            "eds_cluster_config",
            "connect_timeout",
            "lb_policy",
            "load_assignment",
            "circuit_breakers",
            "http2_protocol_options",
            "typed_extension_protocol_options",
            "metadata",
            "outlier_detection",
            "least_request_lb_config",
            "ring_hash_lb_config",
            "maglev_lb_config",
            "common_lb_config",
            "transport_socket",
            "transport_socket_matches",
            "original_dst_lb_config",
        ],
    ),
    ("envoy.config.cluster.v3.CircuitBreakers", &["thresholds"]),
    (
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
        &[
            "priority",
            "max_requests",
            "track_remaining",
            "max_connections",
            "max_pending_requests",
            "max_retries",
        ],
    ),
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &["cluster_name", "endpoints", "policy"],
    ),
    (
        "envoy.config.endpoint.v3.LocalityLbEndpoints",
        &[
            "locality",
            "lb_endpoints",
            "priority",
            "load_balancing_weight",
        ],
    ),
    (
        "envoy.config.endpoint.v3.LbEndpoint",
        &[
            "endpoint",
            "health_status",
            "load_balancing_weight",
            "metadata",
        ],
    ),
    (
        "envoy.config.endpoint.v3.Endpoint",
        &["address", "hostname"],
    ),
    (
        "envoy.config.core.v3.SocketAddress",
        &["address", "port_value", "protocol"],
    ),
    ("envoy.config.core.v3.Address", &["socket_address"]),
    ("envoy.config.bootstrap.v3.LayeredRuntime", &["layers"]),
    (
        "envoy.config.bootstrap.v3.RuntimeLayer",
        &["name", "static_layer"],
    ),
    (
        "envoy.config.core.v3.HttpProtocolOptions",
        &[
            "idle_timeout",
            "max_requests_per_connection",
            "max_headers_count",
        ],
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        &[
            "explicit_http_config",
            "use_downstream_protocol_config",
            "auto_config",
            "common_http_protocol_options",
        ],
    ),
    (
        "envoy.config.route.v3.RetryPolicy",
        &[
            "retry_on",
            "num_retries",
            "per_try_timeout",
            "retry_back_off",
            "retry_host_predicate",
            "host_selection_retry_max_attempts",
            "retriable_status_codes",
            "retriable_headers",
            "retriable_request_headers",
        ],
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryBackOff",
        &["base_interval", "max_interval"],
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryHostPredicate",
        &["name", "typed_config"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy",
        &[
            "header",
            "cookie",
            "connection_properties",
            "query_parameter",
            "terminal",
        ],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.Header",
        &["header_name"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.Cookie",
        &["name", "ttl", "path"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties",
        &["source_ip"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter",
        &["name"],
    ),
    (
        "envoy.config.route.v3.RouteAction.RequestMirrorPolicy",
        &[
            "cluster",
            "runtime_fraction",
            "disable_shadow_host_suffix_append",
        ],
    ),
    (
        "envoy.config.core.v3.RuntimeFractionalPercent",
        &["default_value"],
    ),
    (
        "envoy.config.route.v3.CorsPolicy",
        &[
            "allow_origin_string_match",
            "allow_methods",
            "allow_headers",
            "expose_headers",
            "max_age",
            "allow_credentials",
            "filter_enabled",
            "allow_private_network_access",
            "forward_not_matching_preflights",
        ],
    ),
    (
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        &[
            "allow_origin_string_match",
            "allow_methods",
            "allow_headers",
            "expose_headers",
            "max_age",
            "allow_credentials",
            "filter_enabled",
            "allow_private_network_access",
            "forward_not_matching_preflights",
        ],
    ),
    (
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
        &["delay", "abort", "headers", "max_active_faults"],
    ),
    (
        "envoy.extensions.filters.http.fault.v3.FaultAbort",
        &[
            "http_status",
            "grpc_status",
            "header_abort",
            "percentage",
            "response_body",
        ],
    ),
    (
        "envoy.extensions.filters.common.fault.v3.FaultDelay",
        &["fixed_delay", "header_delay", "percentage"],
    ),
    (
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        &[
            "stat_prefix",
            "status",
            "token_bucket",
            "filter_enabled",
            "filter_enforced",
            "request_headers_to_add_when_not_enforced",
            "response_headers_to_add",
            "enable_x_ratelimit_headers",
        ],
    ),
    (
        "envoy.extensions.filters.http.rbac.v3.RBAC",
        &[
            "rules",
            "shadow_rules",
            "shadow_rules_stat_prefix",
            "rules_stat_prefix",
        ],
    ),
    (
        "envoy.extensions.filters.network.rbac.v3.RBAC",
        &[
            "rules",
            "shadow_rules",
            "stat_prefix",
            "shadow_rules_stat_prefix",
        ],
    ),
    ("envoy.config.rbac.v3.RBAC", &["action", "policies"]),
    (
        "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        &[
            "providers",
            "rules",
            "bypass_cors_preflight",
            "requirement_map",
        ],
    ),
    (
        "envoy.extensions.filters.http.jwt_authn.v3.JwtProvider",
        &[
            "issuer",
            "audiences",
            "forward",
            "from_headers",
            "from_params",
            "from_cookies",
            "forward_payload_header",
            "payload_in_metadata",
            "claim_to_headers",
            "clock_skew_seconds",
            "local_jwks",
            "remote_jwks",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        &[
            "http_service",
            "grpc_service",
            "transport_api_version",
            "failure_mode_allow",
            "status_on_error",
            "filter_enabled_metadata",
            "allowed_headers",
            "with_request_body",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.HttpService",
        &[
            "server_uri",
            "path_prefix",
            "authorization_request",
            "authorization_response",
        ],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.AuthorizationRequest",
        &["headers_to_add", "allowed_headers"],
    ),
    (
        "envoy.extensions.filters.http.ext_authz.v3.AuthorizationResponse",
        &[
            "allowed_upstream_headers",
            "allowed_client_headers",
            "allowed_client_headers_on_success",
        ],
    ),
    (
        "envoy.extensions.filters.http.jwt_authn.v3.RemoteJwks",
        &["http_uri", "cache_duration"],
    ),
    (
        "envoy.type.v3.TokenBucket",
        &["max_tokens", "tokens_per_fill", "fill_interval"],
    ),
    (
        "envoy.config.route.v3.FilterConfig",
        &["config", "is_optional", "disabled"],
    ),
    (
        "envoy.config.cluster.v3.OutlierDetection",
        &[
            "consecutive_5xx",
            "interval",
            "base_ejection_time",
            "max_ejection_percent",
            "enforcing_consecutive_5xx",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
            "split_external_local_origin_errors",
            "consecutive_local_origin_failure",
            "enforcing_consecutive_local_origin_failure",
            "max_ejection_time",
        ],
    ),
    (
        "envoy.config.cluster.v3.Cluster.LeastRequestLbConfig",
        &["choice_count"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.RingHashLbConfig",
        &["minimum_ring_size", "maximum_ring_size", "hash_function"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.MaglevLbConfig",
        &["table_size"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.CommonLbConfig",
        &["locality_weighted_lb_config", "healthy_panic_threshold"],
    ),
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment.Policy",
        &["overprovisioning_factor"],
    ),
];

fn supported_fields(message: &str) -> Option<&'static [&'static str]> {
    SUPPORTED
        .iter()
        .find(|(name, _)| *name == message)
        .map(|(_, fields)| *fields)
}

/// Walks `msg` and records every set field that weft does not implement.
///
/// `resource` names the resource in the findings; `path` is the field path of `msg` inside it
/// (empty at the top).
pub fn check<T: Message + Name>(msg: &T, resource: &str, path: &str, out: &mut Vec<Unsupported>) {
    let Some(desc) = weft_xds::descriptor_pool().get_message_by_name(&T::full_name()) else {
        out.push(Unsupported {
            resource: resource.to_owned(),
            what: format!("message type {}", T::full_name()),
        });
        return;
    };
    let mut dynamic = DynamicMessage::new(desc);
    if dynamic.transcode_from(msg).is_err() {
        out.push(Unsupported {
            resource: resource.to_owned(),
            what: format!("{path} (could not be inspected)"),
        });
        return;
    }
    walk(&dynamic, resource, path, out);
}

fn walk(msg: &DynamicMessage, resource: &str, path: &str, out: &mut Vec<Unsupported>) {
    let Some(fields) = supported_fields(msg.descriptor().full_name()) else {
        return;
    };
    for (field, value) in msg.fields() {
        let name = field.name();
        let here = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        if !fields.contains(&name) {
            out.push(Unsupported {
                resource: resource.to_owned(),
                what: here,
            });
            continue;
        }
        match value {
            Value::Message(m) => walk(m, resource, &here, out),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Message(m) = item {
                        walk(m, resource, &format!("{here}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_message_and_field_exists_in_the_envoy_api() {
        let pool = weft_xds::descriptor_pool();
        for (message, fields) in SUPPORTED {
            let desc = pool
                .get_message_by_name(message)
                .unwrap_or_else(|| panic!("{message} is not an Envoy message"));
            for field in *fields {
                assert!(
                    desc.get_field_by_name(field).is_some(),
                    "{message} has no field {field}"
                );
            }
        }
    }
}
