//! RequestAuthentication to `envoy.filters.http.jwt_authn`, with Istio's semantics: every JWT
//! rule that applies to the workload becomes a provider `origins-N`; one requirement accepts any
//! of them or no token at all (`allow_missing`), so an invalid token is refused with 401 and a
//! missing one passes (an AuthorizationPolicy with `requestPrincipals` then denies it). The
//! verified payload is kept in the filter's dynamic metadata under `payload`, where the RBAC
//! filter reads `request.auth.*`.

use weft_config::meta::selector_matches;
use weft_config::security::request_authentication::JwtRule;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;

use super::authz::JWT_AUTHN;
use super::envoy;
use crate::model::{Environment, Proxy};

/// Dynamic metadata key of the verified payload (read by RBAC as `payload.<claim>`).
pub const PAYLOAD_IN_METADATA: &str = "payload";
/// How long a fetched JWKS is kept before it is fetched again (Istio's default).
pub const JWKS_CACHE_DURATION: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// Timeout of a JWKS fetch when the rule does not set one.
pub const JWKS_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The JWT rules that apply to a proxy: root namespace, then its namespace; a `selector`
/// narrows by labels.
pub fn workload_jwt_rules(env: &Environment, proxy: &Proxy) -> Vec<JwtRule> {
    let ns = proxy.config_namespace.as_str();
    let root = env
        .request_authentications
        .iter()
        .filter(|p| p.namespace == env.mesh.root_namespace);
    let local = env
        .request_authentications
        .iter()
        .filter(|p| p.namespace != env.mesh.root_namespace && p.namespace == ns);
    root.chain(local)
        .filter(|p| {
            if !p.spec.target_refs.is_empty() || p.spec.target_ref.is_some() {
                return false;
            }
            match &p.spec.selector {
                Some(s) if !s.match_labels.is_empty() => {
                    selector_matches(&s.match_labels, &proxy.labels)
                }
                _ => true,
            }
        })
        .flat_map(|p| p.spec.jwt_rules.iter().cloned())
        .collect()
}

/// `https://host[:port]/path` to the outbound cluster that serves it.
fn jwks_cluster(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, p.parse().ok()?),
        _ => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    Some(format!("outbound|{port}||{host}"))
}

fn provider(rule: &JwtRule) -> jwt::JwtProvider {
    let source = if !rule.jwks.is_empty() {
        jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(core::DataSource {
            specifier: Some(core::data_source::Specifier::InlineString(
                rule.jwks.clone(),
            )),
            ..Default::default()
        })
    } else {
        jwt::jwt_provider::JwksSourceSpecifier::RemoteJwks(jwt::RemoteJwks {
            http_uri: Some(core::HttpUri {
                uri: rule.jwks_uri.clone(),
                timeout: envoy::duration(
                    rule.timeout.map(|t| t.get()).unwrap_or(JWKS_FETCH_TIMEOUT),
                ),
                http_upstream_type: jwks_cluster(&rule.jwks_uri)
                    .map(core::http_uri::HttpUpstreamType::Cluster),
            }),
            cache_duration: envoy::duration(JWKS_CACHE_DURATION),
            ..Default::default()
        })
    };
    jwt::JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token,
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| jwt::JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone(),
        payload_in_metadata: PAYLOAD_IN_METADATA.to_string(),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| jwt::JwtClaimToHeader {
                header_name: c.header.clone(),
                claim_name: c.claim.clone(),
                ..Default::default()
            })
            .collect(),
        jwks_source_specifier: Some(source),
        ..Default::default()
    }
}

/// The `jwt_authn` HTTP filter for the proxy, or none when no RequestAuthentication applies.
pub fn http_filters(env: &Environment, proxy: &Proxy) -> Vec<hcm::HttpFilter> {
    let rules = workload_jwt_rules(env, proxy);
    if rules.is_empty() {
        return Vec::new();
    }
    let mut providers = std::collections::HashMap::new();
    let mut requirements = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let name = format!("origins-{i}");
        providers.insert(name.clone(), provider(r));
        requirements.push(jwt::JwtRequirement {
            requires_type: Some(jwt::jwt_requirement::RequiresType::ProviderName(name)),
        });
    }
    requirements.push(jwt::JwtRequirement {
        requires_type: Some(jwt::jwt_requirement::RequiresType::AllowMissing(
            Default::default(),
        )),
    });
    let config = jwt::JwtAuthentication {
        providers,
        rules: vec![jwt::RequirementRule {
            r#match: Some(route::RouteMatch {
                path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".to_string())),
                ..Default::default()
            }),
            requirement_type: Some(jwt::requirement_rule::RequirementType::Requires(
                jwt::JwtRequirement {
                    requires_type: Some(jwt::jwt_requirement::RequiresType::RequiresAny(
                        jwt::JwtRequirementOrList { requirements },
                    )),
                },
            )),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    };
    vec![hcm::HttpFilter {
        name: JWT_AUTHN.to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(envoy::any(
            &config,
        ))),
        ..Default::default()
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_cluster_from_uri() {
        assert_eq!(
            jwks_cluster("https://example.com/.well-known/jwks.json").as_deref(),
            Some("outbound|443||example.com")
        );
        assert_eq!(
            jwks_cluster("http://jwks.foo:8000/keys").as_deref(),
            Some("outbound|8000||jwks.foo")
        );
    }
}
