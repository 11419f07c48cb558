//! `destinationrule.CaCertificateAnalyzer`: a DestinationRule that originates TLS (SIMPLE or
//! MUTUAL) without `caCertificates` does not pin the server's CA (IST0128 at the destination
//! level, IST0129 per port).

use super::messages::{
    NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
    NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
};
use super::util::full_name;
use super::{Analyzer, Context, Message};
use crate::networking::destination_rule::{ClientTlsSettings, DestinationRule, TlsMode};
use crate::resource::{Kind, Spec};

/// Warns about TLS origination without a CA bundle.
pub struct CaCertificateAnalyzer;

/// True when `tls` originates TLS but gives the proxy no CA to verify the server with. A
/// `credentialName` supplies the CA at sidecars only when the rule has a workload selector.
fn lacks_ca(tls: &ClientTlsSettings, dr: &DestinationRule) -> bool {
    matches!(tls.mode, TlsMode::Simple | TlsMode::Mutual)
        && tls.ca_certificates.is_empty()
        && (tls.credential_name.is_empty() || dr.workload_selector.is_none())
}

impl Analyzer for CaCertificateAnalyzer {
    fn name(&self) -> &'static str {
        "destinationrule.CaCertificateAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for r in ctx.of_kind(Kind::DestinationRule) {
            let Spec::DestinationRule(dr) = &r.spec else {
                continue;
            };
            let Some(tp) = &dr.traffic_policy else {
                continue;
            };
            let name = full_name(r);
            if let Some(tls) = &tp.tls
                && lacks_ca(tls, dr)
            {
                out.push(
                    Message::new(
                        &NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
                        r,
                        vec![
                            name.clone().into(),
                            r.namespace().into(),
                            tls.mode.as_str().into(),
                            (&dr.host).into(),
                        ],
                    )
                    .at("spec.trafficPolicy.tls"),
                );
            }
            for (i, p) in tp.port_level_settings.iter().enumerate() {
                let Some(tls) = &p.tls else { continue };
                if !lacks_ca(tls, dr) {
                    continue;
                }
                // Go prints the PortSelector message in protobuf text form.
                let port = p
                    .port
                    .as_ref()
                    .map(|s| format!("number:{}", s.number))
                    .unwrap_or_default();
                out.push(
                    Message::new(
                        &NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
                        r,
                        vec![
                            name.clone().into(),
                            r.namespace().into(),
                            tls.mode.as_str().into(),
                            (&dr.host).into(),
                            port.into(),
                        ],
                    )
                    .at(format!("spec.trafficPolicy.portLevelSettings[{i}].tls")),
                );
            }
        }
    }
}
