//! Host names: DNS labels, FQDNs, wildcard domains, `namespace/host` entries and host overlap,
//! with Istio's semantics (`pkg/config/validation/agent`, `pkg/config/labels`, `pkg/config/host`).
//!
//! Istio's DNS labels are laxer than Kubernetes' in one way: they accept upper case
//! ([`is_dns1123_label`]). A top-level domain may not be all digits (so an IP address is not a
//! host name), and a wildcard label may be `*`, `*foo` or `*-foo`. Kubernetes' own stricter
//! rules ([`is_k8s_dns1123_label`], [`is_k8s_dns1123_subdomain`]: lower case only) apply
//! where the API server checks names: `metadata.name`, `metadata.namespace` and label-key
//! prefixes.

use super::addresses::is_valid_ip;
use super::go::go_atoi;

/// Istio's `labels.IsDNS1123Label`: `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`, at most 63
/// characters. Upper case is allowed (unlike Kubernetes' [`is_k8s_dns1123_label`]).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Kubernetes' `IsDNS1123Label`: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
/// Lower case only: the rule for namespace names.
pub fn is_k8s_dns1123_label(s: &str) -> bool {
    is_dns1123_label(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// Kubernetes' `IsDNS1123Subdomain`: dot-separated [`is_k8s_dns1123_label`]s, at most 253
/// characters. The rule for object names and label-key prefixes.
pub fn is_k8s_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_k8s_dns1123_label)
}

/// Istio's `labels.IsWildcardDNS1123Label`: `*`, or a DNS label optionally prefixed by `*`
/// or `*-`.
pub fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s.len() > 63 {
        return false;
    }
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    is_dns1123_label(rest)
}

fn check_dns1123_preconditions(name: &str) -> Result<(), String> {
    if name.len() > 255 {
        return Err(format!("domain name {name:?} too long (max 255)"));
    }
    if name.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    Ok(())
}

/// Istio's `ValidateDNS1123Labels`: every dot-separated label a DNS label (a trailing dot is
/// allowed), and the top-level domain not all digits as Go's `strconv.Atoi` reads them.
pub fn validate_dns1123_labels(domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts.last().copied().unwrap_or("");
    if go_atoi(tld).is_some() {
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

/// Istio's `ValidateFQDN`: a DNS name of valid labels, at most 255 characters, no wildcard.
pub fn validate_fqdn(fqdn: &str) -> Result<(), String> {
    check_dns1123_preconditions(fqdn)?;
    validate_dns1123_labels(fqdn)
}

/// Istio's `ValidateWildcardDomain`: a DNS name whose first label may be a wildcard (`*`,
/// `*.example.com`, `*foo.example.com`).
pub fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    validate_wildcard_domain_for_gateway(false, domain)
}

/// Istio's check for hosts of a VirtualService bound to a gateway: as
/// [`validate_wildcard_domain`], and for SNI routes (`sni`) also the `outbound_.<port>_...`
/// names Istio generates for auto-passthrough.
pub fn validate_wildcard_domain_for_gateway(sni: bool, domain: &str) -> Result<(), String> {
    check_dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if sni && first == "outbound_" {
        // Istio's unanchored regex `outbound_.([0-8].*).*`: "outbound_", any character, a
        // digit 0-8.
        let ok = domain.match_indices("outbound_").any(|(i, _)| {
            let mut chars = domain[i + "outbound_".len()..].chars();
            chars.next().is_some() && chars.next().is_some_and(|c| ('0'..='8').contains(&c))
        });
        if ok {
            return Ok(());
        }
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        Some(r) => validate_dns1123_labels(r),
        None => Ok(()),
    }
}

/// Istio's `ValidatePartialWildCard`: a wildcard only as `*` or a leading `*.`.
pub fn validate_partial_wildcard(host: &str) -> Result<(), String> {
    if host.contains('*') && host.len() != 1 && !host.starts_with("*.") {
        return Err(format!("partial wildcard {host:?} not allowed"));
    }
    Ok(())
}

fn validate_sidecar_or_gateway_hostname_part(hostname: &str, is_gateway: bool) -> Vec<String> {
    let mut errs = Vec::new();
    if hostname != "*" && !hostname.contains('.') {
        errs.push("short names (non FQDN) are not allowed".to_string());
    }
    if let Err(e) = validate_wildcard_domain(hostname) {
        if !is_gateway {
            errs.push(e.clone());
        }
        // Gateways also accept an IP address as the host.
        if !is_valid_ip(hostname) {
            errs.push(e);
        }
    }
    if let Err(e) = validate_partial_wildcard(hostname) {
        errs.push(e);
    }
    errs.dedup();
    errs
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for Gateway server hosts (`is_gateway`)
/// and Sidecar-style hosts (Sidecar egress, MeshConfig extension providers):
/// `namespace/dnsName`, where a Gateway also accepts a bare host. Returns every problem.
pub fn validate_namespace_slash_wildcard_hostname(hostname: &str, is_gateway: bool) -> Vec<String> {
    let Some((ns, name)) = hostname.split_once('/') else {
        if is_gateway {
            return validate_sidecar_or_gateway_hostname_part(hostname, true);
        }
        return vec!["host must be of form namespace/dnsName".to_string()];
    };
    let mut errs = Vec::new();
    if ns.is_empty() || name.is_empty() {
        errs.push("config namespace and dnsName in host entry cannot be empty".to_string());
    }
    if is_gateway {
        if ns != "*" && ns != "." && !is_dns1123_label(ns) {
            errs.push(format!("invalid namespace value {ns:?} in gateway"));
        }
    } else if ns != "*" && ns != "." && ns != "~" && !is_dns1123_label(ns) {
        errs.push(format!("invalid namespace value {ns:?} in sidecar"));
    }
    errs.extend(validate_sidecar_or_gateway_hostname_part(name, is_gateway));
    errs
}

/// Istio's `ValidateTrustDomain`: dot-separated DNS labels, a trailing dot allowed.
pub fn validate_trust_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    let parts: Vec<&str> = domain.split('.').collect();
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!("trust domain name {domain:?} invalid"));
        }
    }
    Ok(())
}

/// Istio's `host.Name.Matches`: two (possibly wildcard) hosts overlap.
pub fn host_matches(a: &str, b: &str) -> bool {
    let aw = a.starts_with('*');
    let bw = b.starts_with('*');
    match (aw, bw) {
        (true, true) => {
            if a.len() < b.len() {
                b[1..].ends_with(&a[1..])
            } else {
                a[1..].ends_with(&b[1..])
            }
        }
        (true, false) => b.ends_with(&a[1..]),
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// Istio's `host.Name.SubsetOf`: every name `a` covers is also covered by `b`.
pub fn host_subset_of(a: &str, b: &str) -> bool {
    let aw = a.starts_with('*');
    let bw = b.starts_with('*');
    match (aw, bw) {
        (true, true) => a.len() >= b.len() && a[1..].ends_with(&b[1..]),
        (true, false) => false,
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_istio_and_kubernetes() {
        assert!(is_dns1123_label("Reviews"));
        assert!(!is_k8s_dns1123_label("Reviews"));
        assert!(is_k8s_dns1123_label("reviews-v1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_k8s_dns1123_subdomain("a.b-c.d"));
        assert!(!is_k8s_dns1123_subdomain("A.b"));
        assert!(is_wildcard_dns1123_label("*-foo"));
        assert!(!is_wildcard_dns1123_label("*-"));
    }

    #[test]
    fn wildcard_domains() {
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("*.foo.com").is_ok());
        assert!(validate_wildcard_domain("*foo.baz").is_ok());
        assert!(validate_wildcard_domain("*-foo.baz").is_ok());
        assert!(validate_wildcard_domain("Foo.Bar").is_ok());
        assert!(validate_wildcard_domain("reviews").is_ok());
        assert!(validate_wildcard_domain("foo.*").is_err());
        assert!(validate_wildcard_domain("foo.*.com").is_err());
        assert!(validate_wildcard_domain("-bad.com").is_err());
        assert!(validate_wildcard_domain("1.1.1.1").is_err());
        assert!(validate_wildcard_domain("").is_err());
        assert!(validate_fqdn("istio.io.").is_ok());
        assert!(validate_fqdn("a.b.c.").is_ok());
        assert!(validate_fqdn("foobar*123").is_err());
    }

    #[test]
    fn wildcard_domains_follow_istio() {
        for ok in [
            "*",
            "*foo",
            "*foo.bar.com",
            "*.bar.com",
            "reviews",
            "Reviews.Default",
            "a.b.",
        ] {
            assert!(validate_wildcard_domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "foo.*.com",
            "1.1.1.1",
            "-",
            "foo*.com",
            &"x".repeat(256),
        ] {
            assert!(validate_wildcard_domain(bad).is_err(), "{bad}");
        }
        assert!(validate_wildcard_domain("").unwrap_err().contains("empty"));
        assert!(
            validate_wildcard_domain(&"x".repeat(300))
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn fqdn_refuses_wildcards_and_numeric_tld() {
        assert!(validate_fqdn("google.com").is_ok());
        assert!(validate_fqdn("foo.bar.com").is_ok());
        assert!(validate_fqdn("*.google.com").is_err());
        assert!(validate_fqdn("10.0.0.1").is_err());
        assert!(validate_fqdn("foo.123").is_err());
        // Istio's labels allow upper case (Kubernetes' do not).
        assert!(validate_fqdn("Foo.com").is_ok());
    }

    #[test]
    fn gateway_sni_domains() {
        assert!(
            validate_wildcard_domain_for_gateway(true, "outbound_.80_._.e2e.foobar.mesh").is_ok()
        );
        assert!(
            validate_wildcard_domain_for_gateway(
                true,
                "outbound_.thisIsNotAPort_._.e2e.foobar.mesh"
            )
            .is_err()
        );
        assert!(
            validate_wildcard_domain_for_gateway(false, "outbound_.80_._.e2e.foobar.mesh").is_err()
        );
    }

    #[test]
    fn namespace_slash_hosts() {
        assert!(validate_namespace_slash_wildcard_hostname("ns/foo.bar.com", false).is_empty());
        assert!(!validate_namespace_slash_wildcard_hostname("ns/foo", false).is_empty());
        assert!(!validate_namespace_slash_wildcard_hostname("foo.bar.com", false).is_empty());
        assert!(validate_namespace_slash_wildcard_hostname("foo.bar.com", true).is_empty());
        assert!(validate_namespace_slash_wildcard_hostname("./1.2.3.4", true).is_empty());
        assert!(validate_namespace_slash_wildcard_hostname("~/*", false).is_empty());
    }

    #[test]
    fn trust_domains() {
        assert!(validate_trust_domain("cluster.local").is_ok());
        assert!(validate_trust_domain("Cluster.Local.").is_ok());
        assert!(validate_trust_domain("").is_err());
        assert!(validate_trust_domain("a..b").is_err());
    }

    #[test]
    fn hosts_overlap() {
        assert!(host_matches("*.foo.bar", "*.bar"));
        assert!(host_matches("*", "foo.com"));
        assert!(!host_matches("*.foo.com", "foo.com"));
        assert!(host_subset_of("a.foo.com", "*.foo.com"));
        assert!(!host_subset_of("*.com", "*.foo.com"));
    }
}
