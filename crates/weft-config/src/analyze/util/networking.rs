//! Networking helpers of the analyzers: Istio's name and host conventions
//! (`resource.FullName`, `util.ScopedFqdn`), label selectors as istioctl prints them, and the
//! workloads (pods and services) analysis sees.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::DEFAULT_DOMAIN_SUFFIX;
use crate::analyze::Context;
use crate::resource::{Kind, Resource, Spec};

/// `*`: scope of hosts exported to every namespace.
pub const EXPORT_TO_ALL: &str = "*";

/// `.`: scope of hosts exported to their own namespace only.
pub const EXPORT_TO_LOCAL: &str = ".";

/// Istio's `resource.FullName.String()`: `namespace/name`, or `name` without a namespace
/// (see [`full_name`](super::full_name) for a resource's).
pub fn namespaced_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// Istio's `resource.NewShortOrFullName`: `ns/name` as written, or `name` in `default_ns`.
pub fn short_or_full_name<'a>(default_ns: &'a str, name: &'a str) -> (&'a str, &'a str) {
    match name.split_once('/') {
        Some((ns, n)) => (ns, n),
        None => (default_ns, name),
    }
}

/// Istio's `util.ConvertHostToFQDN`: short names become `name.<ns>.svc.cluster.local`;
/// wildcards and dotted names are kept.
pub fn convert_host_to_fqdn(namespace: &str, host: &str) -> String {
    if !host.starts_with('*') && !host.contains('.') {
        format!("{host}.{namespace}.svc.{DEFAULT_DOMAIN_SUFFIX}")
    } else {
        host.to_string()
    }
}

/// Istio's `util.NewScopedFqdn`: `scope/fqdn`.
pub fn scoped_fqdn(scope: &str, namespace: &str, host: &str) -> String {
    format!("{scope}/{}", convert_host_to_fqdn(namespace, host))
}

/// Splits a scoped FQDN into scope and FQDN.
pub fn split_scoped(s: &str) -> (&str, &str) {
    s.split_once('/').unwrap_or(("", s))
}

/// Istio's `util.GetResourceNameFromHost`: `(namespace, name)` from
/// `name.namespace.svc.cluster.local`, or `(default_ns, host)` for any other host.
pub fn resource_name_from_host(default_ns: &str, host: &str) -> (String, String) {
    let suffix = format!(".svc.{DEFAULT_DOMAIN_SUFFIX}");
    if let Some(rest) = host.strip_suffix(&suffix)
        && let Some((name, ns)) = rest.rsplit_once('.')
        && !name.is_empty()
        && !ns.is_empty()
    {
        return (ns.to_string(), name.to_string());
    }
    (default_ns.to_string(), host.to_string())
}

/// Istio's `util.IsExportToAllNamespaces`: empty, or containing `*`.
pub fn is_export_to_all(export_to: &[String]) -> bool {
    export_to.is_empty() || export_to.iter().any(|e| e == EXPORT_TO_ALL)
}

/// A label selector as Kubernetes prints it (`labels.SelectorFromSet(m).String()`):
/// `k1=v1,k2=v2` sorted by key; empty for an empty selector.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A pod as the analyzers see it.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// Labels of the pod.
    pub labels: BTreeMap<String, String>,
    /// Annotations of the pod.
    pub annotations: BTreeMap<String, String>,
}

/// One port of a Kubernetes Service.
#[derive(Clone, Debug)]
pub struct ServicePortInfo {
    /// `port`.
    pub port: i32,
    /// `protocol` (TCP when unset, as Kubernetes defaults it).
    pub protocol: String,
    /// `targetPort` as Go's `IntOrString.IntValue()` reads it (0 when unset or not a number).
    pub target_port: i32,
}

/// A Kubernetes Service as the analyzers see it.
#[derive(Clone, Debug)]
pub struct ServiceInfo {
    /// Namespace of the service.
    pub namespace: String,
    /// Name of the service.
    pub name: String,
    /// The pod selector (empty matches every pod, as Istio's analyzers treat it).
    pub selector: BTreeMap<String, String>,
    /// The ports.
    pub ports: Vec<ServicePortInfo>,
}

fn pod_info(r: &Resource) -> PodInfo {
    PodInfo {
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        labels: r.metadata.labels.clone(),
        annotations: r.metadata.annotations.clone(),
    }
}

fn int_value(v: Option<&IntOrString>) -> i32 {
    match v {
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => s.parse().unwrap_or(0),
        None => 0,
    }
}

fn service_info(r: &Resource) -> Option<ServiceInfo> {
    let Spec::Service(svc) = &r.spec else {
        return None;
    };
    let spec = svc.spec.as_ref();
    Some(ServiceInfo {
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
        selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
        ports: spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| ServicePortInfo {
                port: p.port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                target_port: int_value(p.target_port.as_ref()),
            })
            .collect(),
    })
}

/// Every pod of the inputs (with istioctl's placeholder ingress gateway pod, which
/// [`analyze`](super::analyze) adds).
pub fn pods(ctx: &Context<'_>) -> Vec<PodInfo> {
    ctx.of_kind(Kind::Pod).map(pod_info).collect()
}

/// Every Service of the inputs (with istioctl's placeholder ingress gateway Service, which
/// [`analyze`](super::analyze) adds).
pub fn services(ctx: &Context<'_>) -> Vec<ServiceInfo> {
    ctx.of_kind(Kind::Service)
        .filter_map(service_info)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hosts() {
        assert_eq!(namespaced_name("", "a"), "a");
        assert_eq!(namespaced_name("ns", "a"), "ns/a");
        assert_eq!(short_or_full_name("d", "ns/gw"), ("ns", "gw"));
        assert_eq!(short_or_full_name("d", "gw"), ("d", "gw"));
        assert_eq!(
            convert_host_to_fqdn("ns", "reviews"),
            "reviews.ns.svc.cluster.local"
        );
        assert_eq!(convert_host_to_fqdn("ns", "a.b"), "a.b");
        assert_eq!(
            resource_name_from_host("d", "reviews.default.svc.cluster.local"),
            ("default".to_string(), "reviews".to_string())
        );
        assert_eq!(
            resource_name_from_host("d", "reviews"),
            ("d".to_string(), "reviews".to_string())
        );
    }

    #[test]
    fn selectors() {
        let m = BTreeMap::from([
            ("istio".to_string(), "ingressgateway".to_string()),
            ("app".to_string(), "x".to_string()),
        ]);
        assert_eq!(selector_string(&m), "app=x,istio=ingressgateway");
        assert_eq!(selector_string(&BTreeMap::new()), "");
    }
}
