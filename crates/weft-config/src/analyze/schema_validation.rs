//! `schemaValidation.CollectionValidationAnalyzer(collections.<Kind>)`: runs weft's validation
//! of each Istio kind as an analyzer, as istioctl does, so that invalid resources show up among
//! the analysis messages. Errors become IST0106 SchemaValidationError and warnings IST0133
//! SchemaWarning, except the VirtualService rule checks that have codes of their own (IST0130
//! VirtualServiceUnreachableRule, IST0131 VirtualServiceIneffectiveMatch).

use super::messages::{
    SCHEMA_VALIDATION_ERROR, SCHEMA_WARNING, VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
    VIRTUAL_SERVICE_UNREACHABLE_RULE,
};
use super::{Analyzer, Arg, Context, Message};
use crate::diag::Severity;
use crate::resource::{Kind, Resource};
use crate::validate::validate_resource_in;

/// Validates every resource of one Istio kind.
pub struct CollectionValidationAnalyzer {
    kind: Kind,
    name: &'static str,
}

impl CollectionValidationAnalyzer {
    /// The validation analyzer for `kind`, named `name` as Istio names it.
    pub const fn new(kind: Kind, name: &'static str) -> Self {
        CollectionValidationAnalyzer { kind, name }
    }
}

/// Splits `rule R not used (REASON)` / `rule R match M is not used (duplicate/overlapping match
/// in rule D)` warnings (Istio's wording for unreachable VirtualService rules) into their
/// parameters.
fn vs_rule_warning(text: &str) -> Option<(&'static super::MessageType, Vec<Arg>)> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("virtualservice rule ")? + "virtualservice rule ".len();
    let rest = &text[start..];
    if let Some((rule, tail)) = rest.split_once(" match ")
        && let Some((matchno, tail)) =
            tail.split_once(" is not used (duplicate/overlapping match in rule ")
    {
        let dup = tail.trim_end().trim_end_matches('.').strip_suffix(')')?;
        return Some((
            &VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
            vec![rule.into(), matchno.into(), dup.into()],
        ));
    }
    let (rule, tail) = rest.split_once(" not used (")?;
    let reason = tail.trim_end().trim_end_matches('.').strip_suffix(')')?;
    Some((
        &VIRTUAL_SERVICE_UNREACHABLE_RULE,
        vec![rule.into(), reason.into()],
    ))
}

/// The validation messages for one resource.
pub fn validation_messages(r: &Resource, root_namespace: &str) -> Vec<Message> {
    validate_resource_in(r, root_namespace)
        .into_iter()
        .map(|d| {
            let detail = match &d.path {
                Some(p) if !d.message.starts_with(p.as_str()) => format!("{p}: {}", d.message),
                _ => d.message.clone(),
            };
            let m = match d.severity {
                Severity::Error => Message::new(&SCHEMA_VALIDATION_ERROR, r, vec![detail.into()]),
                Severity::Warning => match vs_rule_warning(&d.message) {
                    Some((ty, args)) if r.kind == Kind::VirtualService => Message::new(ty, r, args),
                    _ => Message::new(&SCHEMA_WARNING, r, vec![detail.into()]),
                },
            };
            match d.path {
                Some(p) => m.at(p),
                None => m,
            }
        })
        .collect()
}

impl Analyzer for CollectionValidationAnalyzer {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        "Runs schema validation as an analyzer on the resources of one Istio kind"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Message>) {
        for r in ctx.of_kind(self.kind) {
            out.extend(validation_messages(r, ctx.root_namespace()));
        }
    }
}

macro_rules! schema_analyzers {
    ($($id:ident: $kind:ident),* $(,)?) => {
        $(
            #[doc = concat!("Schema validation of ", stringify!($kind), " resources.")]
            pub static $id: CollectionValidationAnalyzer = CollectionValidationAnalyzer::new(
                Kind::$kind,
                concat!("schemaValidation.CollectionValidationAnalyzer(collections.", stringify!($kind), ")"),
            );
        )*
    };
}

schema_analyzers! {
    VIRTUAL_SERVICE: VirtualService,
    DESTINATION_RULE: DestinationRule,
    GATEWAY: Gateway,
    SERVICE_ENTRY: ServiceEntry,
    WORKLOAD_ENTRY: WorkloadEntry,
    WORKLOAD_GROUP: WorkloadGroup,
    SIDECAR: Sidecar,
    ENVOY_FILTER: EnvoyFilter,
    PROXY_CONFIG: ProxyConfig,
    PEER_AUTHENTICATION: PeerAuthentication,
    REQUEST_AUTHENTICATION: RequestAuthentication,
    AUTHORIZATION_POLICY: AuthorizationPolicy,
    TELEMETRY: Telemetry,
    WASM_PLUGIN: WasmPlugin,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_istio_rule_warnings() {
        let (ty, args) = vs_rule_warning(
            "virtualService rule #1 not used (only the last rule can have no matches)",
        )
        .unwrap();
        assert_eq!(ty.code, "IST0130");
        assert_eq!(
            args,
            vec![
                Arg::from("#1"),
                Arg::from("only the last rule can have no matches")
            ]
        );
        let (ty, args) = vs_rule_warning(
            "VirtualService rule #2 match #0 is not used (duplicate/overlapping match in rule #1)",
        )
        .unwrap();
        assert_eq!(ty.code, "IST0131");
        assert_eq!(
            args,
            vec![Arg::from("#2"), Arg::from("#0"), Arg::from("#1")]
        );
        assert!(vs_rule_warning("something else").is_none());
    }
}
