//! `deprecation.FieldAnalyzer` (istioctl names it `deprecation.DeprecationAnalyzer`): deprecated
//! Istio fields that are still set.
//!
//! Istio's analyzer is hand-written and checks exactly these (Istio's
//! `pkg/config/analysis/analyzers/deprecation/deprecation.go`):
//! - a VirtualService HTTP route whose `fault.delay.percent` (the integer percentage) is above
//!   zero: "HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage";
//! - a Sidecar with `outboundTrafficPolicy.egressProxy`: "OutboundTrafficPolicy.EgressProxy
//!   ignored";
//! - CustomResourceDefinitions of the removed `rbac.istio.io` kinds (ClusterRbacConfig,
//!   RbacConfig, ServiceRole, ServiceRoleBinding), and resources of Istio's "deprecated"
//!   collections (an empty list in current Istio). weft has no CustomResourceDefinition kind
//!   (such documents are reported as unknown when parsed), so that part has no input here.
//!
//! Older Istio releases also flagged `mirror_percent`, `appendHeaders`, EnvoyFilter
//! `workloadLabels`/`filters` and others; current Istio no longer does, and neither does weft.

use super::messages::DEPRECATED;
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Spec};

/// Checks for deprecated Istio types and fields.
pub struct FieldAnalyzer;

/// Istio's wording for a field with a replacement.
fn replaced(deprecated: &str, replacement: &str) -> String {
    format!("{deprecated} is deprecated; use {replacement}")
}

/// Istio's wording for a field the proxy no longer reads.
fn ignored(field: &str) -> String {
    format!("{field} ignored")
}

impl Analyzer for FieldAnalyzer {
    fn name(&self) -> &'static str {
        "deprecation.DeprecationAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for deprecated Istio types and fields"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for r in ctx.of_kind(Kind::VirtualService) {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            // Istio reports once per route; the copies have the same text and collapse into
            // one message, so weft reports the first route.
            let first = vs.http.iter().position(|h| {
                h.fault
                    .as_ref()
                    .and_then(|f| f.delay.as_ref())
                    .is_some_and(|d| d.percent > 0)
            });
            if let Some(i) = first {
                out.push(
                    Message::new(
                        &DEPRECATED,
                        r,
                        vec![
                            replaced(
                                "HTTPRoute.fault.delay.percent",
                                "HTTPRoute.fault.delay.percentage",
                            )
                            .into(),
                        ],
                    )
                    .at(format!("spec.http[{i}].fault.delay.percent")),
                );
            }
        }
        for r in ctx.of_kind(Kind::Sidecar) {
            let Spec::Sidecar(sc) = &r.spec else {
                continue;
            };
            if sc
                .outbound_traffic_policy
                .as_ref()
                .is_some_and(|p| p.egress_proxy.is_some())
            {
                out.push(
                    Message::new(
                        &DEPRECATED,
                        r,
                        vec![ignored("OutboundTrafficPolicy.EgressProxy").into()],
                    )
                    .at("spec.outboundTrafficPolicy.egressProxy"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze;
    use crate::mesh::MeshConfig;

    fn run(yaml: &str) -> Vec<String> {
        let parsed = crate::parse_str(yaml, "deprecation.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        analyze(
            &parsed.resources,
            &MeshConfig::default(),
            Some(&["deprecation.DeprecationAnalyzer"]),
        )
        .iter()
        .map(|m| m.to_string())
        .collect()
    }

    const VS_PERCENT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: foo}
spec:
  hosts: [productpage]
  http:
  - fault:
      delay: {percent: 50, fixedDelay: 5s}
    route: [{destination: {host: productpage}}]
  - fault:
      delay: {percent: 10, fixedDelay: 1s}
    route: [{destination: {host: productpage}}]
"#;

    #[test]
    fn delay_percent_is_deprecated_once_per_virtual_service() {
        assert_eq!(
            run(VS_PERCENT),
            vec![
                "Warning [IST0002] (VirtualService foo/productpage) Deprecated: \
                 HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage"
            ]
        );
    }

    #[test]
    fn delay_percentage_and_zero_percent_are_fine() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: foo}
spec:
  hosts: [productpage]
  http:
  - fault:
      delay: {percentage: {value: 50}, fixedDelay: 5s}
      abort: {percentage: {value: 10}, httpStatus: 503}
    route: [{destination: {host: productpage}}]
  - fault:
      delay: {percent: 0, fixedDelay: 5s}
    route: [{destination: {host: productpage}}]
  - mirrorPercent: 20
    mirror: {host: shadow}
    route: [{destination: {host: productpage}}]
"#;
        assert!(run(yaml).is_empty());
    }

    #[test]
    fn sidecar_egress_proxy_is_ignored() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: no-selector, namespace: default}
spec:
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy:
    mode: ALLOW_ANY
    egressProxy:
      host: example
      port: {number: 9080}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: plain, namespace: default}
spec:
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;
        assert_eq!(
            run(yaml),
            vec![
                "Warning [IST0002] (Sidecar default/no-selector) Deprecated: \
                 OutboundTrafficPolicy.EgressProxy ignored"
            ]
        );
    }
}
