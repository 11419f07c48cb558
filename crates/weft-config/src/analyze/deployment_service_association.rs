//! `deployment.ServiceAssociationAnalyzer`: a meshed Deployment selected by several Services
//! must not see one port number with different protocols, nor one target port reached through
//! different service ports.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::messages::{DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES, DEPLOYMENT_CONFLICTING_PORTS};
use super::{Analyzer, Arg, Context, Message, util};
use crate::resource::{Kind, Resource, Spec};

/// Reports Deployments associated with Services that disagree on ports or protocols.
pub struct ServiceAssociationAnalyzer;

/// Label Istio's gateway controller puts on the waypoint Deployments it manages.
const GATEWAY_MANAGED_LABEL: &str = "gateway.istio.io/managed";
/// Value of [`GATEWAY_MANAGED_LABEL`] for mesh (waypoint) gateways.
const MESH_CONTROLLER: &str = "istio.io-mesh-controller";

/// The Services (full name and spec) in the Deployment's namespace whose non-empty selector
/// matches its pod template labels.
fn matching_services<'a>(
    ctx: &Context<'a>,
    deployment: &Resource,
    pod_labels: &BTreeMap<String, String>,
) -> Vec<(String, &'a ServiceSpec)> {
    ctx.of_kind_in(Kind::Service, deployment.namespace())
        .filter_map(|svc| {
            let Spec::Service(s) = &svc.spec else {
                return None;
            };
            let spec = s.spec.as_ref()?;
            let selector = spec.selector.as_ref().filter(|sel| !sel.is_empty())?;
            util::map_contains(pod_labels, selector).then(|| (util::full_name(svc), spec))
        })
        .collect()
}

fn target_port_key(p: &k8s_openapi::api::core::v1::ServicePort) -> String {
    match &p.target_port {
        Some(IntOrString::Int(0)) | None => p.port.to_string(),
        Some(IntOrString::Int(i)) => i.to_string(),
        Some(IntOrString::String(s)) if s.is_empty() => p.port.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
    }
}

impl Analyzer for ServiceAssociationAnalyzer {
    fn name(&self) -> &'static str {
        "deployment.ServiceAssociationAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks association between services and pods"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for d in ctx.of_kind(Kind::Deployment) {
            if d.metadata
                .labels
                .get(GATEWAY_MANAGED_LABEL)
                .map(String::as_str)
                == Some(MESH_CONTROLLER)
            {
                continue;
            }
            if !util::deployment_in_mesh(ctx, d) {
                continue;
            }
            let Some(util::PodTemplate { labels, .. }) = util::deployment_template(d) else {
                continue;
            };
            let services = matching_services(ctx, d, labels);

            // port -> protocol -> services using it
            let mut ports: BTreeMap<i32, BTreeMap<String, Vec<String>>> = BTreeMap::new();
            // targetPort -> port -> service
            let mut targets: BTreeMap<String, BTreeMap<i32, String>> = BTreeMap::new();
            for (name, spec) in &services {
                for p in spec.ports.iter().flatten() {
                    let proto = p
                        .protocol
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "TCP".to_string());
                    ports
                        .entry(p.port)
                        .or_default()
                        .entry(proto)
                        .or_default()
                        .push(name.clone());
                    targets
                        .entry(target_port_key(p))
                        .or_default()
                        .insert(p.port, name.clone());
                }
            }
            for (port, protocols) in &ports {
                if protocols.len() > 1 {
                    let mut names: Vec<String> = protocols.values().flatten().cloned().collect();
                    names.sort();
                    out.push(
                        Message::new(
                            &DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
                            d,
                            vec![d.name().into(), Arg::Int(i64::from(*port)), names.into()],
                        )
                        .at("metadata.name"),
                    );
                }
            }
            for (target, by_port) in &targets {
                if by_port.len() > 1 {
                    let mut names: Vec<String> = by_port.values().cloned().collect();
                    names.sort();
                    let port_list: Vec<i64> = by_port.keys().map(|p| i64::from(*p)).collect();
                    out.push(
                        Message::new(
                            &DEPLOYMENT_CONFLICTING_PORTS,
                            d,
                            vec![
                                d.name().into(),
                                names.into(),
                                target.into(),
                                port_list.into(),
                            ],
                        )
                        .at("metadata.name"),
                    );
                }
            }
        }
    }
}
