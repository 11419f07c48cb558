//! `deployment.ApplicationUIDAnalyzer`: application containers must not run as UID 1337, which
//! is reserved for the sidecar proxy (its traffic is exempt from interception).

use k8s_openapi::api::core::v1::PodSpec;

use super::messages::INVALID_APPLICATION_UID;
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Resource};

/// The user ID the sidecar proxy runs as.
const PROXY_UID: i64 = 1337;

/// Reports Pods and Deployments whose pod or application containers run as UID 1337.
pub struct ApplicationUidAnalyzer;

fn check(r: &Resource, spec: &PodSpec, path: &str, out: &mut Vec<Message>) {
    if spec.security_context.as_ref().and_then(|s| s.run_as_user) == Some(PROXY_UID) {
        out.push(
            Message::new(&INVALID_APPLICATION_UID, r, vec![])
                .at(format!("{path}.securityContext.runAsUser")),
        );
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if c.name == util::ISTIO_PROXY_NAME || c.name == util::ISTIO_OPERATOR_NAME {
            continue;
        }
        if c.security_context.as_ref().and_then(|s| s.run_as_user) == Some(PROXY_UID) {
            out.push(
                Message::new(&INVALID_APPLICATION_UID, r, vec![])
                    .at(format!("{path}.containers[{i}].securityContext.runAsUser")),
            );
        }
    }
}

impl Analyzer for ApplicationUidAnalyzer {
    fn name(&self) -> &'static str {
        "deployment.ApplicationUIDAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks invalid application UID"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for r in ctx.of_kind(Kind::Pod) {
            if util::is_istio_control_plane(r) {
                continue;
            }
            if let Some(spec) = util::pod_spec(r) {
                check(r, spec, "spec", out);
            }
        }
        for r in ctx.of_kind(Kind::Deployment) {
            if util::is_istio_control_plane(r) {
                continue;
            }
            if let Some(t) = util::deployment_template(r) {
                check(r, t.spec, "spec.template.spec", out);
            }
        }
    }
}
