//! AuthorizationPolicy to Envoy RBAC (`envoy.filters.http.rbac`, `envoy.filters.network.rbac`)
//! and ext_authz filters, shaped as istiod shapes them: one RBAC policy per rule named
//! `ns[NS]-policy[NAME]-rule[I]`, `from` entries as principals, `to` entries as permissions,
//! `when` conditions added to both sides; dry-run policies as shadow rules; CUSTOM policies as a
//! shadow RBAC filter whose result enables an ext_authz filter for the provider.
//!
//! Per workload the filters come in Istio's order: CUSTOM, then AUDIT, DENY and ALLOW.

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_config::mesh::providers::ExtensionProvider;
use weft_config::meta::selector_matches;
use weft_config::security::DRY_RUN_ANNOTATION;
use weft_config::security::authorization_policy::{Action, AuthorizationPolicy, Rule};
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::rbac::v3 as rbac;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::filters::http::ext_authz::v3 as ext_authz_http;
use weft_xds::envoy::extensions::filters::http::rbac::v3 as rbac_http;
use weft_xds::envoy::extensions::filters::network::ext_authz::v3 as ext_authz_tcp;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::extensions::filters::network::rbac::v3 as rbac_tcp;
use weft_xds::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use weft_xds::envoy::r#type::matcher::v3 as matcher;

use super::envoy;
use crate::model::{Cfg, Environment, Proxy};

/// Name of the HTTP RBAC filter.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// Name of the network RBAC filter.
pub const TCP_RBAC: &str = "envoy.filters.network.rbac";
/// Name of the HTTP ext_authz filter.
pub const HTTP_EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// Name of the network ext_authz filter.
pub const TCP_EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
/// Filter whose dynamic metadata carries the verified JWT payload.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// Stat prefix of the network RBAC filter.
pub const TCP_STAT_PREFIX: &str = "tcp.";
/// Shadow stat prefix of dry-run ALLOW policies (also the default when no shadow rules exist).
pub const DRY_RUN_ALLOW_PREFIX: &str = "istio_dry_run_allow_";
/// Shadow stat prefix of dry-run DENY policies.
pub const DRY_RUN_DENY_PREFIX: &str = "istio_dry_run_deny_";
/// Shadow stat prefix of the RBAC filter that selects requests for ext_authz.
pub const EXT_AUTHZ_SHADOW_PREFIX: &str = "istio_ext_authz_";
/// Prefix of CUSTOM policy names; ext_authz runs when the shadow result starts with it.
pub const EXT_AUTHZ_MATCH_PREFIX: &str = "istio-ext-authz";
/// Gateway API label that names the Gateway a gateway proxy serves.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The AuthorizationPolicies that apply to a workload, grouped by action, each in Istio's
/// order (root namespace first, then the workload's namespace; oldest first within each).
#[derive(Clone, Debug, Default)]
pub struct WorkloadPolicies {
    /// CUSTOM policies.
    pub custom: Vec<Arc<Cfg<AuthorizationPolicy>>>,
    /// DENY policies.
    pub deny: Vec<Arc<Cfg<AuthorizationPolicy>>>,
    /// ALLOW policies.
    pub allow: Vec<Arc<Cfg<AuthorizationPolicy>>>,
    /// AUDIT policies.
    pub audit: Vec<Arc<Cfg<AuthorizationPolicy>>>,
}

impl WorkloadPolicies {
    /// Whether no policy applies.
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty()
            && self.deny.is_empty()
            && self.allow.is_empty()
            && self.audit.is_empty()
    }
}

/// Whether a policy applies to the proxy: root-namespace policies mesh-wide, others in their
/// namespace; a `selector` narrows by labels; `targetRef(s)` bind to a Gateway by name.
fn applies(env: &Environment, proxy: &Proxy, p: &Cfg<AuthorizationPolicy>) -> bool {
    let ns = proxy.config_namespace.as_str();
    if p.namespace != env.mesh.root_namespace && p.namespace != ns {
        return false;
    }
    let mut refs: Vec<_> = p.spec.target_refs.iter().collect();
    refs.extend(p.spec.target_ref.iter());
    if !refs.is_empty() {
        let Some(gw) = proxy.labels.get(GATEWAY_NAME_LABEL) else {
            return false;
        };
        return p.namespace == ns && refs.iter().any(|r| r.kind == "Gateway" && &r.name == gw);
    }
    match &p.spec.selector {
        Some(s) if !s.match_labels.is_empty() => selector_matches(&s.match_labels, &proxy.labels),
        _ => true,
    }
}

/// The policies that apply to a proxy.
pub fn workload_policies(env: &Environment, proxy: &Proxy) -> WorkloadPolicies {
    let mut out = WorkloadPolicies::default();
    let root = env
        .authorization_policies
        .iter()
        .filter(|p| p.namespace == env.mesh.root_namespace);
    let local = env
        .authorization_policies
        .iter()
        .filter(|p| p.namespace != env.mesh.root_namespace);
    for p in root.chain(local) {
        if !applies(env, proxy, p) {
            continue;
        }
        let list = match p.spec.action() {
            Action::Allow => &mut out.allow,
            Action::Deny => &mut out.deny,
            Action::Audit => &mut out.audit,
            Action::Custom => &mut out.custom,
        };
        list.push(p.clone());
    }
    out
}

/// The trust domain and its aliases (Istio's trust domain bundle).
fn trust_domains(env: &Environment) -> Vec<String> {
    let mut v = vec![env.mesh.trust_domain.clone()];
    v.extend(env.mesh.trust_domain_aliases.iter().cloned());
    v
}

/// HTTP filters for the proxy's inbound HTTP chains: CUSTOM (shadow RBAC + ext_authz), then
/// RBAC for AUDIT, DENY and ALLOW.
pub fn http_filters(env: &Environment, proxy: &Proxy) -> Vec<hcm::HttpFilter> {
    let policies = workload_policies(env, proxy);
    let b = Builder {
        env,
        trust_domains: trust_domains(env),
    };
    let mut out = Vec::new();
    for built in b.custom(&policies.custom, false) {
        if let Built::Http(f) = built {
            out.push(f);
        }
    }
    for (list, action) in [
        (&policies.audit, rbac::rbac::Action::Log),
        (&policies.deny, rbac::rbac::Action::Deny),
        (&policies.allow, rbac::rbac::Action::Allow),
    ] {
        if let Some(Built::Http(f)) = b.rbac_filter(list, action, false) {
            out.push(f);
        }
    }
    out
}

/// Network filters for the proxy's inbound TCP chains (and before the HCM of HTTP chains).
pub fn tcp_filters(env: &Environment, proxy: &Proxy) -> Vec<listener::Filter> {
    let policies = workload_policies(env, proxy);
    let b = Builder {
        env,
        trust_domains: trust_domains(env),
    };
    let mut out = Vec::new();
    for built in b.custom(&policies.custom, true) {
        if let Built::Tcp(f) = built {
            out.push(f);
        }
    }
    for (list, action) in [
        (&policies.audit, rbac::rbac::Action::Log),
        (&policies.deny, rbac::rbac::Action::Deny),
        (&policies.allow, rbac::rbac::Action::Allow),
    ] {
        if let Some(Built::Tcp(f)) = b.rbac_filter(list, action, true) {
            out.push(f);
        }
    }
    out
}

/// The authentication and authorization filters of one proxy's inbound chains, computed once
/// per translation and inserted into every chain.
#[derive(Clone, Debug, Default)]
pub(crate) struct InboundSecurity {
    /// `jwt_authn`, then CUSTOM, AUDIT, DENY and ALLOW filters for HTTP chains.
    http: Vec<hcm::HttpFilter>,
    /// Network RBAC / ext_authz filters for TCP chains.
    tcp: Vec<listener::Filter>,
}

impl InboundSecurity {
    /// The filters for the proxy.
    pub(crate) fn new(env: &Environment, proxy: &Proxy) -> InboundSecurity {
        let mut http = super::authn::http_filters(env, proxy);
        http.extend(http_filters(env, proxy));
        InboundSecurity {
            http,
            tcp: tcp_filters(env, proxy),
        }
    }

    /// Inserts the filters into a chain's network filters: before the HCM's other HTTP
    /// filters for HTTP chains, before the TCP proxy for TCP chains.
    pub(crate) fn apply(&self, filters: &mut Vec<listener::Filter>) {
        let hcm_at = filters.iter().position(|f| f.name == envoy::wellknown::HCM);
        match hcm_at {
            Some(i) if !self.http.is_empty() => {
                let Some(listener::filter::ConfigType::TypedConfig(any)) = &filters[i].config_type
                else {
                    return;
                };
                let Some(mut manager) = envoy::unpack::<hcm::HttpConnectionManager>(any) else {
                    return;
                };
                let rest = std::mem::take(&mut manager.http_filters);
                manager.http_filters = self.http.iter().cloned().chain(rest).collect();
                filters[i].config_type = Some(listener::filter::ConfigType::TypedConfig(
                    envoy::any(&manager),
                ));
            }
            Some(_) => {}
            None => {
                for (n, f) in self.tcp.iter().enumerate() {
                    filters.insert(n, f.clone());
                }
            }
        }
    }
}

enum Built {
    Http(hcm::HttpFilter),
    Tcp(listener::Filter),
}

struct Builder<'a> {
    env: &'a Environment,
    trust_domains: Vec<String>,
}

fn is_dry_run(p: &Cfg<AuthorizationPolicy>) -> bool {
    p.annotations
        .get(DRY_RUN_ANNOTATION)
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn policy_name(prefix: &str, p: &Cfg<AuthorizationPolicy>, i: usize) -> String {
    format!("{prefix}ns[{}]-policy[{}]-rule[{i}]", p.namespace, p.name)
}

fn match_never() -> rbac::Policy {
    rbac::Policy {
        permissions: vec![rbac::Permission {
            rule: Some(rbac::permission::Rule::NotRule(Box::new(perm_any()))),
        }],
        principals: vec![rbac::Principal {
            identifier: Some(rbac::principal::Identifier::NotId(Box::new(princ_any()))),
        }],
        ..Default::default()
    }
}

fn shadow_prefix(shadow: Option<&rbac::Rbac>) -> &'static str {
    match shadow.map(|s| s.action()) {
        Some(rbac::rbac::Action::Deny) => DRY_RUN_DENY_PREFIX,
        Some(rbac::rbac::Action::Log) => "",
        _ => DRY_RUN_ALLOW_PREFIX,
    }
}

fn http_filter<T: prost::Message + prost::Name>(name: &str, cfg: &T) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: name.to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(envoy::any(cfg))),
        ..Default::default()
    }
}

fn tcp_filter<T: prost::Message + prost::Name>(name: &str, cfg: &T) -> listener::Filter {
    listener::Filter {
        name: name.to_string(),
        config_type: Some(listener::filter::ConfigType::TypedConfig(envoy::any(cfg))),
    }
}

impl Builder<'_> {
    /// Policies of one action into `(enforced, shadow)` rule sets (`None` when empty).
    fn rules(
        &self,
        policies: &[Arc<Cfg<AuthorizationPolicy>>],
        action: rbac::rbac::Action,
        for_tcp: bool,
        name_prefix: &str,
    ) -> (Option<rbac::Rbac>, Option<rbac::Rbac>) {
        let mut enforce = rbac::Rbac {
            action: action as i32,
            ..Default::default()
        };
        let mut shadow = enforce.clone();
        let (mut has_enforce, mut has_shadow) = (false, false);
        for p in policies {
            let target = if is_dry_run(p) {
                has_shadow = true;
                &mut shadow
            } else {
                has_enforce = true;
                &mut enforce
            };
            for (i, rule) in p.spec.rules.iter().enumerate() {
                let name = policy_name(name_prefix, p, i);
                let Ok(model) = RuleModel::new(&p.namespace, rule) else {
                    continue;
                };
                let model = model.migrate_trust_domain(&self.trust_domains);
                if let Ok(generated) = model.generate(for_tcp, action) {
                    target.policies.insert(name, generated);
                }
            }
            if p.spec.rules.is_empty() {
                target
                    .policies
                    .insert(policy_name(name_prefix, p, 0), match_never());
            }
        }
        (has_enforce.then_some(enforce), has_shadow.then_some(shadow))
    }

    fn rbac_filter(
        &self,
        policies: &[Arc<Cfg<AuthorizationPolicy>>],
        action: rbac::rbac::Action,
        for_tcp: bool,
    ) -> Option<Built> {
        if policies.is_empty() {
            return None;
        }
        let (rules, shadow) = self.rules(policies, action, for_tcp, "");
        let prefix = shadow_prefix(shadow.as_ref()).to_string();
        Some(if for_tcp {
            Built::Tcp(tcp_filter(
                TCP_RBAC,
                &rbac_tcp::Rbac {
                    rules,
                    shadow_rules: shadow,
                    stat_prefix: TCP_STAT_PREFIX.to_string(),
                    shadow_rules_stat_prefix: prefix,
                    ..Default::default()
                },
            ))
        } else {
            Built::Http(http_filter(
                HTTP_RBAC,
                &rbac_http::Rbac {
                    rules,
                    shadow_rules: shadow,
                    shadow_rules_stat_prefix: prefix,
                    ..Default::default()
                },
            ))
        })
    }

    /// CUSTOM policies, one filter pair per provider (providers in name order). A provider
    /// that is missing or invalid turns its policies into DENY rules, so that a broken
    /// external authorizer fails closed.
    fn custom(&self, policies: &[Arc<Cfg<AuthorizationPolicy>>], for_tcp: bool) -> Vec<Built> {
        let mut by_provider: BTreeMap<String, Vec<Arc<Cfg<AuthorizationPolicy>>>> = BTreeMap::new();
        for p in policies {
            let name = p
                .spec
                .provider
                .as_ref()
                .map(|x| x.name.clone())
                .unwrap_or_default();
            by_provider.entry(name).or_default().push(p.clone());
        }
        let mut out = Vec::new();
        for (provider, list) in by_provider {
            let prefix = format!("{EXT_AUTHZ_MATCH_PREFIX}-{provider}-");
            let (rules, _) = self.rules(&list, rbac::rbac::Action::Deny, for_tcp, &prefix);
            let rules = rules.unwrap_or_default();
            match self.ext_authz(&provider) {
                Err(_) => {
                    let denied = rbac::Rbac {
                        action: rbac::rbac::Action::Deny as i32,
                        policies: rules
                            .policies
                            .into_iter()
                            .map(|(k, v)| (format!("{k}-deny-due-to-bad-CUSTOM-action"), v))
                            .collect(),
                        ..Default::default()
                    };
                    out.push(if for_tcp {
                        Built::Tcp(tcp_filter(
                            TCP_RBAC,
                            &rbac_tcp::Rbac {
                                rules: Some(denied),
                                stat_prefix: TCP_STAT_PREFIX.to_string(),
                                ..Default::default()
                            },
                        ))
                    } else {
                        Built::Http(http_filter(
                            HTTP_RBAC,
                            &rbac_http::Rbac {
                                rules: Some(denied),
                                ..Default::default()
                            },
                        ))
                    });
                }
                Ok(ext) => {
                    if for_tcp {
                        let Some(tcp) = ext.tcp else {
                            continue;
                        };
                        out.push(Built::Tcp(tcp_filter(
                            TCP_RBAC,
                            &rbac_tcp::Rbac {
                                shadow_rules: Some(rules),
                                stat_prefix: TCP_STAT_PREFIX.to_string(),
                                shadow_rules_stat_prefix: EXT_AUTHZ_SHADOW_PREFIX.to_string(),
                                ..Default::default()
                            },
                        )));
                        out.push(Built::Tcp(tcp_filter(TCP_EXT_AUTHZ, &tcp)));
                    } else {
                        out.push(Built::Http(http_filter(
                            HTTP_RBAC,
                            &rbac_http::Rbac {
                                shadow_rules: Some(rules),
                                shadow_rules_stat_prefix: EXT_AUTHZ_SHADOW_PREFIX.to_string(),
                                ..Default::default()
                            },
                        )));
                        out.push(Built::Http(http_filter(HTTP_EXT_AUTHZ, &ext.http)));
                    }
                }
            }
        }
        out
    }

    fn ext_authz(&self, provider: &str) -> Result<ExtAuthzPair, String> {
        let p = self
            .env
            .mesh
            .extension_providers
            .iter()
            .find(|p| p.name == provider)
            .ok_or_else(|| format!("extension provider {provider:?} not found in MeshConfig"))?;
        build_ext_authz(self.env, p)
    }
}

struct ExtAuthzPair {
    http: ext_authz_http::ExtAuthz,
    tcp: Option<ext_authz_tcp::ExtAuthz>,
}

/// `[namespace/]hostname` to the service hostname and its outbound cluster.
fn resolve_service(
    env: &Environment,
    service: &str,
    port: u32,
) -> Result<(String, String), String> {
    if service.is_empty() {
        return Err("service must not be empty".to_string());
    }
    let (ns, host) = match service.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, service),
    };
    let found = env.services().iter().any(|s| {
        s.hostname == host && ns.is_none_or(|ns| s.namespace == ns || s.namespace.is_empty())
    });
    if !found {
        return Err(format!("could not find a service for {service:?}"));
    }
    Ok((host.to_string(), format!("outbound|{port}||{host}")))
}

fn check_port(port: u32) -> Result<u32, String> {
    if (1..=65535).contains(&port) {
        Ok(port)
    } else {
        Err(format!(
            "port must be in the range [1, 65535], found: {port}"
        ))
    }
}

fn status_on_error(s: &str) -> Result<Option<weft_xds::envoy::r#type::v3::HttpStatus>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let code: i32 = s
        .parse()
        .map_err(|_| format!("invalid statusOnError {s:?}"))?;
    if weft_xds::envoy::r#type::v3::StatusCode::try_from(code).is_err() || code == 0 {
        return Err(format!("unsupported statusOnError {s}"));
    }
    Ok(Some(weft_xds::envoy::r#type::v3::HttpStatus { code }))
}

fn header_patterns(headers: &[String]) -> Option<matcher::ListStringMatcher> {
    if headers.is_empty() {
        return None;
    }
    Some(matcher::ListStringMatcher {
        patterns: headers
            .iter()
            .map(|h| {
                let mut m = string_matcher(h);
                m.ignore_case = true;
                m
            })
            .collect(),
    })
}

fn enabled_metadata(filter: &str, provider: &str) -> Option<matcher::MetadataMatcher> {
    Some(metadata_matcher(
        filter,
        &[format!(
            "{EXT_AUTHZ_SHADOW_PREFIX}shadow_effective_policy_id"
        )],
        value_string(sm_prefix(
            &format!("{EXT_AUTHZ_MATCH_PREFIX}-{provider}"),
            false,
        )),
    ))
}

fn build_ext_authz(env: &Environment, p: &ExtensionProvider) -> Result<ExtAuthzPair, String> {
    let default_timeout = std::time::Duration::from_secs(600);
    if let Some(h) = &p.envoy_ext_authz_http {
        let port = check_port(h.port)?;
        let (host, cluster) = resolve_service(env, &h.service, port)?;
        let status = status_on_error(&h.status_on_error)?;
        if !h.path_prefix.is_empty() && !h.path_prefix.starts_with('/') {
            return Err(format!(
                "pathPrefix must begin with `/`, found: {:?}",
                h.path_prefix
            ));
        }
        let timeout = h.timeout.map(|t| t.get()).unwrap_or(default_timeout);
        let mut service = ext_authz_http::HttpService {
            server_uri: Some(core::HttpUri {
                uri: format!("http://{host}"),
                timeout: envoy::duration(timeout),
                http_upstream_type: Some(core::http_uri::HttpUpstreamType::Cluster(cluster)),
            }),
            path_prefix: h.path_prefix.clone(),
            ..Default::default()
        };
        if !h.include_additional_headers_in_check.is_empty() {
            service.authorization_request = Some(ext_authz_http::AuthorizationRequest {
                headers_to_add: h
                    .include_additional_headers_in_check
                    .iter()
                    .map(|(k, v)| core::HeaderValue {
                        key: k.clone(),
                        value: v.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            });
        }
        if !h.headers_to_upstream_on_allow.is_empty()
            || !h.headers_to_downstream_on_deny.is_empty()
            || !h.headers_to_downstream_on_allow.is_empty()
        {
            service.authorization_response = Some(ext_authz_http::AuthorizationResponse {
                allowed_upstream_headers: header_patterns(&h.headers_to_upstream_on_allow),
                allowed_client_headers: header_patterns(&h.headers_to_downstream_on_deny),
                allowed_client_headers_on_success: header_patterns(
                    &h.headers_to_downstream_on_allow,
                ),
                ..Default::default()
            });
        }
        let allowed = if h.include_request_headers_in_check.is_empty() {
            &h.include_headers_in_check
        } else {
            &h.include_request_headers_in_check
        };
        let http = ext_authz_http::ExtAuthz {
            status_on_error: status,
            failure_mode_allow: h.fail_open,
            transport_api_version: core::ApiVersion::V3 as i32,
            services: Some(ext_authz_http::ext_authz::Services::HttpService(service)),
            filter_enabled_metadata: enabled_metadata(HTTP_RBAC, &p.name),
            allowed_headers: header_patterns(allowed),
            with_request_body: h.include_request_body_in_check.as_ref().map(|b| {
                ext_authz_http::BufferSettings {
                    max_request_bytes: b.max_request_bytes,
                    allow_partial_message: b.allow_partial_message,
                    pack_as_bytes: b.pack_as_bytes,
                }
            }),
            ..Default::default()
        };
        return Ok(ExtAuthzPair { http, tcp: None });
    }
    if let Some(g) = &p.envoy_ext_authz_grpc {
        let port = check_port(g.port)?;
        let (host, cluster) = resolve_service(env, &g.service, port)?;
        let status = status_on_error(&g.status_on_error)?;
        let timeout = g.timeout.map(|t| t.get()).unwrap_or(default_timeout);
        let grpc = core::GrpcService {
            target_specifier: Some(core::grpc_service::TargetSpecifier::EnvoyGrpc(
                core::grpc_service::EnvoyGrpc {
                    cluster_name: cluster,
                    authority: host,
                    ..Default::default()
                },
            )),
            timeout: envoy::duration(timeout),
            ..Default::default()
        };
        let http = ext_authz_http::ExtAuthz {
            status_on_error: status,
            failure_mode_allow: g.fail_open,
            transport_api_version: core::ApiVersion::V3 as i32,
            services: Some(ext_authz_http::ext_authz::Services::GrpcService(
                grpc.clone(),
            )),
            filter_enabled_metadata: enabled_metadata(HTTP_RBAC, &p.name),
            with_request_body: g.include_request_body_in_check.as_ref().map(|b| {
                ext_authz_http::BufferSettings {
                    max_request_bytes: b.max_request_bytes,
                    allow_partial_message: b.allow_partial_message,
                    pack_as_bytes: b.pack_as_bytes,
                }
            }),
            ..Default::default()
        };
        let tcp = ext_authz_tcp::ExtAuthz {
            stat_prefix: TCP_STAT_PREFIX.to_string(),
            grpc_service: Some(grpc),
            failure_mode_allow: g.fail_open,
            transport_api_version: core::ApiVersion::V3 as i32,
            filter_enabled_metadata: enabled_metadata(TCP_RBAC, &p.name),
            ..Default::default()
        };
        return Ok(ExtAuthzPair {
            http,
            tcp: Some(tcp),
        });
    }
    Err(format!(
        "extension provider {:?} is not an external authorizer (envoyExtAuthzHttp or envoyExtAuthzGrpc)",
        p.name
    ))
}

// ---------------------------------------------------------------------------------------------
// Matchers.

/// Go's `regexp.QuoteMeta`: escapes exactly `\.+*?()|[]{}^$`.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn sm(p: matcher::string_matcher::MatchPattern, ignore_case: bool) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

fn sm_exact(v: &str, ic: bool) -> matcher::StringMatcher {
    sm(
        matcher::string_matcher::MatchPattern::Exact(v.to_string()),
        ic,
    )
}

fn sm_prefix(v: &str, ic: bool) -> matcher::StringMatcher {
    sm(
        matcher::string_matcher::MatchPattern::Prefix(v.to_string()),
        ic,
    )
}

fn sm_suffix(v: &str, ic: bool) -> matcher::StringMatcher {
    sm(
        matcher::string_matcher::MatchPattern::Suffix(v.to_string()),
        ic,
    )
}

fn sm_regex(r: &str) -> matcher::StringMatcher {
    sm(
        matcher::string_matcher::MatchPattern::SafeRegex(matcher::RegexMatcher {
            regex: r.to_string(),
            ..Default::default()
        }),
        false,
    )
}

/// Istio's string matcher: `*` any non-empty value, `*x` suffix, `x*` prefix, else exact.
fn string_matcher(v: &str) -> matcher::StringMatcher {
    string_matcher_with_prefix(v, "")
}

fn string_matcher_with_prefix(v: &str, prefix: &str) -> matcher::StringMatcher {
    if v == "*" {
        sm_regex(".+")
    } else if let Some(rest) = v.strip_prefix('*') {
        if prefix.is_empty() {
            sm_suffix(rest, false)
        } else {
            sm_regex(&format!("{}.*{}", quote_meta(prefix), quote_meta(rest)))
        }
    } else if let Some(rest) = v.strip_suffix('*') {
        sm_prefix(&format!("{prefix}{rest}"), false)
    } else {
        sm_exact(&format!("{prefix}{v}"), false)
    }
}

fn header_matcher(name: &str, v: &str, ignore_case: bool) -> route::HeaderMatcher {
    use route::header_matcher::HeaderMatchSpecifier as S;
    let spec = if v == "*" {
        S::PresentMatch(true)
    } else if let Some(rest) = v.strip_prefix('*') {
        S::StringMatch(sm_suffix(rest, ignore_case))
    } else if let Some(rest) = v.strip_suffix('*') {
        S::StringMatch(sm_prefix(rest, ignore_case))
    } else {
        S::StringMatch(sm_exact(v, ignore_case))
    };
    route::HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

fn value_string(m: matcher::StringMatcher) -> matcher::ValueMatcher {
    matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::StringMatch(m)),
    }
}

fn value_or(mut ms: Vec<matcher::ValueMatcher>) -> matcher::ValueMatcher {
    if ms.len() == 1 {
        return ms.remove(0);
    }
    matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::OrMatch(
            matcher::OrMatcher { value_matchers: ms },
        )),
    }
}

fn value_list_one_of(m: matcher::ValueMatcher) -> matcher::ValueMatcher {
    matcher::ValueMatcher {
        match_pattern: Some(matcher::value_matcher::MatchPattern::ListMatch(Box::new(
            matcher::ListMatcher {
                match_pattern: Some(matcher::list_matcher::MatchPattern::OneOf(Box::new(m))),
            },
        ))),
    }
}

fn metadata_matcher(
    filter: &str,
    path: &[String],
    value: matcher::ValueMatcher,
) -> matcher::MetadataMatcher {
    matcher::MetadataMatcher {
        filter: filter.to_string(),
        path: path
            .iter()
            .map(|k| matcher::metadata_matcher::PathSegment {
                segment: Some(matcher::metadata_matcher::path_segment::Segment::Key(
                    k.clone(),
                )),
            })
            .collect(),
        value: Some(value),
        ..Default::default()
    }
}

/// A JWT claim (list or scalar) compared with any of `values`.
fn jwt_claims_matcher(claims: &[String], values: &[String]) -> matcher::MetadataMatcher {
    let or = value_or(
        values
            .iter()
            .map(|v| value_string(string_matcher(v)))
            .collect(),
    );
    let mut path = vec!["payload".to_string()];
    path.extend(claims.iter().cloned());
    metadata_matcher(
        JWT_AUTHN,
        &path,
        matcher::ValueMatcher {
            match_pattern: Some(matcher::value_matcher::MatchPattern::OrMatch(
                matcher::OrMatcher {
                    value_matchers: vec![value_list_one_of(or.clone()), or],
                },
            )),
        },
    )
}

fn jwt_claim_string(claim: &str, m: matcher::StringMatcher) -> matcher::MetadataMatcher {
    metadata_matcher(
        JWT_AUTHN,
        &["payload".to_string(), claim.to_string()],
        value_string(m),
    )
}

fn cidr(v: &str) -> Result<core::CidrRange, String> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("invalid IP address {v:?}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("invalid prefix length in {v:?}"))?,
        None => max,
    };
    Ok(core::CidrRange {
        address_prefix: addr.to_string(),
        prefix_len: Some(weft_xds::google::protobuf::UInt32Value { value: len }),
    })
}

fn port(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .ok()
        .filter(|p| *p <= 65535)
        .ok_or_else(|| format!("invalid port {v:?}"))
}

fn perm(r: rbac::permission::Rule) -> rbac::Permission {
    rbac::Permission { rule: Some(r) }
}

fn princ(i: rbac::principal::Identifier) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(i),
    }
}

fn perm_any() -> rbac::Permission {
    perm(rbac::permission::Rule::Any(true))
}

fn princ_any() -> rbac::Principal {
    princ(rbac::principal::Identifier::Any(true))
}

fn perm_and(rules: Vec<rbac::Permission>) -> rbac::Permission {
    perm(rbac::permission::Rule::AndRules(rbac::permission::Set {
        rules,
    }))
}

fn perm_or(rules: Vec<rbac::Permission>) -> rbac::Permission {
    perm(rbac::permission::Rule::OrRules(rbac::permission::Set {
        rules,
    }))
}

fn princ_and(ids: Vec<rbac::Principal>) -> rbac::Principal {
    princ(rbac::principal::Identifier::AndIds(rbac::principal::Set {
        ids,
    }))
}

fn princ_or(ids: Vec<rbac::Principal>) -> rbac::Principal {
    princ(rbac::principal::Identifier::OrIds(rbac::principal::Set {
        ids,
    }))
}

fn authenticated(m: matcher::StringMatcher) -> rbac::Principal {
    princ(rbac::principal::Identifier::Authenticated(
        rbac::principal::Authenticated {
            principal_name: Some(m),
        },
    ))
}

#[allow(deprecated)]
fn princ_metadata(m: matcher::MetadataMatcher) -> rbac::Principal {
    princ(rbac::principal::Identifier::Metadata(m))
}

#[allow(deprecated)]
fn perm_metadata(m: matcher::MetadataMatcher) -> rbac::Permission {
    perm(rbac::permission::Rule::Metadata(m))
}

// ---------------------------------------------------------------------------------------------
// The rule model: each key of a rule becomes one generator with values and notValues.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    DestIp,
    DestPort,
    ConnSni,
    EnvoyFilter,
    SrcIp,
    RemoteIp,
    SrcNamespace,
    SrcServiceAccount,
    SrcPrincipal,
    TrustDomain,
    RequestPrincipal,
    RequestAudiences,
    RequestPresenter,
    RequestHeader,
    RequestClaims,
    Host,
    Method,
    Path,
}

impl Key {
    /// Keys evaluated per request; a TCP filter chain cannot see them.
    fn http_only(self) -> bool {
        matches!(
            self,
            Key::RequestPrincipal
                | Key::RequestAudiences
                | Key::RequestPresenter
                | Key::RequestHeader
                | Key::RequestClaims
                | Key::Host
                | Key::Method
                | Key::Path
        )
    }

    /// Keys whose values are combined into one matcher rather than one per value.
    fn extended(self) -> bool {
        matches!(
            self,
            Key::EnvoyFilter
                | Key::RequestPrincipal
                | Key::RequestAudiences
                | Key::RequestPresenter
                | Key::RequestClaims
        )
    }
}

#[derive(Clone, Debug)]
struct Cond {
    key: Key,
    /// The attribute as written (`request.headers[x]`, `experimental.envoy.filters.a[b]`).
    attr: String,
    values: Vec<String>,
    not_values: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct RuleModel {
    /// Namespace of the policy (default namespace of `serviceAccounts`).
    namespace: String,
    permissions: Vec<Vec<Cond>>,
    principals: Vec<Vec<Cond>>,
}

fn cond(key: Key, attr: &str, values: &[String], not_values: &[String]) -> Option<Cond> {
    if values.is_empty() && not_values.is_empty() {
        return None;
    }
    Some(Cond {
        key,
        attr: attr.to_string(),
        values: values.to_vec(),
        not_values: not_values.to_vec(),
    })
}

fn bracket_names(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .ok_or_else(|| format!("expecting format [<NAME>], found {s:?}"))?;
        if inner.0.is_empty() {
            return Err(format!("empty name in {s:?}"));
        }
        out.push(inner.0.to_string());
        rest = inner.1;
    }
    if out.is_empty() {
        return Err(format!("expecting format [<NAME>], found {s:?}"));
    }
    Ok(out)
}

impl RuleModel {
    fn new(namespace: &str, r: &Rule) -> Result<RuleModel, String> {
        let mut base_perm: Vec<Cond> = Vec::new();
        let mut base_princ: Vec<Cond> = Vec::new();
        for w in &r.when {
            let k = w.key.as_str();
            let (key, is_perm) = match k {
                "destination.ip" => (Key::DestIp, true),
                "destination.port" => (Key::DestPort, true),
                "connection.sni" => (Key::ConnSni, true),
                _ if k.starts_with("experimental.envoy.filters.") => (Key::EnvoyFilter, true),
                "source.ip" => (Key::SrcIp, false),
                "remote.ip" => (Key::RemoteIp, false),
                "source.namespace" => (Key::SrcNamespace, false),
                "source.serviceAccount" => (Key::SrcServiceAccount, false),
                "source.principal" => (Key::SrcPrincipal, false),
                "request.auth.principal" => (Key::RequestPrincipal, false),
                "request.auth.audiences" => (Key::RequestAudiences, false),
                "request.auth.presenter" => (Key::RequestPresenter, false),
                _ if k.starts_with("request.headers") => (Key::RequestHeader, false),
                _ if k.starts_with("request.auth.claims") => (Key::RequestClaims, false),
                _ => return Err(format!("unknown attribute {k}")),
            };
            if let Some(c) = cond(key, k, &w.values, &w.not_values) {
                if is_perm {
                    base_perm.push(c);
                } else {
                    base_princ.push(c);
                }
            }
        }
        let mut m = RuleModel {
            namespace: namespace.to_string(),
            ..Default::default()
        };
        for from in &r.from {
            let mut merged = base_princ.clone();
            if let Some(s) = &from.source {
                let front = [
                    cond(Key::SrcIp, "source.ip", &s.ip_blocks, &s.not_ip_blocks),
                    cond(
                        Key::RemoteIp,
                        "remote.ip",
                        &s.remote_ip_blocks,
                        &s.not_remote_ip_blocks,
                    ),
                    cond(
                        Key::SrcNamespace,
                        "source.namespace",
                        &s.namespaces,
                        &s.not_namespaces,
                    ),
                    cond(
                        Key::SrcServiceAccount,
                        "source.serviceAccount",
                        &s.service_accounts,
                        &s.not_service_accounts,
                    ),
                    cond(
                        Key::RequestPrincipal,
                        "request.auth.principal",
                        &s.request_principals,
                        &s.not_request_principals,
                    ),
                    cond(
                        Key::SrcPrincipal,
                        "source.principal",
                        &s.principals,
                        &s.not_principals,
                    ),
                    cond(
                        Key::TrustDomain,
                        "source.trustDomain",
                        &s.trust_domains,
                        &s.not_trust_domains,
                    ),
                ];
                for c in front.into_iter().flatten() {
                    merged.insert(0, c);
                }
            }
            m.principals.push(merged);
        }
        if r.from.is_empty() {
            m.principals.push(base_princ);
        }
        for to in &r.to {
            let mut merged = base_perm.clone();
            if let Some(o) = &to.operation {
                let front = [
                    cond(Key::DestPort, "destination.port", &o.ports, &o.not_ports),
                    cond(Key::Path, "path", &o.paths, &o.not_paths),
                    cond(Key::Method, ":method", &o.methods, &o.not_methods),
                    cond(Key::Host, ":authority", &o.hosts, &o.not_hosts),
                ];
                for c in front.into_iter().flatten() {
                    merged.insert(0, c);
                }
            }
            m.permissions.push(merged);
        }
        if r.to.is_empty() {
            m.permissions.push(base_perm);
        }
        Ok(m)
    }

    /// Expands source principals and trust domains with the trust domain aliases.
    fn migrate_trust_domain(mut self, bundle: &[String]) -> RuleModel {
        for list in &mut self.principals {
            for c in list.iter_mut() {
                match c.key {
                    Key::SrcPrincipal => {
                        c.values = replace_trust_domain_aliases(&c.values, bundle);
                        c.not_values = replace_trust_domain_aliases(&c.not_values, bundle);
                    }
                    Key::TrustDomain => {
                        c.values = expand_trust_domains(&c.values, bundle);
                        c.not_values = expand_trust_domains(&c.not_values, bundle);
                    }
                    _ => {}
                }
            }
        }
        self
    }

    fn generate(&self, for_tcp: bool, action: rbac::rbac::Action) -> Result<rbac::Policy, String> {
        let mut permissions = Vec::new();
        for list in &self.permissions {
            let mut and = Vec::new();
            for c in list {
                and.extend(self.cond_permissions(c, for_tcp, action)?);
            }
            if and.is_empty() {
                and.push(perm_any());
            }
            permissions.push(perm_and(and));
        }
        let mut principals = Vec::new();
        for list in &self.principals {
            let mut and = Vec::new();
            for c in list {
                and.extend(self.cond_principals(c, for_tcp, action)?);
            }
            if and.is_empty() {
                and.push(princ_any());
            }
            principals.push(princ_and(and));
        }
        Ok(rbac::Policy {
            permissions,
            principals,
            ..Default::default()
        })
    }

    /// An error fails the rule for ALLOW (narrower), and only drops the condition for DENY,
    /// AUDIT and CUSTOM (wider), as Istio does.
    fn check<T>(action: rbac::rbac::Action, r: Result<T, String>) -> Result<Option<T>, String> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if action == rbac::rbac::Action::Allow => Err(e),
            Err(_) => Ok(None),
        }
    }

    fn cond_permissions(
        &self,
        c: &Cond,
        for_tcp: bool,
        action: rbac::rbac::Action,
    ) -> Result<Vec<rbac::Permission>, String> {
        let mut out = Vec::new();
        if c.key.extended() {
            if !c.values.is_empty()
                && let Some(p) = Self::check(action, self.ext_permission(c, &c.values, for_tcp))?
            {
                out.push(p);
            }
            if !c.not_values.is_empty()
                && let Some(p) =
                    Self::check(action, self.ext_permission(c, &c.not_values, for_tcp))?
            {
                out.push(perm(rbac::permission::Rule::NotRule(Box::new(p))));
            }
            return Ok(out);
        }
        for (vals, negate) in [(&c.values, false), (&c.not_values, true)] {
            let mut or = Vec::new();
            for v in vals.iter() {
                if let Some(p) = Self::check(action, self.permission(c, v, for_tcp))? {
                    or.push(p);
                }
            }
            if !or.is_empty() {
                let p = perm_or(or);
                out.push(if negate {
                    perm(rbac::permission::Rule::NotRule(Box::new(p)))
                } else {
                    p
                });
            }
        }
        Ok(out)
    }

    fn cond_principals(
        &self,
        c: &Cond,
        for_tcp: bool,
        action: rbac::rbac::Action,
    ) -> Result<Vec<rbac::Principal>, String> {
        let mut out = Vec::new();
        if c.key.extended() {
            if !c.values.is_empty()
                && let Some(p) = Self::check(action, self.ext_principal(c, &c.values, for_tcp))?
            {
                out.push(p);
            }
            if !c.not_values.is_empty()
                && let Some(p) = Self::check(action, self.ext_principal(c, &c.not_values, for_tcp))?
            {
                out.push(princ(rbac::principal::Identifier::NotId(Box::new(p))));
            }
            return Ok(out);
        }
        for (vals, negate) in [(&c.values, false), (&c.not_values, true)] {
            let mut or = Vec::new();
            for v in vals.iter() {
                if let Some(p) = Self::check(action, self.principal(c, v, for_tcp))? {
                    or.push(p);
                }
            }
            if !or.is_empty() {
                let p = princ_or(or);
                out.push(if negate {
                    princ(rbac::principal::Identifier::NotId(Box::new(p)))
                } else {
                    p
                });
            }
        }
        Ok(out)
    }

    fn permission(&self, c: &Cond, v: &str, for_tcp: bool) -> Result<rbac::Permission, String> {
        use rbac::permission::Rule as R;
        if for_tcp && c.key.http_only() {
            return Err(format!("{:?} is HTTP only", c.attr));
        }
        Ok(match c.key {
            Key::DestIp => perm(R::DestinationIp(cidr(v)?)),
            Key::DestPort => perm(R::DestinationPort(port(v)?)),
            Key::ConnSni => perm(R::RequestedServerName(string_matcher(v))),
            Key::Host => perm(R::Header(header_matcher(":authority", v, true))),
            Key::Method => perm(R::Header(header_matcher(":method", v, false))),
            Key::Path => {
                if v.contains("{*}") || v.contains("{**}") {
                    let template = v.replace("{**}", "**").replace("{*}", "*");
                    perm(R::UriTemplate(core::TypedExtensionConfig {
                        name: "uri-template".to_string(),
                        typed_config: Some(envoy::any(&UriTemplateMatchConfig {
                            path_template: template,
                        })),
                    }))
                } else {
                    perm(R::UrlPath(matcher::PathMatcher {
                        rule: Some(matcher::path_matcher::Rule::Path(string_matcher(v))),
                    }))
                }
            }
            _ => return Err(format!("{:?} cannot be used as a permission", c.attr)),
        })
    }

    fn ext_permission(
        &self,
        c: &Cond,
        values: &[String],
        _for_tcp: bool,
    ) -> Result<rbac::Permission, String> {
        if c.key != Key::EnvoyFilter {
            return Err(format!("{:?} cannot be used as a permission", c.attr));
        }
        let rest = c
            .attr
            .strip_prefix("experimental.")
            .unwrap_or(&c.attr)
            .trim_end_matches(']');
        let (filter, key) = rest
            .split_once('[')
            .ok_or_else(|| format!("invalid key: {}", c.attr))?;
        let matchers = values
            .iter()
            .map(|v| {
                if v.starts_with('[') && v.ends_with(']') {
                    value_list_one_of(value_string(string_matcher(
                        v.trim_start_matches('[').trim_end_matches(']'),
                    )))
                } else {
                    value_string(string_matcher(v))
                }
            })
            .collect();
        Ok(perm_metadata(metadata_matcher(
            filter,
            &[key.to_string()],
            value_or(matchers),
        )))
    }

    fn principal(&self, c: &Cond, v: &str, for_tcp: bool) -> Result<rbac::Principal, String> {
        use rbac::principal::Identifier as I;
        if for_tcp && c.key.http_only() {
            return Err(format!("{:?} is HTTP only", c.attr));
        }
        Ok(match c.key {
            Key::SrcIp => princ(I::DirectRemoteIp(cidr(v)?)),
            Key::RemoteIp => princ(I::RemoteIp(cidr(v)?)),
            Key::SrcNamespace => {
                let pattern = v.split('*').map(quote_meta).collect::<Vec<_>>().join(".*");
                authenticated(sm_regex(&format!(".*/ns/{pattern}/.*")))
            }
            Key::SrcServiceAccount => {
                let (ns, sa) = v.split_once('/').unwrap_or((&self.namespace, v));
                authenticated(sm_regex(&format!(
                    "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                    quote_meta(ns),
                    quote_meta(sa)
                )))
            }
            Key::SrcPrincipal => authenticated(string_matcher_with_prefix(v, "spiffe://")),
            Key::TrustDomain => {
                if v.contains('*') {
                    let pattern = v
                        .split('*')
                        .map(quote_meta)
                        .collect::<Vec<_>>()
                        .join("[^/]*");
                    authenticated(sm_regex(&format!("spiffe://{pattern}/.*")))
                } else {
                    authenticated(sm_prefix(&format!("spiffe://{v}/"), false))
                }
            }
            Key::RequestHeader => {
                let names = bracket_names(c.attr.trim_start_matches("request.headers"))?;
                if names.len() != 1 {
                    return Err(format!("expecting format [<NAME>] in {}", c.attr));
                }
                princ(I::Header(header_matcher(&names[0], v, false)))
            }
            _ => return Err(format!("{:?} cannot be used as a principal", c.attr)),
        })
    }

    fn ext_principal(
        &self,
        c: &Cond,
        values: &[String],
        for_tcp: bool,
    ) -> Result<rbac::Principal, String> {
        if for_tcp && c.key.http_only() {
            return Err(format!("{:?} is HTTP only", c.attr));
        }
        match c.key {
            Key::RequestPrincipal => {
                let any = || sm_regex(".+");
                let mut or = Vec::new();
                for value in values {
                    let (iss, sub, found) = match value.rfind('/') {
                        Some(i) => (&value[..i], &value[i + 1..], true),
                        None => (value.as_str(), "", false),
                    };
                    let trim_star = |x: &str| x.strip_prefix('*').unwrap_or(x).to_string();
                    let trim_end_star = |x: &str| x.strip_suffix('*').unwrap_or(x).to_string();
                    let (mi, ms) = if value == "*" {
                        (any(), any())
                    } else if value.starts_with('*') {
                        if found {
                            let mi = if iss == "*" {
                                any()
                            } else {
                                sm_suffix(&trim_star(iss), false)
                            };
                            (mi, sm_exact(sub, false))
                        } else {
                            (any(), sm_suffix(&trim_star(value), false))
                        }
                    } else if value.ends_with('*') {
                        if found {
                            let ms = if sub == "*" {
                                any()
                            } else {
                                sm_prefix(&trim_end_star(sub), false)
                            };
                            (sm_exact(iss, false), ms)
                        } else {
                            (sm_prefix(&trim_end_star(value), false), any())
                        }
                    } else {
                        (sm_exact(iss, false), sm_exact(sub, false))
                    };
                    or.push(princ_and(vec![
                        princ_metadata(jwt_claim_string("iss", mi)),
                        princ_metadata(jwt_claim_string("sub", ms)),
                    ]));
                }
                if or.len() == 1 {
                    Ok(or.remove(0))
                } else {
                    Ok(princ_or(or))
                }
            }
            Key::RequestAudiences => Ok(princ_metadata(jwt_claims_matcher(
                &["aud".to_string()],
                values,
            ))),
            Key::RequestPresenter => Ok(princ_metadata(jwt_claims_matcher(
                &["azp".to_string()],
                values,
            ))),
            Key::RequestClaims => {
                let claims = bracket_names(c.attr.trim_start_matches("request.auth.claims"))?;
                Ok(princ_metadata(jwt_claims_matcher(&claims, values)))
            }
            _ => Err(format!("{:?} cannot be used as a principal", c.attr)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trust domain aliases (Istio's trust domain bundle).

fn spiffe_trust_domain(principal: &str) -> Option<&str> {
    let parts: Vec<&str> = principal.split('/').collect();
    (parts.len() == 5).then(|| parts[0])
}

fn suffix_match(td: &str, pattern: &str) -> bool {
    pattern.strip_prefix('*').is_some_and(|s| td.ends_with(s))
}

fn replace_trust_domain_aliases(principals: &[String], bundle: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in principals {
        let Some(td) = spiffe_trust_domain(p).filter(|td| *td != "*") else {
            out.push(p.clone());
            continue;
        };
        let known = bundle.iter().any(|b| b == td || suffix_match(b, td));
        if !(known || td == "cluster.local") {
            out.push(p.clone());
            continue;
        }
        let mut expanded: Vec<String> = Vec::new();
        for b in bundle {
            let np = if suffix_match(b, td) {
                p.clone()
            } else {
                let rest = p.split_once('/').map(|(_, r)| r).unwrap_or_default();
                format!("{b}/{rest}")
            };
            if !expanded.contains(&np) {
                expanded.push(np);
            }
        }
        out.extend(expanded);
    }
    out
}

fn expand_trust_domains(values: &[String], bundle: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let add: Vec<String> = if bundle.len() > 1 && bundle.contains(v) {
            bundle.to_vec()
        } else {
            vec![v.clone()]
        };
        for a in add {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_meta_matches_go() {
        assert_eq!(quote_meta("a-b[0].c"), "a-b\\[0\\]\\.c");
    }

    #[test]
    fn trust_domain_aliases_expand_principals() {
        let bundle = vec!["td1".to_string(), "foobar".to_string()];
        let out = replace_trust_domain_aliases(
            &[
                "*".to_string(),
                "*/ns/foo/sa/a".to_string(),
                "*bar/ns/foo/sa/b".to_string(),
            ],
            &bundle,
        );
        assert_eq!(
            out,
            vec!["*", "*/ns/foo/sa/a", "td1/ns/foo/sa/b", "*bar/ns/foo/sa/b"]
        );
    }

    #[test]
    fn bracket_names_nested() {
        assert_eq!(
            bracket_names("[a][b]").unwrap_or_default(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(bracket_names("a").is_err());
    }
}
