//! `injection.ImageAnalyzer`: the sidecars running in injected namespaces should use the proxy
//! image the injector would inject now (a mismatch means pods predate an upgrade).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::messages::PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE;
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Resource, Spec};

/// Reports namespaces whose pods run a proxy image other than the injector's.
pub struct ImageAnalyzer;

/// Pod annotation holding per-proxy ProxyConfig overrides (YAML).
const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";
/// Pod annotation naming a custom proxy image, which always wins over the injector.
const PROXY_IMAGE_ANNOTATION: &str = "sidecar.istio.io/proxyImage";

/// The proxy image an injector ConfigMap injects: `global.proxy.image` when it is a full
/// reference, else `<global.hub>/<global.proxy.image>:<global.tag>`.
pub fn injector_proxy_image(cm: &Resource) -> String {
    let Spec::ConfigMap(cm) = &cm.spec else {
        return String::new();
    };
    let Some(values) = cm
        .data
        .as_ref()
        .and_then(|d| d.get("values"))
        .and_then(|v| serde_json::from_str::<Value>(v).ok())
    else {
        return String::new();
    };
    let image = util::json_str(&values, "/global/proxy/image");
    if image.contains('/') {
        return image.to_string();
    }
    format!(
        "{}/{image}:{}",
        util::json_str(&values, "/global/hub"),
        util::json_str(&values, "/global/tag")
    )
}

/// Works out the proxy image variant (`distroless`, ...) in force for a pod, from MeshConfig
/// `defaultConfig`, ProxyConfig resources (root namespace, namespace, workload) and the pod's
/// `proxy.istio.io/config` annotation, in increasing precedence.
struct ImageTypeResolver {
    mesh: String,
    root: String,
    namespace: HashMap<String, String>,
    /// `namespace/name` of workload-selecting ProxyConfigs, with their selector and image type.
    workload: Vec<(String, BTreeMap<String, String>, String)>,
}

impl ImageTypeResolver {
    fn new(ctx: &Context<'_>) -> Self {
        let mut r = ImageTypeResolver {
            mesh: ctx
                .mesh
                .default_config
                .as_ref()
                .and_then(|pc| pc.image.as_ref())
                .map(|i| i.image_type.clone())
                .unwrap_or_default(),
            root: String::new(),
            namespace: HashMap::new(),
            workload: Vec::new(),
        };
        for pc in ctx.of_kind(Kind::ProxyConfig) {
            let spec = util::spec_json(pc).unwrap_or(Value::Null);
            let image_type = util::json_str(&spec, "/image/imageType").to_string();
            if pc.namespace() == ctx.root_namespace() {
                r.root = image_type;
                continue;
            }
            match spec.get("selector") {
                None | Some(Value::Null) => {
                    r.namespace.insert(pc.namespace().to_string(), image_type);
                }
                Some(sel) => {
                    let labels = sel
                        .get("matchLabels")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                                .collect()
                        })
                        .unwrap_or_default();
                    r.workload.push((util::full_name(pc), labels, image_type));
                }
            }
        }
        r
    }

    fn image_type(&self, pod: &Resource) -> String {
        let mut variant = self.mesh.clone();
        if !self.root.is_empty() {
            variant = self.root.clone();
        }
        if let Some(v) = self.namespace.get(pod.namespace())
            && !v.is_empty()
        {
            variant = v.clone();
        }
        for (key, selector, image_type) in &self.workload {
            // Istio compares by prefix and checks that the pod's labels are contained in the
            // selector; both quirks are kept so that results match.
            if !key.starts_with(pod.namespace()) {
                continue;
            }
            if util::map_contains(selector, &pod.metadata.labels) && !image_type.is_empty() {
                variant = image_type.clone();
            }
        }
        if let Some(text) = pod.metadata.annotations.get(PROXY_CONFIG_ANNOTATION)
            && let Ok(v) = serde_norway::from_str::<Value>(text)
        {
            let t = util::json_str(&v, "/image/imageType");
            if !t.is_empty() {
                variant = t.to_string();
            }
        }
        if variant == "default" {
            variant.clear();
        }
        variant
    }
}

impl Analyzer for ImageAnalyzer {
    fn name(&self) -> &'static str {
        "injection.ImageAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the image of auto-injection configured with the running proxies on pods"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let images: HashMap<&str, String> = ctx
            .of_kind(Kind::ConfigMap)
            .filter(|cm| cm.name().starts_with(util::INJECTOR_CONFIGMAP))
            .map(|cm| (cm.name(), injector_proxy_image(cm)))
            .collect();
        if images.is_empty() {
            return;
        }
        // injected namespace -> (resource, revision)
        let mut injected: HashMap<&str, (&Resource, &str)> = HashMap::new();
        for ns in ctx.of_kind(Kind::Namespace) {
            let labels = &ns.metadata.labels;
            if let Some(rev) = labels.get(util::REVISION_LABEL) {
                injected.insert(ns.name(), (ns, rev));
            } else if labels.get(util::INJECTION_LABEL).map(String::as_str)
                == Some(util::INJECTION_ENABLED)
            {
                injected.insert(ns.name(), (ns, "default"));
            }
        }
        let resolver = ImageTypeResolver::new(ctx);
        let mut mismatched: Vec<(&str, Vec<String>)> = Vec::new();
        for pod in ctx.of_kind(Kind::Pod) {
            let Some((_, rev)) = injected.get(pod.namespace()) else {
                continue;
            };
            if pod
                .metadata
                .annotations
                .get(PROXY_IMAGE_ANNOTATION)
                .is_some_and(|v| !v.is_empty())
            {
                continue;
            }
            let Some(spec) = util::pod_spec(pod) else {
                continue;
            };
            let Some(expected) = images.get(util::injector_configmap_name(rev).as_str()) else {
                continue;
            };
            let variant = resolver.image_type(pod);
            let with_variant = format!("{expected}-{variant}");
            for c in util::all_containers(spec) {
                if c.name != util::ISTIO_PROXY_NAME {
                    continue;
                }
                let image = c.image.as_deref().unwrap_or("");
                if image != expected && image != with_variant {
                    match mismatched.iter_mut().find(|(ns, _)| *ns == pod.namespace()) {
                        Some((_, pods)) => pods.push(pod.name().to_string()),
                        None => mismatched.push((pod.namespace(), vec![pod.name().to_string()])),
                    }
                }
            }
        }
        for (ns, pods) in mismatched {
            if let Some((ns_resource, _)) = injected.get(ns) {
                out.push(Message::new(
                    &PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE,
                    ns_resource,
                    vec![pods.into()],
                ));
            }
        }
    }
}
