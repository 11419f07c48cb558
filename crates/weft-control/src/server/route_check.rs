//! `weft x route-check`: where does an HTTP request from a proxy go? The listener, route
//! configuration and virtual host come from [`crate::simulate`]; the route is then chosen in that
//! virtual host with the request's headers too (the simulator matches on the path only), and
//! the answer names the cluster or the weighted clusters.
//!
//! Also here: [`resources_from_config_dump`], the inverse of the admin API's `/config_dump`,
//! so that the CLI can run the same check on what a live control plane serves.

use serde::Serialize;
use weft_xds::envoy::admin::v3 as admin;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::r#type::matcher::v3 as matcher;

use crate::simulate::{Call, SimError, simulate};
use crate::translate::Resources;
use crate::translate::envoy::unpack;

/// The request to check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Host header (`reviews`, `reviews.default.svc.cluster.local:9080`, ...).
    pub host: String,
    /// Destination port.
    pub port: u32,
    /// Path, with an optional query string.
    pub path: String,
    /// Request headers (names are compared case-insensitively).
    pub headers: Vec<(String, String)>,
}

/// A weighted destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WeightedCluster {
    /// Cluster name.
    pub cluster: String,
    /// Weight.
    pub weight: u32,
}

/// Where the request went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouteReport {
    /// Listener name.
    pub listener: String,
    /// Filter chain name.
    pub filter_chain: String,
    /// Route configuration name.
    pub route_config: String,
    /// Virtual host name.
    pub virtual_host: String,
    /// Route name (Istio names routes after the VirtualService match, or `default`).
    pub route: String,
    /// The route's match, readable (`prefix /`, `headers end-user=jason`).
    pub matched: String,
    /// The single cluster, when the route has one.
    pub cluster: String,
    /// The weighted clusters, when the route splits traffic.
    pub weighted: Vec<WeightedCluster>,
    /// Other action (redirect, direct response) when there is no cluster.
    pub action: String,
}

/// Why a request goes nowhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteCheckError {
    /// The simulator stopped before a virtual host.
    #[error("{0}")]
    Simulation(#[from] SimError),
    /// The virtual host has no route for the request.
    #[error(
        "no route matches in virtual host {virtual_host} of route configuration {route_config}"
    )]
    NoRoute {
        /// Route configuration.
        route_config: String,
        /// Virtual host.
        virtual_host: String,
    },
}

fn string_matches(m: &matcher::StringMatcher, v: &str) -> bool {
    use matcher::string_matcher::MatchPattern;
    let (v, fold) = if m.ignore_case {
        (v.to_ascii_lowercase(), true)
    } else {
        (v.to_string(), false)
    };
    let norm = |s: &str| {
        if fold {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    match &m.match_pattern {
        Some(MatchPattern::Exact(e)) => v == norm(e),
        Some(MatchPattern::Prefix(p)) => v.starts_with(&norm(p)),
        Some(MatchPattern::Suffix(s)) => v.ends_with(&norm(s)),
        Some(MatchPattern::Contains(c)) => v.contains(&norm(c)),
        Some(MatchPattern::SafeRegex(r)) => regex_full(&r.regex, &v),
        _ => false,
    }
}

fn regex_full(re: &str, v: &str) -> bool {
    regex::Regex::new(&format!("^(?:{re})$"))
        .map(|r| r.is_match(v))
        .unwrap_or(false)
}

#[allow(deprecated)]
fn header_matches(h: &route::HeaderMatcher, req: &Request) -> bool {
    use route::header_matcher::HeaderMatchSpecifier as S;
    let value: Option<String> = match h.name.as_str() {
        ":authority" | "host" => Some(req.host.clone()),
        ":path" => Some(req.path.clone()),
        ":method" => Some(
            req.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(":method"))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "GET".to_string()),
        ),
        ":scheme" => Some("http".to_string()),
        name => req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone()),
    };
    let value = match value {
        Some(v) => Some(v),
        None if h.treat_missing_header_as_empty => Some(String::new()),
        None => None,
    };
    let hit = match (&h.header_match_specifier, &value) {
        (Some(S::PresentMatch(p)), v) => v.is_some() == *p,
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(S::ExactMatch(e)), Some(v)) => v == e,
        (Some(S::PrefixMatch(p)), Some(v)) => v.starts_with(p.as_str()),
        (Some(S::SuffixMatch(s)), Some(v)) => v.ends_with(s.as_str()),
        (Some(S::ContainsMatch(c)), Some(v)) => v.contains(c.as_str()),
        (Some(S::SafeRegexMatch(r)), Some(v)) => regex_full(&r.regex, v),
        (Some(S::StringMatch(sm)), Some(v)) => string_matches(sm, v),
        (Some(S::RangeMatch(r)), Some(v)) => {
            v.parse::<i64>().is_ok_and(|n| n >= r.start && n < r.end)
        }
    };
    hit != h.invert_match
}

fn query_matches(q: &route::QueryParameterMatcher, query: &[(String, String)]) -> bool {
    use route::query_parameter_matcher::QueryParameterMatchSpecifier as S;
    let v = query.iter().find(|(k, _)| k == &q.name).map(|(_, v)| v);
    match (&q.query_parameter_match_specifier, v) {
        (Some(S::PresentMatch(p)), v) => v.is_some() == *p,
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(S::StringMatch(sm)), Some(v)) => string_matches(sm, v),
    }
}

fn path_matches(m: &route::RouteMatch, path: &str) -> bool {
    use route::route_match::PathSpecifier;
    let path = path.split('?').next().unwrap_or(path);
    let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
    let eq = |a: &str, b: &str| {
        if case_sensitive {
            a == b
        } else {
            a.eq_ignore_ascii_case(b)
        }
    };
    let starts = |p: &str| {
        path.len() >= p.len() && path.is_char_boundary(p.len()) && eq(&path[..p.len()], p)
    };
    match m.path_specifier.as_ref() {
        None => false,
        Some(PathSpecifier::Prefix(p)) => starts(p),
        Some(PathSpecifier::Path(p)) => eq(path, p),
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            starts(p) && (path.len() == p.len() || path[p.len()..].starts_with('/'))
        }
        Some(PathSpecifier::SafeRegex(r)) => regex_full(&r.regex, path),
        Some(_) => false,
    }
}

/// Whether a route's match takes the request.
pub fn route_matches(m: &route::RouteMatch, req: &Request) -> bool {
    let query: Vec<(String, String)> = req
        .path
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter(|s| !s.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    path_matches(m, &req.path)
        && m.headers.iter().all(|h| header_matches(h, req))
        && m.query_parameters.iter().all(|q| query_matches(q, &query))
}

#[allow(deprecated)]
fn describe(m: &route::RouteMatch) -> String {
    use route::header_matcher::HeaderMatchSpecifier as S;
    use route::route_match::PathSpecifier;
    let mut parts = Vec::new();
    match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => parts.push(format!("prefix {p}")),
        Some(PathSpecifier::Path(p)) => parts.push(format!("path {p}")),
        Some(PathSpecifier::SafeRegex(r)) => parts.push(format!("regex {}", r.regex)),
        Some(PathSpecifier::PathSeparatedPrefix(p)) => parts.push(format!("prefix {p}/")),
        _ => {}
    }
    for h in &m.headers {
        let v = match &h.header_match_specifier {
            Some(S::StringMatch(sm)) => {
                use matcher::string_matcher::MatchPattern as P;
                match &sm.match_pattern {
                    Some(P::Exact(e)) => format!("={e}"),
                    Some(P::Prefix(p)) => format!("={p}*"),
                    Some(P::Suffix(s)) => format!("=*{s}"),
                    Some(P::Contains(c)) => format!("=*{c}*"),
                    Some(P::SafeRegex(r)) => format!("~{}", r.regex),
                    _ => String::new(),
                }
            }
            Some(S::ExactMatch(e)) => format!("={e}"),
            Some(S::PresentMatch(_)) => " present".to_string(),
            _ => String::new(),
        };
        let not = if h.invert_match { "!" } else { "" };
        parts.push(format!("header {not}{}{v}", h.name));
    }
    parts.join(", ")
}

/// Runs the request through a proxy's resources.
pub fn route_check(res: &Resources, req: &Request) -> Result<RouteReport, RouteCheckError> {
    let mut call = Call::http(&req.host, req.port);
    call.path = if req.path.is_empty() {
        "/".to_string()
    } else {
        req.path.clone()
    };
    let (outcome, reached_route) = match simulate(res, &call) {
        Ok(o) => (o, true),
        // The simulator matches paths only: a request whose path matches no route without
        // headers may still match none with them; a virtual host reached is enough here.
        Err(e) if !e.reached.virtual_host.is_empty() => ((*e.reached).clone(), false),
        Err(e) => return Err(e.into()),
    };
    let mut report = RouteReport {
        listener: outcome.listener.clone(),
        filter_chain: outcome.filter_chain.clone(),
        route_config: outcome.route_config.clone(),
        virtual_host: outcome.virtual_host.clone(),
        ..Default::default()
    };
    let vh = res.route(&outcome.route_config).and_then(|rc| {
        rc.virtual_hosts
            .iter()
            .find(|v| v.name == outcome.virtual_host)
    });
    let Some(vh) = vh else {
        // An inline route configuration or a TCP proxy: report what the simulator found.
        if !reached_route && outcome.cluster.is_empty() {
            return Err(RouteCheckError::NoRoute {
                route_config: outcome.route_config,
                virtual_host: outcome.virtual_host,
            });
        }
        report.route = outcome.route;
        report.cluster = outcome.cluster;
        return Ok(report);
    };
    let r = vh
        .routes
        .iter()
        .find(|r| r.r#match.as_ref().is_some_and(|m| route_matches(m, req)))
        .ok_or_else(|| RouteCheckError::NoRoute {
            route_config: outcome.route_config.clone(),
            virtual_host: outcome.virtual_host.clone(),
        })?;
    report.route = r.name.clone();
    report.matched = r.r#match.as_ref().map(describe).unwrap_or_default();
    use route::route::Action;
    use route::route_action::ClusterSpecifier;
    match &r.action {
        Some(Action::Route(a)) => match &a.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => report.cluster = c.clone(),
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                report.weighted = w
                    .clusters
                    .iter()
                    .map(|c| WeightedCluster {
                        cluster: c.name.clone(),
                        weight: c.weight.as_ref().map(|x| x.value).unwrap_or(0),
                    })
                    .collect();
            }
            Some(ClusterSpecifier::ClusterHeader(h)) => {
                report.action = format!("cluster from header {h}")
            }
            _ => report.action = "route without cluster".to_string(),
        },
        Some(Action::Redirect(_)) => report.action = "redirect".to_string(),
        Some(Action::DirectResponse(d)) => report.action = format!("direct response {}", d.status),
        _ => report.action = "no action".to_string(),
    }
    Ok(report)
}

/// Why a `/config_dump` could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Not a ConfigDump.
    #[error("not an Envoy config dump: {0}")]
    Transcode(#[from] weft_xds::json::TranscodeError),
    /// A resource inside did not decode.
    #[error("{type_url} in the config dump does not decode: {error}")]
    Decode {
        /// The resource's type URL.
        type_url: String,
        /// The decoder's message.
        error: String,
    },
}

/// Reads the resources back from a `/config_dump` JSON (as the admin API serves it).
pub fn resources_from_config_dump(v: &serde_json::Value) -> Result<Resources, DumpError> {
    let dump: admin::ConfigDump = weft_xds::json::from_value(v)?;
    let mut out = Resources::default();
    fn get<T: prost::Message + prost::Name + Default>(
        a: Option<&weft_xds::google::protobuf::Any>,
    ) -> Result<Option<T>, DumpError> {
        let Some(a) = a else { return Ok(None) };
        unpack::<T>(a).map(Some).ok_or_else(|| DumpError::Decode {
            type_url: a.type_url.clone(),
            error: format!("expected {}", T::full_name()),
        })
    }
    for c in &dump.configs {
        if c.type_url.ends_with("ClustersConfigDump") {
            let d: admin::ClustersConfigDump = get(Some(c))?.unwrap_or_default();
            for x in &d.dynamic_active_clusters {
                out.clusters.extend(get(x.cluster.as_ref())?);
            }
            for x in &d.static_clusters {
                out.clusters.extend(get(x.cluster.as_ref())?);
            }
        } else if c.type_url.ends_with("ListenersConfigDump") {
            let d: admin::ListenersConfigDump = get(Some(c))?.unwrap_or_default();
            for x in &d.dynamic_listeners {
                out.listeners.extend(get(x
                    .active_state
                    .as_ref()
                    .and_then(|s| s.listener.as_ref()))?);
            }
        } else if c.type_url.ends_with("RoutesConfigDump") {
            let d: admin::RoutesConfigDump = get(Some(c))?.unwrap_or_default();
            for x in &d.dynamic_route_configs {
                out.routes.extend(get(x.route_config.as_ref())?);
            }
        } else if c.type_url.ends_with("EndpointsConfigDump") {
            let d: admin::EndpointsConfigDump = get(Some(c))?.unwrap_or_default();
            for x in &d.dynamic_endpoint_configs {
                out.endpoints.extend(get(x.endpoint_config.as_ref())?);
            }
        }
    }
    Ok(out)
}
