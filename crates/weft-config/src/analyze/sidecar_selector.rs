//! `sidecar.SelectorAnalyzer`: a Sidecar's workload selector matches a pod of its namespace,
//! no pod is selected by two Sidecars, a namespace has at most one Sidecar without a workload
//! selector, and Sidecars for ambient workloads or namespaces are reported as having no
//! effect.

use std::collections::BTreeMap;

use super::messages::{
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS, INEFFECTIVE_POLICY,
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS, REFERENCED_RESOURCE_NOT_FOUND,
};
use super::util::{DATAPLANE_MODE_LABEL, INJECTION_ENABLED, INJECTION_LABEL, REVISION_LABEL};
use super::util::{PodInfo, full_name, pods, selector_string};
use super::{Analyzer, Arg, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Resource, Spec};

/// Pod annotation set by the ambient CNI on redirected pods.
const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";

/// Validates Sidecar workload selectors.
pub struct SelectorAnalyzer;

fn pod_in_ambient_mode(pod: &PodInfo) -> bool {
    pod.annotations.get(AMBIENT_REDIRECTION).map(String::as_str) == Some("enabled")
}

/// Istio's `NamespaceInAmbientMode`: `istio.io/dataplane-mode=ambient` without sidecar
/// injection or a revision label.
fn namespace_in_ambient_mode(ns: Option<&Resource>) -> bool {
    let Some(ns) = ns else {
        return false;
    };
    let labels = &ns.metadata.labels;
    if labels.get(INJECTION_LABEL).map(String::as_str) == Some(INJECTION_ENABLED) {
        return false;
    }
    if labels.get(REVISION_LABEL).is_some_and(|v| !v.is_empty()) {
        return false;
    }
    labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) == Some("ambient")
}

fn sorted_names(list: &[&Resource]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(|r| full_name(r)).collect();
    names.sort();
    names
}

impl Analyzer for SelectorAnalyzer {
    fn name(&self) -> &'static str {
        "sidecar.SelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that sidecars that define a workload selector match at least one pod, and that there aren't multiple sidecar resources that select overlapping pods"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let pods = pods(ctx);
        // pod index -> Sidecars selecting it; namespace -> Sidecars without a selector.
        let mut pods_to_sidecars: BTreeMap<usize, Vec<&Resource>> = BTreeMap::new();
        let mut ns_to_sidecars: BTreeMap<&str, Vec<&Resource>> = BTreeMap::new();
        for r in ctx.of_kind(Kind::Sidecar) {
            let Spec::Sidecar(sc) = &r.spec else {
                continue;
            };
            let labels = sc.workload_selector.as_ref().map(|s| &s.labels);
            let Some(labels) = labels.filter(|l| !l.is_empty()) else {
                ns_to_sidecars.entry(r.namespace()).or_default().push(r);
                continue;
            };
            let mut found = false;
            for (i, pod) in pods.iter().enumerate() {
                if pod.namespace == r.namespace() && selector_matches(labels, &pod.labels) {
                    found = true;
                    pods_to_sidecars.entry(i).or_default().push(r);
                }
            }
            if !found {
                out.push(
                    Message::new(
                        &REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        vec!["selector".into(), selector_string(labels).into()],
                    )
                    .at("spec.workloadSelector"),
                );
            }
        }

        let mut reported: Vec<String> = Vec::new();
        for (i, list) in &pods_to_sidecars {
            let pod = &pods[*i];
            let ambient = pod_in_ambient_mode(pod);
            if list.len() == 1 && !ambient {
                continue;
            }
            let names = sorted_names(list);
            for r in list {
                if ambient {
                    let key = full_name(r);
                    if !reported.contains(&key) {
                        out.push(Message::new(
                            &INEFFECTIVE_POLICY,
                            r,
                            vec![
                                "selected workload is in ambient mode, the policy has no impact"
                                    .into(),
                            ],
                        ));
                        reported.push(key);
                    }
                    continue;
                }
                out.push(
                    Message::new(
                        &CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
                        r,
                        vec![
                            Arg::StrList(names.clone()),
                            pod.namespace.as_str().into(),
                            pod.name.as_str().into(),
                        ],
                    )
                    .at("metadata.name"),
                );
            }
        }

        for (ns, list) in &ns_to_sidecars {
            if namespace_in_ambient_mode(ctx.namespace(ns)) {
                for r in list {
                    let key = full_name(r);
                    if !reported.contains(&key) {
                        out.push(Message::new(
                            &INEFFECTIVE_POLICY,
                            r,
                            vec!["namespace is in ambient mode, the policy has no impact".into()],
                        ));
                        reported.push(key);
                    }
                }
                continue;
            }
            if list.len() > 1 {
                let names = sorted_names(list);
                for r in list {
                    out.push(Message::new(
                        &MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
                        r,
                        vec![Arg::StrList(names.clone()), (*ns).into()],
                    ));
                }
            }
        }
    }
}
