//! `serviceentry.ProtocolAddressesAnalyzer`: a ServiceEntry port with TCP (or no) protocol
//! needs virtual IPs unless the proxies auto-allocate them (IST0134).

use super::messages::SERVICE_ENTRY_ADDRESSES_REQUIRED;
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Spec};

/// Reports ServiceEntry ports that need `addresses`.
pub struct ProtocolAddressesAnalyzer;

/// True when the mesh's default proxy metadata turns on DNS capture with IP auto-allocation
/// (`ISTIO_META_DNS_CAPTURE` plus `ISTIO_META_DNS_AUTO_ALLOCATE` or
/// `PILOT_ENABLE_IP_AUTOALLOCATE`).
fn auto_allocates(ctx: &Context<'_>) -> bool {
    let Some(pc) = &ctx.mesh.default_config else {
        return false;
    };
    let meta = |k: &str| pc.proxy_metadata.get(k).is_some_and(|v| v == "true");
    meta("ISTIO_META_DNS_CAPTURE")
        && (meta("ISTIO_META_DNS_AUTO_ALLOCATE") || meta("PILOT_ENABLE_IP_AUTOALLOCATE"))
}

impl Analyzer for ProtocolAddressesAnalyzer {
    fn name(&self) -> &'static str {
        "serviceentry.ProtocolAddressesAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks that ServiceEntries with TCP or unset port protocols have addresses"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        if auto_allocates(ctx) {
            return;
        }
        for r in ctx.of_kind(Kind::ServiceEntry) {
            let Spec::ServiceEntry(se) = &r.spec else {
                continue;
            };
            if !se.addresses.is_empty() {
                continue;
            }
            for (i, port) in se.ports.iter().enumerate() {
                if port.protocol.is_empty() || port.protocol.eq_ignore_ascii_case("TCP") {
                    out.push(
                        Message::new(&SERVICE_ENTRY_ADDRESSES_REQUIRED, r, vec![])
                            .at(format!("spec.ports[{i}]")),
                    );
                }
            }
        }
    }
}
