//! `networking.istio.io` `EnvoyFilter`: patches to the Envoy configuration Istio generates,
//! with Istio's validation rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::NetworkingWorkloadSelector;

use crate::meta::PolicyTargetReference;
use crate::serde_util::{is_zero_i32, is_zero_u32};
use crate::validate::labels::validate_labels_selector;
use crate::validate::messages::value_text;
use crate::validate::policy::validate_target_refs;
use crate::validate::{Context, Path, Report, Validate};

/// `EnvoyFilter` spec: which proxies to patch and the patches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilter {
    /// Workloads to patch; all in the namespace (or mesh, in the root namespace) when unset.
    #[serde(
        default,
        alias = "workload_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    /// Resources (gateways, services) whose proxies are patched.
    #[serde(default, alias = "target_refs", skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The patches, each with its match conditions.
    #[serde(
        default,
        alias = "config_patches",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub config_patches: Vec<EnvoyConfigObjectPatch>,
    /// Order of application among EnvoyFilters of the same context (lower first).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
}

/// Which part of the Envoy configuration a patch applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApplyTo {
    /// Unset (refused).
    #[default]
    #[serde(rename = "INVALID")]
    Invalid,
    /// A listener.
    #[serde(rename = "LISTENER")]
    Listener,
    /// A filter chain of a listener.
    #[serde(rename = "FILTER_CHAIN")]
    FilterChain,
    /// A network filter.
    #[serde(rename = "NETWORK_FILTER")]
    NetworkFilter,
    /// An HTTP filter of the HTTP connection manager.
    #[serde(rename = "HTTP_FILTER")]
    HttpFilter,
    /// A route configuration.
    #[serde(rename = "ROUTE_CONFIGURATION")]
    RouteConfiguration,
    /// A virtual host.
    #[serde(rename = "VIRTUAL_HOST")]
    VirtualHost,
    /// A route of a virtual host.
    #[serde(rename = "HTTP_ROUTE")]
    HttpRoute,
    /// A cluster.
    #[serde(rename = "CLUSTER")]
    Cluster,
    /// An extension configuration (ECDS).
    #[serde(rename = "EXTENSION_CONFIG")]
    ExtensionConfig,
    /// The bootstrap configuration.
    #[serde(rename = "BOOTSTRAP")]
    Bootstrap,
    /// A listener filter.
    #[serde(rename = "LISTENER_FILTER")]
    ListenerFilter,
}

/// The kind of proxy configuration a patch targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PatchContext {
    /// Sidecars and gateways.
    #[default]
    #[serde(rename = "ANY")]
    Any,
    /// Sidecar inbound configuration.
    #[serde(rename = "SIDECAR_INBOUND")]
    SidecarInbound,
    /// Sidecar outbound configuration.
    #[serde(rename = "SIDECAR_OUTBOUND")]
    SidecarOutbound,
    /// Gateway configuration.
    #[serde(rename = "GATEWAY")]
    Gateway,
    /// Waypoint proxy configuration.
    #[serde(rename = "WAYPOINT")]
    Waypoint,
}

/// Proxy properties to match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyMatch {
    /// RE2 regex on the proxy's Istio version.
    #[serde(
        default,
        alias = "proxy_version",
        skip_serializing_if = "String::is_empty"
    )]
    pub proxy_version: String,
    /// Node metadata that must match exactly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Cluster properties to match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMatch {
    /// Service port the cluster was generated for.
    #[serde(default, alias = "port_number", skip_serializing_if = "is_zero_u32")]
    pub port_number: u32,
    /// Fully qualified service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Subset name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// Exact cluster name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Route-configuration properties to match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfigurationMatch {
    /// Service or gateway port of the route configuration.
    #[serde(default, alias = "port_number", skip_serializing_if = "is_zero_u32")]
    pub port_number: u32,
    /// Gateway server port name (GATEWAY context).
    #[serde(default, alias = "port_name", skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    /// Istio Gateway as `namespace/name` (GATEWAY context).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// A virtual host within the route configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<VirtualHostMatch>,
    /// Route configuration name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Virtual-host properties to match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualHostMatch {
    /// Virtual host name (`host:port`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A domain of the virtual host.
    #[serde(
        default,
        alias = "domain_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub domain_name: String,
    /// A route within the virtual host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
}

/// Route properties to match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// Route name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Route action type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RouteAction>,
}

/// Route action types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteAction {
    /// Any action.
    #[default]
    #[serde(rename = "ANY")]
    Any,
    /// Routes to a cluster.
    #[serde(rename = "ROUTE")]
    Route,
    /// Redirects.
    #[serde(rename = "REDIRECT")]
    Redirect,
    /// Responds directly.
    #[serde(rename = "DIRECT_RESPONSE")]
    DirectResponse,
}

/// Listener properties to match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerMatch {
    /// Service or gateway port of the listener.
    #[serde(default, alias = "port_number", skip_serializing_if = "is_zero_u32")]
    pub port_number: u32,
    /// Port name (not implemented by Istio).
    #[serde(default, alias = "port_name", skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    /// A filter chain of the listener.
    #[serde(
        default,
        alias = "filter_chain",
        skip_serializing_if = "Option::is_none"
    )]
    pub filter_chain: Option<FilterChainMatch>,
    /// A listener filter by name.
    #[serde(
        default,
        alias = "listener_filter",
        skip_serializing_if = "String::is_empty"
    )]
    pub listener_filter: String,
    /// Listener name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Filter-chain properties to match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterChainMatch {
    /// Filter chain name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// SNI of the chain's match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// Transport protocol (`raw_buffer`, `tls`).
    #[serde(
        default,
        alias = "transport_protocol",
        skip_serializing_if = "String::is_empty"
    )]
    pub transport_protocol: String,
    /// Comma-separated application protocols.
    #[serde(
        default,
        alias = "application_protocols",
        skip_serializing_if = "String::is_empty"
    )]
    pub application_protocols: String,
    /// A network filter within the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    /// Destination port of the chain's match.
    #[serde(
        default,
        alias = "destination_port",
        skip_serializing_if = "is_zero_u32"
    )]
    pub destination_port: u32,
}

/// A filter by name, optionally a sub-filter inside it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterMatch {
    /// Filter name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A filter nested in this one (an HTTP filter of the HTTP connection manager).
    #[serde(default, alias = "sub_filter", skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<SubFilterMatch>,
}

/// A nested filter by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubFilterMatch {
    /// Filter name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Waypoint-proxy properties to match (context `WAYPOINT`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaypointMatch {
    /// A filter of the waypoint's chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMatch>,
    /// A route of the waypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMatch>,
    /// Port of the waypoint's service.
    #[serde(default, alias = "port_number", skip_serializing_if = "is_zero_u32")]
    pub port_number: u32,
}

/// How a patch changes the selected object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// The operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// The Envoy configuration to merge, add or insert (free-form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Where an added HTTP filter goes relative to Istio's filters.
    #[serde(
        default,
        alias = "filter_class",
        skip_serializing_if = "Option::is_none"
    )]
    pub filter_class: Option<FilterClass>,
}

/// Patch operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Unset (refused).
    #[default]
    #[serde(rename = "INVALID")]
    Invalid,
    /// Proto-merge into the selected object.
    #[serde(rename = "MERGE")]
    Merge,
    /// Add to the list.
    #[serde(rename = "ADD")]
    Add,
    /// Remove the selected object.
    #[serde(rename = "REMOVE")]
    Remove,
    /// Insert before the selected filter.
    #[serde(rename = "INSERT_BEFORE")]
    InsertBefore,
    /// Insert after the selected filter.
    #[serde(rename = "INSERT_AFTER")]
    InsertAfter,
    /// Insert first in the list.
    #[serde(rename = "INSERT_FIRST")]
    InsertFirst,
    /// Replace the selected filter.
    #[serde(rename = "REPLACE")]
    Replace,
    /// Merge, replacing (not appending to) repeated fields.
    #[serde(rename = "MERGE_AND_REPLACE_LIST")]
    MergeAndReplaceList,
}

/// Filter insertion classes for `ADD`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterClass {
    /// Istio decides.
    #[default]
    #[serde(rename = "UNSPECIFIED")]
    Unspecified,
    /// After Istio's authentication filters.
    #[serde(rename = "AUTHN")]
    Authn,
    /// After Istio's authorization filters.
    #[serde(rename = "AUTHZ")]
    Authz,
    /// Before Istio's stats filters.
    #[serde(rename = "STATS")]
    Stats,
}

/// Conditions an object must meet to be patched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigObjectMatch {
    /// Generation context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<PatchContext>,
    /// Proxy properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyMatch>,
    /// Listener properties (oneof with `route_configuration`, `cluster`, `waypoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerMatch>,
    /// Route-configuration properties.
    #[serde(
        default,
        alias = "route_configuration",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_configuration: Option<RouteConfigurationMatch>,
    /// Cluster properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterMatch>,
    /// Waypoint properties (context `WAYPOINT` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<WaypointMatch>,
}

/// One patch: where, on what, and how.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigObjectPatch {
    /// What kind of object is patched.
    #[serde(default, alias = "apply_to", skip_serializing_if = "Option::is_none")]
    pub apply_to: Option<ApplyTo>,
    /// Which objects are patched.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub r#match: Option<EnvoyConfigObjectMatch>,
    /// The change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

/// Deprecated filter names and their replacements (Istio's `ReverseDeprecatedFilterNames`).
const DEPRECATED_FILTER_NAMES: &[(&str, &str)] = &[
    (
        "envoy.http_connection_manager",
        "envoy.filters.network.http_connection_manager",
    ),
    ("envoy.tcp_proxy", "envoy.filters.network.tcp_proxy"),
    ("envoy.router", "envoy.filters.http.router"),
    ("envoy.cors", "envoy.filters.http.cors"),
    ("envoy.fault", "envoy.filters.http.fault"),
    ("envoy.lua", "envoy.filters.http.lua"),
    ("envoy.grpc_web", "envoy.filters.http.grpc_web"),
    ("envoy.ext_authz", "envoy.filters.http.ext_authz"),
    ("envoy.health_check", "envoy.filters.http.health_check"),
    (
        "envoy.listener.tls_inspector",
        "envoy.filters.listener.tls_inspector",
    ),
    (
        "envoy.listener.original_dst",
        "envoy.filters.listener.original_dst",
    ),
    (
        "envoy.listener.http_inspector",
        "envoy.filters.listener.http_inspector",
    ),
    ("envoy.mongo_proxy", "envoy.filters.network.mongo_proxy"),
    ("envoy.redis_proxy", "envoy.filters.network.redis_proxy"),
    ("envoy.ratelimit", "envoy.filters.network.ratelimit"),
    ("envoy.rbac", "envoy.filters.http.rbac"),
];

const HCM: &str = "envoy.filters.network.http_connection_manager";

fn deprecated_name_warning(name: &str, path: &Path, report: &mut Report) {
    if let Some((old, new)) = DEPRECATED_FILTER_NAMES.iter().find(|(old, _)| *old == name) {
        report.warning(
            path,
            format!("using deprecated filter name {old:?}; use {new:?} instead"),
        );
    }
}

/// Finds `@type` URLs of the retired v2 xDS API anywhere in a patch value.
fn find_v2_types(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if (k == "@type" || k == "type_url" || k == "typeUrl")
                    && let Some(s) = x.as_str()
                    && s.contains(".v2.")
                {
                    out.push(s.to_string());
                }
                find_v2_types(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| find_v2_types(x, out)),
        _ => {}
    }
}

impl Validate for EnvoyFilter {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        report.warning(
            path,
            "EnvoyFilter exposes internal implementation details that may change at any time. Prefer other APIs if possible, and exercise extreme caution, especially around upgrades.",
        );
        if self.workload_selector.is_some() && !self.target_refs.is_empty() {
            report.error(
                path,
                "Invalid value: \"object\": only one of targetRefs or workloadSelector can be set",
            );
        }
        if let Some(sel) = &self.workload_selector {
            validate_labels_selector(
                &sel.labels,
                &path.field("workloadSelector"),
                report,
                "Envoy filter",
            );
        }
        validate_target_refs(&self.target_refs, &path.field("targetRefs"), report);
        let patches = path.field("configPatches");
        for (i, cp) in self.config_patches.iter().enumerate() {
            validate_patch(cp, &patches.index(i), report);
        }
    }
}

fn validate_patch(cp: &EnvoyConfigObjectPatch, path: &Path, report: &mut Report) {
    // Schema rules on the match, checked whatever else is wrong.
    if let Some(m) = &cp.r#match {
        let mp = path.field("match");
        let objects = usize::from(m.listener.is_some())
            + usize::from(m.route_configuration.is_some())
            + usize::from(m.cluster.is_some());
        if objects > 1 {
            report.error(
                &mp,
                "Invalid value: \"object\": must validate one and only one schema (oneOf): only one of listener, routeConfiguration or cluster may be set",
            );
        }
        let waypoint_ctx = m.context == Some(PatchContext::Waypoint);
        let bad = if waypoint_ctx {
            objects > 0
        } else {
            m.waypoint.is_some()
        };
        if bad {
            report.error(
                &mp,
                "Invalid value: \"object\": only support waypointMatch when context is WAYPOINT",
            );
        }
    }
    let apply_to = cp.apply_to.unwrap_or_default();
    if apply_to == ApplyTo::Invalid {
        report.error(&path.field("applyTo"), "Envoy filter: missing applyTo");
        return;
    }
    let Some(patch) = &cp.patch else {
        report.error(&path.field("patch"), "Envoy filter: missing patch");
        return;
    };
    let op = patch.operation.unwrap_or_default();
    if op == Operation::Invalid {
        report.error(
            &path.field("patch").field("operation"),
            "Envoy filter: missing patch operation",
        );
        return;
    }
    if op != Operation::Remove && patch.value.is_none() {
        report.error(
            &path.field("patch").field("value"),
            "Envoy filter: missing patch value for non-remove operation",
        );
        return;
    }
    if let Some(m) = &cp.r#match
        && let Some(proxy) = &m.proxy
        && !proxy.proxy_version.is_empty()
        && let Err(e) = regex::Regex::new(&proxy.proxy_version)
    {
        report.error(
            &path.field("match").field("proxy").field("proxyVersion"),
            format!("Envoy filter: invalid regex for proxy version, [{e}]"),
        );
        return;
    }
    if let Some(m) = &cp.r#match {
        let mp = path.field("match");
        let has_object = m.listener.is_some()
            || m.route_configuration.is_some()
            || m.cluster.is_some()
            || m.waypoint.is_some();
        match apply_to {
            ApplyTo::Listener
            | ApplyTo::FilterChain
            | ApplyTo::NetworkFilter
            | ApplyTo::HttpFilter
                if has_object =>
            {
                if m.waypoint.is_some() && m.listener.is_none() {
                    // Waypoint matches select listener-class objects of the waypoint.
                } else if let Some(l) = &m.listener {
                    if let Some(fc) = &l.filter_chain
                        && let Some(f) = &fc.filter
                    {
                        let fp = mp.field("listener").field("filterChain").field("filter");
                        if matches!(apply_to, ApplyTo::Listener | ApplyTo::FilterChain) {
                            report.warning(
                                &fp,
                                format!(
                                    "Envoy filter: filter match has no effect when used with {}",
                                    apply_to_name(apply_to)
                                ),
                            );
                        }
                        if f.name.is_empty() {
                            report.error(
                                &fp.field("name"),
                                "Envoy filter: filter match has no name to match on",
                            );
                            return;
                        } else if let Some(sub) = &f.sub_filter {
                            if apply_to != ApplyTo::HttpFilter {
                                report.error(
                                    &fp.field("subFilter"),
                                    "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only",
                                );
                                return;
                            }
                            if f.name != HCM && f.name != "envoy.http_connection_manager" {
                                report.error(
                                    &fp.field("subFilter"),
                                    format!("Envoy filter: subfilter match requires filter match with {HCM}"),
                                );
                                return;
                            }
                            if sub.name.is_empty() {
                                report.error(
                                    &fp.field("subFilter").field("name"),
                                    "Envoy filter: subfilter match has no name to match on",
                                );
                                return;
                            }
                        }
                        deprecated_name_warning(&f.name, &fp.field("name"), report);
                        if let Some(sub) = &f.sub_filter {
                            deprecated_name_warning(
                                &sub.name,
                                &fp.field("subFilter").field("name"),
                                report,
                            );
                        }
                    }
                } else {
                    report.error(
                        &mp,
                        "Envoy filter: applyTo for listener class objects cannot have non listener match",
                    );
                    return;
                }
            }
            ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute
                if has_object && m.route_configuration.is_none() && m.waypoint.is_none() =>
            {
                report.error(
                    &mp,
                    "Envoy filter: applyTo for http route class objects cannot have non route configuration match",
                );
            }
            ApplyTo::Cluster if has_object && m.cluster.is_none() && m.waypoint.is_none() => {
                report.error(
                    &mp,
                    "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
                );
            }
            _ => {}
        }
    }
    if let Some(v) = &patch.value {
        let vp = path.field("patch").field("value");
        if !v.is_object() {
            report.error(
                &vp,
                format!(
                    "Invalid value: {}: {vp} in body must be of type object",
                    value_text(v)
                ),
            );
            return;
        }
        let mut v2 = Vec::new();
        find_v2_types(v, &mut v2);
        for t in v2 {
            report.error(
                &vp,
                format!(
                    "referenced type unknown (hint: try using the v3 XDS API): could not resolve Any message type: {t}"
                ),
            );
        }
    }
}

fn apply_to_name(a: ApplyTo) -> &'static str {
    match a {
        ApplyTo::Invalid => "INVALID",
        ApplyTo::Listener => "LISTENER",
        ApplyTo::FilterChain => "FILTER_CHAIN",
        ApplyTo::NetworkFilter => "NETWORK_FILTER",
        ApplyTo::HttpFilter => "HTTP_FILTER",
        ApplyTo::RouteConfiguration => "ROUTE_CONFIGURATION",
        ApplyTo::VirtualHost => "VIRTUAL_HOST",
        ApplyTo::HttpRoute => "HTTP_ROUTE",
        ApplyTo::Cluster => "CLUSTER",
        ApplyTo::ExtensionConfig => "EXTENSION_CONFIG",
        ApplyTo::Bootstrap => "BOOTSTRAP",
        ApplyTo::ListenerFilter => "LISTENER_FILTER",
    }
}
