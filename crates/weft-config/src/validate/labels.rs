//! Labels and label selectors.
//!
//! Istio checks label maps with `labels.Instance.Validate` ([`validate_labels`]: upper case in
//! key prefixes allowed, no length limit on values). Kubernetes' stricter rules
//! ([`validate_label_key`], [`validate_label_value`]) apply to `metadata.labels`, which the API
//! server checks. Selectors come in two types: `istio.type.v1beta1.WorkloadSelector`
//! (`matchLabels`, [`validate_workload_selector`]) and networking's older
//! `WorkloadSelector` (`labels`, [`validate_labels_selector`]).

use std::collections::BTreeMap;

use super::hosts::{is_dns1123_label, is_k8s_dns1123_subdomain};
use super::messages::max_len_msg;
use super::{Path, Report};
use crate::meta::WorkloadSelector;

/// `(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, any length.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// What a label key must look like, appended to Istio's terse `invalid tag key` messages.
const LABEL_KEY_RULE: &str = "invalid label key: an optional DNS prefix and '/', then 1-63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric";

fn validate_tag_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.is_empty() || !p.split('.').all(is_dns1123_label) {
            return Err(format!("invalid tag key: {k:?} ({LABEL_KEY_RULE})"));
        }
        if p.len() > 253 {
            return Err(format!(
                "invalid tag key: {k:?} (DNS prefix is too long; {LABEL_KEY_RULE})"
            ));
        }
    }
    if !is_label_name(name) {
        return Err(format!("invalid tag key: {k:?} ({LABEL_KEY_RULE})"));
    }
    if name.len() > 63 {
        return Err(format!(
            "invalid tag key: {k:?} (name is too long; {LABEL_KEY_RULE})"
        ));
    }
    Ok(())
}

/// Istio's `labels.Instance.Validate`: every key a qualified label name, every value empty or
/// a label name (of any length). Returns one message per bad key or value, in key order;
/// each starts with Istio's text (`invalid tag key: "a b"`) and says what is allowed.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        if let Err(e) = validate_tag_key(k) {
            errs.push(e);
        }
        if !v.is_empty() && !is_label_name(v) {
            errs.push(format!(
                "invalid tag value: {v:?} (invalid label value: must be empty or alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)"
            ));
        }
    }
    errs
}

/// Records every [`validate_labels`] problem at `path`.
pub fn report_labels(labels: &BTreeMap<String, String>, path: &Path, report: &mut Report) {
    for e in validate_labels(labels) {
        report.error(path, e);
    }
}

/// Kubernetes label key (for `metadata.labels`): an optional lower-case DNS-subdomain prefix
/// and `/`, then a name of at most 63 alphanumerics, '-', '_' and '.', starting and ending with
/// an alphanumeric.
pub fn validate_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && !is_k8s_dns1123_subdomain(p)
    {
        return Err(format!(
            "invalid label key {k:?}: prefix {p:?} must be a DNS subdomain"
        ));
    }
    if name.len() > 63 || !is_label_name(name) {
        return Err(format!(
            "invalid label key {k:?}: name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// Kubernetes label value (for `metadata.labels`): empty, or at most 63 characters as in a
/// label key's name part.
pub fn validate_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || (v.len() <= 63 && is_label_name(v)) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {v:?}: must be empty or 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

/// `selector` of type `istio.type.v1beta1.WorkloadSelector`: the CRD rules (no empty or
/// wildcard keys, no wildcard values, values at most 63 characters, at most 4096 labels) and
/// Istio's warning for a selector without labels.
pub fn validate_workload_selector(
    selector: Option<&WorkloadSelector>,
    path: &Path,
    report: &mut Report,
) {
    let Some(sel) = selector else { return };
    let labels = path.field("matchLabels");
    check_selector_labels(&sel.match_labels, &labels, report, true);
    if sel.match_labels.is_empty() {
        report.warning(path, "workload selector specified without labels");
    }
}

/// Networking's `WorkloadSelector { labels }` (Sidecar, ServiceEntry, EnvoyFilter): Istio's
/// `ValidateAlphaWorkloadSelector` plus the CRD limits, `labels` found at
/// `path.labels`. A selector without labels is accepted with a warning naming `owner`
/// (`sidecar: workload selector specified without labels, ...`).
pub fn validate_labels_selector(
    labels: &BTreeMap<String, String>,
    path: &Path,
    report: &mut Report,
    owner: &str,
) {
    check_selector_labels(labels, &path.field("labels"), report, false);
    if labels.is_empty() {
        report.warning(
            path,
            format!(
                "{owner}: workload selector specified without labels, will be applied to all services in namespace"
            ),
        );
    }
}

/// Label-map rules shared by `matchLabels` (type.v1beta1) and `labels` (networking
/// WorkloadSelector). `istio_wording` picks the CRD messages of the former.
fn check_selector_labels(
    labels: &BTreeMap<String, String>,
    path: &Path,
    report: &mut Report,
    istio_wording: bool,
) {
    let max = if istio_wording { 4096 } else { 256 };
    if labels.len() > max {
        report.error(
            path,
            format!(
                "Too many: {}: must have at most {max} items ({path} may have at most {max} properties)",
                labels.len()
            ),
        );
    }
    for (k, v) in labels {
        let p = path.key(k);
        if k.is_empty() {
            report.error(
                path,
                format!(
                    "Invalid value: \"object\": key must not be empty (empty key is not supported in selector: \"={v}\")"
                ),
            );
        }
        if !istio_wording {
            // Istio's `ValidateAlphaWorkloadSelector`: one message for a wildcard anywhere.
            if k.contains('*') || v.contains('*') {
                report.error(
                    &p,
                    format!("wildcard is not supported in selector: \"{k}={v}\""),
                );
            }
        } else {
            if k.contains('*') {
                report.error(
                    path,
                    format!(
                        "Invalid value: \"object\": wildcard not allowed in label key match ({k:?})"
                    ),
                );
            }
            if v.contains('*') {
                report.error(
                    &p,
                    format!("Invalid value: {v:?}: wildcard not allowed in label value match"),
                );
            }
        }
        if v.chars().count() > 63 {
            report.error(&p, max_len_msg(&p, v, 63));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_labels() {
        assert!(validate_label_key("app").is_ok());
        assert!(validate_label_key("gateway.networking.k8s.io/gateway-name").is_ok());
        assert!(validate_label_key("-x").is_err());
        assert!(validate_label_key("Example.com/x").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1").is_ok());
        assert!(validate_label_value("a b").is_err());
        assert!(validate_label_value(&"a".repeat(64)).is_err());
    }

    #[test]
    fn istio_labels() {
        let mut l = BTreeMap::new();
        l.insert("app".to_string(), "Foo_bar".to_string());
        l.insert("Example.com/x".to_string(), "a".repeat(64));
        assert!(validate_labels(&l).is_empty());
        l.insert("bad key".to_string(), "v".to_string());
        assert_eq!(validate_labels(&l).len(), 1);
    }

    #[test]
    fn selectors() {
        let mut r = Report::default();
        let sel = WorkloadSelector {
            match_labels: [("app".to_string(), "x*".to_string())].into(),
        };
        validate_workload_selector(Some(&sel), &Path::root("spec.selector"), &mut r);
        assert_eq!(r.issues.len(), 1);
        assert!(
            r.issues[0]
                .message
                .contains("wildcard not allowed in label value match")
        );
        let mut r = Report::default();
        validate_labels_selector(
            &BTreeMap::new(),
            &Path::root("spec.workloadSelector"),
            &mut r,
            "sidecar",
        );
        assert_eq!(r.issues.len(), 1);
        assert!(
            r.issues[0]
                .message
                .starts_with("sidecar: workload selector")
        );
    }
}
