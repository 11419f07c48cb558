//! `telemetry.DefaultSelectorAnalyzer`: more than one Telemetry without a workload selector in
//! a namespace.

use std::collections::BTreeMap;

use super::messages::MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS;
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Resource, Spec};

/// Istio's `telemetry.DefaultSelectorAnalyzer`.
pub struct TelemetryDefaultSelectorAnalyzer;

impl Analyzer for TelemetryDefaultSelectorAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.DefaultSelectorAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that there aren't multiple telemetry resources that have no selector"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let mut by_ns: BTreeMap<&str, Vec<&Resource>> = BTreeMap::new();
        for r in ctx.of_kind(Kind::Telemetry) {
            let Spec::Telemetry(t) = &r.spec else {
                continue;
            };
            if t.selector.is_none() && t.target_ref.is_none() && t.target_refs.is_empty() {
                by_ns.entry(r.namespace()).or_default().push(r);
            }
        }
        for (ns, list) in by_ns {
            if list.len() < 2 {
                continue;
            }
            let names = sorted_names(&list);
            for r in list {
                out.push(Message::new(
                    &MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
                    r,
                    vec![names.clone().into(), ns.into()],
                ));
            }
        }
    }
}

/// Resource names, sorted, as Istio lists them in messages.
pub(crate) fn sorted_names(list: &[&Resource]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(|r| r.name().to_string()).collect();
    names.sort();
    names
}
