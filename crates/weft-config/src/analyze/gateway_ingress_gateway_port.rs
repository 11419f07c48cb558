//! `gateway.IngressGatewayPortAnalyzer`: a Gateway's selector matches some pod, and every
//! server port is a (target) port of a Service in front of those pods.

use std::collections::BTreeSet;

use super::messages::{GATEWAY_PORT_NOT_DEFINED_ON_SERVICE, REFERENCED_RESOURCE_NOT_FOUND};
use super::util::{pods, selector_string, services};
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Spec};

/// Checks a gateway's ports against the gateway's Kubernetes service ports.
pub struct IngressGatewayPortAnalyzer;

impl Analyzer for IngressGatewayPortAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.IngressGatewayPortAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway's ports against the gateway's Kubernetes service ports"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let pods = pods(ctx);
        let services = services(ctx);
        for r in ctx.of_kind(Kind::Gateway) {
            let Spec::Gateway(gw) = &r.spec else {
                continue;
            };
            let selector = selector_string(&gw.selector);
            let mut matched_pods = 0;
            let mut service_ports: BTreeSet<u32> = BTreeSet::new();
            for pod in pods
                .iter()
                .filter(|p| selector_matches(&gw.selector, &p.labels))
            {
                matched_pods += 1;
                for svc in services.iter().filter(|s| {
                    s.namespace == pod.namespace && selector_matches(&s.selector, &pod.labels)
                }) {
                    for port in svc.ports.iter().filter(|p| p.protocol == "TCP") {
                        // The gateway listens on the Service's target port.
                        let p = if port.target_port != 0 {
                            port.target_port
                        } else {
                            port.port
                        };
                        service_ports.insert(p as u32);
                    }
                }
            }
            if matched_pods == 0 {
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
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(port) = &server.port else {
                    continue;
                };
                if !service_ports.contains(&port.number) {
                    out.push(
                        Message::new(
                            &GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                            r,
                            vec![port.number.into(), selector.as_str().into()],
                        )
                        .at(format!("spec.servers[{i}].port.number")),
                    );
                }
            }
        }
    }
}
