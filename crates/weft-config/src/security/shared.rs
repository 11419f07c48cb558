//! Pieces shared by the three security kinds: enum decoding with Kubernetes' wording,
//! workload selector and policy target checks, and the `istio.io/dry-run` annotation rule.

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::meta::{PolicyTargetReference, WorkloadSelector};
use crate::validate::{Context, Path, Report, common};

/// The annotation that turns an AuthorizationPolicy into a dry run (only ALLOW and DENY).
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// A proto enum whose wire names are known, so that an unknown value can be reported with
/// the list of allowed ones (Kubernetes' `Unsupported value` wording).
pub trait ProtoEnum: DeserializeOwned + Serialize {
    /// Every value name, exactly as the proto spells it.
    const NAMES: &'static [&'static str];
}

/// Deserializes an optional proto enum from its name. An unknown name is refused with
/// `Unsupported value: "X": supported values: ...`, a non-string with Kubernetes' type wording.
pub fn opt_enum<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: ProtoEnum,
{
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match serde_json::from_value::<T>(Value::String(s.clone())) {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                let allowed: Vec<String> = T::NAMES.iter().map(|n| format!("{n:?}")).collect();
                Err(D::Error::custom(format!(
                    "Unsupported value: {s:?}: supported values: {}",
                    allowed.join(", ")
                )))
            }
        },
        Some(other) => Err(D::Error::custom(format!(
            "Invalid value: {}: must be of type string, one of {}",
            json_type(&other),
            T::NAMES.join(", ")
        ))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `path: Required value` (Kubernetes' wording for a missing required field).
pub fn required(report: &mut Report, path: &Path, what: &str) {
    report.error(path, format!("{path}: Required value: {what}"));
}

/// Kubernetes' `minLength: 1` wording.
pub fn too_short(report: &mut Report, path: &Path) {
    report.error(
        path,
        format!("{path} in body should be at least 1 chars long"),
    );
}

/// Kubernetes' `maxLength` wording.
pub fn too_long(report: &mut Report, path: &Path, max: usize) {
    report.error(
        path,
        format!("{path}: Too long: may not be more than {max} bytes"),
    );
}

/// Kubernetes' `maxItems` wording.
pub fn too_many(report: &mut Report, path: &Path, len: usize, max: usize) {
    report.error(
        path,
        format!("{path}: Too many: {len}: must have at most {max} items"),
    );
}

/// Reports every empty string of a list that must hold non-empty values.
pub fn non_empty_items(report: &mut Report, path: &Path, items: &[String]) {
    for (i, item) in items.iter().enumerate() {
        if item.is_empty() {
            too_short(report, &path.index(i));
        }
    }
}

/// Istio's workload selector rules (CRD schema and `validateWorkloadSelector`): label keys are
/// non-empty, no `*` in keys or values, values at most 63 characters, at most 4096 labels; a
/// selector without labels is accepted with a warning.
pub fn validate_selector(selector: Option<&WorkloadSelector>, path: &Path, report: &mut Report) {
    let Some(sel) = selector else { return };
    let labels = path.field("matchLabels");
    if sel.match_labels.len() > 4096 {
        report.error(
            &labels,
            format!(
                "{labels}: Too many: {}: must have at most 4096 items",
                sel.match_labels.len()
            ),
        );
    }
    for (k, v) in &sel.match_labels {
        let p = labels.key(k);
        if k.is_empty() {
            report.error(
                &p,
                "key must not be empty (empty label keys are not supported in a selector)",
            );
        }
        if k.contains('*') {
            report.error(
                &p,
                format!(
                    "wildcard not allowed in label key match: {k:?}; selectors match labels exactly"
                ),
            );
        }
        if v.contains('*') {
            report.error(
                &p,
                format!("wildcard not allowed in label value match: {v:?}; selectors match labels exactly"),
            );
        }
        if v.len() > 63 {
            too_long(report, &p, 63);
        }
    }
    if sel.match_labels.is_empty() {
        report.warning(
            path,
            "workload selector specified without labels; it selects every workload in scope",
        );
    }
}

/// The `(group, kind)` pairs a policy `targetRef` may point at (Istio's allowed target kinds).
const ALLOWED_TARGETS: &[(&str, &str)] = &[
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

fn group_pattern_ok(g: &str) -> bool {
    g.is_empty() || common::is_dns1123_subdomain(g)
}

fn kind_pattern_ok(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Checks one `targetRef` with the CRD schema and Istio's rules: `kind` and `name` required,
/// `group`/`kind` well-formed and one of the supported targets, no cross-namespace reference.
pub fn validate_target_ref(r: &PolicyTargetReference, path: &Path, report: &mut Report) {
    let group = path.field("group");
    if r.group.len() > 253 {
        too_long(report, &group, 253);
    }
    if !group_pattern_ok(&r.group) {
        report.error(
            &group,
            format!(
                "{group} in body should match '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$': {:?} is not a DNS subdomain",
                r.group
            ),
        );
    }
    let kind = path.field("kind");
    if r.kind.is_empty() {
        required(report, &kind, "the kind of the target resource");
    } else {
        if r.kind.len() > 63 {
            too_long(report, &kind, 63);
        }
        if !kind_pattern_ok(&r.kind) {
            report.error(
                &kind,
                format!(
                    "{kind} in body should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$': {:?}",
                    r.kind
                ),
            );
        }
    }
    let name = path.field("name");
    if r.name.is_empty() {
        required(report, &name, "targetRef name must be set");
    } else if r.name.len() > 253 {
        too_long(report, &name, 253);
    }
    if !r.namespace.is_empty() {
        report.error(
            &path.field("namespace"),
            "cross namespace referencing is not currently supported: targetRef namespace must not be set",
        );
    }
    if !r.kind.is_empty() {
        let canonical = if r.group.is_empty() {
            "core"
        } else {
            r.group.as_str()
        };
        if !ALLOWED_TARGETS
            .iter()
            .any(|(g, k)| *g == canonical && *k == r.kind)
        {
            report.error(
                path,
                format!(
                    "targetRef must be to one of Service (group \"\"), ServiceEntry (networking.istio.io), Gateway or GatewayClass (gateway.networking.k8s.io), but was {}/{}",
                    r.group, r.kind
                ),
            );
        }
    }
}

/// Checks `targetRefs` (at most 16 entries, each as [`validate_target_ref`]).
pub fn validate_target_refs(refs: &[PolicyTargetReference], path: &Path, report: &mut Report) {
    if refs.len() > 16 {
        too_many(report, path, refs.len(), 16);
    }
    for (i, r) in refs.iter().enumerate() {
        validate_target_ref(r, &path.index(i), report);
    }
}

/// At most one of `selector`, `targetRef` and `targetRefs` may be set.
pub fn validate_one_of_selector(
    selector: bool,
    target_ref: bool,
    target_refs: bool,
    path: &Path,
    report: &mut Report,
) {
    if usize::from(selector) + usize::from(target_ref) + usize::from(target_refs) > 1 {
        report.error(
            path,
            "only one of targetRefs or selector can be set (selector, targetRef and targetRefs are mutually exclusive)",
        );
    }
}

/// Go's `strconv.ParseBool`, which Istio uses for the dry-run annotation.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The `istio.io/dry-run` annotation is only understood on AuthorizationPolicy; other kinds
/// that carry it are refused, as Istio does.
pub fn reject_dry_run_annotation(ctx: &Context<'_>, report: &mut Report) {
    if ctx.metadata.annotations.contains_key(DRY_RUN_ANNOTATION) {
        report.error(
            &Path::root("metadata").field("annotations").key(DRY_RUN_ANNOTATION),
            format!(
                "unsupported annotation {DRY_RUN_ANNOTATION} on {}: only AuthorizationPolicy supports it; remove the annotation",
                ctx.kind
            ),
        );
    }
}

/// Is `s` an IP address or a CIDR block as Go's `netip` parses them?
pub fn validate_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.contains('/') {
        s.parse::<ipnet::IpNet>()
            .map(|_| ())
            .map_err(|_| format!("bad CIDR range ({s})"))
    } else {
        s.parse::<std::net::IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("bad IP address ({s})"))
    }
}

/// A port written as a string: decimal digits only, at most 65535 (Istio's `ValidatePorts`).
pub fn validate_port_string(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u32>().is_ok_and(|p| p <= 65535)
    {
        Ok(())
    } else {
        Err(format!(
            "bad port ({s}): must be a decimal number between 0 and 65535"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bool() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }

    #[test]
    fn ports_and_ips() {
        assert!(validate_port_string("0").is_ok());
        assert!(validate_port_string("65535").is_ok());
        assert!(validate_port_string("65536").is_err());
        assert!(validate_port_string("+80").is_err());
        assert!(validate_port_string("port1").is_err());
        assert!(validate_ip_or_cidr("10.0.0.0/8").is_ok());
        assert!(validate_ip_or_cidr("1.2.3.4/24").is_ok());
        assert!(validate_ip_or_cidr("::1").is_ok());
        assert!(validate_ip_or_cidr("a.b.c.d").is_err());
        assert!(validate_ip_or_cidr("1.2.3.4/33").is_err());
    }

    #[test]
    fn target_refs() {
        let mut r = Report::default();
        let ok = PolicyTargetReference {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            name: "gw".into(),
            namespace: String::new(),
        };
        validate_target_ref(&ok, &Path::root("spec.targetRef"), &mut r);
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        let svc = PolicyTargetReference {
            kind: "Service".into(),
            name: "s".into(),
            ..Default::default()
        };
        validate_target_ref(&svc, &Path::root("spec.targetRef"), &mut r);
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        let bad = PolicyTargetReference {
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "d".into(),
            namespace: "other".into(),
        };
        validate_target_ref(&bad, &Path::root("spec.targetRef"), &mut r);
        assert_eq!(r.issues.len(), 2, "{:?}", r.issues);
    }
}
