//! `k8sgateway.SelectorAnalyzer`: policies (AuthorizationPolicy, RequestAuthentication,
//! Telemetry, WasmPlugin) that use a workload selector to pick Kubernetes Gateway pods, where
//! only `targetRef` takes effect.

use std::collections::BTreeMap;

use super::messages::INEFFECTIVE_SELECTOR;
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Resource, Spec};

/// The label Kubernetes Gateway deployments put on their pods.
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The policy kinds checked, in Istio's order.
const POLICY_KINDS: &[Kind] = &[
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
    Kind::Telemetry,
    Kind::WasmPlugin,
];

/// Istio's `k8sgateway.SelectorAnalyzer`.
pub struct K8sGatewaySelectorAnalyzer;

/// A policy's `selector.matchLabels` (when a selector is set) and whether `targetRef` is set.
fn selector_of(r: &Resource) -> (Option<BTreeMap<String, String>>, bool) {
    let (selector, has_target_ref) = match &r.spec {
        Spec::Telemetry(t) => (t.selector.as_ref(), t.target_ref.is_some()),
        Spec::WasmPlugin(w) => (w.selector.as_ref(), w.target_ref.is_some()),
        Spec::AuthorizationPolicy(a) => (a.selector.as_ref(), a.target_ref.is_some()),
        Spec::RequestAuthentication(q) => (q.selector.as_ref(), q.target_ref.is_some()),
        _ => (None, false),
    };
    (selector.map(|s| s.match_labels.clone()), has_target_ref)
}

impl Analyzer for K8sGatewaySelectorAnalyzer {
    fn name(&self) -> &'static str {
        "k8sgateway.SelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Check that selectors are effective for Kubernetes gateway"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let mut gateway_pods: BTreeMap<&str, Vec<&Resource>> = BTreeMap::new();
        for p in ctx.of_kind(Kind::Pod) {
            if p.metadata.labels.contains_key(GATEWAY_NAME_LABEL) {
                gateway_pods.entry(p.namespace()).or_default().push(p);
            }
        }
        for kind in POLICY_KINDS {
            for r in ctx.of_kind(*kind) {
                let (selector, has_target_ref) = selector_of(r);
                if has_target_ref {
                    continue;
                }
                let Some(labels) = selector else { continue };
                for pod in gateway_pods.get(r.namespace()).into_iter().flatten() {
                    if selector_matches(&labels, &pod.metadata.labels) {
                        let gateway = pod
                            .metadata
                            .labels
                            .get(GATEWAY_NAME_LABEL)
                            .cloned()
                            .unwrap_or_default();
                        out.push(
                            Message::new(&INEFFECTIVE_SELECTOR, r, vec![gateway.into()])
                                .at("spec.selector"),
                        );
                    }
                }
            }
        }
    }
}
