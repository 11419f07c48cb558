//! `injection.ImageAutoAnalyzer`: `image: auto` on an `istio-proxy` container is a placeholder
//! that only the injector fills in; a Pod carrying it was never injected, and a Deployment
//! carrying it must be selected by an Istio injection webhook.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;
use k8s_openapi::api::core::v1::PodSpec;

use super::messages::{IMAGE_AUTO_WITHOUT_INJECTION_ERROR, IMAGE_AUTO_WITHOUT_INJECTION_WARNING};
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Spec};

/// Reports Pods and Deployments with `image: auto` that will not be injected.
pub struct ImageAutoAnalyzer;

fn has_auto_image(spec: &PodSpec) -> bool {
    spec.containers
        .iter()
        .any(|c| c.name == util::ISTIO_PROXY_NAME && c.image.as_deref() == Some("auto"))
}

impl Analyzer for ImageAutoAnalyzer {
    fn name(&self) -> &'static str {
        "injection.ImageAutoAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Makes sure that Pods and Deployments with `image: auto` are going to be injected"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let webhooks: Vec<&MutatingWebhook> = ctx
            .of_kind(Kind::MutatingWebhookConfiguration)
            .filter_map(|r| match &r.spec {
                Spec::MutatingWebhookConfiguration(w) => w.webhooks.as_ref(),
                _ => None,
            })
            .flatten()
            .filter(|w| w.name.ends_with("istio.io"))
            .collect();
        for pod in ctx.of_kind(Kind::Pod) {
            if util::pod_spec(pod).is_some_and(has_auto_image) {
                out.push(Message::new(
                    &IMAGE_AUTO_WITHOUT_INJECTION_ERROR,
                    pod,
                    vec!["Pod".into(), pod.name().into()],
                ));
            }
        }
        let empty = BTreeMap::new();
        for d in ctx.of_kind(Kind::Deployment) {
            let Some(util::PodTemplate { labels, spec, .. }) = util::deployment_template(d) else {
                continue;
            };
            if !has_auto_image(spec) {
                continue;
            }
            let ns = if d.namespace().is_empty() {
                "default"
            } else {
                d.namespace()
            };
            let ns_labels = ctx.namespace(ns).map_or(&empty, |n| &n.metadata.labels);
            let matched = webhooks.iter().any(|w| {
                util::label_selector_matches(w.namespace_selector.as_ref(), ns_labels)
                    && util::label_selector_matches(w.object_selector.as_ref(), labels)
            });
            if !matched {
                out.push(Message::new(
                    &IMAGE_AUTO_WITHOUT_INJECTION_WARNING,
                    d,
                    vec!["Deployment".into(), d.name().into()],
                ));
            }
        }
    }
}
