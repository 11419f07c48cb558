//! `authn.BlockedCIDRsAnalyzer`: RequestAuthentications exist but istiod does not restrict
//! which addresses JWKS URIs may be fetched from (IST0175 on the istiod Deployment).

use super::messages::JWKS_URI_FETCH_UNRESTRICTED;
use super::{Analyzer, Context, Message};
use crate::resource::{Kind, Spec};

/// The istiod setting that blocks JWKS fetches to the listed CIDRs.
const BLOCKED_CIDRS_ENV: &str = "BLOCKED_CIDRS_IN_JWKS_URIS";

/// How many RequestAuthentication names the message lists before summarizing.
const MAX_NAMES: usize = 5;

/// Warns on every istiod Deployment (label `app: istiod`) whose containers do not set
/// `BLOCKED_CIDRS_IN_JWKS_URIS` while RequestAuthentication resources exist.
pub struct BlockedCidrsAnalyzer;

impl Analyzer for BlockedCidrsAnalyzer {
    fn name(&self) -> &'static str {
        "authn.BlockedCIDRsAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks that BLOCKED_CIDRS_IN_JWKS_URIS is configured on istiod when RequestAuthentication resources exist"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        let names: Vec<String> = ctx
            .of_kind(Kind::RequestAuthentication)
            .map(|r| format!("{}/{}", r.namespace(), r.name()))
            .collect();
        if names.is_empty() {
            return;
        }
        for d in ctx.of_kind(Kind::Deployment) {
            if d.metadata.labels.get("app").map(String::as_str) != Some("istiod") {
                continue;
            }
            let Spec::Deployment(dep) = &d.spec else {
                continue;
            };
            let configured = dep
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|pod| {
                    pod.containers.iter().any(|c| {
                        c.env.iter().flatten().any(|e| {
                            e.name == BLOCKED_CIDRS_ENV
                                && e.value.as_deref().is_some_and(|v| !v.is_empty())
                        })
                    })
                });
            if configured {
                continue;
            }
            out.push(Message::new(
                &JWKS_URI_FETCH_UNRESTRICTED,
                d,
                vec![names.len().into(), format_names(&names).into()],
            ));
        }
    }
}

/// `a, b, c` for up to five names, then `..., and N more`.
fn format_names(names: &[String]) -> String {
    if names.len() <= MAX_NAMES {
        names.join(", ")
    } else {
        format!(
            "{}, and {} more",
            names[..MAX_NAMES].join(", "),
            names.len() - MAX_NAMES
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_summarized_after_five() {
        let names: Vec<String> = (1..=7).map(|i| format!("ns/ra{i}")).collect();
        assert_eq!(
            format_names(&names),
            "ns/ra1, ns/ra2, ns/ra3, ns/ra4, ns/ra5, and 2 more"
        );
        assert_eq!(format_names(&names[..2]), "ns/ra1, ns/ra2");
    }
}
