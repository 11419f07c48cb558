//! `gateway.CertificateAnalyzer`: two Gateways on the same workload should not serve the same
//! certificate; clients that reuse an HTTP/2 connection across their hosts get 404s.

use super::messages::GATEWAY_DUPLICATE_CERTIFICATE;
use super::util::full_name;
use super::{Analyzer, Arg, Context, Message};
use crate::networking::gateway::ServerTlsSettings;
use crate::resource::{Kind, Resource, Spec};

/// Checks a gateway certificate.
pub struct CertificateAnalyzer;

/// Istio's `features.ScopeGatewayToNamespace` default: Gateways select workloads in all
/// namespaces.
const SCOPE_GATEWAY_TO_NAMESPACE: bool = false;

/// Same Secret, or same certificate and key files.
fn same_certificate(a: &ServerTlsSettings, b: &ServerTlsSettings) -> bool {
    if !a.credential_name.is_empty() && !b.credential_name.is_empty() {
        return a.credential_name == b.credential_name;
    }
    a.credential_name.is_empty()
        && b.credential_name.is_empty()
        && !a.server_certificate.is_empty()
        && a.server_certificate == b.server_certificate
        && !a.private_key.is_empty()
        && a.private_key == b.private_key
}

/// Every key of `x` is in `y` with the same value.
fn selector_subset(
    x: &std::collections::BTreeMap<String, String>,
    y: &std::collections::BTreeMap<String, String>,
) -> bool {
    x.iter().all(|(k, v)| y.get(k) == Some(v))
}

fn gateways_with_selector<'a>(ctx: &Context<'a>, current: &Resource) -> Vec<&'a Resource> {
    let Spec::Gateway(cur) = &current.spec else {
        return Vec::new();
    };
    ctx.of_kind(Kind::Gateway)
        .filter(|r| !SCOPE_GATEWAY_TO_NAMESPACE || r.namespace() == current.namespace())
        .filter(|r| match &r.spec {
            Spec::Gateway(g) => {
                cur.selector.is_empty() || selector_subset(&cur.selector, &g.selector)
            }
            _ => false,
        })
        .collect()
}

impl Analyzer for CertificateAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.CertificateAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks a gateway certificate"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for r in ctx.of_kind(Kind::Gateway) {
            let Spec::Gateway(cur) = &r.spec else {
                continue;
            };
            let cur_name = full_name(r);
            for other in gateways_with_selector(ctx, r) {
                let other_name = full_name(other);
                if other_name == cur_name {
                    continue;
                }
                let Spec::Gateway(og) = &other.spec else {
                    continue;
                };
                for cs in &cur.servers {
                    for os in &og.servers {
                        let (Some(ct), Some(ot)) = (&cs.tls, &os.tls) else {
                            continue;
                        };
                        if same_certificate(ct, ot) {
                            out.push(
                                Message::new(
                                    &GATEWAY_DUPLICATE_CERTIFICATE,
                                    r,
                                    vec![Arg::StrList(vec![cur_name.clone(), other_name.clone()])],
                                )
                                .at("metadata.name"),
                            );
                        }
                    }
                }
            }
        }
    }
}
