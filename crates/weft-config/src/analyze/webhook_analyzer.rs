//! `webhook.Analyzer`: Istio's sidecar injection webhooks must not overlap (a pod matched by
//! two would be injected twice) and must point at a control plane Service that exists.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhook;

use super::messages::INVALID_WEBHOOK;
use super::{Analyzer, Context, Message, util};
use crate::resource::{Kind, Resource, Spec};

/// Reports overlapping Istio injection webhooks and webhooks referring to missing Services.
pub struct WebhookAnalyzer;

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The revisions a webhook configuration serves: its `istio.io/rev` label and any revision its
/// selectors match on.
fn revisions(r: &Resource, hooks: &[MutatingWebhook]) -> BTreeSet<String> {
    let mut revs = BTreeSet::new();
    if let Some(rev) = r.metadata.labels.get(util::REVISION_LABEL) {
        revs.insert(rev.clone());
    }
    for h in hooks {
        for sel in [&h.namespace_selector, &h.object_selector]
            .into_iter()
            .flatten()
        {
            if let Some(rev) = sel
                .match_labels
                .as_ref()
                .and_then(|m| m.get(util::REVISION_LABEL))
            {
                revs.insert(rev.clone());
            }
            for e in sel.match_expressions.iter().flatten() {
                if e.key == util::REVISION_LABEL {
                    revs.extend(e.values.iter().flatten().cloned());
                }
            }
        }
    }
    revs
}

impl Analyzer for WebhookAnalyzer {
    fn name(&self) -> &'static str {
        "webhook.Analyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the validity of Istio webhooks"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        // "configuration/webhook" -> (configuration resource, webhook)
        let mut hooks: BTreeMap<String, (&Resource, &MutatingWebhook)> = BTreeMap::new();
        let mut revs = BTreeSet::new();
        for r in ctx.of_kind(Kind::MutatingWebhookConfiguration) {
            let Spec::MutatingWebhookConfiguration(w) = &r.spec else {
                continue;
            };
            let list = w.webhooks.as_deref().unwrap_or(&[]);
            let these = revisions(r, list);
            let is_istio = list.iter().any(|h| h.name.ends_with("istio.io"));
            if these.is_empty() && !is_istio {
                continue;
            }
            for h in list {
                hooks.insert(format!("{}/{}", util::full_name(r), h.name), (r, h));
            }
            revs.extend(these);
        }

        let base_ns = [
            labels(&[]),
            labels(&[(util::INJECTION_LABEL, "enabled")]),
            labels(&[(util::INJECTION_LABEL, "disabled")]),
        ];
        let base_obj = [
            labels(&[]),
            labels(&[(util::SIDECAR_INJECT, "true")]),
            labels(&[(util::SIDECAR_INJECT, "false")]),
        ];
        let with_revs = |base: &[BTreeMap<String, String>]| {
            let mut all = base.to_vec();
            for rev in &revs {
                for b in base {
                    let mut l = b.clone();
                    l.insert(util::REVISION_LABEL.to_string(), rev.clone());
                    all.push(l);
                }
            }
            all
        };
        let ns_labels = with_revs(&base_ns);
        let obj_labels = with_revs(&base_obj);

        // Each distinct overlap is reported once per webhook.
        let mut overlaps: HashMap<&str, BTreeSet<Vec<&str>>> = HashMap::new();
        for nl in &ns_labels {
            for ol in &obj_labels {
                let matches: Vec<&str> = hooks
                    .iter()
                    .filter(|(_, (_, h))| {
                        util::label_selector_matches(h.namespace_selector.as_ref(), nl)
                            && util::label_selector_matches(h.object_selector.as_ref(), ol)
                    })
                    .map(|(k, _)| k.as_str())
                    .collect();
                if matches.len() > 1 {
                    for m in &matches {
                        let others: Vec<&str> =
                            matches.iter().copied().filter(|o| o != m).collect();
                        overlaps.entry(m).or_default().insert(others);
                    }
                }
            }
        }
        for (key, (r, _)) in &hooks {
            for others in overlaps.get(key.as_str()).into_iter().flatten() {
                out.push(Message::new(
                    &INVALID_WEBHOOK,
                    r,
                    vec![format!(
                        "Webhook overlaps with others: [{}]. This may cause injection to occur twice.",
                        others.join(" ")
                    )
                    .into()],
                ));
            }
        }

        for (r, h) in hooks.values() {
            let Some(svc) = &h.client_config.service else {
                continue;
            };
            if ctx.get(Kind::Service, &svc.namespace, &svc.name).is_none() {
                out.push(Message::new(
                    &INVALID_WEBHOOK,
                    r,
                    vec![format!(
                        "Injector refers to a control plane service that does not exist: {}/{}.",
                        svc.namespace, svc.name
                    )
                    .into()],
                ));
            }
        }
    }
}
