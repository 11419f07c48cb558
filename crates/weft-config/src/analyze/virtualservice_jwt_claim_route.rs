//! `virtualservice.JWTClaimRouteAnalyzer`: a VirtualService that routes on JWT claims
//! (`@request.auth.claims.*` header matches) needs a RequestAuthentication on every gateway
//! pod it is bound to; otherwise the claims are never available for routing.

use std::collections::BTreeMap;

use super::messages::JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTH_N;
use super::util::ISTIO_SYSTEM_NAMESPACE;
use super::util::{namespaced_name, pods, short_or_full_name};
use super::{Analyzer, Context, Message};
use crate::meta::selector_matches;
use crate::networking::virtual_service::{MESH_GATEWAY, VirtualService};
use crate::resource::{Kind, Spec};

/// Header-name prefix of JWT claim routing.
const HEADER_JWT_CLAIM: &str = "@request.auth.claims";

/// Checks that JWT claim based routing has a RequestAuthentication on the gateway pods.
pub struct JwtClaimRouteAnalyzer;

/// The first header (or without-header) match key that routes on a JWT claim.
fn jwt_claim_key(vs: &VirtualService) -> Option<&str> {
    vs.http
        .iter()
        .flat_map(|h| h.r#match.iter())
        .flat_map(|m| m.headers.keys().chain(m.without_headers.keys()))
        .find(|k| k.starts_with(HEADER_JWT_CLAIM))
        .map(String::as_str)
}

impl Analyzer for JwtClaimRouteAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.JWTClaimRouteAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the VirtualService using JWT claim based routing has corresponding RequestAuthentication"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        // namespace -> the selectors of its RequestAuthentications (empty selects all).
        let mut ra_selectors: BTreeMap<&str, Vec<BTreeMap<String, String>>> = BTreeMap::new();
        for r in ctx.of_kind(Kind::RequestAuthentication) {
            let Spec::RequestAuthentication(ra) = &r.spec else {
                continue;
            };
            let sel = ra
                .selector
                .as_ref()
                .map(|s| s.match_labels.clone())
                .unwrap_or_default();
            ra_selectors.entry(r.namespace()).or_default().push(sel);
        }
        let all_pods = pods(ctx);
        for r in ctx.of_kind(Kind::VirtualService) {
            let Spec::VirtualService(vs) = &r.spec else {
                continue;
            };
            let Some(key) = jwt_claim_key(vs) else {
                continue;
            };
            for gw_name in &vs.gateways {
                if gw_name == MESH_GATEWAY {
                    continue;
                }
                let (gw_ns, gw_local) = short_or_full_name(r.namespace(), gw_name);
                let Some(gw) = ctx.get(Kind::Gateway, gw_ns, gw_local) else {
                    // A missing gateway is the GatewayAnalyzer's finding.
                    continue;
                };
                let Spec::Gateway(gw_spec) = &gw.spec else {
                    continue;
                };
                for pod in &all_pods {
                    if !selector_matches(&gw_spec.selector, &pod.labels) {
                        continue;
                    }
                    let covered = ra_selectors
                        .get(ISTIO_SYSTEM_NAMESPACE)
                        .into_iter()
                        .chain(ra_selectors.get(pod.namespace.as_str()))
                        .flatten()
                        .any(|sel| selector_matches(sel, &pod.labels));
                    if !covered {
                        out.push(Message::new(
                            &JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTH_N,
                            r,
                            vec![
                                key.into(),
                                namespaced_name(gw_ns, gw_local).into(),
                                pod.name.as_str().into(),
                            ],
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::analyze;
    use crate::mesh::MeshConfig;

    const INPUT: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: claims, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - match:
    - headers:
        "@request.auth.claims.group": {exact: admin}
    route:
    - destination: {host: admin}
"#;

    const REQUEST_AUTHN: &str = r#"
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector:
    matchLabels: {istio: ingressgateway}
  jwtRules:
  - issuer: testing@secure.istio.io
"#;

    fn run(text: &str) -> Vec<String> {
        let parsed = crate::parse_str(text, "t.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        analyze(
            &parsed.resources,
            &MeshConfig::default(),
            Some(&["virtualservice.JWTClaimRouteAnalyzer"]),
        )
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn claim_routing_needs_request_authentication_on_the_gateway_pods() {
        // The gateway selects istioctl's placeholder ingress pod, which no
        // RequestAuthentication covers.
        let msgs = run(INPUT);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(
            msgs[0].starts_with("Error [IST0149] (VirtualService default/claims) The virtual service uses the JWT claim based routing (key: @request.auth.claims.group) but found no request authentication for the gateway (istio-system/gw) pod (istio-ingressgateway-dummypod)"),
            "{}",
            msgs[0]
        );
        assert!(run(&format!("{INPUT}{REQUEST_AUTHN}")).is_empty());
    }
}
