//! Policy attachment and visibility: `targetRef`/`targetRefs` (`PolicyTargetReference`), the
//! selector/targetRef one-of rule, and `exportTo`.

use super::hosts::is_dns1123_label;
use super::labels::validate_workload_selector;
use super::messages::{max_len_msg, required, too_many_msg};
use super::{Path, Report};
use crate::meta::{PolicyTargetReference, WorkloadSelector};

/// The kinds a `targetRef` may point at, as (canonical group, version, kind): Istio's
/// `allowedTargetRefs`.
const ALLOWED_TARGET_REFS: &[(&str, &str, &str)] = &[
    ("core", "v1", "Service"),
    ("networking.istio.io", "v1", "ServiceEntry"),
    ("gateway.networking.k8s.io", "v1", "Gateway"),
    ("gateway.networking.k8s.io", "v1", "GatewayClass"),
];

/// The CRD pattern for `group`: empty, or dot-separated lower-case DNS labels.
fn is_group_name(s: &str) -> bool {
    s.is_empty()
        || s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// The CRD pattern for `kind`: `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`.
fn is_kind_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// One `PolicyTargetReference`: the CRD schema rules (group and kind patterns and lengths,
/// `name` required, no `namespace`) and Istio's `validatePolicyTargetReference` (one of the
/// allowed kinds).
pub fn validate_target_ref(r: &PolicyTargetReference, path: &Path, report: &mut Report) {
    let group = path.field("group");
    if r.group.len() > 253 {
        report.error(&group, max_len_msg(&group, &r.group, 253));
    }
    if !is_group_name(&r.group) {
        report.error(
            &group,
            format!(
                "Invalid value: {:?}: {group} in body should match '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
                r.group
            ),
        );
    }
    let kind = path.field("kind");
    if r.kind.is_empty() {
        required(report, &kind, "");
    } else {
        if r.kind.len() > 63 {
            report.error(&kind, max_len_msg(&kind, &r.kind, 63));
        }
        if !is_kind_name(&r.kind) {
            report.error(
                &kind,
                format!(
                    "Invalid value: {:?}: {kind} in body should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$'",
                    r.kind
                ),
            );
        }
    }
    let name = path.field("name");
    if r.name.is_empty() {
        required(report, &name, "targetRef name must be set");
    } else if r.name.len() > 253 {
        report.error(&name, max_len_msg(&name, &r.name, 253));
    }
    if !r.namespace.is_empty() {
        report.error(
            &path.field("namespace"),
            "Invalid value: cross namespace referencing is not currently supported (targetRef namespace must not be set)",
        );
    }
    let canonical = if r.group.is_empty() {
        "core"
    } else {
        r.group.as_str()
    };
    if !ALLOWED_TARGET_REFS
        .iter()
        .any(|(g, _, k)| *g == canonical && *k == r.kind)
    {
        let allowed: Vec<String> = ALLOWED_TARGET_REFS
            .iter()
            .map(|(g, v, k)| format!("{g}/{v}/{k}"))
            .collect();
        report.error(
            path,
            format!(
                "targetRef must be to one of [{}] but was {}/{}",
                allowed.join(" "),
                r.group,
                r.kind
            ),
        );
    }
}

/// `targetRefs`: at most 16 entries, each as [`validate_target_ref`].
pub fn validate_target_refs(refs: &[PolicyTargetReference], path: &Path, report: &mut Report) {
    if refs.len() > 16 {
        report.error(path, too_many_msg(refs.len(), 16));
    }
    for (i, r) in refs.iter().enumerate() {
        validate_target_ref(r, &path.index(i), report);
    }
}

/// `selector`, `targetRef` and `targetRefs` of a policy (found at `path`): at most one may be
/// set (the CRD's one-of rule, whose message names the selector `selector_word`: `selector`
/// for the security kinds, `workloadSelector` for Telemetry and WasmPlugin), each valid.
pub fn validate_policy_attachment(
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    selector_word: &str,
    path: &Path,
    report: &mut Report,
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        report.error(
            path,
            format!(
                "Invalid value: \"object\": only one of targetRefs or {selector_word} can be set"
            ),
        );
    }
    validate_workload_selector(selector, &path.field("selector"), report);
    if let Some(r) = target_ref {
        validate_target_ref(r, &path.field("targetRef"), report);
    }
    validate_target_refs(target_refs, &path.field("targetRefs"), report);
}

/// Istio's `visibility.Instance`: the reserved `exportTo` values.
const EXPORT_PRIVATE: &str = ".";
const EXPORT_PUBLIC: &str = "*";
const EXPORT_NONE: &str = "~";

/// Istio's `validateExportTo`: `.`, `*` or namespace names, without duplicates, `*` only alone;
/// `~` (no one) only for a ServiceEntry (`is_service_entry`), and only alone; a DestinationRule
/// with a workload selector (`is_destination_rule_with_selector`) only to its own namespace.
/// Returns each problem with the index of the entry it is about (`None`: the whole list).
pub fn validate_export_to(
    namespace: &str,
    export_to: &[String],
    is_service_entry: bool,
    is_destination_rule_with_selector: bool,
) -> Vec<(Option<usize>, String)> {
    let mut errs = Vec::new();
    if export_to.is_empty() {
        return errs;
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, e) in export_to.iter().enumerate() {
        let key = if e == EXPORT_PRIVATE {
            namespace.to_string()
        } else {
            e.clone()
        };
        if seen.contains(&key) {
            if &key != e {
                errs.push((
                    Some(i),
                    format!("duplicate entries in exportTo: . and current namespace {namespace}"),
                ));
            } else {
                errs.push((
                    Some(i),
                    format!("duplicate entries in exportTo for entry {e}"),
                ));
            }
            continue;
        }
        if is_service_entry && e == EXPORT_NONE {
            seen.push(key);
            continue;
        }
        // Go validates the substituted key, so "." becomes the namespace name here; "." in a
        // resource without a namespace stays the current namespace.
        match key.as_str() {
            EXPORT_PRIVATE | EXPORT_PUBLIC | "" => seen.push(key),
            EXPORT_NONE => errs.push((
                Some(i),
                "exportTo ~ (none) is not allowed for Istio configuration objects".into(),
            )),
            k if is_dns1123_label(k) => seen.push(key),
            _ => errs.push((
                Some(i),
                format!(
                    "invalid exportTo entry {e:?}: only .,*, or a valid DNS 1123 label is allowed as exportTo entry"
                ),
            )),
        }
    }
    if is_destination_rule_with_selector && !seen.is_empty() {
        if seen.iter().any(|s| s == namespace) {
            if seen.len() > 1 {
                errs.push((
                    None,
                    "destination rule with workload selector cannot have multiple entries in exportTo".into(),
                ));
            }
        } else {
            errs.push((
                None,
                "destination rule with workload selector cannot have exportTo beyond current namespace".into(),
            ));
        }
    }
    if seen.iter().any(|s| s == EXPORT_PUBLIC) && export_to.len() > 1 {
        errs.push((
            None,
            "cannot have both public (*) and non-public exportTo values for a resource".into(),
        ));
    }
    if seen.iter().any(|s| s == EXPORT_NONE) && export_to.len() > 1 {
        errs.push((
            None,
            "cannot export service entry to no one (~) and someone".into(),
        ));
    }
    errs
}

/// Records [`validate_export_to`]'s problems: each at its entry (`path[i]`) or at `path`.
pub fn report_export_to(errs: Vec<(Option<usize>, String)>, path: &Path, report: &mut Report) {
    for (i, e) in errs {
        match i {
            Some(i) => report.error(&path.index(i), e),
            None => report.error(path, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn one_of_selector_or_target_refs() {
        let mut r = Report::default();
        let sel = WorkloadSelector {
            match_labels: [("app".to_string(), "a".to_string())].into(),
        };
        let tr = PolicyTargetReference {
            kind: "Service".into(),
            name: "s".into(),
            ..Default::default()
        };
        validate_policy_attachment(
            Some(&sel),
            Some(&tr),
            &[],
            "selector",
            &Path::root("spec"),
            &mut r,
        );
        assert_eq!(r.issues.len(), 1);
        assert!(
            r.issues[0]
                .message
                .contains("only one of targetRefs or selector can be set")
        );
    }

    #[test]
    fn export_to() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(validate_export_to("ns", &s(&[".", "ns1"]), false, false).is_empty());
        assert!(!validate_export_to("ns", &s(&[".", "ns"]), false, false).is_empty());
        assert!(!validate_export_to("ns", &s(&["*", "ns1"]), false, false).is_empty());
        assert!(!validate_export_to("ns", &s(&["~"]), false, false).is_empty());
        assert!(validate_export_to("ns", &s(&["~"]), true, false).is_empty());
        assert!(!validate_export_to("ns", &s(&["~", "a"]), true, false).is_empty());
        assert!(!validate_export_to("ns", &s(&["a"]), false, true).is_empty());
        assert!(validate_export_to("ns", &s(&["."]), false, true).is_empty());
    }
}
