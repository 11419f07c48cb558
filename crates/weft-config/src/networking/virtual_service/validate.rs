//! Istio's VirtualService validation (`ValidateVirtualService` and the HTTP/TLS/TCP route
//! checks in `pkg/config/validation`), plus the CRD schema's one-of and duration rules.

use std::collections::BTreeMap;

use super::types::*;
use crate::duration::Duration;
use crate::validate::addresses::{is_valid_ip, validate_ip_subnet};
use crate::validate::durations::validate_duration;
use crate::validate::go::go_atoi;
use crate::validate::hosts::{
    host_matches, host_subset_of, is_dns1123_label, validate_fqdn, validate_wildcard_domain,
    validate_wildcard_domain_for_gateway,
};
use crate::validate::labels::report_labels;
use crate::validate::policy::validate_export_to;
use crate::validate::ports::validate_port;
use crate::validate::regex::validate_regex;
use crate::validate::{Path, Report};

/// The reserved gateway name for all sidecars.
pub const MESH_GATEWAY: &str = "mesh";

const KB: usize = 1024;
const MB: usize = 1024 * KB;

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` policy names Istio accepts.
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// HTTP methods allowed in `corsPolicy.allowMethods`.
const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

/// gRPC status names accepted by `fault.abort.grpcStatus`.
const GRPC_STATUSES: &[&str] = &[
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

/// HTTP/2 pseudo headers that may be matched on.
const PSEUDO_HEADERS: &[&str] = &[":method", ":scheme", ":authority", ":path", ":status"];

/// True when Go's `http.StatusText` knows `code` (Istio accepts such codes in `retryOn`).
fn is_known_http_status(code: i64) -> bool {
    matches!(
        code,
        100..=103
            | 200..=208
            | 226
            | 300..=305
            | 307
            | 308
            | 400..=418
            | 421..=426
            | 428
            | 429
            | 431
            | 451
            | 500..=508
            | 510
            | 511
    )
}

/// Where a rule sits: in an ordinary VirtualService, as a root rule that delegates, or inside
/// a delegate VirtualService (one without hosts).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RouteType {
    Independent,
    Root,
    Delegate,
}

/// The JWT claim routing form of a header name: `@request.auth.claims.a.b` or
/// `@request.auth.claims[a][b]`.
pub fn is_jwt_claim_header(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    if name.len() < PREFIX.len() || !name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let rest = &name[PREFIX.len()..];
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

fn is_tchar(c: u8) -> bool {
    // Istio's character class `[!#$%&'*+-.^_`|~A-Za-z0-9]` (note `+-.` is a range, so `,`
    // is in it too).
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b','
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A header name in a match: a token, a pseudo header, or a JWT claim.
pub fn validate_match_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_jwt_claim_header(name) || PSEUDO_HEADERS.contains(&name) {
        return Ok(());
    }
    if !name.bytes().all(is_tchar) {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

fn validate_cors_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name == "*" {
        return Ok(());
    }
    if !name.bytes().all(is_tchar) {
        return Err(format!("header name {name} is not a valid header name"));
    }
    Ok(())
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// A header name added or set on a request (`:authority`/`host` allowed, other pseudo
/// headers not).
fn validate_request_header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if is_internal_header(name) && !is_authority_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// A header name removed from a request or changed on a response.
fn validate_header_op_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name.eq_ignore_ascii_case("host") {
        return Err(format!("invalid header {name:?}: cannot set Host header"));
    }
    if is_internal_header(name) {
        return Err(format!(
            "invalid header {name:?}: header cannot have \":\" prefix"
        ));
    }
    Ok(())
}

/// Envoy's header value syntax: no control characters but tab, `%` escaped as `%%` or
/// opening a `%VARIABLE%` / `%VARIABLE(args)%` expression.
pub fn validate_header_value(value: &str) -> Result<(), String> {
    if value
        .bytes()
        .any(|c| (c <= 0x08) || (0x0a..=0x1f).contains(&c) || c == 0x7f)
    {
        return Err(format!("header value configuration {value} is invalid"));
    }
    parse_header_value(value).map_err(|e| format!("header value configuration: {e}"))
}

fn parse_header_value(v: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum S {
        Literal,
        VariableName,
        ExpectArray,
        ExpectString,
        String,
        ExpectArrayDelimiterOrEnd,
        ExpectArgsEnd,
        ExpectVariableEnd,
    }
    let b = v.as_bytes();
    let mut pos = 0;
    let mut state = S::Literal;
    while pos < b.len() {
        let ch = b[pos];
        let has_next = pos + 1 < b.len();
        match state {
            S::Literal => {
                if ch == b'%' {
                    if !has_next {
                        return Err("invalid header configuration. Un-escaped %".into());
                    }
                    if b[pos + 1] == b'%' {
                        pos += 1;
                    } else {
                        state = S::VariableName;
                    }
                }
            }
            S::VariableName => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch == b'(' {
                    state = S::ExpectArray;
                }
            }
            S::ExpectArray => {
                if ch == b'[' {
                    state = S::ExpectString;
                } else if ch != b' ' {
                    state = S::String;
                }
            }
            S::ExpectArrayDelimiterOrEnd => {
                if ch == b',' {
                    state = S::ExpectString;
                } else if ch == b']' {
                    state = S::ExpectArgsEnd;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting ',', ']', or whitespace".into(),
                    );
                }
            }
            S::ExpectString => {
                if ch == b'"' {
                    state = S::String;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting '\"'".into());
                }
            }
            S::String => {
                if ch == b'\\' {
                    if !has_next {
                        return Err(
                            "invalid header configuration. Un-terminated backslash in JSON string"
                                .into(),
                        );
                    }
                    pos += 1;
                } else if ch == b')' {
                    state = S::ExpectVariableEnd;
                } else if ch == b'"' {
                    state = S::ExpectArrayDelimiterOrEnd;
                }
            }
            S::ExpectArgsEnd => {
                if ch == b')' {
                    state = S::ExpectVariableEnd;
                } else if ch != b' ' {
                    return Err("invalid header configuration. Expecting ')' or whitespace".into());
                }
            }
            S::ExpectVariableEnd => {
                if ch == b'%' {
                    state = S::Literal;
                } else if ch != b' ' {
                    return Err(
                        "invalid header configuration. Expecting '%' or whitespace after".into(),
                    );
                }
            }
        }
        pos += 1;
    }
    if state != S::Literal {
        return Err(format!(
            "invalid header configuration. Un-terminated variable expression '{v}'"
        ));
    }
    Ok(())
}

/// Header manipulation rules, as Istio checks them for a rule and for each destination.
fn validate_headers(h: &Headers, path: &Path, report: &mut Report) {
    if let Some(req) = &h.request {
        let p = path.field("request");
        for (name, value) in &req.add {
            let at = p.field("add").key(name);
            if let Err(e) = validate_request_header_op_name(name) {
                report.error(&at, e);
            }
            if let Err(e) = validate_header_value(value) {
                report.error(&at, e);
            }
        }
        for (name, value) in &req.set {
            let at = p.field("set").key(name);
            if let Err(e) = validate_request_header_op_name(name) {
                report.error(&at, e);
            }
            if let Err(e) = validate_header_value(value) {
                report.error(&at, e);
            }
        }
        for (i, name) in req.remove.iter().enumerate() {
            if let Err(e) = validate_header_op_name(name) {
                report.error(&p.field("remove").index(i), e);
            }
        }
    }
    if let Some(resp) = &h.response {
        let p = path.field("response");
        for (op, map) in [("add", &resp.add), ("set", &resp.set)] {
            for (name, value) in map {
                let at = p.field(op).key(name);
                if let Err(e) = validate_header_op_name(name) {
                    report.error(&at, e);
                }
                if let Err(e) = validate_header_value(value) {
                    report.error(&at, e);
                }
            }
        }
        for (i, name) in resp.remove.iter().enumerate() {
            if let Err(e) = validate_header_op_name(name) {
                report.error(&p.field("remove").index(i), e);
            }
        }
    }
}

/// Istio's duration rule for route timeouts, retries, delays and CORS max age.
fn check_duration(d: &Duration, path: &Path, report: &mut Report) {
    if let Err(e) = validate_duration(*d) {
        report.error(path, e);
    }
}

/// One-of and content checks for a string match. `allow_empty_prefix` is true for `uri`,
/// where Envoy accepts an empty prefix.
fn validate_string_match(
    sm: &StringMatch,
    location: &str,
    allow_empty_prefix: bool,
    path: &Path,
    report: &mut Report,
) {
    if sm.set_count() > 1 {
        report.error(
            path,
            "only one of exact, prefix or regex may be set in a string match",
        );
    }
    match sm.kind() {
        Some((StringMatchKind::Prefix, "")) if !allow_empty_prefix => {
            report.error(
                &path.field("prefix"),
                format!("{location:?}: prefix string match should not be empty"),
            );
        }
        Some((StringMatchKind::Regex, re)) => {
            if re.is_empty() {
                report.error(
                    &path.field("regex"),
                    format!("{location:?}: regex string match should not be empty"),
                );
            } else if let Err(e) = validate_regex(re, location) {
                report.error(&path.field("regex"), e);
            }
        }
        _ => {}
    }
}

/// Istio's `validateDestination`: host (not `*`), subset name and port.
pub fn validate_destination(d: &Destination, path: &Path, report: &mut Report) {
    let host = path.field("host");
    if d.host.is_empty() {
        report.error(&host, "Required value: empty domain name not allowed");
    } else if d.host == "*" {
        report.error(&host, format!("invalid destination host {}", d.host));
    } else if let Err(e) = validate_wildcard_domain(&d.host) {
        report.error(&host, e);
    }
    if !d.subset.is_empty() && !is_dns1123_label(&d.subset) {
        report.error(
            &path.field("subset"),
            format!("subset name is invalid: {}", d.subset),
        );
    }
    if let Some(p) = &d.port
        && let Err(e) = validate_port(i64::from(p.number))
    {
        report.error(&path.field("port").field("number"), e);
    }
}

/// Istio's `validateGatewayNames`: `namespace/name` with DNS labels, or a legacy bare
/// (possibly dotted) name. As in Istio, checking stops after the first bare name.
fn validate_gateway_names(names: &[String], path: &Path, report: &mut Report) {
    for (i, name) in names.iter().enumerate() {
        let at = path.index(i);
        let Some((ns, gw)) = name.split_once('/') else {
            if name.contains('.') {
                let parts: Vec<&str> = name.split('.').collect();
                let recommended = format!("{}/{}", parts.get(1).unwrap_or(&""), parts[0]);
                report.warning(
                    &at,
                    format!(
                        "using legacy gatewayName format {name:?}; prefer the <namespace>/<name> format: {recommended:?}"
                    ),
                );
            }
            if let Err(e) = validate_fqdn(name) {
                report.error(&at, e);
            }
            return;
        };
        if ns.is_empty() || gw.is_empty() {
            report.error(&at, "config namespace and gateway name cannot be empty");
        }
        if !is_dns1123_label(ns) {
            report.error(&at, format!("invalid value for namespace: {ns:?}"));
        }
        if !is_dns1123_label(gw) {
            report.error(&at, format!("invalid value for gateway name: {gw:?}"));
        }
    }
}

fn validate_source_labels(labels: &BTreeMap<String, String>, path: &Path, report: &mut Report) {
    report_labels(labels, path, report);
}

/// True when the VirtualService applies to gateways only (`mesh` not listed). As in Istio,
/// this is also true when `gateways` is empty.
fn is_gateway(vs: &VirtualService) -> bool {
    !vs.gateways.iter().any(|g| g == MESH_GATEWAY)
}

fn is_sni_host(vs: &VirtualService) -> bool {
    vs.tls
        .iter()
        .any(|t| t.r#match.iter().any(|m| !m.sni_hosts.is_empty()))
}

/// Validates a VirtualService spec found at `path` in namespace `namespace`.
pub(super) fn validate_virtual_service(
    vs: &VirtualService,
    namespace: &str,
    path: &Path,
    report: &mut Report,
) {
    let delegate = vs.hosts.is_empty();
    if delegate {
        if !vs.gateways.is_empty() {
            report.error(
                &path.field("gateways"),
                "delegate virtual service must have no gateways specified",
            );
        }
        if !vs.tls.is_empty() {
            report.error(
                &path.field("tls"),
                "delegate virtual service must have no tls route specified",
            );
        }
        if !vs.tcp.is_empty() {
            report.error(
                &path.field("tcp"),
                "delegate virtual service must have no tcp route specified",
            );
        }
    }

    let (applies_to_mesh, applies_to_gateway) = if vs.gateways.is_empty() {
        (true, false)
    } else {
        validate_gateway_names(&vs.gateways, &path.field("gateways"), report);
        let gw = is_gateway(vs);
        (!gw, gw)
    };

    if !applies_to_gateway {
        for (i, http) in vs.http.iter().enumerate() {
            for (j, m) in http.r#match.iter().enumerate() {
                let mp = path.field("http").index(i).field("match").index(j);
                for (field, map) in [
                    ("headers", &m.headers),
                    ("withoutHeaders", &m.without_headers),
                ] {
                    for key in map.keys() {
                        if is_jwt_claim_header(key) {
                            report.error(
                                &mp.field(field).key(key),
                                format!(
                                    "JWT claim based routing (key: {key}) is only supported for gateway, found no gateways: [{}]",
                                    vs.gateways.join(" ")
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    let mut all_hosts_valid = true;
    let sni = is_sni_host(vs);
    for (i, host) in vs.hosts.iter().enumerate() {
        let at = path.field("hosts").index(i);
        let res = if applies_to_gateway {
            validate_wildcard_domain_for_gateway(sni, host)
        } else {
            validate_wildcard_domain(host)
        };
        match res {
            Err(e) => {
                if !is_valid_ip(host) {
                    report.error(&at, e);
                    all_hosts_valid = false;
                }
            }
            Ok(()) => {
                if applies_to_mesh && host == "*" {
                    report.error(
                        &at,
                        "wildcard host * is not allowed for virtual services bound to the mesh gateway",
                    );
                    all_hosts_valid = false;
                }
            }
        }
    }
    if all_hosts_valid {
        for i in 0..vs.hosts.len() {
            for j in i + 1..vs.hosts.len() {
                if host_matches(&vs.hosts[i], &vs.hosts[j]) {
                    report.error(
                        &path.field("hosts").index(j),
                        format!(
                            "duplicate hosts in virtual service: {} & {}",
                            vs.hosts[i], vs.hosts[j]
                        ),
                    );
                }
            }
        }
    }

    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        report.error(path, "http, tcp or tls must be provided in virtual service");
    }
    for (i, route) in vs.http.iter().enumerate() {
        validate_http_route(route, delegate, &path.field("http").index(i), report);
    }
    for (i, route) in vs.tls.iter().enumerate() {
        validate_tls_route(route, vs, &path.field("tls").index(i), report);
    }
    for (i, route) in vs.tcp.iter().enumerate() {
        validate_tcp_route(route, &path.field("tcp").index(i), report);
    }
    for (_, e) in validate_export_to(namespace, &vs.export_to, false, false) {
        report.error(&path.field("exportTo"), e);
    }

    super::unreachable::warn_unreachable_rules(vs, path, report);
}

fn validate_http_route(http: &HttpRoute, delegate: bool, path: &Path, report: &mut Report) {
    let route_type = if delegate {
        RouteType::Delegate
    } else if http.delegate.is_some() {
        RouteType::Root
    } else {
        RouteType::Independent
    };
    validate_http_route_conflict(http, route_type, path, report);
    validate_http_route_match_request(http, path, report);
    if let Some(h) = &http.headers {
        validate_headers(h, &path.field("headers"), report);
    }
    if let Some(cors) = &http.cors_policy {
        validate_cors_policy(cors, &path.field("corsPolicy"), report);
    }
    if let Some(fault) = &http.fault {
        validate_fault(fault, &path.field("fault"), report);
    }
    if let Some(v) = http.mirror_percent {
        let at = path.field("mirrorPercent");
        if v > 100 {
            report.error(
                &at,
                format!("mirror_percent must have a max value of 100 (it has {v})"),
            );
        }
        report.warning(
            &at,
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
    }
    if let Some(p) = &http.mirror_percentage {
        let at = path.field("mirrorPercentage").field("value");
        if p.value > 100.0 {
            report.error(
                &at,
                format!(
                    "mirror_percentage must have a max value of 100 (it has {:.6})",
                    p.value
                ),
            );
        }
        if p.value < 0.0 {
            report.error(
                &at,
                format!(
                    "mirror_percentage must have a min value of 0 (it has {:.6})",
                    p.value
                ),
            );
        }
    }
    if let Some(m) = &http.mirror {
        validate_destination(m, &path.field("mirror"), report);
    }
    for (i, m) in http.mirrors.iter().enumerate() {
        let at = path.field("mirrors").index(i);
        let Some(d) = &m.destination else {
            report.error(
                &at.field("destination"),
                "destination is required for mirrors",
            );
            continue;
        };
        validate_destination(d, &at.field("destination"), report);
        if let Some(p) = &m.percentage {
            if p.value > 100.0 {
                report.error(
                    &at.field("percentage").field("value"),
                    format!(
                        "mirror percentage must have a max value of 100 (it has {:.6})",
                        p.value
                    ),
                );
            }
            if p.value < 0.0 {
                report.error(
                    &at.field("percentage").field("value"),
                    format!(
                        "mirror percentage must have a min value of 0 (it has {:.6})",
                        p.value
                    ),
                );
            }
        }
    }
    if let Some(r) = &http.redirect {
        validate_redirect(r, http, &path.field("redirect"), report);
    }
    if let Some(dr) = &http.direct_response {
        validate_direct_response(dr, &path.field("directResponse"), report);
    }
    if let Some(r) = &http.retries {
        validate_retry(r, &path.field("retries"), report);
    }
    if let Some(r) = &http.rewrite {
        validate_rewrite(r, &path.field("rewrite"), report);
    }
    validate_authority_rewrite(http, path, report);
    validate_http_route_destinations(&http.route, &path.field("route"), report);
    if let Some(t) = &http.timeout {
        check_duration(t, &path.field("timeout"), report);
    }
}

fn validate_http_route_conflict(
    http: &HttpRoute,
    route_type: RouteType,
    path: &Path,
    report: &mut Report,
) {
    if route_type == RouteType::Root {
        let name = &http.name;
        if http.redirect.is_some() {
            report.error(
                &path.field("redirect"),
                format!("root HTTP route {name} must not specify redirect"),
            );
        }
        if !http.route.is_empty() {
            report.error(
                &path.field("route"),
                format!("root HTTP route {name} must not specify route"),
            );
        }
        return;
    }
    if route_type == RouteType::Delegate && http.delegate.is_some() {
        report.error(
            &path.field("delegate"),
            "delegate HTTP route cannot contain delegate",
        );
    }
    if http.redirect.is_some() {
        if !http.route.is_empty() {
            report.error(path, "HTTP route cannot contain both route and redirect");
        }
        if http.fault.is_some() {
            report.error(path, "HTTP route cannot contain both fault and redirect");
        }
        if http.rewrite.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if http.direct_response.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
    } else if http.direct_response.is_some() {
        if !http.route.is_empty() {
            report.error(
                path,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if http.fault.is_some() {
            report.error(
                path,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if http.rewrite.is_some() {
            report.error(
                path,
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
    } else if http.route.is_empty() {
        report.error(path, "HTTP route, redirect or direct_response is required");
    }
    if http.mirror.is_some() && !http.mirrors.is_empty() {
        report.error(path, "HTTP route cannot contain both mirror and mirrors");
    }
}

fn validate_http_route_match_request(http: &HttpRoute, path: &Path, report: &mut Report) {
    for (i, m) in http.r#match.iter().enumerate() {
        let mp = path.field("match").index(i);
        for (name, sm) in &m.headers {
            let at = mp.field("headers").key(name);
            if let Err(e) = validate_match_header_name(name) {
                report.error(&at, e);
            }
            validate_string_match(sm, "headers", false, &at, report);
        }
        for (name, sm) in &m.without_headers {
            let at = mp.field("withoutHeaders").key(name);
            if let Err(e) = validate_match_header_name(name) {
                report.error(&at, e);
            }
            // A regex of `*` means "present", not an RE2 pattern.
            if sm.regex.as_deref() != Some("*") {
                validate_string_match(sm, "withoutHeaders", false, &at, report);
            }
        }
        if let Some(u) = &m.uri {
            validate_string_match(u, "uri", true, &mp.field("uri"), report);
        }
        for (field, sm) in [
            ("scheme", &m.scheme),
            ("method", &m.method),
            ("authority", &m.authority),
        ] {
            if let Some(sm) = sm {
                validate_string_match(sm, field, false, &mp.field(field), report);
            }
        }
        for (name, sm) in &m.query_params {
            validate_string_match(
                sm,
                "queryParams",
                false,
                &mp.field("queryParams").key(name),
                report,
            );
        }
        if m.port != 0
            && let Err(e) = validate_port(i64::from(m.port))
        {
            report.error(&mp.field("port"), e);
        }
        validate_source_labels(&m.source_labels, &mp.field("sourceLabels"), report);
        validate_gateway_names(&m.gateways, &mp.field("gateways"), report);
        if !m.source_namespace.is_empty() && !is_dns1123_label(&m.source_namespace) {
            report.error(
                &mp.field("sourceNamespace"),
                format!("sourceNamespace match {} is invalid", m.source_namespace),
            );
        }
    }
}

fn validate_cors_policy(cors: &CorsPolicy, path: &Path, report: &mut Report) {
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        let at = path.field("allowOrigins").index(i);
        if origin.set_count() > 1 {
            report.error(
                &at,
                "only one of exact, prefix or regex may be set in a string match",
            );
        }
        let text = origin.kind().map(|(_, t)| t).unwrap_or("");
        if text.is_empty() {
            report.error(
                &at,
                format!("'{text}' is not a valid match type for CORS allow origins"),
            );
            continue;
        }
        if let Some(re) = &origin.regex
            && origin.exact.is_none()
            && origin.prefix.is_none()
            && let Err(e) = validate_regex(re, "corsPolicy.allowOrigins")
        {
            report.error(&at.field("regex"), e);
        }
    }
    for (i, m) in cors.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            report.error(
                &path.field("allowMethods").index(i),
                format!("{m:?} is not a supported HTTP method"),
            );
        }
    }
    for (field, names) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (i, n) in names.iter().enumerate() {
            if let Err(e) = validate_cors_header_name(n) {
                report.error(&path.field(field).index(i), e);
            }
        }
    }
    if let Some(age) = &cors.max_age {
        let at = path.field("maxAge");
        check_duration(age, &at, report);
        if age.get().subsec_nanos() > 0 {
            report.error(
                &at,
                "max_age duration is accurate only to seconds precision",
            );
        }
    }
}

/// Istio's `validatePercentage`: 0, or within 0.0001..=100.
fn validate_percentage(p: &Percent, path: &Path, report: &mut Report) {
    let v = p.value;
    if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) || v.is_nan() {
        report.error(
            &path.field("value"),
            format!("percentage {v} is neither 0.0, nor in range [0.0001, 100.0]"),
        );
    }
}

/// Istio's HTTP status check (200 to 600 inclusive, as Istio's code has it).
fn validate_http_status(status: i64) -> Result<(), String> {
    if !(200..=600).contains(&status) {
        return Err(format!("HTTP status {status} is not in range 200-599"));
    }
    Ok(())
}

fn validate_fault(fault: &HttpFaultInjection, path: &Path, report: &mut Report) {
    if fault.abort.is_none() && fault.delay.is_none() {
        report.error(
            path,
            "HTTP fault injection must have an abort and/or a delay",
        );
    }
    if let Some(abort) = &fault.abort {
        let p = path.field("abort");
        if let Some(pc) = &abort.percentage {
            validate_percentage(pc, &p.field("percentage"), report);
        }
        let set = [
            abort.http_status.is_some(),
            abort.grpc_status.is_some(),
            abort.http2_error.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count();
        if set > 1 {
            report.error(
                &p,
                "only one of httpStatus, grpcStatus or http2Error may be set",
            );
        }
        if let Some(status) = abort.http_status {
            if let Err(e) = validate_http_status(i64::from(status)) {
                report.error(&p.field("httpStatus"), e);
            }
        } else if let Some(g) = &abort.grpc_status {
            if !GRPC_STATUSES.contains(&g.as_str()) {
                report.error(
                    &p.field("grpcStatus"),
                    format!(
                        "gRPC status {g:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"
                    ),
                );
            }
        } else if abort.http2_error.is_some() {
            report.error(
                &p.field("http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            );
        } else {
            report.warning(&p, "abort configured, but error type not set");
        }
    }
    if let Some(delay) = &fault.delay {
        let p = path.field("delay");
        if let Some(pc) = &delay.percentage {
            validate_percentage(pc, &p.field("percentage"), report);
        }
        if delay.fixed_delay.is_some() && delay.exponential_delay.is_some() {
            report.error(&p, "only one of fixedDelay or exponentialDelay may be set");
        }
        if let Some(d) = &delay.fixed_delay {
            check_duration(d, &p.field("fixedDelay"), report);
        } else if let Some(d) = &delay.exponential_delay {
            let at = p.field("exponentialDelay");
            check_duration(d, &at, report);
            report.error(&at, "exponentialDelay not supported yet");
        }
    }
}

fn validate_redirect(r: &HttpRedirect, http: &HttpRoute, path: &Path, report: &mut Report) {
    if r.port.is_some() && r.derive_port.is_some() {
        report.error(path, "only one of port or derivePort may be set");
    }
    if !r.uri.is_empty() && !r.prefix_rewrite.is_empty() {
        report.error(
            path,
            "redirect may only contain one of uri or prefixRewrite (they are mutually exclusive)",
        );
    }
    if !r.prefix_rewrite.is_empty() {
        for (i, m) in http.r#match.iter().enumerate() {
            if let Some(u) = &m.uri
                && u.prefix.is_none()
            {
                report.error(
                    &path.field("prefixRewrite"),
                    format!(
                        "redirect prefixRewrite requires every URI match to be a prefix match, but match[{i}].uri is not"
                    ),
                );
            }
        }
    }
    // Istio reports only the first problem of a redirect.
    let first = (|| -> Result<(), (Path, String)> {
        if r.uri.is_empty()
            && r.prefix_rewrite.is_empty()
            && r.authority.is_empty()
            && r.port.is_none()
            && r.derive_port.is_none()
            && r.scheme.is_empty()
        {
            return Err((
                path.clone(),
                "redirect must specify URI, authority, scheme, or port".into(),
            ));
        }
        if r.redirect_code != 0 && !(300..=399).contains(&r.redirect_code) {
            return Err((
                path.field("redirectCode"),
                format!(
                    "{} is not a valid redirect code, must be 3xx",
                    r.redirect_code
                ),
            ));
        }
        if !r.scheme.is_empty() && r.scheme != "http" && r.scheme != "https" {
            return Err((
                path.field("scheme"),
                "invalid redirect scheme, must be \"http\" or \"https\"".into(),
            ));
        }
        if let Some(p) = r.port
            && p > 0
        {
            validate_port(i64::from(p)).map_err(|e| (path.field("port"), e))?;
        }
        Ok(())
    })();
    if let Err((at, msg)) = first {
        report.error(&at, msg);
    }
}

fn validate_direct_response(dr: &HttpDirectResponse, path: &Path, report: &mut Report) {
    if let Some(body) = &dr.body {
        let at = path.field("body");
        if body.string.is_some() && body.bytes.is_some() {
            report.error(&at, "only one of string or bytes may be set");
        }
        let size = match (&body.string, &body.bytes) {
            (Some(s), _) => s.len(),
            (None, Some(b)) => b.len(),
            (None, None) => 0,
        };
        if size > MB {
            report.error(
                &at,
                "large direct_responses may impact control plane performance, must be less than 1MB",
            );
        } else if size > 100 * KB {
            report.warning(
                &at,
                "large direct_responses may impact control plane performance",
            );
        }
    }
    if let Err(e) = validate_http_status(i64::from(dr.status)) {
        report.error(&path.field("status"), e);
    }
}

fn validate_retry(r: &HttpRetry, path: &Path, report: &mut Report) {
    if r.attempts < 0 {
        report.error(&path.field("attempts"), "attempts cannot be negative");
    }
    if r.attempts == 0
        && (r.per_try_timeout.is_some()
            || !r.retry_on.is_empty()
            || r.retry_remote_localities.is_some())
    {
        report.error(
            &path.field("attempts"),
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    if let Some(t) = &r.per_try_timeout {
        check_duration(t, &path.field("perTryTimeout"), report);
    }
    if !r.retry_on.is_empty() {
        for policy in r.retry_on.split(',') {
            let known_status = go_atoi(policy).is_some_and(is_known_http_status);
            if !known_status && !RETRY_ON_POLICIES.contains(&policy) {
                report.error(
                    &path.field("retryOn"),
                    format!("{policy:?} is not a valid retryOn policy"),
                );
            }
        }
    }
    if let Some(b) = &r.backoff {
        check_duration(b, &path.field("backoff"), report);
    }
}

fn validate_rewrite(r: &HttpRewrite, path: &Path, report: &mut Report) {
    if !r.uri.is_empty() && r.uri_regex_rewrite.is_some() {
        report.error(
            path,
            "rewrite may only contain one of URI or UriRegexRewrite",
        );
        return;
    }
    if r.uri.is_empty() && r.uri_regex_rewrite.is_none() && r.authority.is_empty() {
        report.error(
            path,
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified",
        );
        return;
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let at = path.field("uriRegexRewrite");
        if rr.r#match.is_empty() || rr.rewrite.is_empty() {
            report.error(
                &at,
                "UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified",
            );
        } else if let Err(e) = validate_regex(&rr.r#match, "HTTPRewrite.UriRegexRewrite.Match") {
            report.error(
                &at.field("match"),
                format!("UriRegexRewrite has errors: {e}"),
            );
        }
    }
}

/// The authority may be rewritten in one place only: `rewrite.authority` or one
/// `:authority`/`host` entry of `headers.request.set`/`add`.
fn validate_authority_rewrite(http: &HttpRoute, path: &Path, report: &mut Report) {
    let mut current = http
        .rewrite
        .as_ref()
        .map(|r| r.authority.clone())
        .unwrap_or_default();
    let Some(req) = http.headers.as_ref().and_then(|h| h.request.as_ref()) else {
        return;
    };
    for map in [&req.set, &req.add] {
        for (k, v) in map {
            if !is_authority_header(k) {
                continue;
            }
            if !current.is_empty() {
                report.error(
                    &path.field("headers").field("request"),
                    format!(
                        "authority header cannot be set multiple times: have {current:?}, attempting to set {v:?}"
                    ),
                );
                return;
            }
            current = v.clone();
        }
    }
}

fn validate_http_route_destinations(
    dests: &[HttpRouteDestination],
    path: &Path,
    report: &mut Report,
) {
    let mut total: i64 = 0;
    for (i, d) in dests.iter().enumerate() {
        let at = path.index(i);
        match &d.destination {
            None => report.error(&at.field("destination"), "destination is required"),
            Some(dest) => validate_destination(dest, &at.field("destination"), report),
        }
        if let Some(h) = &d.headers {
            validate_headers(h, &at.field("headers"), report);
        }
        if d.weight < 0 {
            report.error(&at.field("weight"), format!("weight {} < 0", d.weight));
        }
        total += i64::from(d.weight);
    }
    if dests.len() > 1 && total == 0 {
        report.error(path, "total destination weight = 0");
    }
}

fn validate_route_destinations(dests: &[RouteDestination], path: &Path, report: &mut Report) {
    let mut total: i64 = 0;
    for (i, d) in dests.iter().enumerate() {
        let at = path.index(i);
        match &d.destination {
            None => report.error(&at.field("destination"), "destination is required"),
            Some(dest) => validate_destination(dest, &at.field("destination"), report),
        }
        if d.weight < 0 {
            report.error(&at.field("weight"), format!("weight {} < 0", d.weight));
        }
        total += i64::from(d.weight);
    }
    if dests.len() > 1 && total == 0 {
        report.error(path, "total destination weight = 0");
    }
}

fn validate_tls_route(tls: &TlsRoute, vs: &VirtualService, path: &Path, report: &mut Report) {
    if tls.r#match.is_empty() {
        report.error(
            &path.field("match"),
            "TLS route must have at least one match condition",
        );
    }
    for (i, m) in tls.r#match.iter().enumerate() {
        let mp = path.field("match").index(i);
        if m.sni_hosts.is_empty() {
            report.error(
                &mp.field("sniHosts"),
                "TLS match must have at least one SNI host",
            );
        }
        for (j, sni) in m.sni_hosts.iter().enumerate() {
            validate_sni_host(sni, vs, &mp.field("sniHosts").index(j), report);
        }
        for (j, s) in m.destination_subnets.iter().enumerate() {
            if let Err(e) = validate_ip_subnet(s) {
                report.error(&mp.field("destinationSubnets").index(j), e);
            }
        }
        if m.port != 0
            && let Err(e) = validate_port(i64::from(m.port))
        {
            report.error(&mp.field("port"), e);
        }
        validate_source_labels(&m.source_labels, &mp.field("sourceLabels"), report);
        validate_gateway_names(&m.gateways, &mp.field("gateways"), report);
    }
    if tls.route.is_empty() {
        report.error(&path.field("route"), "TLS route is required");
    }
    validate_route_destinations(&tls.route, &path.field("route"), report);
}

fn validate_sni_host(sni: &str, vs: &VirtualService, path: &Path, report: &mut Report) {
    let res = if is_gateway(vs) {
        validate_wildcard_domain_for_gateway(true, sni)
    } else {
        validate_wildcard_domain(sni)
    };
    if let Err(e) = res {
        if is_valid_ip(sni) {
            report.warning(
                path,
                format!(
                    "using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"
                ),
            );
        } else {
            report.error(path, e);
        }
        return;
    }
    if vs.hosts.iter().any(|h| host_subset_of(sni, h)) {
        return;
    }
    report.error(
        path,
        format!(
            "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
            vs.hosts.join(", ")
        ),
    );
}

fn validate_tcp_route(tcp: &TcpRoute, path: &Path, report: &mut Report) {
    for (i, m) in tcp.r#match.iter().enumerate() {
        let mp = path.field("match").index(i);
        for (j, s) in m.destination_subnets.iter().enumerate() {
            if let Err(e) = validate_ip_subnet(s) {
                report.error(&mp.field("destinationSubnets").index(j), e);
            }
        }
        if m.port != 0
            && let Err(e) = validate_port(i64::from(m.port))
        {
            report.error(&mp.field("port"), e);
        }
        validate_source_labels(&m.source_labels, &mp.field("sourceLabels"), report);
        validate_gateway_names(&m.gateways, &mp.field("gateways"), report);
    }
    if tcp.route.is_empty() {
        report.error(&path.field("route"), "TCP route is required");
    }
    validate_route_destinations(&tcp.route, &path.field("route"), report);
}
