//! `annotations.K8sAnalyzer`: Istio annotations on Kubernetes resources must exist, sit on the
//! kind they apply to, carry a valid value, and not be deprecated.

use super::annotations_catalogue;
use super::messages::{
    DEPRECATED_ANNOTATION, INVALID_ANNOTATION, MISPLACED_ANNOTATION, UNKNOWN_ANNOTATION,
};
use super::{Analyzer, Context, Message, util};
use crate::resource::Kind;

/// Reports unknown, misplaced, invalid and deprecated Istio annotations.
pub struct K8sAnalyzer;

impl Analyzer for K8sAnalyzer {
    fn name(&self) -> &'static str {
        "annotations.K8sAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks for misplaced and invalid Istio annotations in Kubernetes resources"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for kind in [Kind::Namespace, Kind::Service, Kind::Pod, Kind::Deployment] {
            for r in ctx.of_kind(kind) {
                for (key, value) in &r.metadata.annotations {
                    if !annotations_catalogue::is_istio_annotation(key) {
                        continue;
                    }
                    let at = format!("metadata.annotations[{key}]");
                    let Some(def) = annotations_catalogue::lookup(key) else {
                        out.push(Message::new(&UNKNOWN_ANNOTATION, r, vec![key.into()]).at(at));
                        continue;
                    };
                    if def.deprecated {
                        let has_label = r.metadata.labels.contains_key(util::SIDECAR_INJECT);
                        if !(has_label && key == util::SIDECAR_INJECT) {
                            let extra = if key == util::SIDECAR_INJECT {
                                " in favor of the \"sidecar.istio.io/inject\" label"
                            } else {
                                ""
                            };
                            out.push(
                                Message::new(
                                    &DEPRECATED_ANNOTATION,
                                    r,
                                    vec![key.into(), extra.into()],
                                )
                                .at(at.clone()),
                            );
                        }
                    }
                    if def.resources.contains(&"Any") {
                        continue;
                    }
                    if !def.resources.contains(&kind.name()) {
                        out.push(
                            Message::new(
                                &MISPLACED_ANNOTATION,
                                r,
                                vec![key.into(), def.resources.join(", ").into()],
                            )
                            .at(at),
                        );
                        continue;
                    }
                    if let Err(problem) = annotations_catalogue::validate_value(key, value) {
                        out.push(
                            Message::new(&INVALID_ANNOTATION, r, vec![key.into(), problem.into()])
                                .at(at),
                        );
                    }
                }
            }
        }
    }
}
