//! Istio's unreachable-rule warnings for VirtualServices (`analyzeUnreachableHTTPRules` and
//! friends): a rule after a catch-all, a match that repeats an earlier one, and a prefix match
//! covered by an earlier, shorter prefix with the same other conditions.
//!
//! Istio reports these as validation warnings (message types `VirtualServiceUnreachableRule`
//! and `VirtualServiceIneffectiveMatch`); [`find_unreachable_rules`] returns them as data so
//! that analyzers can reuse them.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::types::{HttpMatchRequest, HttpRoute, StringMatch, VirtualService};
use crate::validate::{Path, Report};

/// One unreachable rule or ineffective match, with the rule's index in its list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// `virtualService rule <rule> not used (<reason>)`.
    Rule {
        /// `http`, `tls` or `tcp`.
        list: &'static str,
        /// Index of the rule in its list.
        index: usize,
        /// The rule as Istio names it: `"name"` or `#index`.
        rule: String,
        /// Why it can never be used.
        reason: String,
    },
    /// `virtualService rule <rule> match <m> is not used (duplicate/overlapping match in
    /// rule <dup>)`.
    Match {
        /// `http`, `tls` or `tcp`.
        list: &'static str,
        /// Index of the rule in its list.
        index: usize,
        /// The rule as Istio names it.
        rule: String,
        /// The match as Istio names it.
        matched: String,
        /// The earlier rule (and match) that shadows it.
        duplicate: String,
    },
}

impl Unreachable {
    /// The message text Istio uses.
    pub fn message(&self) -> String {
        match self {
            Unreachable::Rule { rule, reason, .. } => {
                format!("virtualService rule {rule} not used ({reason})")
            }
            Unreachable::Match {
                rule,
                matched,
                duplicate,
                ..
            } => format!(
                "virtualService rule {rule} match {matched} is not used (duplicate/overlapping match in rule {duplicate})"
            ),
        }
    }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn http_route_name(r: &HttpRoute, i: usize) -> String {
    if r.name.is_empty() {
        format!("#{i}")
    } else {
        quoted(&r.name)
    }
}

fn http_match_name(m: &HttpMatchRequest, i: usize) -> String {
    if m.name.is_empty() {
        format!("#{i}")
    } else {
        quoted(&m.name)
    }
}

fn key_of<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `exact:v` or `prefix:v` for the exact/prefix alternatives, empty otherwise.
fn exact_or_prefix(sm: Option<&StringMatch>) -> String {
    match sm {
        Some(StringMatch { exact: Some(e), .. }) if !e.is_empty() => format!("exact:{e}"),
        Some(StringMatch {
            exact: None,
            prefix: Some(p),
            ..
        }) if !p.is_empty() => format!("prefix:{p}"),
        _ => String::new(),
    }
}

struct PrefixMatch {
    rule: String,
    matched: String,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query_params: BTreeMap<String, String>,
    without_headers: BTreeMap<String, String>,
}

fn prefix_match(
    route: &HttpRoute,
    ri: usize,
    m: &HttpMatchRequest,
    mi: usize,
) -> Option<PrefixMatch> {
    let uri = m.uri.as_ref()?;
    let prefix = match (&uri.exact, &uri.prefix) {
        (None, Some(p)) if !p.is_empty() => p.clone(),
        _ => return None,
    };
    let mut method = exact_or_prefix(m.method.as_ref());
    if method.is_empty() {
        method = "exact:GET".to_string();
    }
    let map = |m: &BTreeMap<String, StringMatch>| {
        m.iter()
            .map(|(k, v)| (k.clone(), exact_or_prefix(Some(v))))
            .collect::<BTreeMap<_, _>>()
    };
    Some(PrefixMatch {
        rule: http_route_name(route, ri),
        matched: http_match_name(m, mi),
        prefix,
        port: m.port,
        method,
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: map(&m.headers),
        query_params: map(&m.query_params),
        without_headers: map(&m.without_headers),
    })
}

fn maps_covered(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, va)| match b.get(k) {
            Some(vb) => va == vb || va.starts_with(vb.as_str()),
            None => false,
        })
}

/// Istio's `coveredValidation`: `a` (earlier) makes `b` (later) unreachable.
fn covered(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    b.prefix.starts_with(&a.prefix)
        && b.port == a.port
        && (a.method == b.method || a.method.starts_with(&b.method))
        && (a.authority == b.authority || a.authority.starts_with(&b.authority))
        && maps_covered(&a.headers, &b.headers)
        && maps_covered(&a.query_params, &b.query_params)
        && maps_covered(&a.without_headers, &b.without_headers)
}

fn analyze_http(routes: &[HttpRoute], out: &mut Vec<Unreachable>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut empty_match_at: Option<usize> = None;
    let mut prefixes: Vec<PrefixMatch> = Vec::new();
    for (ri, route) in routes.iter().enumerate() {
        let rule = http_route_name(route, ri);
        if route.r#match.is_empty() {
            if empty_match_at.is_some() {
                out.push(Unreachable::Rule {
                    list: "http",
                    index: ri,
                    rule: rule.clone(),
                    reason: "only the last rule can have no matches".into(),
                });
            }
            empty_match_at = Some(ri);
            continue;
        }
        let mut duplicates = 0;
        for (mi, m) in route.r#match.iter().enumerate() {
            if empty_match_at.is_some() {
                out.push(Unreachable::Rule {
                    list: "http",
                    index: ri,
                    rule: rule.clone(),
                    reason: "route without matches defined before".into(),
                });
                continue;
            }
            let mut unnamed = m.clone();
            unnamed.name.clear();
            let key = key_of(&unnamed);
            if let Some(&dup) = seen.get(&key) {
                out.push(Unreachable::Match {
                    list: "http",
                    index: ri,
                    rule: rule.clone(),
                    matched: http_match_name(m, mi),
                    duplicate: http_route_name(&routes[dup], dup),
                });
                duplicates += 1;
                continue;
            }
            seen.insert(key, ri);
            if let Some(p) = prefix_match(route, ri, m, mi) {
                prefixes.push(p);
            }
        }
        if duplicates == route.r#match.len() {
            out.push(Unreachable::Rule {
                list: "http",
                index: ri,
                rule,
                reason: "all matches used by prior rules".into(),
            });
        }
    }
    for (i, a) in prefixes.iter().enumerate() {
        for b in &prefixes[i + 1..] {
            if b.prefix == a.prefix {
                continue;
            }
            if covered(a, b) {
                let index = b
                    .rule
                    .strip_prefix('#')
                    .and_then(|n| n.parse().ok())
                    .or_else(|| {
                        routes
                            .iter()
                            .position(|r| !r.name.is_empty() && quoted(&r.name) == b.rule)
                    })
                    .unwrap_or(0);
                out.push(Unreachable::Match {
                    list: "http",
                    index,
                    rule: b.rule.clone(),
                    matched: format!("{} of prefix {}", b.matched, b.prefix),
                    duplicate: format!("{} of prefix {} on {}", a.matched, a.prefix, a.rule),
                });
            }
        }
    }
}

fn analyze_l4<M: Serialize>(list: &'static str, routes: &[&[M]], out: &mut Vec<Unreachable>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut empty_match_at: Option<usize> = None;
    for (ri, matches) in routes.iter().enumerate() {
        let rule = format!("#{ri}");
        if matches.is_empty() {
            if empty_match_at.is_some() {
                out.push(Unreachable::Rule {
                    list,
                    index: ri,
                    rule: rule.clone(),
                    reason: "only the last rule can have no matches".into(),
                });
            }
            empty_match_at = Some(ri);
            continue;
        }
        let mut duplicates = 0;
        for (mi, m) in matches.iter().enumerate() {
            if empty_match_at.is_some() {
                out.push(Unreachable::Rule {
                    list,
                    index: ri,
                    rule: rule.clone(),
                    reason: "route without matches defined before".into(),
                });
                continue;
            }
            let key = key_of(m);
            if let Some(&dup) = seen.get(&key) {
                out.push(Unreachable::Match {
                    list,
                    index: ri,
                    rule: rule.clone(),
                    matched: format!("#{mi}"),
                    duplicate: format!("#{dup}"),
                });
                duplicates += 1;
            } else {
                seen.insert(key, ri);
            }
        }
        if duplicates == matches.len() {
            out.push(Unreachable::Rule {
                list,
                index: ri,
                rule,
                reason: "all matches used by prior rules".into(),
            });
        }
    }
}

/// Every unreachable rule and ineffective match of a VirtualService, in Istio's order.
pub fn find_unreachable_rules(vs: &VirtualService) -> Vec<Unreachable> {
    let mut out = Vec::new();
    analyze_http(&vs.http, &mut out);
    let tcp: Vec<&[_]> = vs.tcp.iter().map(|r| r.r#match.as_slice()).collect();
    analyze_l4("tcp", &tcp, &mut out);
    let tls: Vec<&[_]> = vs.tls.iter().map(|r| r.r#match.as_slice()).collect();
    analyze_l4("tls", &tls, &mut out);
    out
}

/// Records the unreachable-rule findings as warnings, as Istio's validation does.
pub(super) fn warn_unreachable_rules(vs: &VirtualService, path: &Path, report: &mut Report) {
    for u in find_unreachable_rules(vs) {
        let (list, index) = match &u {
            Unreachable::Rule { list, index, .. } | Unreachable::Match { list, index, .. } => {
                (*list, *index)
            }
        };
        report.warning(&path.field(list).index(index), u.message());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(yaml: &str) -> VirtualService {
        let v: serde_json::Value = serde_norway::from_str(yaml).expect("yaml");
        serde_json::from_value(v).expect("vs")
    }

    #[test]
    fn catch_all_then_rule() {
        let v = vs(r#"
hosts: [a]
http:
- route: [{destination: {host: a}}]
- match: [{uri: {exact: /x}}]
  route: [{destination: {host: a}}]
"#);
        let u = find_unreachable_rules(&v);
        assert_eq!(u.len(), 1);
        assert_eq!(
            u[0].message(),
            "virtualService rule #1 not used (route without matches defined before)"
        );
    }

    #[test]
    fn duplicate_and_covered_prefix() {
        let v = vs(r#"
hosts: [a]
http:
- name: first
  match: [{uri: {prefix: /debug}}]
  route: [{destination: {host: a}}]
- match: [{uri: {prefix: /debug}}]
  route: [{destination: {host: a}}]
- match: [{uri: {prefix: /debugs}}]
  route: [{destination: {host: a}}]
"#);
        let msgs: Vec<String> = find_unreachable_rules(&v)
            .iter()
            .map(|u| u.message())
            .collect();
        assert_eq!(
            msgs,
            vec![
                "virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule \"first\")",
                "virtualService rule #1 not used (all matches used by prior rules)",
                "virtualService rule #2 match #0 of prefix /debugs is not used (duplicate/overlapping match in rule #0 of prefix /debug on \"first\")",
            ]
        );
    }
}
