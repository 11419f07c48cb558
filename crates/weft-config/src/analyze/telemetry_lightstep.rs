//! `telemetry.LightstepAnalyzer`: a Telemetry whose tracing uses a MeshConfig extension provider
//! of the deprecated Lightstep kind (IST0002).
//!
//! Follows Istio's `pkg/config/analysis/analyzers/telemetry/lightstep.go`: the names of the
//! `lightstep` extension providers of MeshConfig; every Telemetry `tracing[].providers[]` that
//! names one is reported with "The Lightstep provider NAME is deprecated, please migrate to
//! OpenTelemetry provider.".

use std::collections::BTreeSet;

use super::messages::DEPRECATED;
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Spec};

/// Istio's `telemetry.LightstepAnalyzer`.
pub struct LightstepAnalyzer;

impl Analyzer for LightstepAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.LightstepAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Validates that lightstep provider is still used"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let lightstep: BTreeSet<&str> = ctx
            .mesh
            .extension_providers
            .iter()
            .filter(|p| p.lightstep.is_some())
            .map(|p| p.name.as_str())
            .collect();
        if lightstep.is_empty() {
            return;
        }
        for r in ctx.of_kind(Kind::Telemetry) {
            let Spec::Telemetry(t) = &r.spec else {
                continue;
            };
            // Istio reports each use; uses of one provider have the same text and collapse into
            // one message, so weft reports the first.
            let mut seen = BTreeSet::new();
            for (i, tracing) in t.tracing.iter().enumerate() {
                for (j, p) in tracing.providers.iter().enumerate() {
                    if !lightstep.contains(p.name.as_str()) || !seen.insert(p.name.as_str()) {
                        continue;
                    }
                    out.push(
                        Message::new(
                            &DEPRECATED,
                            r,
                            vec![
                                format!(
                                    "The Lightstep provider {} is deprecated, please migrate to \
                                     OpenTelemetry provider.",
                                    p.name
                                )
                                .into(),
                            ],
                        )
                        .at(format!("spec.tracing[{i}].providers[{j}]")),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze;
    use crate::document::parse_mesh_config;
    use crate::mesh::MeshConfig;

    const TELEMETRY: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: lightstep}, {name: otel}]
  - providers: [{name: lightstep}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: otel-only, namespace: default}
spec:
  tracing:
  - providers: [{name: otel}]
"#;

    const MESH: &str = r#"
extensionProviders:
- name: lightstep
  lightstep:
    service: lightstep.istio-system.svc.cluster.local
    port: 8080
    accessToken: secret
- name: otel
  opentelemetry:
    service: otel.istio-system.svc.cluster.local
    port: 4317
"#;

    fn run(mesh: &MeshConfig) -> Vec<String> {
        let parsed = crate::parse_str(TELEMETRY, "telemetry.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        analyze(
            &parsed.resources,
            mesh,
            Some(&["telemetry.LightstepAnalyzer"]),
        )
        .iter()
        .map(|m| m.to_string())
        .collect()
    }

    #[test]
    fn lightstep_provider_is_deprecated() {
        let mesh = parse_mesh_config(MESH, "mesh.yaml").expect("mesh config parses");
        assert_eq!(
            run(&mesh),
            vec![
                "Warning [IST0002] (Telemetry istio-system/mesh-default) Deprecated: The \
                 Lightstep provider lightstep is deprecated, please migrate to OpenTelemetry \
                 provider."
            ]
        );
    }

    #[test]
    fn no_lightstep_provider_no_message() {
        assert!(run(&MeshConfig::default()).is_empty());
    }
}
