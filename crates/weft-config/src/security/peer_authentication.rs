//! `PeerAuthentication` (`security.istio.io`): which mutual TLS mode a workload's inbound
//! traffic must use, workload-wide and per port.

use std::collections::BTreeMap;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

use crate::meta::WorkloadSelector;
use crate::serde_util::{self, ProtoEnum};
use crate::validate::labels::validate_workload_selector;
use crate::validate::{Context, Path, Report, Validate};

/// `PeerAuthentication` spec: the mTLS mode for the selected workloads (or the namespace /
/// mesh when no selector), optionally overridden per port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// Workloads the policy applies to; unset means every workload in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// The mTLS setting for the selected workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// mTLS settings per port number (keys are port numbers written as strings).
    #[serde(
        default,
        alias = "port_level_mtls",
        deserialize_with = "port_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub port_level_mtls: BTreeMap<String, MutualTls>,
}

/// Istio's `PeerAuthentication.MutualTLS`: the mTLS mode of a scope.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutualTls {
    /// The mode; unset inherits from the parent scope.
    #[serde(
        default,
        deserialize_with = "serde_util::opt_enum",
        skip_serializing_if = "Option::is_none"
    )]
    pub mode: Option<Mode>,
}

/// Istio's `PeerAuthentication.MutualTLS.Mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Inherit from the parent scope (PERMISSIVE when nothing is set anywhere).
    #[default]
    #[serde(rename = "UNSET")]
    Unset,
    /// Plain text only; mTLS is not used.
    #[serde(rename = "DISABLE")]
    Disable,
    /// Accept both mTLS and plain text.
    #[serde(rename = "PERMISSIVE")]
    Permissive,
    /// Accept mTLS only.
    #[serde(rename = "STRICT")]
    Strict,
}

impl ProtoEnum for Mode {
    const NAMES: &'static [&'static str] = &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];
}

impl PeerAuthentication {
    /// The configured workload-level mode (`UNSET` when absent).
    pub fn mode(&self) -> Mode {
        self.mtls.as_ref().and_then(|m| m.mode).unwrap_or_default()
    }

    /// True when the policy selects specific workloads (a selector with labels).
    pub fn has_workload_selector(&self) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    }

    /// The per-port settings whose keys parse as valid port numbers.
    pub fn port_modes(&self) -> impl Iterator<Item = (u32, Mode)> + '_ {
        self.port_level_mtls.iter().filter_map(|(k, v)| {
            let port = parse_port_key(k).ok()?;
            Some((port, v.mode.unwrap_or_default()))
        })
    }
}

/// `portLevelMtls` is `minProperties: 1` in the CRD: `{}` is refused while decoding, since
/// the decoded map cannot tell an empty map from an absent one.
fn port_map<'de, D>(d: D) -> Result<BTreeMap<String, MutualTls>, D::Error>
where
    D: Deserializer<'de>,
{
    // `null` is the same as leaving the field out.
    let Some(m) = Option::<BTreeMap<String, MutualTls>>::deserialize(d)? else {
        return Ok(BTreeMap::new());
    };
    if m.is_empty() {
        return Err(D::Error::custom(
            "spec.portLevelMtls in body should have at least 1 properties (omit portLevelMtls rather than leaving it empty)",
        ));
    }
    Ok(m)
}

/// Parses a `portLevelMtls` key the way the CRD's CEL rule does (`int(key)` in 1..65535).
fn parse_port_key(k: &str) -> Result<u32, String> {
    let n: i64 = k.parse().map_err(|_| {
        format!("type conversion error from 'string' to 'int': port key {k:?} is not a number")
    })?;
    if (1..=65535).contains(&n) {
        Ok(n as u32)
    } else {
        Err(format!("port must be between 1-65535, got {n}"))
    }
}

impl Validate for PeerAuthentication {
    fn validate(&self, _ctx: &Context<'_>, path: &Path, report: &mut Report) {
        validate_workload_selector(self.selector.as_ref(), &path.field("selector"), report);
        let ports = path.field("portLevelMtls");
        if !self.port_level_mtls.is_empty() && !self.has_workload_selector() {
            report.error(
                &ports,
                "portLevelMtls requires selector: a mesh- or namespace-wide PeerAuthentication cannot have port level mTLS; add selector.matchLabels",
            );
        }
        for k in self.port_level_mtls.keys() {
            if let Err(e) = parse_port_key(k) {
                report.error(&ports.key(k), e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ObjectMeta;
    use crate::resource::Kind;

    fn check(pa: &PeerAuthentication) -> Report {
        let meta = ObjectMeta::default();
        let ctx = Context {
            kind: Kind::PeerAuthentication,
            metadata: &meta,
            root_namespace: "istio-system",
        };
        let mut r = Report::default();
        pa.validate(&ctx, &Path::root("spec"), &mut r);
        r
    }

    #[test]
    fn port_keys() {
        assert_eq!(parse_port_key("8080"), Ok(8080));
        assert!(parse_port_key("0").is_err());
        assert!(parse_port_key("65536").is_err());
        assert!(parse_port_key("http").is_err());
    }

    #[test]
    fn port_level_needs_selector_with_labels() {
        let mut pa = PeerAuthentication::default();
        pa.port_level_mtls.insert("80".into(), MutualTls::default());
        assert!(check(&pa).has_errors());
        pa.selector = Some(WorkloadSelector::default());
        assert!(check(&pa).has_errors());
        pa.selector
            .as_mut()
            .map(|s| s.match_labels.insert("app".into(), "a".into()));
        assert!(!check(&pa).has_errors());
        assert_eq!(pa.port_modes().collect::<Vec<_>>(), vec![(80, Mode::Unset)]);
    }

    #[test]
    fn dry_run_annotation_refused() {
        let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: pa\n  namespace: ns\n  annotations: {istio.io/dry-run: \"true\"}\nspec:\n  mtls: {mode: STRICT}\n";
        let parsed = crate::parse_str(text, "pa.yaml");
        let diags = crate::validate::validate_resource(&parsed.resources[0]);
        assert!(
            diags
                .iter()
                .any(|d| d.path.as_deref() == Some("metadata.annotations[istio.io/dry-run]")),
            "{diags:?}"
        );
    }
}
