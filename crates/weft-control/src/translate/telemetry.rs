//! The Telemetry API and MeshConfig's telemetry settings, translated into what the proxy reads:
//! Istio's `istio.stats` filter in every HTTP connection manager (before the router) and before
//! every `tcp_proxy`, `access_log` and `tracing` on every HTTP connection manager, and the
//! `istio` service metadata on clusters that metric labels read (`destination_service*`).
//!
//! Tracing: the Telemetry API's `tracing` (providers, `randomSamplingPercentage`, `customTags`,
//! CLIENT/SERVER mode), else MeshConfig `defaultProviders.tracing`; providers are MeshConfig
//! `extensionProviders` of type `zipkin` or `opentelemetry` (gRPC), whose collector is the
//! `outbound|port||host` cluster of the provider's service. Sampling defaults to
//! `defaultConfig.tracing.sampling`, else Istio's 1%.
//!
//! The stats filter's `stats.PluginConfig` is written as a `google.protobuf.Struct` in a filter
//! named `istio.stats` (istiod wraps it in a `TypedStruct`, a type outside Envoy's API that
//! `proxy-config` could not render); weft-proxy reads both forms.
//!
//! Which Telemetry applies: the one in the proxy's namespace whose selector matches the
//! workload, else the namespace's one without selector, else the root namespace's; each of
//! `accessLogging` and `metrics` is taken from the most specific resource that sets it.

use std::sync::Arc;

use weft_config::mesh::AccessLogEncoding;
use weft_config::meta::selector_matches;
use weft_config::telemetry::{
    AccessLogging, IstioMetric, Metrics, TagOverrideOperation, Telemetry, Tracing, WorkloadMode,
};
use weft_xds::envoy::config::accesslog::v3 as al;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::trace::v3 as trace;
use weft_xds::envoy::extensions::access_loggers::file::v3 as file;
use weft_xds::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::r#type::tracing::v3 as tracing_tag;
use weft_xds::google::protobuf::{Any, ListValue, Struct, Value, value::Kind};

use super::Resources;
use super::envoy::{any, unpack, wellknown};
use crate::model::{Cfg, Environment, Proxy};

/// The stats filter's name (HTTP and network), as istiod names it.
pub const STATS_FILTER: &str = "istio.stats";

/// Istio's default text access log format (MeshConfig `accessLogFormat` unset).
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON access log labels (`accessLogEncoding: JSON`).
pub const ISTIO_JSON_LABELS: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

const CEL_FILTER_NAME: &str = "envoy.access_loggers.extension_filters.cel";
const FILE_LOGGER: &str = "envoy.access_loggers.file";

fn sval(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

/// What applies to one proxy, per direction.
#[derive(Debug, Default)]
struct Resolved {
    metrics_client: bool,
    metrics_server: bool,
    /// `stats.PluginConfig.metrics` entries per side.
    overrides_client: Vec<Value>,
    overrides_server: Vec<Value>,
    logs_client: Vec<al::AccessLog>,
    logs_server: Vec<al::AccessLog>,
    tracing_client: Option<hcm::http_connection_manager::Tracing>,
    tracing_server: Option<hcm::http_connection_manager::Tracing>,
}

fn selector(t: &Cfg<Telemetry>) -> Option<&std::collections::BTreeMap<String, String>> {
    t.spec.selector.as_ref().map(|s| &s.match_labels)
}

/// The Telemetry resources that apply to `proxy`, most specific first.
fn applicable<'a>(env: &'a Environment, proxy: &Proxy) -> Vec<&'a Arc<Cfg<Telemetry>>> {
    let ns = &proxy.config_namespace;
    let root = &env.mesh.root_namespace;
    let mut out = Vec::new();
    out.extend(env.telemetries.iter().filter(|t| {
        &t.namespace == ns
            && selector(t).is_some_and(|l| !l.is_empty() && selector_matches(l, &proxy.labels))
    }));
    out.extend(
        env.telemetries
            .iter()
            .filter(|t| &t.namespace == ns && selector(t).is_none_or(|l| l.is_empty())),
    );
    if ns != root {
        out.extend(
            env.telemetries
                .iter()
                .filter(|t| &t.namespace == root && selector(t).is_none_or(|l| l.is_empty())),
        );
    }
    out
}

fn applies(mode: Option<WorkloadMode>, client: bool) -> bool {
    match mode.unwrap_or_default() {
        WorkloadMode::ClientAndServer => true,
        WorkloadMode::Client => client,
        WorkloadMode::Server => !client,
    }
}

fn resolve(env: &Environment, proxy: &Proxy) -> Resolved {
    let list = applicable(env, proxy);
    let mesh = &env.mesh.config;
    let mut r = Resolved {
        metrics_client: true,
        metrics_server: true,
        ..Default::default()
    };
    // Metrics: an override without a metric selector that disables everything turns the stats
    // filter off for its mode.
    if let Some(t) = list.iter().find(|t| !t.spec.metrics.is_empty()) {
        for m in &t.spec.metrics {
            for (client, slot) in [
                (true, &mut r.metrics_client),
                (false, &mut r.metrics_server),
            ] {
                if disables_all(m, client) {
                    *slot = false;
                }
            }
            r.overrides_client.extend(plugin_metrics(m, true));
            r.overrides_server.extend(plugin_metrics(m, false));
        }
    }
    // Tracing.
    let from_api = list.iter().find(|t| !t.spec.tracing.is_empty());
    for client in [true, false] {
        let t = match from_api {
            Some(t) => t
                .spec
                .tracing
                .iter()
                .find(|e| applies(e.r#match.as_ref().and_then(|m| m.mode), client))
                .and_then(|e| tracing_config(env, Some(e))),
            None => tracing_config(env, None),
        };
        if client {
            r.tracing_client = t;
        } else {
            r.tracing_server = t;
        }
    }
    // Access logs.
    let from_api = list.iter().find(|t| !t.spec.access_logging.is_empty());
    match from_api {
        Some(t) => {
            for client in [true, false] {
                let mut logs = Vec::new();
                for entry in &t.spec.access_logging {
                    let mode = entry.r#match.as_ref().and_then(|m| m.mode);
                    if !applies(mode, client) || entry.disabled == Some(true) {
                        continue;
                    }
                    logs.extend(entry_logs(env, entry));
                }
                if client {
                    r.logs_client = logs;
                } else {
                    r.logs_server = logs;
                }
            }
        }
        None => {
            let mut logs = Vec::new();
            if !mesh.access_log_file.is_empty() {
                logs.push(mesh_log(env, None));
            } else if let Some(d) = &mesh.default_providers {
                for name in &d.access_logging {
                    logs.extend(provider_log(env, name, None));
                }
            }
            r.logs_client = logs.clone();
            r.logs_server = logs;
        }
    }
    r
}

/// The connection manager's `tracing` for one Telemetry tracing entry (or the mesh defaults).
fn tracing_config(
    env: &Environment,
    entry: Option<&Tracing>,
) -> Option<hcm::http_connection_manager::Tracing> {
    let mesh = &env.mesh.config;
    if entry.is_some_and(|e| e.disable_span_reporting == Some(true)) {
        return None;
    }
    let names: Vec<String> = match entry.map(|e| &e.providers) {
        Some(p) if !p.is_empty() => p.iter().map(|p| p.name.clone()).collect(),
        _ => mesh
            .default_providers
            .as_ref()
            .map(|d| d.tracing.clone())
            .unwrap_or_default(),
    };
    // Envoy takes one tracer per connection manager: the first provider weft can export to.
    let provider = names.iter().find_map(|n| {
        let p = mesh.extension_providers.iter().find(|p| &p.name == n)?;
        if let Some(z) = &p.zipkin {
            let cluster = collector_cluster(env, &z.service, z.port)?;
            let config = trace::ZipkinConfig {
                collector_cluster: cluster,
                collector_endpoint: if z.path.is_empty() {
                    "/api/v2/spans".into()
                } else {
                    z.path.clone()
                },
                collector_endpoint_version: trace::zipkin_config::CollectorEndpointVersion::HttpJson
                    as i32,
                trace_id_128bit: !z.enable_64bit_trace_id,
                shared_span_context: super::envoy::bool_value(false),
                collector_hostname: z
                    .service
                    .rsplit('/')
                    .next()
                    .unwrap_or(&z.service)
                    .to_owned(),
                ..Default::default()
            };
            return Some(trace::tracing::Http {
                name: "envoy.tracers.zipkin".into(),
                config_type: Some(trace::tracing::http::ConfigType::TypedConfig(any(&config))),
            });
        }
        if let Some(o) = &p.opentelemetry {
            let cluster = collector_cluster(env, &o.service, o.port)?;
            let config = trace::OpenTelemetryConfig {
                grpc_service: Some(core::GrpcService {
                    target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                        core::grpc_service::EnvoyGrpc {
                            cluster_name: cluster,
                            authority: o
                                .service
                                .rsplit('/')
                                .next()
                                .unwrap_or(&o.service)
                                .to_owned(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            };
            return Some(trace::tracing::Http {
                name: "envoy.tracers.opentelemetry".into(),
                config_type: Some(trace::tracing::http::ConfigType::TypedConfig(any(&config))),
            });
        }
        None
    })?;
    let default_sampling = mesh
        .default_config
        .as_ref()
        .and_then(|c| c.tracing.as_ref())
        .map(|t| t.sampling)
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let sampling = entry
        .and_then(|e| e.random_sampling_percentage)
        .unwrap_or(default_sampling);
    let percent = |v: f64| Some(weft_xds::envoy::r#type::v3::Percent { value: v });
    let mut custom_tags = Vec::new();
    for (tag, t) in entry.map(|e| &e.custom_tags).into_iter().flatten() {
        use tracing_tag::custom_tag::{Environment as Env, Header, Literal, Type};
        let ty = if let Some(l) = &t.literal {
            Type::Literal(Literal {
                value: l.value.clone(),
            })
        } else if let Some(e) = &t.environment {
            Type::Environment(Env {
                name: e.name.clone(),
                default_value: e.default_value.clone(),
            })
        } else if let Some(h) = &t.header {
            Type::RequestHeader(Header {
                name: h.name.clone(),
                default_value: h.default_value.clone(),
            })
        } else {
            continue;
        };
        custom_tags.push(tracing_tag::CustomTag {
            tag: tag.clone(),
            r#type: Some(ty),
        });
    }
    Some(hcm::http_connection_manager::Tracing {
        client_sampling: percent(100.0),
        random_sampling: percent(sampling.clamp(0.0, 100.0)),
        overall_sampling: percent(100.0),
        custom_tags,
        provider: Some(provider),
        ..Default::default()
    })
}

/// `outbound|port||host` for a provider's `[namespace/]host`.
fn collector_cluster(env: &Environment, service: &str, port: u32) -> Option<String> {
    let (ns, host) = match service.split_once('/') {
        Some((ns, h)) => (ns, h),
        None => (env.mesh.root_namespace.as_str(), service),
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    let host = env
        .service_for_host(host, ns)
        .map_or_else(|| host.to_owned(), |s| s.hostname.clone());
    Some(format!("outbound|{port}||{host}"))
}

/// `stats.PluginConfig.metrics` entries for one side from a Telemetry `metrics` block:
/// `{name, dimensions, tags_to_remove, drop}`.
fn plugin_metrics(m: &Metrics, client: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for o in &m.overrides {
        let sel = o.r#match.as_ref();
        if !applies(sel.and_then(|s| s.mode), client) {
            continue;
        }
        let name = match sel.and_then(|s| s.metric) {
            _ if sel.is_some_and(|s| s.custom_metric.is_some()) => continue,
            None | Some(IstioMetric::AllMetrics) => "",
            Some(IstioMetric::RequestCount) => "requests_total",
            Some(IstioMetric::RequestDuration) => "request_duration_milliseconds",
            Some(IstioMetric::RequestSize) => "request_bytes",
            Some(IstioMetric::ResponseSize) => "response_bytes",
            Some(IstioMetric::TcpOpenedConnections) => "tcp_connections_opened_total",
            Some(IstioMetric::TcpClosedConnections) => "tcp_connections_closed_total",
            Some(IstioMetric::TcpSentBytes) => "tcp_sent_bytes_total",
            Some(IstioMetric::TcpReceivedBytes) => "tcp_received_bytes_total",
            Some(IstioMetric::GrpcRequestMessages | IstioMetric::GrpcResponseMessages) => continue,
        };
        let mut entry = Struct::default();
        if !name.is_empty() {
            entry.fields.insert("name".into(), sval(name));
        }
        if o.disabled == Some(true) {
            entry.fields.insert(
                "drop".into(),
                Value {
                    kind: Some(Kind::BoolValue(true)),
                },
            );
        }
        let mut dims = Struct::default();
        let mut remove = Vec::new();
        for (tag, t) in &o.tag_overrides {
            match t.operation.unwrap_or_default() {
                TagOverrideOperation::Remove => remove.push(sval(tag)),
                TagOverrideOperation::Upsert => {
                    if let Some(v) = &t.value {
                        dims.fields.insert(tag.clone(), sval(v));
                    }
                }
            }
        }
        if !dims.fields.is_empty() {
            entry.fields.insert(
                "dimensions".into(),
                Value {
                    kind: Some(Kind::StructValue(dims)),
                },
            );
        }
        if !remove.is_empty() {
            entry.fields.insert(
                "tags_to_remove".into(),
                Value {
                    kind: Some(Kind::ListValue(ListValue { values: remove })),
                },
            );
        }
        if entry.fields.len() > usize::from(!name.is_empty()) {
            out.push(Value {
                kind: Some(Kind::StructValue(entry)),
            });
        }
    }
    out
}

fn disables_all(m: &Metrics, client: bool) -> bool {
    m.overrides.iter().any(|o| {
        o.disabled == Some(true)
            && o.r#match.as_ref().is_none_or(|sel| {
                sel.metric.is_none() && sel.custom_metric.is_none() && applies(sel.mode, client)
            })
    })
}

fn entry_logs(env: &Environment, entry: &AccessLogging) -> Vec<al::AccessLog> {
    let filter = entry
        .filter
        .as_ref()
        .map(|f| f.expression.as_str())
        .filter(|e| !e.is_empty());
    let names: Vec<String> = if entry.providers.is_empty() {
        env.mesh
            .config
            .default_providers
            .as_ref()
            .map(|d| d.access_logging.clone())
            .unwrap_or_default()
    } else {
        entry.providers.iter().map(|p| p.name.clone()).collect()
    };
    if names.is_empty() {
        // Istio's built-in provider: MeshConfig's access log settings.
        return vec![mesh_log(env, filter)];
    }
    names
        .iter()
        .flat_map(|n| provider_log(env, n, filter))
        .collect()
}

/// The built-in `envoy` provider: MeshConfig `accessLogFile`, `accessLogFormat`,
/// `accessLogEncoding`.
fn mesh_log(env: &Environment, filter: Option<&str>) -> al::AccessLog {
    let mesh = &env.mesh.config;
    let path = if mesh.access_log_file.is_empty() {
        "/dev/stdout"
    } else {
        &mesh.access_log_file
    };
    let json = mesh.access_log_encoding == Some(AccessLogEncoding::Json);
    let format = if json {
        if mesh.access_log_format.is_empty() {
            json_format(ISTIO_JSON_LABELS.iter().map(|(k, v)| (*k, *v)))
        } else {
            // A JSON access log format is a JSON object of labels.
            match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
                &mesh.access_log_format,
            ) {
                Ok(m) => json_format(
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v))),
                ),
                Err(_) => text_format(&mesh.access_log_format),
            }
        }
    } else if mesh.access_log_format.is_empty() {
        text_format(ISTIO_TEXT_FORMAT)
    } else {
        let mut f = mesh.access_log_format.clone();
        if !f.ends_with('\n') {
            f.push('\n');
        }
        text_format(&f)
    };
    file_log(path, format, filter)
}

fn provider_log(env: &Environment, name: &str, filter: Option<&str>) -> Option<al::AccessLog> {
    if name == "envoy" {
        return Some(mesh_log(env, filter));
    }
    let p = env
        .mesh
        .config
        .extension_providers
        .iter()
        .find(|p| p.name == name)?;
    let f = p.envoy_file_access_log.as_ref()?;
    let path = if f.path.is_empty() {
        "/dev/stdout"
    } else {
        &f.path
    };
    let format = match f.log_format.as_ref() {
        Some(lf) if lf.labels.is_some() => {
            let labels = lf.labels.as_ref().and_then(|l| l.as_object());
            json_format(
                labels
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v))),
            )
        }
        Some(lf) if lf.text.as_ref().is_some_and(|t| !t.is_empty()) => {
            let mut t = lf.text.clone().unwrap_or_default();
            if !t.ends_with('\n') {
                t.push('\n');
            }
            text_format(&t)
        }
        _ => text_format(ISTIO_TEXT_FORMAT),
    };
    Some(file_log(path, format, filter))
}

fn text_format(s: &str) -> core::SubstitutionFormatString {
    core::SubstitutionFormatString {
        format: Some(core::substitution_format_string::Format::TextFormatSource(
            core::DataSource {
                specifier: Some(core::data_source::Specifier::InlineString(s.to_owned())),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn json_format<'a>(
    labels: impl Iterator<Item = (&'a str, &'a str)>,
) -> core::SubstitutionFormatString {
    let mut st = Struct::default();
    for (k, v) in labels {
        st.fields.insert(k.to_owned(), sval(v));
    }
    core::SubstitutionFormatString {
        format: Some(core::substitution_format_string::Format::JsonFormat(st)),
        ..Default::default()
    }
}

fn file_log(
    path: &str,
    format: core::SubstitutionFormatString,
    filter: Option<&str>,
) -> al::AccessLog {
    let config = file::FileAccessLog {
        path: path.to_owned(),
        access_log_format: Some(file::file_access_log::AccessLogFormat::LogFormat(format)),
    };
    al::AccessLog {
        name: FILE_LOGGER.to_owned(),
        filter: filter.map(|expression| al::AccessLogFilter {
            filter_specifier: Some(al::access_log_filter::FilterSpecifier::ExtensionFilter(
                al::ExtensionFilter {
                    name: CEL_FILTER_NAME.to_owned(),
                    config_type: Some(al::extension_filter::ConfigType::TypedConfig(any(
                        &ExpressionFilter {
                            expression: expression.to_owned(),
                            ..Default::default()
                        },
                    ))),
                },
            )),
        }),
        config_type: Some(al::access_log::ConfigType::TypedConfig(any(&config))),
    }
}

/// The `istio.stats` configuration (`stats.PluginConfig` fields) as a `Struct`.
fn stats_config(gateway: bool, overrides: &[Value]) -> Any {
    let mut st = Struct::default();
    if !overrides.is_empty() {
        st.fields.insert(
            "metrics".to_owned(),
            Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: overrides.to_vec(),
                })),
            },
        );
    }
    if gateway {
        st.fields
            .insert("reporter".to_owned(), sval("SERVER_GATEWAY"));
        st.fields.insert(
            "disable_host_header_fallback".to_owned(),
            Value {
                kind: Some(Kind::BoolValue(true)),
            },
        );
    }
    any(&st)
}

/// Adds the stats filters, access logs and cluster metadata to one proxy's resources.
pub(crate) fn apply(env: &Environment, proxy: &Proxy, out: &mut Resources) {
    let r = resolve(env, proxy);
    let gateway = proxy.is_router();
    for l in &mut out.listeners {
        let inbound = l.traffic_direction == core::TrafficDirection::Inbound as i32;
        let (metrics, logs, tracing, overrides) = if inbound {
            (
                r.metrics_server,
                &r.logs_server,
                &r.tracing_server,
                &r.overrides_server,
            )
        } else {
            (
                r.metrics_client,
                &r.logs_client,
                &r.tracing_client,
                &r.overrides_client,
            )
        };
        for fc in l
            .filter_chains
            .iter_mut()
            .chain(l.default_filter_chain.iter_mut())
        {
            let mut filters = Vec::with_capacity(fc.filters.len() + 1);
            for f in fc.filters.drain(..) {
                if f.name == wellknown::TCP_PROXY && metrics {
                    filters.push(listener::Filter {
                        name: STATS_FILTER.to_owned(),
                        config_type: Some(listener::filter::ConfigType::TypedConfig(stats_config(
                            gateway, overrides,
                        ))),
                    });
                    filters.push(f);
                } else if f.name == wellknown::HCM {
                    filters.push(with_http_telemetry(
                        f, metrics, logs, tracing, overrides, gateway,
                    ));
                } else {
                    filters.push(f);
                }
            }
            fc.filters = filters;
        }
    }
    for c in &mut out.clusters {
        if let Some(svc) = cluster_service(env, proxy, &c.name) {
            c.metadata
                .get_or_insert_with(Default::default)
                .filter_metadata
                .insert("istio".to_owned(), svc);
        }
    }
}

fn with_http_telemetry(
    f: listener::Filter,
    metrics: bool,
    logs: &[al::AccessLog],
    tracing: &Option<hcm::http_connection_manager::Tracing>,
    overrides: &[Value],
    gateway: bool,
) -> listener::Filter {
    let Some(listener::filter::ConfigType::TypedConfig(a)) = &f.config_type else {
        return f;
    };
    let Some(mut m) = unpack::<hcm::HttpConnectionManager>(a) else {
        return f;
    };
    if metrics && !m.http_filters.iter().any(|h| h.name == STATS_FILTER) {
        let at = m
            .http_filters
            .iter()
            .position(|h| h.name == wellknown::ROUTER)
            .unwrap_or(m.http_filters.len());
        m.http_filters.insert(
            at,
            hcm::HttpFilter {
                name: STATS_FILTER.to_owned(),
                config_type: Some(hcm::http_filter::ConfigType::TypedConfig(stats_config(
                    gateway, overrides,
                ))),
                ..Default::default()
            },
        );
    }
    m.access_log.extend(logs.iter().cloned());
    if m.tracing.is_none() {
        m.tracing.clone_from(tracing);
    }
    listener::Filter {
        name: f.name,
        config_type: Some(listener::filter::ConfigType::TypedConfig(any(&m))),
    }
}

/// `istio: {services: [{host, name, namespace}]}` for an `outbound|port|subset|host` cluster
/// (the service by host) or an `inbound|port||` cluster (the proxy's service on that port).
fn cluster_service(env: &Environment, proxy: &Proxy, cluster: &str) -> Option<Struct> {
    let mut parts = cluster.split('|');
    let (dir, port, _subset, host) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let svc = match dir {
        "outbound" => env.service_for_host(host, &proxy.config_namespace)?,
        "inbound" => {
            let port: u32 = port.parse().ok()?;
            env.proxy_targets(proxy)
                .into_iter()
                .find(|t| t.target_port == port || t.port.port == port)?
                .service
        }
        _ => return None,
    };
    let name = svc
        .hostname
        .split('.')
        .next()
        .unwrap_or(&svc.hostname)
        .to_owned();
    let mut entry = Struct::default();
    entry.fields.insert("host".to_owned(), sval(&svc.hostname));
    entry.fields.insert("name".to_owned(), sval(&name));
    entry
        .fields
        .insert("namespace".to_owned(), sval(&svc.namespace));
    let mut md = Struct::default();
    md.fields.insert(
        "services".to_owned(),
        Value {
            kind: Some(Kind::ListValue(ListValue {
                values: vec![Value {
                    kind: Some(Kind::StructValue(entry)),
                }],
            })),
        },
    );
    Some(md)
}
