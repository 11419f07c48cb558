//! `gateway.SecretAnalyzer`: the Secret a Gateway server names in `credentialName` exists in
//! the namespace of the gateway workload (not of the Gateway resource).

use super::gateway_credential::credential_problem;
use super::messages::{INVALID_GATEWAY_CREDENTIAL, REFERENCED_RESOURCE_NOT_FOUND};
use super::util::{pods, selector_string, short_or_full_name};
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::resource::{Kind, Spec};

/// Checks a gateway's referenced secrets for correctness.
pub struct SecretAnalyzer;

impl Analyzer for SecretAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.SecretAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway's referenced secrets for correctness"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let pods = pods(ctx);
        for r in ctx.of_kind(Kind::Gateway) {
            let Spec::Gateway(gw) = &r.spec else {
                continue;
            };
            // The namespace of the first selected workload (Istio assumes they share one).
            let workload_ns = pods
                .iter()
                .find(|p| selector_matches(&gw.selector, &p.labels))
                .map(|p| p.namespace.as_str())
                .filter(|ns| !ns.is_empty());
            let Some(ns) = workload_ns else {
                out.push(
                    Message::new(
                        &REFERENCED_RESOURCE_NOT_FOUND,
                        r,
                        vec!["selector".into(), selector_string(&gw.selector).into()],
                    )
                    .at("spec.selector"),
                );
                continue;
            };
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(tls) = &server.tls else {
                    continue;
                };
                let cn = &tls.credential_name;
                if cn.is_empty() {
                    continue;
                }
                let (sns, sname) = short_or_full_name(ns, cn);
                match ctx.get(Kind::Secret, sns, sname) {
                    None => out.push(
                        Message::new(
                            &REFERENCED_RESOURCE_NOT_FOUND,
                            r,
                            vec!["credentialName".into(), cn.as_str().into()],
                        )
                        .at(format!("spec.servers[{i}].tls.credentialName")),
                    ),
                    Some(secret) if credential_problem(secret).is_some() => out.push(
                        Message::new(
                            &INVALID_GATEWAY_CREDENTIAL,
                            r,
                            vec![r.name().into(), ns.into()],
                        )
                        .at(format!("spec.servers[{i}].tls.credentialName")),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
}
