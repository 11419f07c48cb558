//! HTTP routes: VirtualService `http` rules to Envoy routes, and the sidecar's outbound route
//! configurations (one per port, one virtual host per service and port).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use weft_config::networking::VirtualService;
use weft_config::networking::virtual_service::{
    Destination, HeaderOperations, HttpMatchRequest, HttpRoute, Percent, StringMatch,
    StringMatchKind,
};
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::r#type::matcher::v3 as matcher;
use weft_xds::envoy::r#type::v3 as types;
use weft_xds::google::protobuf::{Any, UInt32Value};

use super::envoy::{any, duration, wellknown};
use super::names::{self, DYNAMIC_DNS_CLUSTER, PASSTHROUGH_CLUSTER};
use crate::model::{
    Cfg, Environment, OutboundMode, Proxy, Resolution, Service, SidecarScope, host,
};

/// What a route is being built for: the listener port and the gateways in play (`mesh` for
/// sidecars, `namespace/name` for a gateway server).
pub(crate) struct RouteContext<'a> {
    pub env: &'a Environment,
    pub proxy: &'a Proxy,
    pub port: u32,
    pub gateways: &'a BTreeSet<String>,
}

impl RouteContext<'_> {
    /// The cluster a destination resolves to, as Istio's `GetDestinationCluster`.
    pub fn destination_cluster(&self, dest: &Destination, vs_namespace: &str) -> String {
        let hostname =
            host::resolve_short_name(&dest.host, vs_namespace, &self.env.mesh.config_domain);
        let svc = self
            .env
            .service_for_host(&hostname, &self.proxy.config_namespace);
        let port = match (&dest.port, &svc) {
            (Some(p), _) if p.number != 0 => p.number,
            (_, Some(s)) if s.ports.len() == 1 => s.ports[0].port,
            _ => self.port,
        };
        names::outbound_cluster(port, &dest.subset, &hostname)
    }
}

fn string_matcher(m: &StringMatch, ignore_case: bool) -> Option<matcher::StringMatcher> {
    use matcher::string_matcher::MatchPattern;
    let pattern = if let Some(e) = &m.exact {
        MatchPattern::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        MatchPattern::Prefix(p.clone())
    } else if let Some(r) = &m.regex {
        MatchPattern::SafeRegex(regex_matcher(r))
    } else {
        return None;
    };
    Some(matcher::StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    })
}

fn regex_matcher(r: &str) -> matcher::RegexMatcher {
    matcher::RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

fn header_matcher(name: &str, m: &StringMatch, invert: bool) -> route::HeaderMatcher {
    use route::header_matcher::HeaderMatchSpecifier;
    let spec = match string_matcher(m, false) {
        Some(sm) => HeaderMatchSpecifier::StringMatch(sm),
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    route::HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(spec),
        invert_match: invert,
        ..Default::default()
    }
}

/// Envoy route match for a VirtualService match block (`None`: match everything).
pub(crate) fn route_match(m: Option<&HttpMatchRequest>) -> route::RouteMatch {
    use route::route_match::PathSpecifier;
    let mut out = route::RouteMatch {
        path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
        ..Default::default()
    };
    let Some(m) = m else {
        return out;
    };
    if let Some(uri) = &m.uri {
        if let Some(e) = &uri.exact {
            out.path_specifier = Some(PathSpecifier::Path(e.clone()));
        } else if let Some(p) = &uri.prefix {
            out.path_specifier = Some(PathSpecifier::Prefix(p.clone()));
        } else if let Some(r) = &uri.regex {
            out.path_specifier = Some(PathSpecifier::SafeRegex(regex_matcher(r)));
        }
    }
    if m.ignore_uri_case {
        out.case_sensitive = super::envoy::bool_value(false);
    }
    for (name, sm) in &m.headers {
        out.headers.push(header_matcher(name, sm, false));
    }
    for (name, sm) in &m.without_headers {
        out.headers.push(header_matcher(name, sm, true));
    }
    for (pseudo, sm) in [
        (":authority", &m.authority),
        (":method", &m.method),
        (":scheme", &m.scheme),
    ] {
        if let Some(sm) = sm {
            out.headers.push(header_matcher(pseudo, sm, false));
        }
    }
    for (name, sm) in &m.query_params {
        use route::query_parameter_matcher::QueryParameterMatchSpecifier;
        let spec = match string_matcher(sm, false) {
            Some(s) => QueryParameterMatchSpecifier::StringMatch(s),
            None => QueryParameterMatchSpecifier::PresentMatch(true),
        };
        out.query_parameters.push(route::QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(spec),
        });
    }
    out
}

fn is_catch_all(m: &HttpMatchRequest) -> bool {
    let uri_all = match &m.uri {
        None => true,
        Some(u) => u.prefix.as_deref() == Some("/") || u.regex.as_deref() == Some("*"),
    };
    uri_all
        && m.headers.is_empty()
        && m.without_headers.is_empty()
        && m.query_params.is_empty()
        && m.authority.is_none()
        && m.method.is_none()
        && m.scheme.is_none()
}

fn header_ops(ops: &HeaderOperations) -> (Vec<core::HeaderValueOption>, Vec<String>) {
    use core::header_value_option::HeaderAppendAction;
    let mut add = Vec::new();
    for (k, v, action) in ops
        .set
        .iter()
        .map(|(k, v)| (k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|(k, v)| (k, v, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
    {
        add.push(core::HeaderValueOption {
            header: Some(core::HeaderValue {
                key: k.clone(),
                value: v.clone(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        });
    }
    (add, ops.remove.clone())
}

fn fraction(p: Option<&Percent>) -> Option<types::FractionalPercent> {
    let value = p.map(|p| p.value).unwrap_or(100.0);
    Some(types::FractionalPercent {
        // Millionths, as Istio converts percentages.
        numerator: (value * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32,
        denominator: types::fractional_percent::DenominatorType::Million as i32,
    })
}

/// Istio's default retry policy: 2 retries on connection failures, refused streams, 503s.
pub(crate) fn default_retry_policy() -> route::RetryPolicy {
    use weft_xds::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
    route::RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
            .to_string(),
        num_retries: Some(UInt32Value { value: 2 }),
        retry_host_predicate: vec![route::retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".to_string(),
            config_type: Some(
                route::retry_policy::retry_host_predicate::ConfigType::TypedConfig(any(
                    &PreviousHostsPredicate::default(),
                )),
            ),
        }],
        host_selection_retry_max_attempts: 5,
        retriable_status_codes: vec![503],
        ..Default::default()
    }
}

fn retry_policy(rule: &HttpRoute) -> Option<route::RetryPolicy> {
    let Some(r) = &rule.retries else {
        return Some(default_retry_policy());
    };
    if r.attempts <= 0 {
        return None;
    }
    let mut p = default_retry_policy();
    p.num_retries = Some(UInt32Value {
        value: u32::try_from(r.attempts).unwrap_or(0),
    });
    if !r.retry_on.is_empty() {
        let mut on = Vec::new();
        let mut codes = Vec::new();
        for part in r
            .retry_on
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match part.parse::<u32>() {
                Ok(code) => codes.push(code),
                Err(_) => on.push(part.to_string()),
            }
        }
        if !codes.is_empty() && !on.iter().any(|o| o == "retriable-status-codes") {
            on.push("retriable-status-codes".to_string());
        }
        p.retry_on = on.join(",");
        p.retriable_status_codes = codes;
    }
    if let Some(t) = r.per_try_timeout {
        p.per_try_timeout = duration(t.get());
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        p.retry_host_predicate.clear();
    }
    if let Some(b) = r.backoff {
        p.retry_back_off = Some(route::retry_policy::RetryBackOff {
            base_interval: duration(b.get()),
            ..Default::default()
        });
    }
    Some(p)
}

fn per_filter_config(rule: &HttpRoute) -> std::collections::HashMap<String, Any> {
    use weft_xds::envoy::extensions::filters::common::fault::v3 as common_fault;
    use weft_xds::envoy::extensions::filters::http::cors::v3::CorsPolicy;
    use weft_xds::envoy::extensions::filters::http::fault::v3 as fault;
    let mut out = std::collections::HashMap::new();
    if let Some(f) = &rule.fault {
        let mut hf = fault::HttpFault::default();
        if let Some(d) = &f.delay
            && let Some(fixed) = d.fixed_delay
        {
            let pct = d.percentage.clone().or_else(|| {
                (d.percent > 0).then(|| Percent {
                    value: f64::from(d.percent),
                })
            });
            hf.delay = Some(common_fault::FaultDelay {
                fault_delay_secifier: Some(
                    common_fault::fault_delay::FaultDelaySecifier::FixedDelay(
                        duration(fixed.get()).unwrap_or_default(),
                    ),
                ),
                percentage: fraction(pct.as_ref()),
            });
        }
        if let Some(a) = &f.abort {
            use fault::fault_abort::ErrorType;
            let error_type = if let Some(s) = a.http_status {
                Some(ErrorType::HttpStatus(u32::try_from(s).unwrap_or(500)))
            } else {
                a.grpc_status
                    .as_deref()
                    .map(|g| ErrorType::GrpcStatus(grpc_code(g)))
            };
            hf.abort = Some(fault::FaultAbort {
                error_type,
                percentage: fraction(a.percentage.as_ref()),
                ..Default::default()
            });
        }
        out.insert(wellknown::FAULT.to_string(), any(&hf));
    }
    if let Some(c) = &rule.cors_policy {
        let mut origins: Vec<matcher::StringMatcher> = c
            .allow_origin
            .iter()
            .map(|o| matcher::StringMatcher {
                match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(o.clone())),
                ignore_case: false,
            })
            .collect();
        origins.extend(
            c.allow_origins
                .iter()
                .filter_map(|m| string_matcher(m, false)),
        );
        let policy = CorsPolicy {
            allow_origin_string_match: origins,
            allow_methods: c.allow_methods.join(","),
            allow_headers: c.allow_headers.join(","),
            expose_headers: c.expose_headers.join(","),
            max_age: c
                .max_age
                .map(|d| d.get().as_secs().to_string())
                .unwrap_or_default(),
            allow_credentials: c.allow_credentials.and_then(super::envoy::bool_value),
            ..Default::default()
        };
        out.insert(wellknown::CORS.to_string(), any(&policy));
    }
    out
}

fn grpc_code(name: &str) -> u32 {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    CODES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(2)
}

fn translate_rule(
    ctx: &RouteContext<'_>,
    vs: &Cfg<VirtualService>,
    rule: &HttpRoute,
    m: Option<&HttpMatchRequest>,
) -> route::Route {
    let mut name = rule.name.clone();
    if let Some(m) = m
        && !m.name.is_empty()
    {
        name = if name.is_empty() {
            m.name.clone()
        } else {
            format!("{name}.{}", m.name)
        };
    }
    let mut out = route::Route {
        name,
        r#match: Some(route_match(m)),
        typed_per_filter_config: per_filter_config(rule),
        ..Default::default()
    };
    if let Some(h) = &rule.headers {
        if let Some(req) = &h.request {
            let (add, remove) = header_ops(req);
            out.request_headers_to_add = add;
            out.request_headers_to_remove = remove;
        }
        if let Some(resp) = &h.response {
            let (add, remove) = header_ops(resp);
            out.response_headers_to_add = add;
            out.response_headers_to_remove = remove;
        }
    }
    if let Some(r) = &rule.redirect {
        use route::redirect_action::{
            PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier,
        };
        let code = match r.redirect_code {
            302 => RedirectResponseCode::Found,
            303 => RedirectResponseCode::SeeOther,
            307 => RedirectResponseCode::TemporaryRedirect,
            308 => RedirectResponseCode::PermanentRedirect,
            _ => RedirectResponseCode::MovedPermanently,
        };
        let mut ra = route::RedirectAction {
            host_redirect: r.authority.clone(),
            port_redirect: r.port.unwrap_or(0),
            response_code: code as i32,
            ..Default::default()
        };
        if !r.uri.is_empty() {
            ra.path_rewrite_specifier = Some(PathRewriteSpecifier::PathRedirect(r.uri.clone()));
        } else if !r.prefix_rewrite.is_empty() {
            ra.path_rewrite_specifier = Some(PathRewriteSpecifier::PrefixRewrite(
                r.prefix_rewrite.clone(),
            ));
        }
        if !r.scheme.is_empty() {
            ra.scheme_rewrite_specifier =
                Some(SchemeRewriteSpecifier::SchemeRedirect(r.scheme.clone()));
        }
        out.action = Some(route::route::Action::Redirect(ra));
        return out;
    }
    if let Some(d) = &rule.direct_response {
        let body = d.body.as_ref().map(|b| {
            use core::data_source::Specifier;
            let specifier = match (&b.string, &b.bytes) {
                (Some(s), _) => Specifier::InlineString(s.clone()),
                (None, Some(bytes)) => Specifier::InlineBytes(bytes.clone()),
                (None, None) => Specifier::InlineString(String::new()),
            };
            core::DataSource {
                specifier: Some(specifier),
                ..Default::default()
            }
        });
        out.action = Some(route::route::Action::DirectResponse(
            route::DirectResponseAction {
                status: d.status,
                body,
                ..Default::default()
            },
        ));
        return out;
    }
    let mut action = route::RouteAction {
        timeout: duration(rule.timeout.map(|t| t.get()).unwrap_or_default()),
        retry_policy: retry_policy(rule),
        ..Default::default()
    };
    let dests: Vec<_> = rule
        .route
        .iter()
        .filter_map(|d| d.destination.as_ref().map(|dest| (d, dest)))
        .collect();
    if dests.len() == 1 {
        let (d, dest) = dests[0];
        action.cluster_specifier = Some(route::route_action::ClusterSpecifier::Cluster(
            ctx.destination_cluster(dest, &vs.namespace),
        ));
        if let Some(h) = &d.headers {
            if let Some(req) = &h.request {
                let (add, remove) = header_ops(req);
                out.request_headers_to_add.extend(add);
                out.request_headers_to_remove.extend(remove);
            }
            if let Some(resp) = &h.response {
                let (add, remove) = header_ops(resp);
                out.response_headers_to_add.extend(add);
                out.response_headers_to_remove.extend(remove);
            }
        }
    } else if !dests.is_empty() {
        let clusters = dests
            .iter()
            .map(|(d, dest)| {
                let mut cw = route::weighted_cluster::ClusterWeight {
                    name: ctx.destination_cluster(dest, &vs.namespace),
                    weight: Some(UInt32Value {
                        value: u32::try_from(d.weight).unwrap_or(0),
                    }),
                    ..Default::default()
                };
                if let Some(h) = &d.headers {
                    if let Some(req) = &h.request {
                        let (add, remove) = header_ops(req);
                        cw.request_headers_to_add = add;
                        cw.request_headers_to_remove = remove;
                    }
                    if let Some(resp) = &h.response {
                        let (add, remove) = header_ops(resp);
                        cw.response_headers_to_add = add;
                        cw.response_headers_to_remove = remove;
                    }
                }
                cw
            })
            .collect();
        action.cluster_specifier = Some(route::route_action::ClusterSpecifier::WeightedClusters(
            route::WeightedCluster {
                clusters,
                ..Default::default()
            },
        ));
    }
    if let Some(rw) = &rule.rewrite {
        if !rw.uri.is_empty() {
            action.prefix_rewrite = rw.uri.clone();
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            action.regex_rewrite = Some(matcher::RegexMatchAndSubstitute {
                pattern: Some(regex_matcher(&rr.r#match)),
                substitution: rr.rewrite.clone(),
            });
        }
        if !rw.authority.is_empty() {
            action.host_rewrite_specifier = Some(
                route::route_action::HostRewriteSpecifier::HostRewriteLiteral(rw.authority.clone()),
            );
        }
    }
    let mut mirrors: Vec<(&Destination, Option<Percent>)> = Vec::new();
    if let Some(m) = &rule.mirror {
        let pct = rule.mirror_percentage.clone().or_else(|| {
            rule.mirror_percent.map(|p| Percent {
                value: f64::from(p),
            })
        });
        mirrors.push((m, pct));
    }
    for m in &rule.mirrors {
        if let Some(d) = &m.destination {
            mirrors.push((d, m.percentage.clone()));
        }
    }
    for (dest, pct) in mirrors {
        action
            .request_mirror_policies
            .push(route::route_action::RequestMirrorPolicy {
                cluster: ctx.destination_cluster(dest, &vs.namespace),
                runtime_fraction: Some(core::RuntimeFractionalPercent {
                    default_value: fraction(pct.as_ref()),
                    ..Default::default()
                }),
                trace_sampled: super::envoy::bool_value(false),
                ..Default::default()
            });
    }
    out.action = Some(route::route::Action::Route(action));
    out
}

fn match_applies(ctx: &RouteContext<'_>, vs: &Cfg<VirtualService>, m: &HttpMatchRequest) -> bool {
    if m.port != 0 && m.port != ctx.port {
        return false;
    }
    if !weft_config::meta::selector_matches(&m.source_labels, &ctx.proxy.labels) {
        return false;
    }
    if !m.source_namespace.is_empty() && m.source_namespace != ctx.proxy.config_namespace {
        return false;
    }
    if !m.gateways.is_empty()
        && !m.gateways.iter().any(|g| {
            ctx.gateways
                .contains(&crate::model::resolve_gateway_name(g, &vs.namespace))
        })
    {
        return false;
    }
    true
}

/// Envoy routes for a VirtualService's `http` rules on one port (Istio's
/// `BuildHTTPRoutesForVirtualService`): matches that cannot apply to this proxy, port or
/// gateway are dropped, and nothing after a catch-all match is emitted.
pub(crate) fn build_http_routes(
    ctx: &RouteContext<'_>,
    vs: &Cfg<VirtualService>,
) -> Vec<route::Route> {
    let mut out = Vec::new();
    let mut rules: Vec<(std::borrow::Cow<'_, Cfg<VirtualService>>, HttpRoute)> = Vec::new();
    for rule in &vs.spec.http {
        match &rule.delegate {
            None => rules.push((std::borrow::Cow::Borrowed(vs), rule.clone())),
            Some(d) => {
                // A delegate's rules are merged into the root rule's matches and translated
                // with the delegate's namespace, as Istio's `mergeVirtualServicesIfNeeded`.
                let ns = if d.namespace.is_empty() {
                    &vs.namespace
                } else {
                    &d.namespace
                };
                let Some(delegate) =
                    ctx.env.virtual_services.iter().find(|v| {
                        v.name == d.name && &v.namespace == ns && v.spec.hosts.is_empty()
                    })
                else {
                    continue;
                };
                for drule in &delegate.spec.http {
                    if let Some(merged) = merge_delegate_rule(rule, drule) {
                        rules.push((std::borrow::Cow::Owned((**delegate).clone()), merged));
                    }
                }
            }
        }
    }
    for (owner, rule) in &rules {
        if rule.r#match.is_empty() {
            out.push(translate_rule(ctx, owner, rule, None));
            break;
        }
        let mut catch_all = false;
        for m in &rule.r#match {
            if !match_applies(ctx, owner, m) {
                continue;
            }
            out.push(translate_rule(ctx, owner, rule, Some(m)));
            if is_catch_all(m) {
                catch_all = true;
                break;
            }
        }
        if catch_all {
            break;
        }
    }
    out
}

/// True when the delegate's URI condition narrows the root's (Istio rejects the pair
/// otherwise).
fn uri_within(root: &StringMatch, delegate: &StringMatch) -> bool {
    match (root.kind(), delegate.kind()) {
        (
            Some((StringMatchKind::Prefix, r)),
            Some((StringMatchKind::Prefix | StringMatchKind::Exact, d)),
        ) => d.starts_with(r),
        (Some((StringMatchKind::Exact, r)), Some((StringMatchKind::Exact, d))) => r == d,
        (Some((StringMatchKind::Regex, r)), Some((StringMatchKind::Regex, d))) => r == d,
        _ => false,
    }
}

fn merge_match(root: &HttpMatchRequest, delegate: &HttpMatchRequest) -> Option<HttpMatchRequest> {
    let mut out = delegate.clone();
    match (&root.uri, &delegate.uri) {
        (Some(r), Some(d)) if !uri_within(r, d) => return None,
        (Some(r), None) => out.uri = Some(r.clone()),
        _ => {}
    }
    for (k, v) in &root.headers {
        match delegate.headers.get(k) {
            Some(dv) if dv != v => return None,
            _ => {
                out.headers.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in &root.query_params {
        match delegate.query_params.get(k) {
            Some(dv) if dv != v => return None,
            _ => {
                out.query_params.insert(k.clone(), v.clone());
            }
        }
    }
    for (field, d) in [
        (&root.method, &mut out.method),
        (&root.authority, &mut out.authority),
        (&root.scheme, &mut out.scheme),
    ] {
        match (field, &*d) {
            (Some(r), Some(dv)) if r != dv => return None,
            (Some(r), None) => *d = Some(r.clone()),
            _ => {}
        }
    }
    if root.port != 0 {
        if delegate.port != 0 && delegate.port != root.port {
            return None;
        }
        out.port = root.port;
    }
    if out.source_labels.is_empty() {
        out.source_labels = root.source_labels.clone();
    }
    if out.gateways.is_empty() {
        out.gateways = root.gateways.clone();
    }
    if out.source_namespace.is_empty() {
        out.source_namespace = root.source_namespace.clone();
    }
    Some(out)
}

/// Merges a root rule that delegates with one rule of the delegate: matches are combined
/// (the delegate's must narrow the root's), and settings the delegate leaves unset come from
/// the root. `None` when no match combination is valid.
fn merge_delegate_rule(root: &HttpRoute, delegate: &HttpRoute) -> Option<HttpRoute> {
    let matches = match (root.r#match.is_empty(), delegate.r#match.is_empty()) {
        (true, _) => delegate.r#match.clone(),
        (false, true) => root.r#match.clone(),
        (false, false) => {
            let merged: Vec<HttpMatchRequest> = root
                .r#match
                .iter()
                .flat_map(|r| {
                    delegate
                        .r#match
                        .iter()
                        .filter_map(move |d| merge_match(r, d))
                })
                .collect();
            if merged.is_empty() {
                return None;
            }
            merged
        }
    };
    let mut out = delegate.clone();
    out.r#match = matches;
    out.delegate = None;
    out.name = match (root.name.is_empty(), delegate.name.is_empty()) {
        (false, false) => format!("{}-{}", root.name, delegate.name),
        (false, true) => root.name.clone(),
        _ => delegate.name.clone(),
    };
    if out.rewrite.is_none() {
        out.rewrite = root.rewrite.clone();
    }
    if out.timeout.is_none() {
        out.timeout = root.timeout;
    }
    if out.retries.is_none() {
        out.retries = root.retries.clone();
    }
    if out.fault.is_none() {
        out.fault = root.fault.clone();
    }
    if out.mirror.is_none() && out.mirrors.is_empty() {
        out.mirror = root.mirror.clone();
        out.mirrors = root.mirrors.clone();
    }
    if out.cors_policy.is_none() {
        out.cors_policy = root.cors_policy.clone();
    }
    if out.headers.is_none() {
        out.headers = root.headers.clone();
    }
    Some(out)
}

/// The default route of a service port without VirtualService: everything to its cluster.
pub(crate) fn default_route(cluster: &str) -> route::Route {
    route::Route {
        name: "default".to_string(),
        r#match: Some(route_match(None)),
        action: Some(route::route::Action::Route(route::RouteAction {
            cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                cluster.to_string(),
            )),
            timeout: duration(std::time::Duration::ZERO),
            retry_policy: Some(default_retry_policy()),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Short names a client in `dns_domain` may use for a Kubernetes hostname (Istio's
/// `GenerateAltVirtualHosts` with port 0): `name`, `name.ns`, `name.ns.svc` in the same
/// namespace, `name.ns`, `name.ns.svc` from another.
pub fn alt_hosts(hostname: &str, dns_domain: &str) -> Vec<String> {
    let Some(id) = dns_domain.find(".svc.") else {
        return Vec::new();
    };
    let suffix = &dns_domain[id..]; // .svc.cluster.local
    if !hostname.ends_with(suffix) {
        return Vec::new();
    }
    let Some(ih) = hostname.find(".svc.") else {
        return Vec::new();
    };
    let Some(ns_dot) = hostname.find('.') else {
        return Vec::new();
    };
    if ns_dot + 1 > ih {
        return Vec::new();
    }
    let host_ns = &hostname[ns_dot + 1..ih];
    let proxy_ns = &dns_domain[..id];
    if host_ns == proxy_ns {
        vec![
            hostname[..ns_dot].to_string(),
            format!("{}.svc", &hostname[..ih]),
            hostname[..ih].to_string(),
        ]
    } else {
        vec![
            hostname[..ih].to_string(),
            format!("{}.svc", &hostname[..ih]),
        ]
    }
}

/// The domains of a service's virtual host: hostname, short forms, aliases, VIP.
pub(crate) fn service_domains(svc: &Service, proxy: &Proxy) -> Vec<String> {
    let mut out = vec![svc.hostname.clone()];
    out.extend(alt_hosts(&svc.hostname, &proxy.dns_domain));
    for a in &svc.aliases {
        out.push(a.clone());
        out.extend(alt_hosts(a, &proxy.dns_domain));
    }
    for addr in &svc.addresses {
        if !addr.contains('/') && addr != crate::model::service::UNSPECIFIED_IP {
            out.push(addr.clone());
        }
    }
    out
}

fn catch_all_vhost(mode: OutboundMode) -> route::VirtualHost {
    match mode {
        OutboundMode::RegistryOnly => route::VirtualHost {
            name: "block_all".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![route::Route {
                name: "block_all".to_string(),
                r#match: Some(route_match(None)),
                action: Some(route::route::Action::DirectResponse(
                    route::DirectResponseAction {
                        status: 502,
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        },
        OutboundMode::AllowAny | OutboundMode::AllowAnyDynamicDns => {
            let cluster = if mode == OutboundMode::AllowAny {
                PASSTHROUGH_CLUSTER
            } else {
                DYNAMIC_DNS_CLUSTER
            };
            let mut r = default_route(cluster);
            r.name = "allow_any".to_string();
            if let Some(route::route::Action::Route(a)) = &mut r.action {
                a.retry_policy = None;
            }
            route::VirtualHost {
                name: "allow_any".to_string(),
                domains: vec!["*".to_string()],
                routes: vec![r],
                include_request_attempt_count: true,
                ..Default::default()
            }
        }
    }
}

/// The catch-all virtual host of `virtualOutbound`'s HTTP chain (dynamic DNS mode).
pub(crate) fn dynamic_dns_route_config() -> route::RouteConfiguration {
    route::RouteConfiguration {
        name: "allow_any_dynamic_dns".to_string(),
        virtual_hosts: vec![catch_all_vhost(OutboundMode::AllowAnyDynamicDns)],
        validate_clusters: super::envoy::bool_value(false),
        ..Default::default()
    }
}

/// Builds a sidecar's outbound route configuration by RDS name: `PORT` (every HTTP service
/// on that port) or `HOST:PORT` (one sniffed service bound to its VIP).
pub(crate) fn sidecar_route_config(
    env: &Environment,
    proxy: &Proxy,
    scope: &SidecarScope,
    name: &str,
) -> route::RouteConfiguration {
    let (only_host, port) = match name.rsplit_once(':') {
        Some((h, p)) => (Some(h), p.parse().unwrap_or(0)),
        None => (None, name.parse().unwrap_or(0)),
    };
    let mut vhosts = Vec::new();
    if let Some(egress) = scope.egress_for_port(port) {
        let registry: Vec<Arc<Service>> = egress
            .services
            .iter()
            .filter(|s| s.resolution != Resolution::Alias)
            .filter(|s| only_host.is_none_or(|h| s.hostname == h))
            .cloned()
            .collect();
        vhosts = sidecar_virtual_hosts(
            env,
            proxy,
            &registry,
            &egress.virtual_services,
            port,
            only_host.is_some(),
        );
    }
    vhosts.push(catch_all_vhost(scope.outbound_mode));
    route::RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vhosts,
        validate_clusters: super::envoy::bool_value(false),
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

fn sidecar_virtual_hosts(
    env: &Environment,
    proxy: &Proxy,
    registry: &[Arc<Service>],
    vses: &[Arc<Cfg<VirtualService>>],
    port: u32,
    single_service: bool,
) -> Vec<route::VirtualHost> {
    let mesh: BTreeSet<String> = ["mesh".to_string()].into();
    let ctx = RouteContext {
        env,
        proxy,
        port,
        gateways: &mesh,
    };
    // Which VirtualService owns each service: exact host matches first, then wildcards,
    // oldest VirtualService first within each pass.
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    let resolved: Vec<Vec<String>> = vses
        .iter()
        .map(|v| {
            v.spec
                .hosts
                .iter()
                .map(|h| host::resolve_short_name(h, &v.namespace, &env.mesh.config_domain))
                .collect()
        })
        .collect();
    for wildcard_pass in [false, true] {
        for (i, hosts) in resolved.iter().enumerate() {
            for h in hosts
                .iter()
                .filter(|h| host::is_wildcard(h) == wildcard_pass)
            {
                for s in registry {
                    if host::matches(h, &s.hostname) {
                        owner.entry(s.hostname.clone()).or_insert(i);
                    }
                }
            }
        }
    }
    let mut used_domains: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let mut push_vhost = |out: &mut Vec<route::VirtualHost>,
                          name: String,
                          domains: Vec<String>,
                          routes: Vec<route::Route>| {
        let domains: Vec<String> = domains
            .into_iter()
            .filter(|d| used_domains.insert(d.clone()))
            .collect();
        if domains.is_empty() {
            return;
        }
        out.push(route::VirtualHost {
            name,
            domains,
            routes,
            include_request_attempt_count: true,
            ..Default::default()
        });
    };
    for (i, vs) in vses.iter().enumerate() {
        let services: Vec<&Arc<Service>> = registry
            .iter()
            .filter(|s| owner.get(&s.hostname) == Some(&i))
            .collect();
        let literal_hosts: Vec<&String> = if single_service {
            Vec::new()
        } else {
            resolved[i]
                .iter()
                .filter(|h| !registry.iter().any(|s| host::matches(h, &s.hostname)))
                .collect()
        };
        let http_ports: BTreeSet<u32> = services
            .iter()
            .flat_map(|s| s.ports.iter())
            .filter(|p| p.protocol.is_http_or_sniffed())
            .map(|p| p.port)
            .collect();
        let applies = http_ports.contains(&port) || (http_ports.is_empty() && port == 80);
        if !applies {
            continue;
        }
        let routes = build_http_routes(&ctx, vs);
        if routes.is_empty() {
            continue;
        }
        for s in services {
            if s.port(port)
                .is_none_or(|p| !p.protocol.is_http_or_sniffed())
            {
                continue;
            }
            push_vhost(
                &mut out,
                format!("{}:{port}", s.hostname),
                service_domains(s, proxy),
                routes.clone(),
            );
        }
        for h in literal_hosts {
            push_vhost(
                &mut out,
                format!("{h}:{port}"),
                vec![h.clone()],
                routes.clone(),
            );
        }
    }
    for s in registry {
        if owner.contains_key(&s.hostname) {
            continue;
        }
        let Some(p) = s.port(port) else {
            continue;
        };
        if !p.protocol.is_http_or_sniffed() {
            continue;
        }
        let cluster = names::outbound_cluster(port, "", &s.hostname);
        push_vhost(
            &mut out,
            format!("{}:{port}", s.hostname),
            service_domains(s, proxy),
            vec![default_route(&cluster)],
        );
    }
    out
}
