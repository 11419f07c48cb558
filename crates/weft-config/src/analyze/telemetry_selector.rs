//! `telemetry.SelectorAnalyzer`: Telemetry workload selectors that match no pod, and pods
//! selected by more than one Telemetry.

use std::collections::BTreeMap;

use super::messages::{CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS, REFERENCED_RESOURCE_NOT_FOUND};
use super::telemetry_default_selector::sorted_names;
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Resource, Spec};

/// Istio's `telemetry.SelectorAnalyzer`.
pub struct TelemetrySelectorAnalyzer;

impl Analyzer for TelemetrySelectorAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.SelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that telemetries that define a selector match at least one pod, and that there aren't multiple telemetry resources that select overlapping pods"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        // Pod (namespace, name) to the Telemetries selecting it, in discovery order.
        let mut pods: BTreeMap<(String, String), Vec<&Resource>> = BTreeMap::new();
        for r in ctx.of_kind(Kind::Telemetry) {
            let Spec::Telemetry(t) = &r.spec else {
                continue;
            };
            let Some(sel) = &t.selector else { continue };
            if sel.match_labels.is_empty() {
                continue;
            }
            let mut found = false;
            for p in ctx.of_kind(Kind::Pod) {
                if p.namespace() != r.namespace()
                    || !selector_matches(&sel.match_labels, &p.metadata.labels)
                {
                    continue;
                }
                found = true;
                pods.entry((p.namespace().to_string(), p.name().to_string()))
                    .or_default()
                    .push(r);
            }
            if !found {
                // Kubernetes' selector text: `k=v` pairs sorted by key, comma-separated.
                let text = sel
                    .match_labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                out.push(
                    Message::new(
                        &REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        vec!["selector".into(), text.into()],
                    )
                    .at("spec.selector"),
                );
            }
        }
        for ((ns, pod), list) in pods {
            if list.len() < 2 {
                continue;
            }
            let names = sorted_names(&list);
            for r in list {
                out.push(
                    Message::new(
                        &CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
                        r,
                        vec![
                            names.clone().into(),
                            ns.as_str().into(),
                            pod.as_str().into(),
                        ],
                    )
                    .at("metadata.name"),
                );
            }
        }
    }
}
