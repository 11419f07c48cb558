//! `virtualservice.DestinationRuleAnalyzer`: every subset a VirtualService routes or mirrors
//! to is defined by a DestinationRule for that host.

use std::collections::BTreeSet;

use super::messages::REFERENCED_RESOURCE_NOT_FOUND;
use super::util::{convert_host_to_fqdn, resource_name_from_host};
use super::virtualservice_destination_host::{mirror_destinations, route_destinations};
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Spec};

/// Checks the destination rules associated with each VirtualService.
pub struct DestinationRuleAnalyzer;

/// `(namespace, name, subset)` for every subset of every DestinationRule.
fn defined_subsets(ctx: &Context<'_>) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in ctx.of_kind(Kind::DestinationRule) {
        let Spec::DestinationRule(dr) = &r.spec else {
            continue;
        };
        let ns = r.namespace();
        let host = convert_host_to_fqdn(ns, &dr.host);
        let (hns, hname) = resource_name_from_host(ns, &host);
        for s in &dr.subsets {
            out.insert((hns.clone(), hname.clone(), s.name.clone()));
        }
    }
    out
}

impl Analyzer for DestinationRuleAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.DestinationRuleAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the destination rules associated with each virtual service"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let subsets = defined_subsets(ctx);
        for r in ctx.of_kind(Kind::VirtualService) {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            let ns = r.namespace();
            for (reftype, dests) in [
                ("host+subset in destinationrule", route_destinations(vs)),
                ("mirror+subset in destinationrule", mirror_destinations(vs)),
            ] {
                for d in &dests {
                    let subset = d.destination.map_or("", |d| d.subset.as_str());
                    if subset.is_empty() {
                        continue;
                    }
                    let (hns, hname) = resource_name_from_host(ns, d.host());
                    if subsets.contains(&(hns, hname, subset.to_string())) {
                        continue;
                    }
                    out.push(
                        Message::new(
                            &REFERENCED_RESOURCE_NOT_FOUND,
                            r,
                            vec![reftype.into(), format!("{}+{subset}", d.host()).into()],
                        )
                        .at(d.path()),
                    );
                }
            }
        }
    }
}
