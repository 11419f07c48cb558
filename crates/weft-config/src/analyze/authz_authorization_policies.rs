//! `authz.AuthorizationPoliciesAnalyzer`: AuthorizationPolicies that select no running
//! workload (IST0127) and source namespaces that match no namespace (IST0101).

use std::collections::{BTreeMap, HashMap};

use super::messages::{NO_MATCHING_WORKLOADS_FOUND, REFERENCED_RESOURCE_NOT_FOUND};
use super::util::{pod_in_ambient, pod_in_mesh, selector_string};
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Resource, Spec};

/// Checks that each AuthorizationPolicy applies to some in-mesh pod and that the namespaces
/// its sources name exist.
pub struct AuthorizationPoliciesAnalyzer;

impl Analyzer for AuthorizationPoliciesAnalyzer {
    fn name(&self) -> &'static str {
        "authz.AuthorizationPoliciesAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the validity of authorization policies"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let pods = mesh_pod_labels(ctx);
        let namespaces: Vec<&str> = ctx.of_kind(Kind::Namespace).map(Resource::name).collect();
        for r in ctx.of_kind(Kind::AuthorizationPolicy) {
            let Spec::AuthorizationPolicy(ap) = &r.spec else {
                continue;
            };
            no_matching_workloads(ctx, r, ap, &pods, out);
            for (i, rule) in ap.rules.iter().enumerate() {
                for (j, from) in rule.from.iter().enumerate() {
                    let Some(src) = &from.source else { continue };
                    let listed = src
                        .namespaces
                        .iter()
                        .map(|n| ("namespaces", n))
                        .chain(src.not_namespaces.iter().map(|n| ("notNamespaces", n)));
                    let mut index: HashMap<&str, usize> = HashMap::new();
                    for (field, ns) in listed {
                        let k = index.entry(field).or_default();
                        let at = *k;
                        *k += 1;
                        if !namespaces.iter().any(|n| namespace_matches(n, ns)) {
                            out.push(
                                Message::new(
                                    &REFERENCED_RESOURCE_NOT_FOUND,
                                    r,
                                    vec!["namespace".into(), ns.into()],
                                )
                                .at(format!("spec.rules[{i}].from[{j}].source.{field}[{at}]")),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn no_matching_workloads(
    ctx: &Context<'_>,
    r: &Resource,
    ap: &crate::security::AuthorizationPolicy,
    pods: &HashMap<String, Vec<&BTreeMap<String, String>>>,
    out: &mut Vec<Message>,
) {
    let selector = ap.selector.as_ref().map(|s| &s.match_labels);
    if r.namespace() == ctx.root_namespace() {
        // Mesh-wide: only a selector can fail to match, and it may match anywhere.
        if let Some(sel) = selector
            && !pods
                .values()
                .flatten()
                .any(|labels| selector_matches(sel, labels))
        {
            out.push(Message::new(
                &NO_MATCHING_WORKLOADS_FOUND,
                r,
                vec![selector_string(sel).into()],
            ));
        }
        return;
    }
    let in_ns = pods.get(r.namespace()).map_or(&[][..], Vec::as_slice);
    match selector {
        None => {
            if in_ns.is_empty() {
                out.push(Message::new(
                    &NO_MATCHING_WORKLOADS_FOUND,
                    r,
                    vec!["".into()],
                ));
            }
        }
        Some(sel) => {
            if !in_ns.iter().any(|labels| selector_matches(sel, labels)) {
                out.push(Message::new(
                    &NO_MATCHING_WORKLOADS_FOUND,
                    r,
                    vec![selector_string(sel).into()],
                ));
            }
        }
    }
}

/// Istio's namespace pattern match: `*`, `prefix*`, `*suffix`, or an exact name (any case).
pub fn namespace_matches(ns: &str, pattern: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        ns.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        ns.starts_with(prefix)
    } else {
        ns.eq_ignore_ascii_case(pattern)
    }
}

/// Labels of the pods that are part of the mesh, by namespace.
fn mesh_pod_labels<'a>(ctx: &Context<'a>) -> HashMap<String, Vec<&'a BTreeMap<String, String>>> {
    let mut out: HashMap<String, Vec<&'a BTreeMap<String, String>>> = HashMap::new();
    for pod in ctx.of_kind(Kind::Pod) {
        let entry = out.entry(pod.namespace().to_string()).or_default();
        if pod_in_mesh(ctx, pod) || pod_in_ambient(pod) {
            entry.push(&pod.metadata.labels);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_patterns() {
        assert!(namespace_matches("prod-httpbin", "prod-*"));
        assert!(namespace_matches("httpbin-test", "*-test"));
        assert!(namespace_matches("anything", "*"));
        assert!(namespace_matches("HttpBin", "httpbin"));
        assert!(!namespace_matches("httpbin", "*-bogus"));
        assert!(!namespace_matches("httpbin", "bogus-*"));
    }

    #[test]
    fn selector_text() {
        let mut m = BTreeMap::new();
        m.insert("version".to_string(), "v1".to_string());
        m.insert("app".to_string(), "httpbin".to_string());
        assert_eq!(selector_string(&m), "app=httpbin,version=v1");
    }

    const PODS: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: injected
  labels:
    istio-injection: enabled
---
apiVersion: v1
kind: Pod
metadata:
  name: by-namespace
  namespace: injected
---
apiVersion: v1
kind: Pod
metadata:
  name: opted-out
  namespace: injected
  labels:
    sidecar.istio.io/inject: "false"
---
apiVersion: v1
kind: Pod
metadata:
  name: with-proxy
  namespace: plain
  labels:
    sidecar.istio.io/inject: "false"
spec:
  containers:
  - name: istio-proxy
    image: proxyv2
---
apiVersion: v1
kind: Pod
metadata:
  name: ambient
  namespace: plain
  annotations:
    ambient.istio.io/redirection: enabled
---
apiVersion: v1
kind: Pod
metadata:
  name: outside
  namespace: plain
"#;

    #[test]
    fn pods_in_mesh() {
        let parsed = crate::parse_str(PODS, "t.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let mesh = crate::mesh::MeshConfig::default();
        let ctx = Context::new(&parsed.resources, &mesh);
        let in_mesh: Vec<&str> = ctx
            .of_kind(Kind::Pod)
            .filter(|p| pod_in_mesh(&ctx, p) || pod_in_ambient(p))
            .map(Resource::name)
            .collect();
        assert_eq!(in_mesh, vec!["by-namespace", "with-proxy", "ambient"]);
    }
}
