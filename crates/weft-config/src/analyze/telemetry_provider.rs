//! `telemetry.ProviderAnalyzer`: access-logging rules without providers when MeshConfig has no
//! default access-logging provider (Istio ignores such rules).

use super::messages::INVALID_TELEMETRY_PROVIDER;
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Spec};

/// Istio's `telemetry.ProviderAnalyzer`.
pub struct TelemetryProviderAnalyzer;

impl Analyzer for TelemetryProviderAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.ProviderAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that providers in telemery resource is valid"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let has_default = ctx
            .mesh
            .default_providers
            .as_ref()
            .is_some_and(|d| !d.access_logging.is_empty());
        if has_default {
            return;
        }
        for r in ctx.of_kind(Kind::Telemetry) {
            let Spec::Telemetry(t) = &r.spec else {
                continue;
            };
            for (i, l) in t.access_logging.iter().enumerate() {
                if l.providers.is_empty() {
                    out.push(
                        Message::new(
                            &INVALID_TELEMETRY_PROVIDER,
                            r,
                            vec![r.name().into(), r.namespace().into()],
                        )
                        .at(format!("spec.accessLogging[{i}]")),
                    );
                }
            }
        }
    }
}
