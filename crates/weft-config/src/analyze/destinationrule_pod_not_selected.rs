//! `destinationrule.PodNotSelectedAnalyzer`: a DestinationRule whose host is no known service
//! (IST0174), or whose subset selects no pod (IST0173).

use std::collections::BTreeMap;

use super::messages::{DESTINATION_RULE_SUBSET_NOT_SELECT_PODS, UNKNOWN_DESTINATION_RULE_HOST};
use super::util::fqdn;
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Spec};

/// Reports DestinationRules pointing at unknown hosts or at subsets with no pods.
pub struct PodNotSelectedAnalyzer;

/// `exportTo` scope meaning every namespace.
const ALL_NAMESPACES: &str = "*";

/// Istio's `networking.istio.io/exportTo` Service annotation.
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// Known services by `scope/fqdn`, as Istio's `InitServiceEntryHostMap` builds them: each value
/// is the workload selector labels of the ServiceEntry (none for Kubernetes Services, which
/// Istio converts to selector-less entries).
type HostMap<'a> = BTreeMap<String, Option<&'a BTreeMap<String, String>>>;

fn scoped(scope: &str, namespace: &str, host: &str) -> String {
    format!("{scope}/{}", fqdn(host, namespace))
}

fn host_map<'a>(ctx: &Context<'a>) -> HostMap<'a> {
    let mut map = HostMap::new();
    for r in ctx.of_kind(Kind::ServiceEntry) {
        let Spec::ServiceEntry(se) = &r.spec else {
            continue;
        };
        let ns = r.namespace();
        let scope = if se.export_to.is_empty() || se.export_to.iter().any(|e| e == ALL_NAMESPACES) {
            ALL_NAMESPACES
        } else {
            ns
        };
        let labels = se.workload_selector.as_ref().map(|s| &s.labels);
        for h in &se.hosts {
            map.insert(scoped(scope, ns, h), labels);
        }
    }
    for r in ctx.of_kind(Kind::Service) {
        let ns = r.namespace();
        let scopes: Vec<String> = match r.metadata.annotations.get(EXPORT_TO_ANNOTATION) {
            None => vec![ALL_NAMESPACES.to_string()],
            Some(a) if a.is_empty() => vec![ALL_NAMESPACES.to_string()],
            Some(a) => a
                .split(',')
                .map(|s| {
                    if s == "." {
                        ns.to_string()
                    } else {
                        s.to_string()
                    }
                })
                .collect(),
        };
        for scope in scopes {
            map.insert(scoped(&scope, ns, r.name()), None);
        }
    }
    map
}

/// Istio's `GetDestinationHost`: the service a host in `namespace` refers to, honouring the
/// rule's `exportTo` and wildcard service hosts. `Some(labels)` when found.
fn destination<'a>(
    map: &HostMap<'a>,
    namespace: &str,
    export_to: &[String],
    host: &str,
) -> Option<Option<&'a BTreeMap<String, String>>> {
    if let Some(s) = map.get(&scoped(ALL_NAMESPACES, namespace, host)) {
        return Some(*s);
    }
    if export_to.is_empty() {
        if let Some(s) = map.get(&scoped(namespace, namespace, host)) {
            return Some(*s);
        }
    } else {
        for e in export_to {
            let e = if e == "." { namespace } else { e.as_str() };
            if let Some(s) = map.get(&scoped(e, namespace, host)) {
                return Some(*s);
            }
        }
    }
    let host = host.strip_prefix('*').unwrap_or(host);
    for (key, s) in map {
        let Some((scope, se_host)) = key.split_once('/') else {
            continue;
        };
        let Some(suffix) = se_host.strip_prefix('*') else {
            continue;
        };
        if scope != ALL_NAMESPACES && scope != namespace {
            continue;
        }
        if host.ends_with(suffix) {
            return Some(*s);
        }
    }
    None
}

impl Analyzer for PodNotSelectedAnalyzer {
    fn name(&self) -> &'static str {
        "destinationrule.PodNotSelectedAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if pods are selected by subsets in destination rules."
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let services = host_map(ctx);
        let pods: Vec<&BTreeMap<String, String>> =
            ctx.of_kind(Kind::Pod).map(|p| &p.metadata.labels).collect();
        for r in ctx.of_kind(Kind::DestinationRule) {
            let Spec::DestinationRule(dr) = &r.spec else {
                continue;
            };
            let Some(se_labels) = destination(&services, r.namespace(), &dr.export_to, &dr.host)
            else {
                out.push(
                    Message::new(&UNKNOWN_DESTINATION_RULE_HOST, r, vec![(&dr.host).into()])
                        .at("spec.host"),
                );
                continue;
            };
            for (i, subset) in dr.subsets.iter().enumerate() {
                let mut selector = se_labels.cloned().unwrap_or_default();
                selector.extend(subset.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                if !pods
                    .iter()
                    .any(|labels| selector_matches(&selector, labels))
                {
                    out.push(
                        Message::new(
                            &DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
                            r,
                            vec![(&subset.name).into()],
                        )
                        .at(format!("spec.subsets[{i}]")),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze;
    use crate::mesh::MeshConfig;

    fn codes(yaml: &str) -> Vec<String> {
        let parsed = crate::parse_str(yaml, "dr.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        analyze(
            &parsed.resources,
            &MeshConfig::default(),
            Some(&["destinationrule.PodNotSelectedAnalyzer"]),
        )
        .iter()
        .map(|m| format!("{} {}", m.ty.code, m.origin))
        .collect()
    }

    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: ns}\nspec:\n  host: api.example.com\n  subsets:\n  - name: v1\n    labels: {version: v1}\n---\n";

    #[test]
    fn wildcard_service_entries_and_selectors() {
        let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se, namespace: ns}\nspec:\n  hosts: ['*.example.com']\n  workloadSelector: {labels: {app: api}}\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n---\n";
        let pod = |labels: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns, labels: {labels}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n"
            )
        };
        // The subset inherits the entry's selector: a v1 pod of another app does not count.
        assert_eq!(
            codes(&format!("{DR}{se}{}", pod("{version: v1, app: web}"))),
            ["IST0173 DestinationRule ns/dr"]
        );
        assert!(codes(&format!("{DR}{se}{}", pod("{version: v1, app: api}"))).is_empty());
        assert_eq!(codes(DR), ["IST0174 DestinationRule ns/dr"]);
    }
}
