//! Checks shared by the Telemetry, WasmPlugin, EnvoyFilter, ProxyConfig and MeshConfig
//! validators: Kubernetes schema wording, selectors, policy target references, Istio's
//! duration, address and host-name rules.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::duration::Duration;
use crate::meta::{PolicyTargetReference, WorkloadSelector};
use crate::validate::{Path, Report};

/// The Kubernetes schema message for a string shorter than `n`:
/// `Invalid value: "": spec.x in body should be at least n chars long`.
pub(crate) fn min_len_msg(path: &Path, value: &str, n: usize) -> String {
    format!("Invalid value: {value:?}: {path} in body should be at least {n} chars long")
}

/// The Kubernetes schema message for a string longer than `n`.
pub(crate) fn max_len_msg(path: &Path, value: &str, n: usize) -> String {
    format!(
        "Too long: may not be more than {n} bytes ({path} is {} bytes long)",
        value.len()
    )
}

/// Records a Kubernetes "Required value" error.
pub(crate) fn required(report: &mut Report, path: &Path) {
    report.error(path, "Required value");
}

/// Checks a string's length against the schema's `minLength`/`maxLength`.
pub(crate) fn check_len(report: &mut Report, path: &Path, value: &str, min: usize, max: usize) {
    if value.chars().count() < min {
        report.error(path, min_len_msg(path, value, min));
    }
    if value.chars().count() > max {
        report.error(path, max_len_msg(path, value, max));
    }
}

/// `selector` of type `istio.type.v1beta1.WorkloadSelector`: the CRD rules (no empty or
/// wildcard keys, no wildcard values, values at most 63 characters, at most 4096 labels) and
/// Istio's warning for a selector without labels.
pub(crate) fn validate_workload_selector(
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

/// Label-map rules shared by `matchLabels` (type.v1beta1) and `labels` (networking
/// WorkloadSelector). `istio_wording` picks the CRD messages of the former.
pub(crate) fn check_selector_labels(
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
        if k.contains('*') {
            if istio_wording {
                report.error(
                    path,
                    format!(
                        "Invalid value: \"object\": wildcard not allowed in label key match ({k:?})"
                    ),
                );
            } else {
                report.error(
                    &p,
                    format!("wildcard is not supported in selector: \"{k}={v}\""),
                );
            }
        }
        if v.contains('*') {
            if istio_wording {
                report.error(
                    &p,
                    format!("Invalid value: {v:?}: wildcard not allowed in label value match"),
                );
            } else {
                report.error(
                    &p,
                    format!("Invalid value: {v:?}: wildcard is not supported in selector"),
                );
            }
        }
        if v.chars().count() > 63 {
            report.error(&p, max_len_msg(&p, v, 63));
        }
    }
}

/// The kinds a `targetRef` may point at, as (canonical group, kind).
const ALLOWED_TARGET_REFS: &[(&str, &str)] = &[
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
];

fn is_dns_group(s: &str) -> bool {
    s.split('.').all(|l| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

fn is_kind_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// One `PolicyTargetReference`: schema rules plus Istio's allowed kinds.
pub(crate) fn validate_target_ref(r: &PolicyTargetReference, path: &Path, report: &mut Report) {
    let group = path.field("group");
    if r.group.len() > 253 {
        report.error(&group, max_len_msg(&group, &r.group, 253));
    }
    if !r.group.is_empty() && !is_dns_group(&r.group) {
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
        required(report, &kind);
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
        report.error(&name, "Required value: targetRef name must be set");
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
        .any(|(g, k)| *g == canonical && *k == r.kind)
    {
        report.error(
            path,
            format!(
                "targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry gateway.networking.k8s.io/v1/Gateway] but was {}/{}",
                r.group, r.kind
            ),
        );
    }
}

/// `selector`, `targetRef` and `targetRefs` together: at most one may be set, each valid.
pub(crate) fn validate_policy_attachment(
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    path: &Path,
    report: &mut Report,
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        report.error(
            path,
            "Invalid value: \"object\": only one of targetRefs or workloadSelector can be set",
        );
    }
    validate_workload_selector(selector, &path.field("selector"), report);
    if let Some(r) = target_ref {
        validate_target_ref(r, &path.field("targetRef"), report);
    }
    let refs = path.field("targetRefs");
    if target_refs.len() > 16 {
        report.error(
            &refs,
            format!(
                "Too many: {}: must have at most 16 items",
                target_refs.len()
            ),
        );
    }
    for (i, r) in target_refs.iter().enumerate() {
        validate_target_ref(r, &refs.index(i), report);
    }
}

/// Istio's `ValidateDuration`: at least 1ms, in whole milliseconds.
pub(crate) fn validate_duration(d: Duration) -> Result<(), String> {
    let d = d.get();
    if d < std::time::Duration::from_millis(1) {
        return Err("duration must be greater than 1ms".into());
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("only durations to ms precision are supported".into());
    }
    Ok(())
}

/// The CRD rule `duration(self) >= duration('1ms')`.
pub(crate) fn check_min_1ms(report: &mut Report, path: &Path, d: Duration) {
    if d.get() < std::time::Duration::from_millis(1) {
        report.error(
            path,
            format!("Invalid value: \"{d}\": must be a valid duration greater than 1ms"),
        );
    }
}

/// Istio's `ValidatePort`.
pub(crate) fn validate_port(port: i64) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// Kubernetes `IsDNS1123Label`.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    crate::validate::common::is_dns1123_label(s)
}

/// Istio's `ValidateDNS1123Labels` (top-level domain not all-numeric, trailing dot allowed).
fn validate_dns1123_labels(domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts.last().copied().unwrap_or("");
    if !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

fn dns_preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    Ok(())
}

/// Istio's `ValidateFQDN`.
pub(crate) fn validate_fqdn(fqdn: &str) -> Result<(), String> {
    dns_preconditions(fqdn)?;
    validate_dns1123_labels(fqdn)
}

/// Istio's `ValidateWildcardDomain`: like an FQDN, with an optional wildcard first label.
pub(crate) fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    dns_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    let wildcard_label_ok = first == "*"
        || first
            .strip_prefix('*')
            .is_some_and(|r| !r.is_empty() && is_dns1123_label_suffix(r))
        || is_dns1123_label(first);
    if !wildcard_label_ok {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => validate_dns1123_labels(r),
        None => Ok(()),
    }
}

/// The part of a wildcard label after `*` (`*-foo`): DNS label characters, not ending in `-`.
fn is_dns1123_label_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() < 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Istio's `ValidateIPAddress`.
pub(crate) fn validate_ip(addr: &str) -> Result<(), String> {
    addr.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("{addr} is not a valid IP"))
}

/// Istio's `ValidateIPSubnet`: an IP address or a CIDR block.
pub(crate) fn validate_ip_subnet(subnet: &str) -> Result<(), String> {
    if subnet.matches('/').count() == 1 {
        return subnet
            .parse::<ipnet::IpNet>()
            .map(|_| ())
            .map_err(|_| format!("{subnet} is not a valid CIDR block"));
    }
    validate_ip(subnet)
}

/// Istio's `ValidateProxyAddress`: `host:port` with a valid port and an FQDN or IP host.
pub(crate) fn validate_proxy_address(addr: &str) -> Result<(), String> {
    let (host, port) = split_host_port(addr)
        .ok_or_else(|| format!("unable to split {addr:?}: missing port in address"))?;
    let port: i64 = port
        .parse()
        .map_err(|_| format!("port ({port}) is not a number"))?;
    validate_port(port)?;
    if validate_fqdn(host).is_err() && host.parse::<IpAddr>().is_err() {
        return Err(format!("{host:?} is not a valid hostname or an IP address"));
    }
    Ok(())
}

/// Splits `host:port` or `[v6]:port`.
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = tail.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = addr.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// Istio's `ValidatePartialWildCard`.
fn validate_partial_wildcard(host: &str) -> Result<(), String> {
    if host.contains('*') && host.len() != 1 && !host.starts_with("*.") {
        return Err(format!("partial wildcard {host:?} not allowed"));
    }
    Ok(())
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for sidecar-style (non-gateway) hosts.
pub(crate) fn validate_namespace_slash_hostname(hostname: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let Some((ns, host)) = hostname.split_once('/') else {
        errs.push("host must be of form namespace/dnsName".into());
        return errs;
    };
    if ns.is_empty() || host.is_empty() {
        errs.push("config namespace and dnsName in host entry cannot be empty".into());
    }
    if ns != "*" && ns != "." && ns != "~" && !is_dns1123_label(ns) {
        errs.push(format!("invalid namespace value {ns:?} in sidecar"));
    }
    if host != "*" && !host.contains('.') {
        errs.push("short names (non FQDN) are not allowed".into());
    }
    if let Err(e) = validate_wildcard_domain(host) {
        errs.push(e);
    }
    if let Err(e) = validate_partial_wildcard(host) {
        errs.push(e);
    }
    errs
}

/// Reads a JSON value as text for messages.
pub(crate) fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_host_rules() {
        assert!(validate_fqdn("foo.bar.com").is_ok());
        assert!(validate_fqdn("foo.123").is_err());
        assert!(validate_fqdn("Foo.com").is_err());
        assert!(validate_wildcard_domain("*.foo.com").is_ok());
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("foo.*.com").is_err());
        assert!(validate_proxy_address("zipkin.istio-system:9411").is_ok());
        assert!(validate_proxy_address("10.0.0.1:80").is_ok());
        assert!(validate_proxy_address("[::1]:80").is_ok());
        assert!(validate_proxy_address("zipkin").is_err());
        assert!(validate_proxy_address("zipkin:0").is_err());
        assert!(validate_proxy_address("bad_host:80").is_err());
        assert!(validate_namespace_slash_hostname("ns/foo.bar.com").is_empty());
        assert!(!validate_namespace_slash_hostname("ns/foo").is_empty());
    }

    #[test]
    fn durations() {
        assert!(validate_duration(Duration::from_millis(1)).is_ok());
        assert!(validate_duration(Duration(std::time::Duration::from_micros(1500))).is_err());
        assert!(validate_duration(Duration::from_millis(0)).is_err());
    }
}
