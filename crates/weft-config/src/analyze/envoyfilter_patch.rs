//! `envoyfilter.EnvoyPatchAnalyzer`: EnvoyFilter patches whose operation does not fit what they
//! apply to, or whose relative operation may not apply without a priority.

use super::messages::{
    ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY, ENVOY_FILTER_USES_RELATIVE_OPERATION,
    ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION,
    ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY,
    ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY,
};
use super::{Analyzer, Context, Message};
use crate::networking::envoy_filter::{ApplyTo, EnvoyFilter, Operation};
use crate::resource::{Kind, Resource, Spec};

/// Istio's `envoyfilter.EnvoyPatchAnalyzer`.
pub struct EnvoyPatchAnalyzer;

impl Analyzer for EnvoyPatchAnalyzer {
    fn name(&self) -> &'static str {
        "envoyfilter.EnvoyPatchAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks an envoyFilters "
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        // Names of patched objects seen so far in patches that set a proxyVersion, across all
        // EnvoyFilters in input order (as Istio carries them from one filter to the next).
        let mut proxy_version_names: Vec<String> = Vec::new();
        for r in ctx.of_kind(Kind::EnvoyFilter) {
            if let Spec::EnvoyFilter(ef) = &r.spec {
                let mut msgs = Vec::new();
                analyze_filter(r, ef, &mut proxy_version_names, &mut msgs);
                // Istio reports identical messages about one resource once.
                for m in msgs {
                    if !out
                        .iter()
                        .any(|o| o.ty.code == m.ty.code && o.origin == m.origin && o.args == m.args)
                    {
                        out.push(m);
                    }
                }
            }
        }
    }
}

/// The name a patch is about: the `name` of its value (compared in a form that cannot collide
/// with a plain filter name, as Istio compares the protobuf text of the value), else the
/// filter name of its listener match.
fn instance_name(ef_patch: &crate::networking::envoy_filter::EnvoyConfigObjectPatch) -> String {
    let Some(value) = ef_patch.patch.as_ref().and_then(|p| p.value.as_ref()) else {
        return String::new();
    };
    let Some(fields) = value.as_object() else {
        return String::new();
    };
    if let Some(name) = fields.get("name") {
        return format!("value:{name}");
    }
    ef_patch
        .r#match
        .as_ref()
        .and_then(|m| m.listener.as_ref())
        .and_then(|l| l.filter_chain.as_ref())
        .map(|fc| {
            fc.filter
                .as_ref()
                .map(|f| f.name.clone())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn relative_operation(
    r: &Resource,
    ef: &EnvoyFilter,
    index: usize,
    proxy_version_names: &[String],
    name: &str,
    out: &mut Vec<Message>,
) {
    if ef.priority != 0 {
        return;
    }
    let ty = if proxy_version_names.iter().any(|n| n == name) {
        &ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION
    } else {
        &ENVOY_FILTER_USES_RELATIVE_OPERATION
    };
    out.push(Message::new(ty, r, vec![]).at(format!("spec.configPatches[{index}]")));
}

fn analyze_filter(
    r: &Resource,
    ef: &EnvoyFilter,
    proxy_version_names: &mut Vec<String>,
    out: &mut Vec<Message>,
) {
    for (index, cp) in ef.config_patches.iter().enumerate() {
        let Some(patch) = &cp.patch else { break };
        let name = instance_name(cp);
        let apply_to = cp.apply_to.unwrap_or_default();
        let route_class = matches!(apply_to, ApplyTo::RouteConfiguration | ApplyTo::HttpRoute);
        let at = format!("spec.configPatches[{index}]");
        match patch.operation.unwrap_or_default() {
            Operation::Add if route_class => out
                .push(Message::new(&ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY, r, vec![]).at(at)),
            Operation::Remove if route_class => out.push(
                Message::new(&ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY, r, vec![]).at(at),
            ),
            // Istio also supports REPLACE on virtual hosts (the message text predates that).
            Operation::Replace
                if !matches!(
                    apply_to,
                    ApplyTo::NetworkFilter | ApplyTo::HttpFilter | ApplyTo::VirtualHost
                ) =>
            {
                out.push(
                    Message::new(&ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY, r, vec![])
                        .at(at),
                )
            }
            Operation::Remove
            | Operation::Replace
            | Operation::InsertBefore
            | Operation::InsertAfter => {
                relative_operation(r, ef, index, proxy_version_names, &name, out)
            }
            _ => {}
        }
        if cp
            .r#match
            .as_ref()
            .and_then(|m| m.proxy.as_ref())
            .is_some_and(|p| !p.proxy_version.is_empty())
        {
            proxy_version_names.push(name);
        }
    }
}
