//! Checks shared by many kinds: DNS names, hosts, ports, labels, regexes, addresses.

use std::net::IpAddr;

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A DNS label as Istio checks host names: letters (any case), digits and '-', not at the ends.
fn is_dns_label_any_case(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Istio's `ValidateFQDN`: a DNS name of at most 255 characters whose labels are valid. A
/// trailing dot is allowed.
pub fn validate_fqdn(host: &str) -> Result<(), String> {
    let h = host.strip_suffix('.').unwrap_or(host);
    if h.is_empty() {
        return Err("host name must not be empty".into());
    }
    if h.len() > 255 {
        return Err(format!("host name {host:?} is longer than 255 characters"));
    }
    for label in h.split('.') {
        if !is_dns_label_any_case(label) {
            return Err(format!(
                "host name {host:?} is not a valid DNS name: label {label:?} must be 1-63 letters, digits or '-', not starting or ending with '-'"
            ));
        }
    }
    Ok(())
}

/// Istio's `ValidateWildcardDomain`: a DNS name, optionally starting with `*.`, or `*` alone.
pub fn validate_wildcard_domain(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("host name must not be empty".into());
    }
    if host.len() > 255 {
        return Err(format!("host name {host:?} is longer than 255 characters"));
    }
    if host == "*" {
        return Ok(());
    }
    let rest = host
        .strip_prefix("*.")
        .or_else(|| host.strip_prefix('*'))
        .unwrap_or(host);
    if rest.contains('*') {
        return Err(format!(
            "host {host:?}: a wildcard is only allowed as the first label (\"*.example.com\" or \"*\")"
        ));
    }
    if rest.is_empty() {
        return Err(format!("host {host:?} has nothing after the wildcard"));
    }
    validate_fqdn(rest).map_err(|_| {
        format!("host {host:?} is not a valid domain name: labels are 1-63 letters, digits or '-', with an optional leading \"*.\"")
    })
}

/// A port number in 1..=65535.
pub fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// True when `s` is an IPv4 or IPv6 address.
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An IP address or CIDR block (`10.0.0.0/8`, `::1`).
pub fn validate_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.parse::<IpAddr>().is_ok() || s.parse::<ipnet::IpNet>().is_ok() {
        Ok(())
    } else {
        Err(format!("{s:?} is not an IP address or CIDR block"))
    }
}

/// Kubernetes label key: optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric.
pub fn validate_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Err(format!(
            "invalid label key {k:?}: prefix {p:?} must be a DNS subdomain"
        ));
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "invalid label key {k:?}: name part must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// Kubernetes label value: empty, or at most 63 characters as in a label key's name part.
pub fn validate_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_qualified_name_part(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {v:?}: must be empty or 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A regular expression in the RE2 dialect Envoy uses. Rust's `regex` accepts the same syntax
/// (no backreferences or look-around), so a pattern it refuses is refused by Envoy too.
pub fn validate_regex(re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Err("regex must not be empty".into());
    }
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| format!("invalid regex {re:?}: {e}"))
}

/// A percentage in 0..=100.
pub fn validate_percent(p: f64) -> Result<(), String> {
    if (0.0..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("percentage {p} must be in the range 0..100"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("*.foo.com").is_ok());
        assert!(validate_wildcard_domain("reviews").is_ok());
        assert!(validate_wildcard_domain("foo.*.com").is_err());
        assert!(validate_wildcard_domain("-bad.com").is_err());
        assert!(validate_fqdn("a.b.c.").is_ok());
    }

    #[test]
    fn labels() {
        assert!(validate_label_key("app").is_ok());
        assert!(validate_label_key("gateway.networking.k8s.io/gateway-name").is_ok());
        assert!(validate_label_key("-x").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value("v1").is_ok());
        assert!(validate_label_value("a b").is_err());
    }
}
