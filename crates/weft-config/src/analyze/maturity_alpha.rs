//! `maturity.AlphaAnalyzer`: flags Istio annotations of alpha-maturity features on Kubernetes
//! resources. Istio leaves it out of the default `istioctl analyze` run because many such
//! annotations are set by default; weft does the same (run it with `--analyzer`).

use super::annotations_catalogue::{self, FeatureStatus};
use super::messages::ALPHA_ANNOTATION;
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Resource};

/// Reports each alpha-phase Istio annotation on Namespaces, Services, Pods and Deployments.
pub struct AlphaAnalyzer;

/// Annotations istio-cni sets on every pod; reported only when the pod is not using CNI.
const CNI_DEFAULTS: &[&str] = &[
    "sidecar.istio.io/interceptionMode",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
];

/// A pod uses istio-cni when it has no `istio-init` init container.
fn cni_enabled(r: &Resource) -> bool {
    util::pod_spec(r).is_some_and(|s| {
        !s.init_containers
            .iter()
            .flatten()
            .any(|c| c.name == "istio-init")
    })
}

impl Analyzer for AlphaAnalyzer {
    fn name(&self) -> &'static str {
        "maturity.AlphaAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for alpha Istio annotations in Kubernetes resources"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for kind in [Kind::Namespace, Kind::Service, Kind::Pod, Kind::Deployment] {
            for r in ctx.of_kind(kind) {
                let skip_cni_defaults = kind == Kind::Pod && cni_enabled(r);
                for key in r.metadata.annotations.keys() {
                    if !annotations_catalogue::is_istio_annotation(key) {
                        continue;
                    }
                    let Some(def) = annotations_catalogue::lookup(key) else {
                        continue;
                    };
                    // Annotations Istio writes itself are not the user's choice.
                    if def.status != FeatureStatus::Alpha
                        || def.hidden
                        || def.name == "sidecar.istio.io/status"
                        || (skip_cni_defaults && CNI_DEFAULTS.contains(&def.name))
                    {
                        continue;
                    }
                    out.push(
                        Message::new(&ALPHA_ANNOTATION, r, vec![key.into()])
                            .at(format!("metadata.annotations[{key}]")),
                    );
                }
            }
        }
    }
}
