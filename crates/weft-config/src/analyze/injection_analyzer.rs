//! `injection.Analyzer`: namespaces should say whether they are injected, should not carry
//! conflicting injection labels, and pods in injected namespaces should have their sidecar.

use std::collections::HashSet;

use serde_json::Value;

use super::messages::{
    NAMESPACE_INJECTION_ENABLED_BY_DEFAULT, NAMESPACE_MULTIPLE_INJECTION_LABELS,
    NAMESPACE_NOT_INJECTED, POD_MISSING_PROXY,
};
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Resource, Spec};

/// Reports injection problems of namespaces and pods.
pub struct InjectionAnalyzer;

/// `sidecarInjectorWebhook.enableNamespacesByDefault` from an injector ConfigMap's `values`
/// (JSON); `false` when absent or unreadable.
pub fn enable_namespaces_by_default(cm: &Resource) -> bool {
    let Spec::ConfigMap(cm) = &cm.spec else {
        return false;
    };
    let Some(values) = cm.data.as_ref().and_then(|d| d.get("values")) else {
        return false;
    };
    serde_json::from_str::<Value>(values)
        .ok()
        .and_then(|v| {
            v.pointer("/sidecarInjectorWebhook/enableNamespacesByDefault")
                .and_then(Value::as_bool)
        })
        .unwrap_or(false)
}

impl Analyzer for InjectionAnalyzer {
    fn name(&self) -> &'static str {
        "injection.Analyzer"
    }

    fn description(&self) -> &'static str {
        "Checks conditions related to Istio sidecar injection"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        // Istio keeps this flag across namespaces once an injector ConfigMap has set it.
        let mut enable_by_default = false;
        let mut injected: HashSet<&str> = HashSet::new();
        for ns in ctx.of_kind(Kind::Namespace) {
            let name = ns.name();
            if name == util::ISTIO_SYSTEM_NAMESPACE {
                continue;
            }
            let labels = &ns.metadata.labels;
            let injection = labels.get(util::INJECTION_LABEL);
            let revision = labels.get(util::REVISION_LABEL);

            let mut istio_labels = Vec::new();
            if let Some(v) = injection {
                istio_labels.push(format!("{}={v}", util::INJECTION_LABEL));
            }
            for l in [util::REVISION_LABEL, util::DATAPLANE_MODE_LABEL] {
                if let Some(v) = labels.get(l)
                    && injection.is_none_or(|i| i == util::INJECTION_ENABLED)
                {
                    istio_labels.push(format!("{l}={v}"));
                }
            }
            if istio_labels.len() > 1 {
                out.push(
                    Message::new(
                        &NAMESPACE_MULTIPLE_INJECTION_LABELS,
                        ns,
                        vec![istio_labels.into()],
                    )
                    .at("metadata.labels"),
                );
            }
            if labels.get(util::DATAPLANE_MODE_LABEL).map(String::as_str) == Some("ambient") {
                continue;
            }
            let cm_name = util::injector_configmap_name(revision.map_or("", String::as_str));
            if let Some(cm) = ctx.of_kind(Kind::ConfigMap).find(|cm| cm.name() == cm_name) {
                enable_by_default = enable_namespaces_by_default(cm);
            }
            let injection = injection.map_or("", String::as_str);
            if injection.is_empty() && revision.is_none() {
                if enable_by_default {
                    out.push(Message::new(
                        &NAMESPACE_INJECTION_ENABLED_BY_DEFAULT,
                        ns,
                        vec![],
                    ));
                } else {
                    out.push(
                        Message::new(&NAMESPACE_NOT_INJECTED, ns, vec![name.into(), name.into()])
                            .at("metadata.name"),
                    );
                }
                continue;
            }
            if injection != util::INJECTION_ENABLED {
                continue;
            }
            injected.insert(name);
        }

        for pod in ctx.of_kind(Kind::Pod) {
            if !injected.contains(pod.namespace()) {
                continue;
            }
            let mut inject = pod.metadata.annotations.get(util::SIDECAR_INJECT);
            if let Some(v) = pod.metadata.labels.get(util::SIDECAR_INJECT) {
                inject = Some(v);
            }
            if inject.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
                continue;
            }
            let Some(spec) = util::pod_spec(pod) else {
                continue;
            };
            if spec.host_network == Some(true) {
                continue;
            }
            if !util::has_istio_proxy(util::all_containers(spec)) {
                out.push(Message::new(
                    &POD_MISSING_PROXY,
                    pod,
                    vec![util::full_name(pod).into()],
                ));
            }
        }
    }
}
