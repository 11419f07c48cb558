//! Istio's `MeshConfig` (`istio.mesh.v1alpha1`): mesh-wide settings, including the default
//! proxy settings (`defaultConfig`) and the extension providers, with Istio's
//! `ValidateMeshConfig` rules; and `MeshNetworks`.

pub mod network;
pub mod providers;
pub mod proxy;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::serde_util::{is_false, is_zero_i32};
use crate::validate::durations::validate_duration;
use crate::validate::hosts::{validate_trust_domain, validate_wildcard_domain};
use crate::validate::ports::validate_port;
use crate::validate::{Context, Path, Report, Validate};

pub use network::{MeshNetworks, Network};
pub use providers::ExtensionProvider;
pub use proxy::ProxyConfig;

/// `MeshConfig`: settings for the whole mesh.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfig {
    /// Port of the outbound capture listener (15001).
    #[serde(
        default,
        alias = "proxy_listen_port",
        skip_serializing_if = "is_zero_i32"
    )]
    pub proxy_listen_port: i32,
    /// Port of the inbound capture listener (15006).
    #[serde(
        default,
        alias = "proxy_inbound_listen_port",
        skip_serializing_if = "is_zero_i32"
    )]
    pub proxy_inbound_listen_port: i32,
    /// Port of an HTTP PROXY listener, when set.
    #[serde(
        default,
        alias = "proxy_http_port",
        skip_serializing_if = "is_zero_i32"
    )]
    pub proxy_http_port: i32,
    /// Upstream connect timeout (1ms to 1h; default 10s).
    #[serde(
        default,
        alias = "connect_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    /// Protocol-sniffing timeout (0 disables).
    #[serde(
        default,
        alias = "protocol_detection_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_detection_timeout: Option<Duration>,
    /// TCP keepalive for upstream connections.
    #[serde(
        default,
        alias = "tcp_keepalive",
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_keepalive: Option<crate::networking::destination_rule::TcpKeepalive>,
    /// Ingress class handled by Istio's ingress controller.
    #[serde(
        default,
        alias = "ingress_class",
        skip_serializing_if = "String::is_empty"
    )]
    pub ingress_class: String,
    /// Service of the ingress controller.
    #[serde(
        default,
        alias = "ingress_service",
        skip_serializing_if = "String::is_empty"
    )]
    pub ingress_service: String,
    /// Which Ingress resources Istio handles.
    #[serde(
        default,
        alias = "ingress_controller_mode",
        skip_serializing_if = "Option::is_none"
    )]
    pub ingress_controller_mode: Option<IngressControllerMode>,
    /// `istio` label value of the gateway serving Ingress.
    #[serde(
        default,
        alias = "ingress_selector",
        skip_serializing_if = "String::is_empty"
    )]
    pub ingress_selector: String,
    /// Generate trace spans and request IDs.
    #[serde(default, alias = "enable_tracing", skip_serializing_if = "is_false")]
    pub enable_tracing: bool,
    /// Access-log file (empty disables).
    #[serde(
        default,
        alias = "access_log_file",
        skip_serializing_if = "String::is_empty"
    )]
    pub access_log_file: String,
    /// Access-log format.
    #[serde(
        default,
        alias = "access_log_format",
        skip_serializing_if = "String::is_empty"
    )]
    pub access_log_format: String,
    /// Access-log encoding.
    #[serde(
        default,
        alias = "access_log_encoding",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// Enable Envoy's gRPC access-log service.
    #[serde(
        default,
        alias = "enable_envoy_access_log_service",
        skip_serializing_if = "is_false"
    )]
    pub enable_envoy_access_log_service: bool,
    /// Disable Envoy listener logs.
    #[serde(
        default,
        alias = "disable_envoy_listener_log",
        skip_serializing_if = "is_false"
    )]
    pub disable_envoy_listener_log: bool,
    /// Default proxy settings.
    #[serde(
        default,
        alias = "default_config",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_config: Option<ProxyConfig>,
    /// Handling of traffic to unknown destinations.
    #[serde(
        default,
        alias = "outbound_traffic_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Handling of inbound traffic.
    #[serde(
        default,
        alias = "inbound_traffic_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub inbound_traffic_policy: Option<InboundTrafficPolicy>,
    /// Configuration sources.
    #[serde(
        default,
        alias = "config_sources",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub config_sources: Vec<ConfigSource>,
    /// Automatic mutual TLS (default true).
    #[serde(
        default,
        alias = "enable_auto_mtls",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_auto_mtls: Option<bool>,
    /// Trust domain (default `cluster.local`).
    #[serde(
        default,
        alias = "trust_domain",
        skip_serializing_if = "String::is_empty"
    )]
    pub trust_domain: String,
    /// Other trust domains treated as this one.
    #[serde(
        default,
        alias = "trust_domain_aliases",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trust_domain_aliases: Vec<String>,
    /// Extra root certificates.
    #[serde(
        default,
        alias = "ca_certificates",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ca_certificates: Vec<CertificateData>,
    /// Default `exportTo` of services.
    #[serde(
        default,
        alias = "default_service_export_to",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub default_service_export_to: Vec<String>,
    /// Default `exportTo` of VirtualServices.
    #[serde(
        default,
        alias = "default_virtual_service_export_to",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub default_virtual_service_export_to: Vec<String>,
    /// Default `exportTo` of DestinationRules.
    #[serde(
        default,
        alias = "default_destination_rule_export_to",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub default_destination_rule_export_to: Vec<String>,
    /// The configuration root namespace (default `istio-system`).
    #[serde(
        default,
        alias = "root_namespace",
        skip_serializing_if = "String::is_empty"
    )]
    pub root_namespace: String,
    /// Locality load balancing.
    #[serde(
        default,
        alias = "locality_lb_setting",
        skip_serializing_if = "Option::is_none"
    )]
    pub locality_lb_setting:
        Option<crate::networking::destination_rule::LocalityLoadBalancerSetting>,
    /// DNS refresh rate of DNS clusters.
    #[serde(
        default,
        alias = "dns_refresh_rate",
        skip_serializing_if = "Option::is_none"
    )]
    pub dns_refresh_rate: Option<Duration>,
    /// HTTP/1.1 to HTTP/2 upgrade default.
    #[serde(
        default,
        alias = "h2_upgrade_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Stat-name pattern of inbound clusters.
    #[serde(
        default,
        alias = "inbound_cluster_stat_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub inbound_cluster_stat_name: String,
    /// Stat-name pattern of outbound clusters.
    #[serde(
        default,
        alias = "outbound_cluster_stat_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub outbound_cluster_stat_name: String,
    /// Deprecated DNS certificate provisioning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
    /// Per-service settings.
    #[serde(
        default,
        alias = "service_settings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_settings: Vec<ServiceSettings>,
    /// Merge application metrics with Istio's (default true).
    #[serde(
        default,
        alias = "enable_prometheus_merge",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_prometheus_merge: Option<bool>,
    /// Deprecated: verify server certificates at the client by default.
    #[serde(
        default,
        alias = "verify_certificate_at_client",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_certificate_at_client: Option<bool>,
    /// External CA that istiod forwards CSRs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<Ca>,
    /// Extension providers, referenced by name.
    #[serde(
        default,
        alias = "extension_providers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extension_providers: Vec<ExtensionProvider>,
    /// Default providers for tracing, metrics and access logging.
    #[serde(
        default,
        alias = "default_providers",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_providers: Option<DefaultProviders>,
    /// Namespaces istiod watches (OR of label selectors).
    #[serde(
        default,
        alias = "discovery_selectors",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub discovery_selectors: Vec<LabelSelector>,
    /// URL path normalization.
    #[serde(
        default,
        alias = "path_normalization",
        skip_serializing_if = "Option::is_none"
    )]
    pub path_normalization: Option<ProxyPathNormalization>,
    /// Default HTTP retry policy.
    // merged later: networking HTTPRetry
    #[serde(
        default,
        alias = "default_http_retry_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_http_retry_policy: Option<serde_json::Value>,
    /// TLS settings of ISTIO_MUTUAL traffic.
    #[serde(
        default,
        rename = "meshMTLS",
        alias = "mesh_mTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub mesh_mtls: Option<TlsConfig>,
    /// TLS settings of all other TLS traffic.
    #[serde(
        default,
        alias = "tls_defaults",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_defaults: Option<TlsConfig>,
    /// Compliance policy (`fips-140-2`, ...).
    #[serde(
        default,
        alias = "compliance_policy",
        skip_serializing_if = "String::is_empty"
    )]
    pub compliance_policy: String,
    /// Service scope (local or global) in ambient multicluster.
    #[serde(
        default,
        alias = "service_scope_configs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_scope_configs: Vec<ServiceScopeConfigs>,
}

/// Ingress controller modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IngressControllerMode {
    /// Unset.
    #[default]
    #[serde(rename = "UNSPECIFIED")]
    Unspecified,
    /// Off.
    #[serde(rename = "OFF")]
    Off,
    /// Handle Ingresses without a class and those of `ingressClass`.
    #[serde(rename = "DEFAULT")]
    Default,
    /// Handle only Ingresses of `ingressClass`.
    #[serde(rename = "STRICT")]
    Strict,
}

/// Access-log encodings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccessLogEncoding {
    /// Text.
    #[default]
    #[serde(rename = "TEXT")]
    Text,
    /// JSON.
    #[serde(rename = "JSON")]
    Json,
}

/// Handling of outbound traffic to unknown destinations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// The mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<OutboundTrafficPolicyMode>,
}

/// Outbound traffic modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutboundTrafficPolicyMode {
    /// Only registered destinations.
    #[default]
    #[serde(rename = "REGISTRY_ONLY")]
    RegistryOnly,
    /// Any destination.
    #[serde(rename = "ALLOW_ANY")]
    AllowAny,
}

/// Handling of inbound traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundTrafficPolicy {
    /// The mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<InboundTrafficPolicyMode>,
}

/// Inbound traffic modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InboundTrafficPolicyMode {
    /// To the pod IP.
    #[default]
    #[serde(rename = "PASSTHROUGH")]
    Passthrough,
    /// To localhost.
    #[serde(rename = "LOCALHOST")]
    Localhost,
}

/// A source of configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigSource {
    /// Address (`xds://`, `k8s://`, `fs:///`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// TLS to the source.
    #[serde(
        default,
        alias = "tls_settings",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_settings: Option<crate::networking::destination_rule::ClientTlsSettings>,
    /// Resources received from the source.
    #[serde(
        default,
        alias = "subscribed_resources",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subscribed_resources: Vec<Resource>,
}

/// Kinds of configuration a source provides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// Platform-generated service entries.
    #[default]
    #[serde(rename = "SERVICE_REGISTRY")]
    ServiceRegistry,
}

/// A root certificate source; exactly one of `pem` and `spiffe_bundle_url` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateData {
    /// PEM certificate (oneof).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    /// SPIFFE bundle endpoint (oneof).
    #[serde(
        default,
        alias = "spiffe_bundle_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub spiffe_bundle_url: Option<String>,
    /// Kubernetes signers that use this anchor.
    #[serde(default, alias = "cert_signers", skip_serializing_if = "Vec::is_empty")]
    pub cert_signers: Vec<String>,
    /// Trust domains that use this anchor.
    #[serde(
        default,
        alias = "trust_domains",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trust_domains: Vec<String>,
}

/// HTTP/2 upgrade policies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum H2UpgradePolicy {
    /// Do not upgrade.
    #[default]
    #[serde(rename = "DO_NOT_UPGRADE")]
    DoNotUpgrade,
    /// Upgrade.
    #[serde(rename = "UPGRADE")]
    Upgrade,
}

/// Deprecated DNS certificate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Certificate {
    /// Secret the certificate is stored in.
    #[serde(
        default,
        alias = "secret_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub secret_name: String,
    /// DNS names of the certificate.
    #[serde(default, alias = "dns_names", skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
}

/// Settings for selected services.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSettings {
    /// The settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// Hosts the settings apply to (DestinationRule host rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// Per-service settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Endpoints only from the client's own cluster.
    #[serde(default, alias = "cluster_local", skip_serializing_if = "is_false")]
    pub cluster_local: bool,
}

/// External CA settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ca {
    /// `host:port` of the CA.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// TLS to the CA.
    #[serde(
        default,
        alias = "tls_settings",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_settings: Option<crate::networking::destination_rule::ClientTlsSettings>,
    /// CSR forwarding timeout.
    #[serde(
        default,
        alias = "request_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<Duration>,
    /// CA integrated at istiod (true) or the agent.
    #[serde(default, alias = "istiod_side", skip_serializing_if = "is_false")]
    pub istiod_side: bool,
}

/// Default extension providers by purpose.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultProviders {
    /// Tracing providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<String>,
    /// Metrics providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// Access-logging providers.
    #[serde(
        default,
        alias = "access_logging",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub access_logging: Vec<String>,
}

/// URL path normalization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyPathNormalization {
    /// The normalization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<NormalizationType>,
}

/// Path normalization types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NormalizationType {
    /// BASE.
    #[default]
    #[serde(rename = "DEFAULT")]
    Default,
    /// None.
    #[serde(rename = "NONE")]
    None,
    /// RFC 3986.
    #[serde(rename = "BASE")]
    Base,
    /// BASE plus merged slashes.
    #[serde(rename = "MERGE_SLASHES")]
    MergeSlashes,
    /// MERGE_SLASHES plus decoded slashes.
    #[serde(rename = "DECODE_AND_MERGE_SLASHES")]
    DecodeAndMergeSlashes,
}

/// TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// Minimum TLS version.
    #[serde(
        default,
        alias = "min_protocol_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_protocol_version: Option<TlsProtocol>,
    /// ECDH curves.
    #[serde(default, alias = "ecdh_curves", skip_serializing_if = "Vec::is_empty")]
    pub ecdh_curves: Vec<String>,
    /// Cipher suites (TLS 1.0-1.2).
    #[serde(
        default,
        alias = "cipher_suites",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cipher_suites: Vec<String>,
}

/// TLS versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TlsProtocol {
    /// Automatic.
    #[default]
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    /// TLS 1.2.
    #[serde(rename = "TLSV1_2")]
    Tlsv12,
    /// TLS 1.3.
    #[serde(rename = "TLSV1_3")]
    Tlsv13,
}

/// Scope of the services selected by namespace and service selectors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceScopeConfigs {
    /// Namespaces selected.
    #[serde(
        default,
        alias = "namespace_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace_selector: Option<LabelSelector>,
    /// Services selected.
    #[serde(
        default,
        alias = "services_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub services_selector: Option<LabelSelector>,
    /// The scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// Service scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Cluster-local.
    #[default]
    #[serde(rename = "LOCAL")]
    Local,
    /// Mesh-wide.
    #[serde(rename = "GLOBAL")]
    Global,
}

/// ECDH curves Envoy accepts.
const ECDH_CURVES: &[&str] = &[
    "P-256",
    "P-384",
    "P-521",
    "X25519",
    "X25519Kyber768Draft00",
    "X25519MLKEM768",
];

impl MeshConfig {
    /// Istio's `ValidateMeshConfig` on the fields that are written (Istio validates the
    /// configuration after filling in its defaults, which always pass).
    pub fn validate_at(&self, path: &Path, report: &mut Report) {
        if self.proxy_listen_port != 0
            && let Err(e) = validate_port(i64::from(self.proxy_listen_port))
        {
            report.error(
                &path.field("proxyListenPort"),
                format!("invalid proxy listen port: {e}"),
            );
        }
        for (field, port) in [
            ("proxyInboundListenPort", self.proxy_inbound_listen_port),
            ("proxyHttpPort", self.proxy_http_port),
        ] {
            if port != 0
                && let Err(e) = validate_port(i64::from(port))
            {
                report.error(&path.field(field), e);
            }
        }
        if let Some(t) = self.connect_timeout {
            let p = path.field("connectTimeout");
            if let Err(e) = validate_duration(t) {
                report.error(&p, format!("invalid connect timeout: {e}"));
            } else if t.get() > std::time::Duration::from_secs(3600) {
                report.error(
                    &p,
                    format!("invalid connect timeout: time {t} must be >1ms and <1h0m0s"),
                );
            }
        }
        if let Some(t) = self.protocol_detection_timeout
            && !t.get().is_zero()
            && !t.get().subsec_nanos().is_multiple_of(1_000_000)
        {
            report.error(
                &path.field("protocolDetectionTimeout"),
                "invalid protocol detection timeout: only durations to ms precision are supported",
            );
        }
        if let Some(pc) = &self.default_config {
            proxy::validate_proxy_config(pc, &path.field("defaultConfig"), report);
        }
        if let Some(lb) = &self.locality_lb_setting {
            crate::networking::destination_rule::validate_locality_lb_setting(
                lb,
                true,
                &path.field("localityLbSetting"),
                report,
            );
        }
        let ss = path.field("serviceSettings");
        for (i, s) in self.service_settings.iter().enumerate() {
            for (j, h) in s.hosts.iter().enumerate() {
                if let Err(e) = validate_wildcard_domain(h) {
                    report.error(
                        &ss.index(i).field("hosts").index(j),
                        format!("serviceSettings[{i}], host `{h}`: {e}"),
                    );
                }
            }
        }
        if !self.trust_domain.is_empty()
            && let Err(e) = validate_trust_domain(&self.trust_domain)
        {
            report.error(&path.field("trustDomain"), format!("trustDomain: {e}"));
        }
        for (i, tda) in self.trust_domain_aliases.iter().enumerate() {
            if let Err(e) = validate_trust_domain(tda) {
                report.error(
                    &path.field("trustDomainAliases").index(i),
                    format!("trustDomainAliases[{i}], domain `{tda}` : {e}"),
                );
            }
        }
        let cas = path.field("caCertificates");
        for (i, c) in self.ca_certificates.iter().enumerate() {
            if c.pem.is_some() && c.spiffe_bundle_url.is_some() {
                report.error(
                    &cas.index(i),
                    "only one of pem or spiffeBundleUrl may be set",
                );
            }
        }
        // Istio only logs extension-provider problems ("can be ignored if the given extension
        // provider is not used"), so they are warnings here.
        let eps = path.field("extensionProviders");
        let mut names = std::collections::BTreeSet::new();
        for (i, ep) in self.extension_providers.iter().enumerate() {
            let p = eps.index(i);
            let mut problems = Vec::new();
            if ep.name.is_empty() {
                problems.push("empty extension provider name".to_string());
            } else if !names.insert(ep.name.as_str()) {
                problems.push(format!("duplicate extension provider name {}", ep.name));
            }
            problems.extend(ep.problems());
            for m in problems {
                report.warning(&p, format!("invalid extension provider {}: {m}", ep.name));
            }
        }
        if let Some(m) = &self.mesh_mtls
            && !m.ecdh_curves.is_empty()
        {
            report.error(
                &path.field("meshMTLS").field("ecdhCurves"),
                "mesh TLS does not support ECDH curves configuration",
            );
        }
        if let Some(t) = &self.tls_defaults {
            let mut unknown = std::collections::BTreeSet::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut dup = std::collections::BTreeSet::new();
            for c in &t.ecdh_curves {
                if !ECDH_CURVES.contains(&c.as_str()) {
                    unknown.insert(c.as_str());
                } else if !seen.insert(c.as_str()) {
                    dup.insert(c.as_str());
                }
            }
            let p = path.field("tlsDefaults").field("ecdhCurves");
            if !unknown.is_empty() {
                report.warning(
                    &p,
                    format!("detected unrecognized ECDH curves: {unknown:?}"),
                );
            }
            if !dup.is_empty() {
                report.warning(&p, format!("detected duplicate ECDH curves: {dup:?}"));
            }
        }
    }
}

impl Validate for MeshConfig {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        self.validate_at(path, report);
    }
}
