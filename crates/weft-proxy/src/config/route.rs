//! Route configurations compiled into lookup tables: virtual hosts by authority, routes with
//! precompiled matchers, and the action each route takes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use regex::Regex;
use weft_xds::envoy::config::core::v3::{HeaderValueOption, data_source};
use weft_xds::envoy::config::route::v3 as rt;
use weft_xds::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};

use super::filters::{CorsPolicy, PerFilter, per_filter};
use super::policy::{HashPolicy, Mirror, RetryPolicy, compile_retry};
use super::{CompileError, Unsupported, duration};
use crate::cluster::Priority;

/// An HTTP route configuration (`RouteConfiguration`), ready for lookups on the request path.
#[derive(Debug)]
pub struct RouteTable {
    /// The `RouteConfiguration` name; HCMs refer to tables by it.
    pub name: String,
    vhosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    /// `*suffix` domains, longest first (Envoy prefers the longest wildcard).
    suffixes: Vec<(String, usize)>,
    /// `prefix*` domains, longest first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
    /// Route-configuration-level header changes, applied after the more specific ones.
    pub headers: HeaderRules,
    /// Route-configuration-level `typed_per_filter_config`.
    pub per_filter: Option<Box<PerFilter>>,
}

/// One virtual host: the routes for a set of domains.
#[derive(Debug)]
pub struct VirtualHost {
    /// The virtual host's name (for logs and stats).
    pub name: String,
    /// Routes, tried in order; the first match wins.
    pub routes: Vec<Route>,
    /// Virtual-host-level header changes.
    pub headers: HeaderRules,
    /// Virtual-host-level retry policy (a route's own policy replaces it).
    pub retry: Option<Arc<RetryPolicy>>,
    /// `include_request_attempt_count`: send `x-envoy-attempt-count` upstream.
    pub attempt_count_in_request: bool,
    /// `include_attempt_count_in_response`: return `x-envoy-attempt-count` downstream.
    pub attempt_count_in_response: bool,
    /// `per_request_buffer_limit_bytes` for bodies replayed by retries and mirrors.
    pub buffer_limit: Option<u32>,
    /// Virtual-host-level filter settings (`typed_per_filter_config`, legacy `cors`).
    pub per_filter: Option<Box<PerFilter>>,
}

/// One route: a matcher and what to do with requests it matches.
#[derive(Debug)]
pub struct Route {
    /// The route's name (may be empty).
    pub name: String,
    matcher: RouteMatcher,
    /// What the proxy does with a matching request.
    pub action: Action,
    /// Route-level header changes.
    pub headers: HeaderRules,
    /// Route-level filter settings (`typed_per_filter_config`, legacy `cors`).
    pub per_filter: Option<Box<PerFilter>>,
    /// `per_request_buffer_limit_bytes`.
    pub buffer_limit: Option<u32>,
}

#[derive(Debug)]
enum PathMatch {
    Prefix(String),
    Path(String),
    Regex(Regex),
    SeparatedPrefix(String),
    /// A path specifier weft cannot evaluate: never matches (reported at compile time).
    Never,
}

#[derive(Debug)]
struct RouteMatcher {
    path: PathMatch,
    case_sensitive: bool,
    headers: Vec<HeaderMatcher>,
    query: Vec<QueryMatcher>,
}

/// A compiled `envoy.type.matcher.v3.StringMatcher`.
#[derive(Debug)]
pub enum StringMatch {
    /// Equal to the pattern.
    Exact(String, bool),
    /// Starts with the pattern.
    Prefix(String, bool),
    /// Ends with the pattern.
    Suffix(String, bool),
    /// Contains the pattern.
    Contains(String, bool),
    /// Matches the whole value (RE2 full match).
    Regex(Regex),
    /// A matcher weft cannot evaluate (reported at compile time); never matches.
    Never,
}

impl StringMatch {
    /// Whether `value` matches (`bool` in the variants is `ignore_case`).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(s, false) => value == s,
            StringMatch::Exact(s, true) => value.eq_ignore_ascii_case(s),
            StringMatch::Prefix(s, false) => value.starts_with(s.as_str()),
            StringMatch::Prefix(s, true) => starts_with_ignore_case(value, s),
            StringMatch::Suffix(s, false) => value.ends_with(s.as_str()),
            StringMatch::Suffix(s, true) => {
                value.len() >= s.len()
                    && value.as_bytes()[value.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            StringMatch::Contains(s, false) => value.contains(s.as_str()),
            StringMatch::Contains(s, true) => value
                .as_bytes()
                .windows(s.len().max(1))
                .any(|w| w.eq_ignore_ascii_case(s.as_bytes())),
            StringMatch::Regex(re) => re.is_match(value),
            StringMatch::Never => false,
        }
    }
}

fn starts_with_ignore_case(value: &str, prefix: &str) -> bool {
    value.len() >= prefix.len()
        && value.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[derive(Debug)]
enum HeaderMatchKind {
    Present(bool),
    Value(StringMatch),
}

/// A compiled `HeaderMatcher` (routes, retriable headers, fault filter).
#[derive(Debug)]
pub struct HeaderMatcher {
    name: HeaderName,
    kind: HeaderMatchKind,
    invert: bool,
    missing_as_empty: bool,
}

#[derive(Debug)]
struct QueryMatcher {
    name: String,
    kind: HeaderMatchKind,
}

/// What a route does.
#[derive(Debug)]
pub enum Action {
    /// Proxy to a cluster (`route`).
    Forward(Forward),
    /// Answer with a redirect (`redirect`).
    Redirect(Redirect),
    /// Answer directly (`direct_response`).
    Direct(Direct),
}

/// The `route` action: which cluster, and how the request is rewritten on its way.
#[derive(Debug)]
pub struct Forward {
    /// The upstream cluster(s).
    pub clusters: ClusterChoice,
    /// Replacement for the matched prefix (or exact path).
    pub prefix_rewrite: Option<String>,
    /// Regex rewrite of the path (query kept).
    pub regex_rewrite: Option<(Regex, String)>,
    /// `host_rewrite_literal`.
    pub host_rewrite: Option<HeaderValue>,
    /// Route timeout (Envoy's default is 15 s; `None` is "no timeout").
    pub timeout: Option<Duration>,
    /// Status when the named cluster does not exist.
    pub cluster_not_found: StatusCode,
    /// `retry_policy` (replaces the virtual host's).
    pub retry: Option<Arc<RetryPolicy>>,
    /// `hash_policy`, for ring hash and Maglev clusters.
    pub hash_policy: Vec<HashPolicy>,
    /// `request_mirror_policies`.
    pub mirrors: Vec<Mirror>,
    /// `priority`: which circuit-breaker thresholds apply.
    pub priority: Priority,
    /// `idle_timeout`: the stream idle timeout for this route (replaces the connection
    /// manager's `stream_idle_timeout`; zero disables).
    pub idle_timeout: Option<Option<Duration>>,
}

/// Where a `route` action sends requests.
#[derive(Debug)]
pub enum ClusterChoice {
    /// A single cluster by name.
    One(String),
    /// A weighted split; targets hold cumulative weights for one random draw per request.
    Weighted {
        /// The clusters, in configuration order.
        targets: Vec<WeightedTarget>,
        /// Sum of all weights.
        total: u64,
    },
}

/// One cluster of a weighted split.
#[derive(Debug)]
pub struct WeightedTarget {
    /// Cluster name.
    pub name: String,
    /// Sum of the weights up to and including this target.
    pub cumulative: u64,
    /// Header changes applied when this target is chosen (before the route's).
    pub headers: HeaderRules,
    /// Per-target `host_rewrite_literal`.
    pub host_rewrite: Option<HeaderValue>,
}

impl ClusterChoice {
    /// Picks the cluster for one request.
    pub fn pick(&self) -> (&str, Option<&WeightedTarget>) {
        match self {
            ClusterChoice::One(name) => (name, None),
            ClusterChoice::Weighted { targets, total } => {
                let draw = fastrand::u64(0..(*total).max(1));
                let idx = targets.partition_point(|t| t.cumulative <= draw);
                match targets.get(idx).or(targets.last()) {
                    Some(t) => (&t.name, Some(t)),
                    None => ("", None),
                }
            }
        }
    }
}

/// The `redirect` action, with everything needed to build `Location`.
#[derive(Debug)]
pub struct Redirect {
    /// New scheme (`https_redirect` or `scheme_redirect`).
    pub scheme: Option<String>,
    /// New host.
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path.
    pub path: RedirectPath,
    /// Redirect status (301 by default).
    pub status: StatusCode,
    /// Drop the query string.
    pub strip_query: bool,
}

/// How a redirect changes the path.
#[derive(Debug)]
pub enum RedirectPath {
    /// The request's path.
    Keep,
    /// `path_redirect`: a new path (may carry a query).
    Path(String),
    /// `prefix_rewrite`: the matched prefix replaced.
    Prefix(String),
    /// `regex_rewrite`: pattern and substitution (`${1}` syntax).
    Regex(Regex, String),
}

/// The `direct_response` action.
#[derive(Debug)]
pub struct Direct {
    /// Response status.
    pub status: StatusCode,
    /// Response body (may be empty).
    pub body: Bytes,
}

/// Header additions and removals at one level (route config, virtual host, route, weighted
/// cluster), compiled into ready-made names and values.
#[derive(Debug, Default)]
pub struct HeaderRules {
    /// Request headers to add, after removals.
    pub request_add: Vec<HeaderAdd>,
    /// Request headers to remove.
    pub request_remove: Vec<HeaderName>,
    /// Response headers to add, after removals.
    pub response_add: Vec<HeaderAdd>,
    /// Response headers to remove.
    pub response_remove: Vec<HeaderName>,
}

/// How an added header treats an existing one (`HeaderValueOption.append_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD` (Envoy's default).
    AppendOrAdd,
    /// `ADD_IF_ABSENT`.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (also `append: false`).
    OverwriteOrAdd,
    /// `OVERWRITE_IF_EXISTS`.
    OverwriteIfExists,
}

/// One header to add.
#[derive(Debug)]
pub struct HeaderAdd {
    /// Header name.
    pub name: HeaderName,
    /// Header value.
    pub value: HeaderValue,
    /// What to do when the header is already there.
    pub action: AppendAction,
}

impl HeaderRules {
    /// True when the rules change nothing (skips work on the request path).
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }

    /// Applies the request rules to `headers`.
    pub fn apply_request(&self, headers: &mut HeaderMap) {
        apply(&self.request_remove, &self.request_add, headers);
    }

    /// Applies the response rules to `headers`.
    pub fn apply_response(&self, headers: &mut HeaderMap) {
        apply(&self.response_remove, &self.response_add, headers);
    }
}

fn apply(remove: &[HeaderName], add: &[HeaderAdd], headers: &mut HeaderMap) {
    for name in remove {
        headers.remove(name);
    }
    for h in add {
        match h.action {
            AppendAction::AppendOrAdd => {
                headers.append(h.name.clone(), h.value.clone());
            }
            AppendAction::AddIfAbsent => {
                if !headers.contains_key(&h.name) {
                    headers.insert(h.name.clone(), h.value.clone());
                }
            }
            AppendAction::OverwriteOrAdd => {
                headers.insert(h.name.clone(), h.value.clone());
            }
            AppendAction::OverwriteIfExists => {
                if headers.contains_key(&h.name) {
                    headers.insert(h.name.clone(), h.value.clone());
                }
            }
        }
    }
}

impl RouteTable {
    /// Finds the virtual host for an authority (`host` or `host:port`), the way Envoy does:
    /// exact domain (with, then without the port), longest `*suffix`, longest `prefix*`, `*`.
    pub fn find_vhost(&self, authority: &str) -> Option<&VirtualHost> {
        let lowered;
        let authority = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = authority.to_ascii_lowercase();
            lowered.as_str()
        } else {
            authority
        };
        if let Some(&i) = self.exact.get(authority) {
            return self.vhosts.get(i);
        }
        let host = strip_port(authority);
        if host.len() != authority.len()
            && let Some(&i) = self.exact.get(host)
        {
            return self.vhosts.get(i);
        }
        for (suffix, i) in &self.suffixes {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return self.vhosts.get(*i);
            }
        }
        for (prefix, i) in &self.prefixes {
            if host.len() > prefix.len() && host.starts_with(prefix.as_str()) {
                return self.vhosts.get(*i);
            }
        }
        self.any.and_then(|i| self.vhosts.get(i))
    }

    /// All virtual hosts (for the admin interface).
    pub fn vhosts(&self) -> &[VirtualHost] {
        &self.vhosts
    }
}

/// `host:port` -> `host`, `[v6]:port` -> `[v6]`.
pub fn strip_port(authority: &str) -> &str {
    if let Some(end) = authority.rfind(']') {
        return &authority[..=end];
    }
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}

impl VirtualHost {
    /// The first route matching the request.
    pub fn find_route(&self, path_and_query: &str, headers: &HeaderMap) -> Option<&Route> {
        let (path, query) = match path_and_query.find('?') {
            Some(i) => (&path_and_query[..i], &path_and_query[i + 1..]),
            None => (path_and_query, ""),
        };
        self.routes
            .iter()
            .find(|r| r.matcher.matches(path_and_query, path, query, headers))
    }
}

impl Route {
    /// The length of the path prefix this route matched on (for `prefix_rewrite`).
    pub fn matched_prefix_len(&self) -> Option<usize> {
        match &self.matcher.path {
            PathMatch::Prefix(p) | PathMatch::Path(p) | PathMatch::SeparatedPrefix(p) => {
                Some(p.len())
            }
            PathMatch::Regex(_) | PathMatch::Never => None,
        }
    }
}

impl RouteMatcher {
    fn matches(&self, full: &str, path: &str, query: &str, headers: &HeaderMap) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => {
                if self.case_sensitive {
                    full.starts_with(p.as_str())
                } else {
                    starts_with_ignore_case(full, p)
                }
            }
            PathMatch::Path(p) => {
                if self.case_sensitive {
                    path == p
                } else {
                    path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::SeparatedPrefix(p) => {
                let head_ok = if self.case_sensitive {
                    path.starts_with(p.as_str())
                } else {
                    starts_with_ignore_case(path, p)
                };
                head_ok && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
            PathMatch::Regex(re) => re.is_match(path),
            PathMatch::Never => false,
        };
        path_ok
            && self.headers.iter().all(|m| m.matches(headers))
            && self.query.iter().all(|m| m.matches(query))
    }
}

impl HeaderMatcher {
    /// Whether `headers` match.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let first = values.next();
        let result = match (&self.kind, first) {
            (HeaderMatchKind::Present(want), v) => v.is_some() == *want,
            (HeaderMatchKind::Value(m), None) => self.missing_as_empty && m.matches(""),
            (HeaderMatchKind::Value(m), Some(v)) => {
                let rest: Vec<&HeaderValue> = values.collect();
                if rest.is_empty() {
                    v.to_str().is_ok_and(|s| m.matches(s))
                } else {
                    // Envoy matches multi-valued headers on the values joined with ','.
                    let mut joined = String::new();
                    for (i, v) in std::iter::once(v).chain(rest).enumerate() {
                        if i > 0 {
                            joined.push(',');
                        }
                        joined.push_str(v.to_str().unwrap_or(""));
                    }
                    m.matches(&joined)
                }
            }
        };
        result != self.invert
    }
}

impl QueryMatcher {
    fn matches(&self, query: &str) -> bool {
        let value = query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == self.name).then_some(v)
        });
        match (&self.kind, value) {
            (HeaderMatchKind::Present(want), v) => v.is_some() == *want,
            (HeaderMatchKind::Value(m), Some(v)) => m.matches(v),
            (HeaderMatchKind::Value(_), None) => false,
        }
    }
}

/// Compiles a `RouteConfiguration`.
pub fn compile_route_config(
    rc: &rt::RouteConfiguration,
    resource: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<RouteTable, CompileError> {
    let mut table = RouteTable {
        name: rc.name.clone(),
        vhosts: Vec::with_capacity(rc.virtual_hosts.len()),
        exact: HashMap::new(),
        suffixes: Vec::new(),
        prefixes: Vec::new(),
        any: None,
        headers: header_rules(
            &rc.request_headers_to_add,
            &rc.request_headers_to_remove,
            &rc.response_headers_to_add,
            &rc.response_headers_to_remove,
            resource,
            "",
            warnings,
        )?,
        per_filter: per_filter(&rc.typed_per_filter_config, resource, "", warnings)?,
    };
    for (vi, vh) in rc.virtual_hosts.iter().enumerate() {
        let vpath = format!("virtual_hosts[{vi}]");
        for domain in &vh.domains {
            let d = domain.to_ascii_lowercase();
            let dup = if d == "*" {
                table.any.replace(vi).is_some()
            } else if let Some(suffix) = d.strip_prefix('*') {
                table.suffixes.push((suffix.to_owned(), vi));
                false
            } else if let Some(prefix) = d.strip_suffix('*') {
                table.prefixes.push((prefix.to_owned(), vi));
                false
            } else {
                table.exact.insert(d, vi).is_some()
            };
            if dup {
                return Err(CompileError::Invalid {
                    resource: resource.to_owned(),
                    field: format!("{vpath}.domains"),
                    reason: format!("domain {domain:?} appears in more than one virtual host"),
                });
            }
        }
        let mut routes = Vec::with_capacity(vh.routes.len());
        for (ri, r) in vh.routes.iter().enumerate() {
            routes.push(compile_route(
                r,
                resource,
                &format!("{vpath}.routes[{ri}]"),
                warnings,
            )?);
        }
        let mut vh_filters = per_filter(&vh.typed_per_filter_config, resource, &vpath, warnings)?;
        #[allow(deprecated)]
        if let Some(c) = &vh.cors {
            let f = vh_filters.get_or_insert_with(Default::default);
            if f.cors.is_none() {
                f.cors = Some(Arc::new(CorsPolicy::compile_legacy(
                    c,
                    resource,
                    &format!("{vpath}.cors"),
                )?));
            }
        }
        table.vhosts.push(VirtualHost {
            name: vh.name.clone(),
            routes,
            headers: header_rules(
                &vh.request_headers_to_add,
                &vh.request_headers_to_remove,
                &vh.response_headers_to_add,
                &vh.response_headers_to_remove,
                resource,
                &vpath,
                warnings,
            )?,
            retry: match &vh.retry_policy {
                Some(r) => Some(Arc::new(compile_retry(
                    r,
                    resource,
                    &format!("{vpath}.retry_policy"),
                    warnings,
                )?)),
                None => None,
            },
            attempt_count_in_request: vh.include_request_attempt_count,
            attempt_count_in_response: vh.include_attempt_count_in_response,
            #[allow(deprecated)]
            buffer_limit: vh.per_request_buffer_limit_bytes.as_ref().map(|v| v.value),
            per_filter: vh_filters,
        });
    }
    table.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    table.prefixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    Ok(table)
}

fn compile_route(
    r: &rt::Route,
    resource: &str,
    path: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Route, CompileError> {
    let invalid = |field: &str, reason: String| CompileError::Invalid {
        resource: resource.to_owned(),
        field: format!("{path}.{field}"),
        reason,
    };
    let m = r
        .r#match
        .as_ref()
        .ok_or_else(|| invalid("match", "a route needs a match".into()))?;
    let pm = match &m.path_specifier {
        Some(rt::route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(rt::route_match::PathSpecifier::Path(p)) => PathMatch::Path(p.clone()),
        Some(rt::route_match::PathSpecifier::SafeRegex(re)) => PathMatch::Regex(full_regex(
            re,
            resource,
            &format!("{path}.match.safe_regex"),
        )?),
        Some(rt::route_match::PathSpecifier::PathSeparatedPrefix(p)) => {
            if p.contains(['?', '#']) || p.ends_with('/') {
                return Err(invalid(
                    "match.path_separated_prefix",
                    format!("{p:?} must not contain '?' or '#' nor end with '/'"),
                ));
            }
            PathMatch::SeparatedPrefix(p.clone())
        }
        Some(_) => PathMatch::Never,
        None => {
            return Err(invalid(
                "match",
                "a route match needs a path specifier".into(),
            ));
        }
    };
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.iter().enumerate() {
        headers.push(header_matcher(
            h,
            resource,
            &format!("{path}.match.headers[{i}]"),
        )?);
    }
    let mut query = Vec::with_capacity(m.query_parameters.len());
    for (i, q) in m.query_parameters.iter().enumerate() {
        use rt::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
        let kind = match &q.query_parameter_match_specifier {
            Some(Q::PresentMatch(b)) => HeaderMatchKind::Present(*b),
            Some(Q::StringMatch(sm)) => HeaderMatchKind::Value(string_match(
                sm,
                resource,
                &format!("{path}.match.query_parameters[{i}].string_match"),
            )?),
            None => HeaderMatchKind::Present(true),
        };
        query.push(QueryMatcher {
            name: q.name.clone(),
            kind,
        });
    }
    let matcher = RouteMatcher {
        path: pm,
        case_sensitive: m.case_sensitive.as_ref().is_none_or(|b| b.value),
        headers,
        query,
    };
    let action = match &r.action {
        Some(rt::route::Action::Route(ra)) => {
            Action::Forward(compile_forward(ra, &matcher, resource, path, warnings)?)
        }
        Some(rt::route::Action::Redirect(rd)) => {
            Action::Redirect(compile_redirect(rd, resource, path)?)
        }
        Some(rt::route::Action::DirectResponse(d)) => {
            let status = StatusCode::from_u16(d.status as u16)
                .ok()
                .filter(|_| (200..600).contains(&d.status))
                .ok_or_else(|| {
                    invalid(
                        "direct_response.status",
                        format!("{} is not an HTTP status", d.status),
                    )
                })?;
            let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
                None => Bytes::new(),
                Some(data_source::Specifier::InlineString(s)) => Bytes::from(s.clone()),
                Some(data_source::Specifier::InlineBytes(b)) => Bytes::from(b.clone()),
                Some(_) => Bytes::from(
                    crate::tls::data_source(d.body.as_ref(), "direct_response.body").map_err(
                        |e| CompileError::Invalid {
                            resource: resource.to_owned(),
                            field: format!("{path}.direct_response.body"),
                            reason: e.0,
                        },
                    )?,
                ),
            };
            Action::Direct(Direct { status, body })
        }
        Some(_) => {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{path}: route action other than route, redirect, direct_response"),
            });
            Action::Direct(Direct {
                status: StatusCode::NOT_IMPLEMENTED,
                body: Bytes::new(),
            })
        }
        None => {
            return Err(invalid(
                "action",
                "a route needs route, redirect or direct_response".into(),
            ));
        }
    };
    let mut route_filters = per_filter(&r.typed_per_filter_config, resource, path, warnings)?;
    #[allow(deprecated)]
    if let Some(rt::route::Action::Route(ra)) = &r.action
        && let Some(c) = &ra.cors
    {
        let f = route_filters.get_or_insert_with(Default::default);
        if f.cors.is_none() {
            f.cors = Some(Arc::new(CorsPolicy::compile_legacy(
                c,
                resource,
                &format!("{path}.route.cors"),
            )?));
        }
    }
    Ok(Route {
        name: r.name.clone(),
        matcher,
        action,
        per_filter: route_filters,
        #[allow(deprecated)]
        buffer_limit: r.per_request_buffer_limit_bytes.as_ref().map(|v| v.value),
        headers: header_rules(
            &r.request_headers_to_add,
            &r.request_headers_to_remove,
            &r.response_headers_to_add,
            &r.response_headers_to_remove,
            resource,
            path,
            warnings,
        )?,
    })
}

fn compile_forward(
    ra: &rt::RouteAction,
    matcher: &RouteMatcher,
    resource: &str,
    path: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Forward, CompileError> {
    let invalid = |field: &str, reason: String| CompileError::Invalid {
        resource: resource.to_owned(),
        field: format!("{path}.route.{field}"),
        reason,
    };
    use rt::route_action::ClusterSpecifier as C;
    let clusters = match &ra.cluster_specifier {
        Some(C::Cluster(name)) => ClusterChoice::One(name.clone()),
        Some(C::WeightedClusters(wc)) => {
            let mut total = 0u64;
            let mut targets = Vec::with_capacity(wc.clusters.len());
            for (i, c) in wc.clusters.iter().enumerate() {
                let weight = u64::from(c.weight.as_ref().map_or(0, |w| w.value));
                if weight == 0 {
                    continue;
                }
                total += weight;
                let tp = format!("{path}.route.weighted_clusters.clusters[{i}]");
                targets.push(WeightedTarget {
                    name: c.name.clone(),
                    cumulative: total,
                    headers: header_rules(
                        &c.request_headers_to_add,
                        &c.request_headers_to_remove,
                        &c.response_headers_to_add,
                        &c.response_headers_to_remove,
                        resource,
                        &tp,
                        warnings,
                    )?,
                    host_rewrite: match &c.host_rewrite_specifier {
                        Some(rt::weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(h)) => {
                            Some(header_value(h, resource, &format!("{tp}.host_rewrite_literal"))?)
                        }
                        None => None,
                    },
                });
            }
            if total == 0 {
                return Err(invalid(
                    "weighted_clusters",
                    "the weights add up to 0".into(),
                ));
            }
            ClusterChoice::Weighted { targets, total }
        }
        Some(_) => {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!("{path}.route: cluster_header and cluster specifier plugins"),
            });
            ClusterChoice::One(String::new())
        }
        None => return Err(invalid("cluster", "a route action needs a cluster".into())),
    };
    let prefix_rewrite = if ra.prefix_rewrite.is_empty() {
        None
    } else {
        if matches!(matcher.path, PathMatch::Regex(_)) {
            return Err(invalid(
                "prefix_rewrite",
                "prefix_rewrite needs a prefix, path or path_separated_prefix match".into(),
            ));
        }
        Some(ra.prefix_rewrite.clone())
    };
    let regex_rewrite = match &ra.regex_rewrite {
        Some(rr) => {
            let p = rr
                .pattern
                .as_ref()
                .ok_or_else(|| invalid("regex_rewrite.pattern", "missing".into()))?;
            let re = Regex::new(&p.regex)
                .map_err(|e| invalid("regex_rewrite.pattern.regex", e.to_string()))?;
            Some((re, substitution(&rr.substitution)))
        }
        None => None,
    };
    let host_rewrite =
        match &ra.host_rewrite_specifier {
            Some(rt::route_action::HostRewriteSpecifier::HostRewriteLiteral(h)) => Some(
                header_value(h, resource, &format!("{path}.route.host_rewrite_literal"))?,
            ),
            Some(_) => {
                warnings.push(Unsupported {
                    resource: resource.to_owned(),
                    what: format!("{path}.route: host rewrite other than host_rewrite_literal"),
                });
                None
            }
            None => None,
        };
    let timeout = match &ra.timeout {
        None => Some(Duration::from_secs(15)),
        Some(d) => Some(duration(d)).filter(|d| !d.is_zero()),
    };
    let cluster_not_found = match ra.cluster_not_found_response_code {
        1 => StatusCode::NOT_FOUND,
        2 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let retry = match &ra.retry_policy {
        Some(r) => Some(Arc::new(compile_retry(
            r,
            resource,
            &format!("{path}.route.retry_policy"),
            warnings,
        )?)),
        None => None,
    };
    Ok(Forward {
        clusters,
        prefix_rewrite,
        regex_rewrite,
        host_rewrite,
        timeout,
        cluster_not_found,
        retry,
        hash_policy: super::policy::compile_hash_policies(
            &ra.hash_policy,
            resource,
            &format!("{path}.route"),
            warnings,
        )?,
        mirrors: super::policy::compile_mirrors(
            &ra.request_mirror_policies,
            resource,
            &format!("{path}.route"),
            warnings,
        ),
        priority: if ra.priority == 1 {
            Priority::High
        } else {
            Priority::Default
        },
        idle_timeout: ra
            .idle_timeout
            .as_ref()
            .map(|d| Some(duration(d)).filter(|d| !d.is_zero())),
    })
}

fn compile_redirect(
    rd: &rt::RedirectAction,
    resource: &str,
    path: &str,
) -> Result<Redirect, CompileError> {
    use rt::redirect_action::{PathRewriteSpecifier as P, SchemeRewriteSpecifier as S};
    let scheme = match &rd.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => Some("https".to_owned()),
        Some(S::SchemeRedirect(s)) if !s.is_empty() => Some(s.to_ascii_lowercase()),
        _ => None,
    };
    let new_path = match &rd.path_rewrite_specifier {
        None => RedirectPath::Keep,
        Some(P::PathRedirect(p)) => RedirectPath::Path(p.clone()),
        Some(P::PrefixRewrite(p)) => RedirectPath::Prefix(p.clone()),
        Some(P::RegexRewrite(rr)) => {
            let p = rr.pattern.as_ref().ok_or_else(|| CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{path}.redirect.regex_rewrite.pattern"),
                reason: "missing".into(),
            })?;
            let re = Regex::new(&p.regex).map_err(|e| CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{path}.redirect.regex_rewrite.pattern.regex"),
                reason: e.to_string(),
            })?;
            RedirectPath::Regex(re, substitution(&rr.substitution))
        }
        Some(P::PathRewrite(_)) => RedirectPath::Keep,
    };
    let status = match rd.response_code {
        1 => StatusCode::FOUND,
        2 => StatusCode::SEE_OTHER,
        3 => StatusCode::TEMPORARY_REDIRECT,
        4 => StatusCode::PERMANENT_REDIRECT,
        _ => StatusCode::MOVED_PERMANENTLY,
    };
    Ok(Redirect {
        scheme,
        host: (!rd.host_redirect.is_empty()).then(|| rd.host_redirect.clone()),
        port: u16::try_from(rd.port_redirect).ok().filter(|p| *p != 0),
        path: new_path,
        status,
        strip_query: rd.strip_query,
    })
}

/// Compiles a `HeaderMatcher`.
pub(crate) fn header_matcher(
    h: &rt::HeaderMatcher,
    resource: &str,
    hp: &str,
) -> Result<HeaderMatcher, CompileError> {
    let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| CompileError::Invalid {
        resource: resource.to_owned(),
        field: format!("{hp}.name"),
        reason: e.to_string(),
    })?;
    use rt::header_matcher::HeaderMatchSpecifier as S;
    #[allow(deprecated)]
    let kind = match &h.header_match_specifier {
        None => HeaderMatchKind::Present(true),
        Some(S::PresentMatch(b)) => HeaderMatchKind::Present(*b),
        Some(S::ExactMatch(s)) => HeaderMatchKind::Value(StringMatch::Exact(s.clone(), false)),
        Some(S::PrefixMatch(s)) => HeaderMatchKind::Value(StringMatch::Prefix(s.clone(), false)),
        Some(S::SuffixMatch(s)) => HeaderMatchKind::Value(StringMatch::Suffix(s.clone(), false)),
        Some(S::ContainsMatch(s)) => {
            HeaderMatchKind::Value(StringMatch::Contains(s.clone(), false))
        }
        Some(S::SafeRegexMatch(re)) => HeaderMatchKind::Value(StringMatch::Regex(full_regex(
            re,
            resource,
            &format!("{hp}.safe_regex_match"),
        )?)),
        Some(S::StringMatch(sm)) => {
            HeaderMatchKind::Value(string_match(sm, resource, &format!("{hp}.string_match"))?)
        }
        Some(S::RangeMatch(_)) => HeaderMatchKind::Value(StringMatch::Never),
    };
    Ok(HeaderMatcher {
        name,
        kind,
        invert: h.invert_match,
        missing_as_empty: h.treat_missing_header_as_empty,
    })
}

/// Envoy's RE2 substitutions use `\1`; the regex crate uses `${1}` and needs `$` escaped.
fn substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(*d);
                    out.push('}');
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

/// A regex that must match the whole input (RE2 `FullMatch`, as Envoy uses).
fn full_regex(re: &RegexMatcher, resource: &str, field: &str) -> Result<Regex, CompileError> {
    Regex::new(&format!("^(?:{})$", re.regex)).map_err(|e| CompileError::Invalid {
        resource: resource.to_owned(),
        field: format!("{field}.regex"),
        reason: e.to_string(),
    })
}

/// Compiles a `StringMatcher`.
pub fn string_match(
    sm: &StringMatcher,
    resource: &str,
    field: &str,
) -> Result<StringMatch, CompileError> {
    use string_matcher::MatchPattern as M;
    let ic = sm.ignore_case;
    let lower = |s: &str| {
        if ic {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    Ok(match &sm.match_pattern {
        Some(M::Exact(s)) => StringMatch::Exact(lower(s), ic),
        Some(M::Prefix(s)) => StringMatch::Prefix(lower(s), ic),
        Some(M::Suffix(s)) => StringMatch::Suffix(lower(s), ic),
        Some(M::Contains(s)) => StringMatch::Contains(lower(s), ic),
        Some(M::SafeRegex(re)) => {
            StringMatch::Regex(full_regex(re, resource, &format!("{field}.safe_regex"))?)
        }
        Some(M::Custom(_)) | None => StringMatch::Never,
    })
}

fn header_value(v: &str, resource: &str, field: &str) -> Result<HeaderValue, CompileError> {
    HeaderValue::from_str(v).map_err(|e| CompileError::Invalid {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason: format!("{v:?} is not a valid header value: {e}"),
    })
}

pub(crate) fn header_adds(
    opts: &[HeaderValueOption],
    resource: &str,
    field: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<Vec<HeaderAdd>, CompileError> {
    let mut out = Vec::with_capacity(opts.len());
    for (i, o) in opts.iter().enumerate() {
        let here = format!("{field}[{i}]");
        let Some(h) = &o.header else {
            return Err(CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{here}.header"),
                reason: "missing".into(),
            });
        };
        let name = HeaderName::from_bytes(h.key.as_bytes()).map_err(|e| CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{here}.header.key"),
            reason: format!("{:?}: {e}", h.key),
        })?;
        let raw: &[u8] = if h.raw_value.is_empty() {
            h.value.as_bytes()
        } else {
            &h.raw_value
        };
        if raw.is_empty() && !o.keep_empty_value {
            continue;
        }
        if raw.windows(2).any(|w| w[0] == b'%' && w[1] != b'%')
            && raw.iter().filter(|b| **b == b'%').count() >= 2
        {
            warnings.push(Unsupported {
                resource: resource.to_owned(),
                what: format!(
                    "{here}.header.value formatter {:?} (sent literally)",
                    String::from_utf8_lossy(raw)
                ),
            });
        }
        let value = HeaderValue::from_bytes(raw).map_err(|e| CompileError::Invalid {
            resource: resource.to_owned(),
            field: format!("{here}.header.value"),
            reason: e.to_string(),
        })?;
        #[allow(deprecated)]
        let action = match (o.append.as_ref().map(|b| b.value), o.append_action) {
            (Some(true), _) => AppendAction::AppendOrAdd,
            (Some(false), _) => AppendAction::OverwriteOrAdd,
            (None, 1) => AppendAction::AddIfAbsent,
            (None, 2) => AppendAction::OverwriteOrAdd,
            (None, 3) => AppendAction::OverwriteIfExists,
            (None, _) => AppendAction::AppendOrAdd,
        };
        out.push(HeaderAdd {
            name,
            value,
            action,
        });
    }
    Ok(out)
}

fn header_names(
    names: &[String],
    resource: &str,
    field: &str,
) -> Result<Vec<HeaderName>, CompileError> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|e| CompileError::Invalid {
                resource: resource.to_owned(),
                field: format!("{field}[{i}]"),
                reason: format!("{n:?}: {e}"),
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn header_rules(
    req_add: &[HeaderValueOption],
    req_remove: &[String],
    resp_add: &[HeaderValueOption],
    resp_remove: &[String],
    resource: &str,
    path: &str,
    warnings: &mut Vec<Unsupported>,
) -> Result<HeaderRules, CompileError> {
    let f = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    Ok(HeaderRules {
        request_add: header_adds(req_add, resource, &f("request_headers_to_add"), warnings)?,
        request_remove: header_names(req_remove, resource, &f("request_headers_to_remove"))?,
        response_add: header_adds(resp_add, resource, &f("response_headers_to_add"), warnings)?,
        response_remove: header_names(resp_remove, resource, &f("response_headers_to_remove"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_translates_re2_groups() {
        assert_eq!(substitution(r"/v2/\1/x$"), "/v2/${1}/x$$");
    }

    #[test]
    fn port_is_stripped() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.com"), "a.com");
    }
}
