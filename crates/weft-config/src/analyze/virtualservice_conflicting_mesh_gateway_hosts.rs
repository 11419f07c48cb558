//! `virtualservice.ConflictingMeshGatewayHostsAnalyzer`: two VirtualServices bound to the mesh
//! gateway must not define the same host in the same visibility scope (the merge order of
//! such VirtualServices is undefined). A host exported to one namespace also conflicts with
//! the same host exported to all namespaces.

use std::collections::{BTreeMap, BTreeSet};

use super::messages::CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS;
use super::util::{
    EXPORT_TO_ALL, EXPORT_TO_LOCAL, full_name, is_export_to_all, scoped_fqdn, split_scoped,
};
use super::{Analyzer, Context, Message};
use crate::networking::virtual_service::MESH_GATEWAY;
use crate::resource::{Kind, Resource, Spec};
use crate::validate::hosts::host_matches;

/// Checks that VirtualServices on the mesh gateway do not define the same host.
pub struct ConflictingMeshGatewayHostsAnalyzer;

/// scope/fqdn -> the VirtualServices defining that host in that scope, in input order.
fn mesh_gateway_hosts<'a>(ctx: &Context<'a>) -> BTreeMap<String, Vec<&'a Resource>> {
    let mut hosts: BTreeMap<String, Vec<&'a Resource>> = BTreeMap::new();
    for r in ctx.of_kind(Kind::VirtualService) {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        let on_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH_GATEWAY);
        if !on_mesh {
            continue;
        }
        let ns = r.namespace();
        let scopes: BTreeSet<String> = if is_export_to_all(&vs.export_to) {
            BTreeSet::from([EXPORT_TO_ALL.to_string()])
        } else {
            vs.export_to
                .iter()
                .map(|e| {
                    if e == EXPORT_TO_LOCAL {
                        ns.to_string()
                    } else {
                        e.clone()
                    }
                })
                .collect()
        };
        for scope in &scopes {
            for h in &vs.hosts {
                hosts.entry(scoped_fqdn(scope, ns, h)).or_default().push(r);
            }
        }
    }
    hosts
}

impl Analyzer for ConflictingMeshGatewayHostsAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.ConflictingMeshGatewayHostsAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let hosts = mesh_gateway_hosts(ctx);
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for (scoped, list) in &hosts {
            let (scope, fqdn) = split_scoped(scoped);
            let mut list = list.clone();
            if scope != EXPORT_TO_ALL {
                // The same host exported to every namespace is also visible in this scope.
                for (other, vss) in &hosts {
                    let (other_scope, other_fqdn) = split_scoped(other);
                    if other_scope == EXPORT_TO_ALL && host_matches(fqdn, other_fqdn) {
                        list.extend(vss.iter().copied());
                    }
                }
            }
            if list.len() < 2 {
                continue;
            }
            let names = list
                .iter()
                .map(|r| full_name(r))
                .collect::<Vec<_>>()
                .join(",");
            for r in list {
                let key = full_name(r);
                if !reported.insert(key) {
                    continue;
                }
                out.push(
                    Message::new(
                        &CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
                        r,
                        vec![names.clone().into(), scoped.clone().into()],
                    )
                    .at("metadata.name"),
                );
            }
        }
    }
}
