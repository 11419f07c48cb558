//! Lookups many analyzers share: host names, namespaces, workloads, injection status, label
//! selectors, and reading fields of specs that are easier to reach as JSON.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::mesh::MeshConfig;
use crate::resource::{Resource, Spec};

use super::Context;

mod networking;
pub use networking::*;

/// The Kubernetes DNS suffix for services (`svc.cluster.local`).
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// Istio's control-plane namespace when nothing else is configured.
pub const ISTIO_SYSTEM_NAMESPACE: &str = "istio-system";

/// Name of the injected sidecar container.
pub const ISTIO_PROXY_NAME: &str = "istio-proxy";

/// Name of the Istio operator container (never counted as an application container).
pub const ISTIO_OPERATOR_NAME: &str = "istio-operator";

/// Legacy namespace label that turns sidecar injection on (`enabled`) or off.
pub const INJECTION_LABEL: &str = "istio-injection";

/// Value of [`INJECTION_LABEL`] that enables injection.
pub const INJECTION_ENABLED: &str = "enabled";

/// Revision label: selects the control plane revision that injects a namespace or pod.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// Label choosing the data plane mode of a namespace or pod (`ambient`, `none`).
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// Pod label/annotation overriding injection for one workload.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";

/// Name of the sidecar injector ConfigMap (per revision: `istio-sidecar-injector-<rev>`).
pub const INJECTOR_CONFIGMAP: &str = "istio-sidecar-injector";

/// Namespaces Istio never injects or checks (its `inject.IgnoredNamespaces`).
pub const SYSTEM_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// The mesh root namespace, `istio-system` unless MeshConfig sets `rootNamespace`.
pub fn root_namespace(mesh: &MeshConfig) -> &str {
    if mesh.root_namespace.is_empty() {
        ISTIO_SYSTEM_NAMESPACE
    } else {
        &mesh.root_namespace
    }
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

/// `namespace/name` (or `name` for cluster-scoped resources), Istio's `FullName.String()`.
pub fn full_name(r: &Resource) -> String {
    namespaced_name(r.namespace(), r.name())
}

/// True for namespaces Istio leaves alone (`kube-system`, `kube-public`, ...).
pub fn is_system_namespace(ns: &str) -> bool {
    SYSTEM_NAMESPACES.contains(&ns)
}

/// True for resources that belong to the Istio control plane (an `istio` label, or
/// `release: istio`), which several analyzers skip.
pub fn is_istio_control_plane(r: &Resource) -> bool {
    r.metadata.labels.contains_key("istio")
        || r.metadata.labels.get("release").map(String::as_str) == Some("istio")
}

/// The injector ConfigMap name for a revision (`default` and empty mean the unrevisioned one).
pub fn injector_configmap_name(revision: &str) -> String {
    if revision.is_empty() || revision == "default" {
        INJECTOR_CONFIGMAP.to_string()
    } else {
        format!("{INJECTOR_CONFIGMAP}-{revision}")
    }
}

/// Whether a Kubernetes label selector matches `labels`, as `metav1.LabelSelectorAsSelector`
/// does. `None` (an absent selector, as in webhooks) matches everything; so does an empty
/// one. A malformed requirement (unknown operator, `In` without values) matches nothing.
pub fn label_selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(sel) = selector else {
        return true;
    };
    if let Some(ml) = &sel.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    for req in sel.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or(&[]);
        let value = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" => !values.is_empty() && value.is_some_and(|v| values.contains(v)),
            "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(v)),
            "Exists" => values.is_empty() && value.is_some(),
            "DoesNotExist" => values.is_empty() && value.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The pod spec of a Pod resource.
pub fn pod_spec(r: &Resource) -> Option<&PodSpec> {
    match &r.spec {
        Spec::Pod(p) => p.spec.as_ref(),
        _ => None,
    }
}

/// A Deployment's pod template, as analyzers read it.
#[derive(Clone, Copy, Debug)]
pub struct PodTemplate<'a> {
    /// Labels the Deployment's pods get.
    pub labels: &'a BTreeMap<String, String>,
    /// Annotations the Deployment's pods get.
    pub annotations: &'a BTreeMap<String, String>,
    /// The pods' spec.
    pub spec: &'a PodSpec,
}

/// The pod template of a Deployment resource.
pub fn deployment_template(r: &Resource) -> Option<PodTemplate<'_>> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let Spec::Deployment(d) = &r.spec else {
        return None;
    };
    let t = &d.spec.as_ref()?.template;
    let spec = t.spec.as_ref()?;
    let meta = t.metadata.as_ref();
    Some(PodTemplate {
        labels: meta.and_then(|m| m.labels.as_ref()).unwrap_or(&EMPTY),
        annotations: meta.and_then(|m| m.annotations.as_ref()).unwrap_or(&EMPTY),
        spec,
    })
}

/// Containers then init containers (native sidecars run as init containers).
pub fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

/// Istio's `hasIstioProxy`: the first `istio-proxy` container has an image (already injected).
pub fn has_istio_proxy<'a>(mut containers: impl Iterator<Item = &'a Container>) -> bool {
    containers
        .find(|c| c.name == ISTIO_PROXY_NAME)
        .is_some_and(|c| c.image.as_deref().is_some_and(|i| !i.is_empty()))
}

/// The injection status a namespace asks for: `Some(true)` for `istio-injection=enabled`,
/// `Some(false)` for any other value of that label, `None` when the namespace resource is not
/// among the inputs.
pub fn namespace_injection(ctx: &Context<'_>, namespace: &str) -> Option<bool> {
    let ns = ctx.namespace(namespace)?;
    Some(ns.metadata.labels.get(INJECTION_LABEL).map(String::as_str) == Some(INJECTION_ENABLED))
}

fn in_mesh<'c>(
    ctx: &Context<'_>,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    namespace: &str,
    containers: impl Iterator<Item = &'c Container>,
) -> bool {
    if has_istio_proxy(containers) {
        return true;
    }
    if let Some(v) = labels.get(SIDECAR_INJECT) {
        return v == "true";
    }
    if let Some(v) = annotations.get(SIDECAR_INJECT) {
        return v == "true";
    }
    namespace_injection(ctx, namespace).unwrap_or(false)
}

/// Whether a Deployment's pods are in the mesh (sidecar present or going to be injected), as
/// Istio's `util.DeploymentInMesh` decides.
pub fn deployment_in_mesh(ctx: &Context<'_>, r: &Resource) -> bool {
    let Some(t) = deployment_template(r) else {
        return false;
    };
    in_mesh(
        ctx,
        t.annotations,
        t.labels,
        r.namespace(),
        t.spec.containers.iter(),
    )
}

/// Istio's `util.PodInAmbientMode`: the CNI redirects the pod's traffic to ambient
/// (`ambient.istio.io/redirection: enabled`).
pub fn pod_in_ambient(r: &Resource) -> bool {
    r.metadata
        .annotations
        .get("ambient.istio.io/redirection")
        .is_some_and(|v| v == "enabled")
}

/// Whether a Pod is in the mesh, as Istio's `util.PodInMesh` decides: it runs an
/// `istio-proxy` container, or its `sidecar.istio.io/inject` label (then annotation) says
/// so, or else its namespace has `istio-injection=enabled`.
pub fn pod_in_mesh(ctx: &Context<'_>, r: &Resource) -> bool {
    if !matches!(r.spec, Spec::Pod(_)) {
        return false;
    }
    // A Pod written without `spec` has no containers (Go reads an empty PodSpec).
    in_mesh(
        ctx,
        &r.metadata.annotations,
        &r.metadata.labels,
        r.namespace(),
        pod_spec(r).into_iter().flat_map(all_containers),
    )
}

/// The spec of an Istio resource as protobuf-style JSON (camelCase keys), for reading a few
/// fields of kinds whose Rust types another module owns.
pub fn spec_json(r: &Resource) -> Option<Value> {
    if !r.kind.is_istio() {
        return None;
    }
    serde_json::to_value(&r.spec).ok()
}

/// A string at a JSON pointer (`/image/imageType`), or `""`.
pub fn json_str<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The `status` of a resource as JSON, when the parsed form keeps it (Kubernetes Services and
/// the untyped Gateway API kinds).
pub fn status_json(r: &Resource) -> Option<Value> {
    match &r.spec {
        Spec::Service(s) => s
            .status
            .as_ref()
            .and_then(|st| serde_json::to_value(st).ok()),
        Spec::Untyped(v) => v.get("status").cloned(),
        _ => r.status.clone(),
    }
}

/// `true` when every entry of `subset` is in `superset` (Istio's `maps.Contains`).
pub fn map_contains(
    superset: &BTreeMap<String, String>,
    subset: &BTreeMap<String, String>,
) -> bool {
    subset.iter().all(|(k, v)| superset.get(k) == Some(v))
}

/// The host part of a URL (`https://host:port/path`), without brackets for IPv6. `None` when
/// the text has no `scheme://` authority.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(host_port.split(':').next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let l = labels(&[("app", "a"), ("tier", "web")]);
        assert!(label_selector_matches(None, &l));
        assert!(label_selector_matches(Some(&LabelSelector::default()), &l));
        let req = |op: &str, vals: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: op.into(),
                values: if vals.is_empty() {
                    None
                } else {
                    Some(vals.iter().map(|s| s.to_string()).collect())
                },
            }]),
            match_labels: None,
        };
        assert!(label_selector_matches(Some(&req("In", &["a", "b"])), &l));
        assert!(!label_selector_matches(Some(&req("NotIn", &["a"])), &l));
        assert!(label_selector_matches(Some(&req("Exists", &[])), &l));
        assert!(!label_selector_matches(Some(&req("DoesNotExist", &[])), &l));
        assert!(!label_selector_matches(Some(&req("Bogus", &[])), &l));
        assert!(!label_selector_matches(Some(&req("In", &[])), &l));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://test.com:15017/validate"),
            Some("test.com")
        );
        assert_eq!(url_host("https://1.1.1.1:5100/inject"), Some("1.1.1.1"));
        assert_eq!(url_host("https://[::1]:443/x"), Some("::1"));
        assert_eq!(url_host("https://u@h/x"), Some("h"));
        assert_eq!(url_host("test.com"), None);
    }

    #[test]
    fn injector_names() {
        assert_eq!(injector_configmap_name(""), "istio-sidecar-injector");
        assert_eq!(injector_configmap_name("default"), "istio-sidecar-injector");
        assert_eq!(
            injector_configmap_name("canary"),
            "istio-sidecar-injector-canary"
        );
    }
}
