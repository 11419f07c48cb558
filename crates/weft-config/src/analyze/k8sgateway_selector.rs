//! `k8sgateway.SelectorAnalyzer`: policies that pick Kubernetes Gateway pods with a workload
//! `selector` instead of `targetRef` (IST0166); the selector has no effect there.

use std::collections::BTreeMap;

use serde_json::Value;

use super::messages::INEFFECTIVE_SELECTOR;
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Resource};

/// The label Istio puts on the pods of a Kubernetes Gateway (the Gateway's name).
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The kinds whose `selector` is checked, in the order Istio checks them.
const POLICY_KINDS: &[Kind] = &[
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::Telemetry,
    Kind::WasmPlugin,
];

/// Reports a policy once per Kubernetes Gateway pod in its namespace that its selector
/// matches, unless the policy uses `targetRef`/`targetRefs`.
pub struct GatewaySelectorAnalyzer;

impl Analyzer for GatewaySelectorAnalyzer {
    fn name(&self) -> &'static str {
        "k8sgateway.SelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Check that selectors are effective for Kubernetes gateway"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let gateway_pods: Vec<&Resource> = ctx
            .of_kind(Kind::Pod)
            .filter(|p| p.metadata.labels.contains_key(GATEWAY_NAME_LABEL))
            .collect();
        if gateway_pods.is_empty() {
            return;
        }
        for kind in POLICY_KINDS {
            for r in ctx.of_kind(*kind) {
                let Some((selector, targeted)) = selector_of(r) else {
                    continue;
                };
                if targeted {
                    continue;
                }
                for pod in gateway_pods
                    .iter()
                    .filter(|p| p.namespace() == r.namespace())
                {
                    if selector_matches(&selector, &pod.metadata.labels) {
                        let gateway = pod
                            .metadata
                            .labels
                            .get(GATEWAY_NAME_LABEL)
                            .cloned()
                            .unwrap_or_default();
                        out.push(Message::new(&INEFFECTIVE_SELECTOR, r, vec![gateway.into()]));
                    }
                }
            }
        }
    }
}

/// The policy's `selector.matchLabels` (when it has a selector) and whether it also sets
/// `targetRef` or `targetRefs`. Read from the spec's JSON form so that every policy kind is
/// handled alike, whatever its Rust type.
fn selector_of(r: &Resource) -> Option<(BTreeMap<String, String>, bool)> {
    let spec = serde_json::to_value(&r.spec).ok()?;
    let targeted = spec.get("targetRef").is_some_and(|v| !v.is_null())
        || spec
            .get("targetRefs")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    let selector = spec.get("selector").filter(|v| !v.is_null())?;
    let labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some((labels, targeted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::MeshConfig;

    const INPUT: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: gw-pod
  namespace: default
  labels:
    gateway.networking.k8s.io/gateway-name: gw
    app: gw
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: with-selector
  namespace: default
spec:
  selector:
    matchLabels:
      app: gw
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: with-target-refs
  namespace: default
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: gw
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: other-namespace
  namespace: other
spec:
  selector:
    matchLabels:
      app: gw
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: other-labels
  namespace: default
spec:
  selector:
    matchLabels:
      app: not-gw
"#;

    #[test]
    fn only_selectors_matching_gateway_pods_in_the_namespace() {
        let parsed = crate::parse_str(INPUT, "t.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let mesh = MeshConfig::default();
        let ctx = Context::new(&parsed.resources, &mesh);
        let mut out = Vec::new();
        GatewaySelectorAnalyzer.analyze(&ctx, &mut out);
        let got: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "Warning [IST0166] (AuthorizationPolicy default/with-selector) Ineffective selector on Kubernetes Gateway gw. Use the TargetRef field instead."
            ]
        );
    }
}
