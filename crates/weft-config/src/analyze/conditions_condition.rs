//! `conditions.ConditionAnalyzer`: surfaces negative status conditions that Istio (or the
//! Gateway API controller) wrote on resources, e.g. a Service that could not bind to its
//! waypoint.

use serde_json::Value;

use super::messages::NEGATIVE_CONDITION_STATUS;
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Resource};

/// Reports each negative status condition on Services, ServiceEntries, AuthorizationPolicies
/// and Gateway API Gateways and routes.
pub struct ConditionAnalyzer;

/// A condition is negative when its status is `False`, or when it marks the resource as
/// partially invalid.
fn is_negative(c: &Value) -> bool {
    util::json_str(c, "/status") == "False" || util::json_str(c, "/reason") == "PartiallyInvalid"
}

/// Whether a Service or ServiceEntry condition type is one Istio owns (other controllers, such
/// as Argo CD, write their own conditions there).
fn istio_owned(kind: Kind, condition_type: &str) -> bool {
    match kind {
        Kind::Service | Kind::ServiceEntry => condition_type.starts_with("istio.io/"),
        _ => true,
    }
}

fn report(r: &Resource, path: &str, conditions: Option<&Value>, out: &mut Vec<Message>) {
    for (i, c) in conditions
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ty = util::json_str(c, "/type");
        if !istio_owned(r.kind, ty) || !is_negative(c) {
            continue;
        }
        out.push(
            Message::new(
                &NEGATIVE_CONDITION_STATUS,
                r,
                vec![
                    ty.into(),
                    util::json_str(c, "/reason").into(),
                    util::json_str(c, "/message").into(),
                ],
            )
            .at(format!("{path}[{i}]")),
        );
    }
}

impl Analyzer for ConditionAnalyzer {
    fn name(&self) -> &'static str {
        "conditions.ConditionAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for negative status conditions on resources"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for kind in [
            Kind::Service,
            Kind::ServiceEntry,
            Kind::AuthorizationPolicy,
            Kind::KubeGateway,
        ] {
            for r in ctx.of_kind(kind) {
                let status = util::status_json(r);
                report(
                    r,
                    "status.conditions",
                    status.as_ref().and_then(|s| s.get("conditions")),
                    out,
                );
            }
        }
        for kind in [Kind::HttpRoute, Kind::GrpcRoute] {
            for r in ctx.of_kind(kind) {
                let Some(status) = util::status_json(r) else {
                    continue;
                };
                for (i, parent) in status
                    .get("parents")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    report(
                        r,
                        &format!("status.parents[{i}].conditions"),
                        parent.get("conditions"),
                        out,
                    );
                }
            }
        }
    }
}
