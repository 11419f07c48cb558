//! `externalcontrolplane.ExternalControlPlaneAnalyzer`: on a remote cluster of an external
//! control plane, Istio's webhooks must reach istiod through a URL with a resolvable host name.
//!
//! Istio also resolves each host name with DNS; weft's analysis works on files only and makes
//! no network calls, so it reports blank, malformed and IP-address URLs but not unresolvable
//! names.

use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;

use super::messages::{
    EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME, INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
};
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Resource, Spec};

/// Reports Istio webhooks whose client configuration cannot reach an external istiod.
pub struct ExternalControlPlaneAnalyzer;

const DEFAULT_VALIDATOR: &str = "istiod-default-validator";
const VALIDATOR_PREFIX: &str = "istio-validator";
const INJECTOR_PREFIX: &str = "istio-sidecar-injector";

fn check_hook(
    r: &Resource,
    hook: &str,
    path: String,
    conf: &WebhookClientConfig,
    out: &mut Vec<Message>,
) {
    match &conf.url {
        Some(url) => {
            let problem = match util::url_host(url) {
                None => Some("was provided in an invalid format"),
                Some("") => Some("cannot be resolved via a DNS lookup"),
                Some(host) if host.parse::<std::net::IpAddr>().is_ok() => {
                    out.push(
                        Message::new(
                            &EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME,
                            r,
                            vec![url.into(), hook.into()],
                        )
                        .at(format!("{path}.clientConfig.url")),
                    );
                    None
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                out.push(
                    Message::new(
                        &INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
                        r,
                        vec![url.into(), hook.into(), problem.into()],
                    )
                    .at(format!("{path}.clientConfig.url")),
                );
            }
        }
        None if conf.service.is_none() => out.push(
            Message::new(
                &INVALID_EXTERNAL_CONTROL_PLANE_CONFIG,
                r,
                vec!["".into(), hook.into(), "is blank".into()],
            )
            .at(format!("{path}.clientConfig")),
        ),
        None => {}
    }
}

impl Analyzer for ExternalControlPlaneAnalyzer {
    fn name(&self) -> &'static str {
        "externalcontrolplane.ExternalControlPlaneAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks that the remote IstioOperator resources reference an external control plane"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for r in ctx.of_kind(Kind::ValidatingWebhookConfiguration) {
            let Spec::ValidatingWebhookConfiguration(w) = &r.spec else {
                continue;
            };
            let name = r.name();
            if name.is_empty() || !(name == DEFAULT_VALIDATOR || name.starts_with(VALIDATOR_PREFIX))
            {
                continue;
            }
            for (i, hook) in w.webhooks.iter().flatten().enumerate() {
                check_hook(
                    r,
                    &hook.name,
                    format!("webhooks[{i}]"),
                    &hook.client_config,
                    out,
                );
            }
        }
        for r in ctx.of_kind(Kind::MutatingWebhookConfiguration) {
            let Spec::MutatingWebhookConfiguration(w) = &r.spec else {
                continue;
            };
            if !r.name().starts_with(INJECTOR_PREFIX) {
                continue;
            }
            for (i, hook) in w.webhooks.iter().flatten().enumerate() {
                check_hook(
                    r,
                    &hook.name,
                    format!("webhooks[{i}]"),
                    &hook.client_config,
                    out,
                );
            }
        }
    }
}
