//! `gateway.ConflictingGatewayAnalyzer`: two Gateways that select the same gateway workload
//! must not declare the same host (with the same bind address) on the same port.

use std::collections::BTreeMap;

use super::messages::{CONFLICTING_GATEWAYS, REFERENCED_RESOURCE_NOT_FOUND};
use super::util::{full_name, pods, selector_string};
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Spec};

/// Checks a gateway's selector, port number and hosts.
pub struct ConflictingGatewayAnalyzer;

/// `selector~port` -> gateway full name -> host -> bind.
type GatewayMap = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

fn gateways_map(ctx: &Context<'_>) -> GatewayMap {
    let mut map = GatewayMap::new();
    for r in ctx.of_kind(Kind::Gateway) {
        let Spec::Gateway(gw) = &r.spec else {
            continue;
        };
        let name = full_name(r);
        let selector = selector_string(&gw.selector);
        for server in &gw.servers {
            let port = server.port.as_ref().map_or(0, |p| p.number);
            let hosts = server
                .hosts
                .iter()
                .map(|h| (h.clone(), server.bind.clone()))
                .collect();
            map.entry(format!("{selector}~{port}"))
                .or_default()
                .insert(name.clone(), hosts);
        }
    }
    map
}

/// Parses `k=v,k=v` back into a selector.
fn parse_selector(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|pair| {
            let kv: Vec<&str> = pair.split('=').collect();
            (kv.len() == 2).then(|| (kv[0].to_string(), kv[1].to_string()))
        })
        .collect()
}

impl Analyzer for ConflictingGatewayAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.ConflictingGatewayAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway's selector, port number and hosts"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let map = gateways_map(ctx);
        let pods = pods(ctx);
        for r in ctx.of_kind(Kind::Gateway) {
            let Spec::Gateway(gw) = &r.spec else {
                continue;
            };
            let name = full_name(r);
            let selector = selector_string(&gw.selector);

            // Entries whose selector picks the same workload as this gateway's.
            let mut same_workload: Vec<&String> = Vec::new();
            for key in map.keys() {
                let (other_selector, _) = key.rsplit_once('~').unwrap_or((key.as_str(), ""));
                let matched = other_selector == selector
                    || ((other_selector.contains(selector.as_str())
                        || selector.contains(other_selector))
                        && {
                            let other = parse_selector(other_selector);
                            pods.iter().any(|p| {
                                selector_matches(&gw.selector, &p.labels)
                                    && selector_matches(&other, &p.labels)
                            })
                        });
                if matched {
                    same_workload.push(key);
                }
            }
            if !selector.is_empty() && same_workload.is_empty() {
                out.push(
                    Message::new(
                        &REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        vec!["selector".into(), selector.into()],
                    )
                    .at("spec.selector"),
                );
                continue;
            }

            for server in &gw.servers {
                let port = server.port.as_ref().map_or(0, |p| p.number).to_string();
                let mut conflicting: Vec<String> = Vec::new();
                for key in &same_workload {
                    if key.rsplit_once('~').map(|(_, p)| p) != Some(port.as_str()) {
                        continue;
                    }
                    for (other, hosts) in &map[*key] {
                        if *other == name {
                            continue;
                        }
                        // Istio's model.CheckDuplicates: the same host with the same bind.
                        let duplicate = server
                            .hosts
                            .iter()
                            .any(|h| hosts.get(h).is_some_and(|b| *b == server.bind));
                        if duplicate {
                            conflicting.push(other.clone());
                        }
                    }
                }
                if !conflicting.is_empty() {
                    conflicting.sort();
                    out.push(Message::new(
                        &CONFLICTING_GATEWAYS,
                        r,
                        vec![
                            conflicting.join(",").into(),
                            selector.as_str().into(),
                            port.as_str().into(),
                            server.hosts.join(",").into(),
                        ],
                    ));
                }
            }
        }
    }
}
