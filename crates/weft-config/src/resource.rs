//! The kinds weft reads, and a parsed resource with where it came from.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::meta::ObjectMeta;
use crate::{extensions, mesh, networking, security, telemetry};

/// Every kind weft understands. Istio kinds carry a typed `spec`; Kubernetes kinds are the
/// upstream `k8s-openapi` types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    VirtualService,
    DestinationRule,
    Gateway,
    ServiceEntry,
    WorkloadEntry,
    WorkloadGroup,
    Sidecar,
    EnvoyFilter,
    ProxyConfig,
    PeerAuthentication,
    RequestAuthentication,
    AuthorizationPolicy,
    Telemetry,
    WasmPlugin,
    /// Istio's MeshConfig is not a CRD; it appears as a file (`--meshConfigFile`) or inside the
    /// `istio` ConfigMap. This kind exists so a MeshConfig can be validated and stored like the rest.
    MeshConfig,
    Namespace,
    Service,
    ServiceAccount,
    Pod,
    Deployment,
    Secret,
    ConfigMap,
    EndpointSlice,
    MutatingWebhookConfiguration,
    ValidatingWebhookConfiguration,
    /// Kubernetes Gateway API kinds (`gateway.networking.k8s.io`) kept untyped: weft's
    /// analyzers read a few of their fields.
    KubeGateway,
    HttpRoute,
    GrpcRoute,
}

/// Where each kind lives: API group, served versions (first is preferred), kind name,
/// and whether it is namespaced.
struct KindInfo {
    kind: Kind,
    group: &'static str,
    versions: &'static [&'static str],
    name: &'static str,
    namespaced: bool,
}

const NET: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SEC: &[&str] = &["v1", "v1beta1"];
const GW: &[&str] = &["v1", "v1beta1", "v1alpha2"];

const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::VirtualService,
        group: "networking.istio.io",
        versions: NET,
        name: "VirtualService",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::DestinationRule,
        group: "networking.istio.io",
        versions: NET,
        name: "DestinationRule",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Gateway,
        group: "networking.istio.io",
        versions: NET,
        name: "Gateway",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::ServiceEntry,
        group: "networking.istio.io",
        versions: NET,
        name: "ServiceEntry",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::WorkloadEntry,
        group: "networking.istio.io",
        versions: NET,
        name: "WorkloadEntry",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::WorkloadGroup,
        group: "networking.istio.io",
        versions: NET,
        name: "WorkloadGroup",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Sidecar,
        group: "networking.istio.io",
        versions: NET,
        name: "Sidecar",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::EnvoyFilter,
        group: "networking.istio.io",
        versions: &["v1alpha3"],
        name: "EnvoyFilter",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::ProxyConfig,
        group: "networking.istio.io",
        versions: &["v1beta1"],
        name: "ProxyConfig",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::PeerAuthentication,
        group: "security.istio.io",
        versions: SEC,
        name: "PeerAuthentication",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::RequestAuthentication,
        group: "security.istio.io",
        versions: SEC,
        name: "RequestAuthentication",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::AuthorizationPolicy,
        group: "security.istio.io",
        versions: SEC,
        name: "AuthorizationPolicy",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Telemetry,
        group: "telemetry.istio.io",
        versions: &["v1", "v1alpha1"],
        name: "Telemetry",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::WasmPlugin,
        group: "extensions.istio.io",
        versions: &["v1alpha1"],
        name: "WasmPlugin",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::MeshConfig,
        group: "mesh.weft.dev",
        versions: &["v1alpha1"],
        name: "MeshConfig",
        namespaced: false,
    },
    KindInfo {
        kind: Kind::Namespace,
        group: "",
        versions: &["v1"],
        name: "Namespace",
        namespaced: false,
    },
    KindInfo {
        kind: Kind::Service,
        group: "",
        versions: &["v1"],
        name: "Service",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::ServiceAccount,
        group: "",
        versions: &["v1"],
        name: "ServiceAccount",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Pod,
        group: "",
        versions: &["v1"],
        name: "Pod",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Deployment,
        group: "apps",
        versions: &["v1"],
        name: "Deployment",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::Secret,
        group: "",
        versions: &["v1"],
        name: "Secret",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::ConfigMap,
        group: "",
        versions: &["v1"],
        name: "ConfigMap",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::EndpointSlice,
        group: "discovery.k8s.io",
        versions: &["v1"],
        name: "EndpointSlice",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::MutatingWebhookConfiguration,
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        name: "MutatingWebhookConfiguration",
        namespaced: false,
    },
    KindInfo {
        kind: Kind::ValidatingWebhookConfiguration,
        group: "admissionregistration.k8s.io",
        versions: &["v1"],
        name: "ValidatingWebhookConfiguration",
        namespaced: false,
    },
    KindInfo {
        kind: Kind::KubeGateway,
        group: "gateway.networking.k8s.io",
        versions: GW,
        name: "Gateway",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::HttpRoute,
        group: "gateway.networking.k8s.io",
        versions: GW,
        name: "HTTPRoute",
        namespaced: true,
    },
    KindInfo {
        kind: Kind::GrpcRoute,
        group: "gateway.networking.k8s.io",
        versions: GW,
        name: "GRPCRoute",
        namespaced: true,
    },
];

impl Kind {
    fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|k| k.kind == self)
            .expect("every Kind has a row in KINDS")
    }

    /// All kinds, in declaration order.
    pub fn all() -> impl Iterator<Item = Kind> {
        KINDS.iter().map(|k| k.kind)
    }

    /// The kind's name as written in `kind:` (`VirtualService`, `HTTPRoute`, ...).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The API group (`networking.istio.io`; empty for Kubernetes core).
    pub fn group(self) -> &'static str {
        self.info().group
    }

    /// The versions weft accepts for this kind, preferred first.
    pub fn versions(self) -> &'static [&'static str] {
        self.info().versions
    }

    /// The preferred `apiVersion` string (`networking.istio.io/v1`, `v1`).
    pub fn preferred_api_version(self) -> String {
        api_version(self.group(), self.versions()[0])
    }

    /// Whether resources of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self.info().namespaced
    }

    /// True for the Istio CRD kinds (the ones with a typed `spec` validated by weft).
    pub fn is_istio(self) -> bool {
        self.group().ends_with(".istio.io")
    }

    /// Looks a kind up by `apiVersion` and `kind`. `Err` carries what is wrong, for the user.
    pub fn resolve(api_version: &str, kind: &str) -> Result<Kind, String> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let candidates: Vec<&KindInfo> = KINDS.iter().filter(|k| k.name == kind).collect();
        if candidates.is_empty() {
            return Err(format!(
                "unknown kind {kind:?} (apiVersion {api_version:?})"
            ));
        }
        let Some(info) = candidates.iter().find(|k| k.group == group) else {
            let groups: Vec<String> = candidates
                .iter()
                .map(|k| api_version_str(k.group, k.versions[0]))
                .collect();
            return Err(format!(
                "kind {kind:?} is not served by apiVersion {api_version:?}; use {}",
                groups.join(" or ")
            ));
        };
        if !info.versions.contains(&version) {
            let allowed: Vec<String> = info
                .versions
                .iter()
                .map(|v| api_version_str(info.group, v))
                .collect();
            return Err(format!(
                "apiVersion {api_version:?} is not served for {kind}; served versions: {}",
                allowed.join(", ")
            ));
        }
        Ok(info.kind)
    }
}

fn api_version_str(group: &str, version: &str) -> String {
    api_version(group, version)
}

/// Joins group and version the way `apiVersion` writes them.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The typed body of a resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Spec {
    VirtualService(networking::VirtualService),
    DestinationRule(networking::DestinationRule),
    Gateway(networking::Gateway),
    ServiceEntry(networking::ServiceEntry),
    WorkloadEntry(networking::WorkloadEntry),
    WorkloadGroup(networking::WorkloadGroup),
    Sidecar(networking::Sidecar),
    EnvoyFilter(networking::EnvoyFilter),
    ProxyConfig(networking::ProxyConfig),
    PeerAuthentication(security::PeerAuthentication),
    RequestAuthentication(security::RequestAuthentication),
    AuthorizationPolicy(security::AuthorizationPolicy),
    Telemetry(telemetry::Telemetry),
    WasmPlugin(extensions::WasmPlugin),
    MeshConfig(Box<mesh::MeshConfig>),
    Namespace(Box<k8s_openapi::api::core::v1::Namespace>),
    Service(Box<k8s_openapi::api::core::v1::Service>),
    ServiceAccount(Box<k8s_openapi::api::core::v1::ServiceAccount>),
    Pod(Box<k8s_openapi::api::core::v1::Pod>),
    Deployment(Box<k8s_openapi::api::apps::v1::Deployment>),
    Secret(Box<k8s_openapi::api::core::v1::Secret>),
    ConfigMap(Box<k8s_openapi::api::core::v1::ConfigMap>),
    EndpointSlice(Box<k8s_openapi::api::discovery::v1::EndpointSlice>),
    MutatingWebhookConfiguration(
        Box<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>,
    ),
    ValidatingWebhookConfiguration(
        Box<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>,
    ),
    /// Gateway API objects: the whole document, untyped.
    Untyped(serde_json::Value),
}

/// Where a resource was read from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct Source {
    /// File name as the user gave it (`-` for standard input).
    pub file: Arc<str>,
    /// 1-based index of the YAML document within the file.
    pub document: usize,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} (document {})",
            self.file, self.line, self.document
        )
    }
}

/// One parsed resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resource {
    /// `apiVersion` as written.
    pub api_version: String,
    pub kind: Kind,
    pub metadata: ObjectMeta,
    pub spec: Spec,
    /// `status` of an Istio resource as written (controllers' conditions), untyped: weft reads
    /// it only to report what a controller said. Kubernetes kinds keep theirs in `spec`'s object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
    /// Where the resource came from.
    #[serde(skip)]
    pub source: Source,
}

impl Resource {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// `metadata.namespace`, or `""` when unset (callers that need a default apply it with
    /// [`Resource::default_namespace`]).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("")
    }

    /// Sets the namespace of a namespaced resource that has none (as `kubectl apply -n` does).
    pub fn default_namespace(&mut self, ns: &str) {
        if self.kind.namespaced() && self.metadata.namespace.as_deref().unwrap_or("").is_empty() {
            self.metadata.namespace = Some(ns.to_string());
        }
    }

    /// `Kind namespace/name` (or `Kind name` when cluster-scoped), as istioctl names resources.
    pub fn key(&self) -> String {
        resource_key(self.kind.name(), self.namespace(), self.name())
    }
}

/// Formats `Kind namespace/name` or `Kind name`.
pub fn resource_key(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}
