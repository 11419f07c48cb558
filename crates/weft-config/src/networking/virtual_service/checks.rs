//! Istio's own host, port, address, label, regex and duration checks, with Istio's exact
//! semantics and wording (`pkg/config/validation/agent` and `pkg/config/labels`).
//!
//! These differ in small ways from the Kubernetes-flavoured helpers in `validate::common`:
//! Istio's DNS labels accept upper case, a top-level domain may not be all digits, wildcard
//! labels may be `*foo` or `*-foo`, and label values have no length limit. VirtualService,
//! Gateway and Sidecar validation all use these so that verdicts match Istio's.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::duration::Duration;

/// Istio's DNS-1123 label: `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A DNS label that may carry a leading wildcard: `*`, `*foo`, `*-foo`, or a plain label.
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

/// True when Go's `strconv.Atoi` would accept `s` (optional sign, decimal digits, fits in i64).
pub fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Checks every dot-separated label of `domain`; a trailing dot is allowed and the top-level
/// domain may not be all digits.
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

/// Istio's `ValidateFQDN`: a DNS name of valid labels, at most 255 characters.
pub fn validate_fqdn(fqdn: &str) -> Result<(), String> {
    check_dns1123_preconditions(fqdn)?;
    validate_dns1123_labels(fqdn)
}

/// Istio's `ValidateWildcardDomain`: a DNS name whose first label may be a wildcard.
pub fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    check_dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
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

/// Istio's check for hosts of a VirtualService bound to a gateway: as
/// [`validate_wildcard_domain`], and for SNI routes also the `outbound_.<port>_...` names
/// Istio generates for auto-passthrough.
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

/// A port number in 1..=65535 (Istio's `ValidatePort`).
pub fn validate_port(port: i64) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// True for an IPv4 or IPv6 address (an IPv6 zone such as `fe80::1%eth0` is accepted, as Go's
/// `netip.ParseAddr` does).
pub fn is_valid_ip(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    match s.split_once('%') {
        Some((addr, zone)) => !zone.is_empty() && addr.parse::<std::net::Ipv6Addr>().is_ok(),
        None => false,
    }
}

/// Istio's `ValidateIPAddress`.
pub fn validate_ip_address(s: &str) -> Result<(), String> {
    if is_valid_ip(s) {
        Ok(())
    } else {
        Err(format!("{s} is not a valid IP"))
    }
}

/// Istio's `ValidateIPSubnet`: an address, or a CIDR block when the text has one `/`.
pub fn validate_ip_subnet(s: &str) -> Result<(), String> {
    if s.matches('/').count() == 1 {
        let ok = match s.split_once('/') {
            Some((addr, bits)) => {
                addr.parse::<IpAddr>().is_ok()
                    && !bits.is_empty()
                    && bits.bytes().all(|c| c.is_ascii_digit())
                    && !(bits.len() > 1 && bits.starts_with('0'))
                    && s.parse::<ipnet::IpNet>().is_ok()
            }
            None => false,
        };
        return if ok {
            Ok(())
        } else {
            Err(format!("{s} is not a valid CIDR block"))
        };
    }
    validate_ip_address(s)
}

/// Istio's `ValidateUnixAddress` (the part after `unix://`): an absolute file path, or an
/// abstract socket starting with `@`.
pub fn validate_unix_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("unix address must not be empty".into());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

/// Istio's `ValidatePartialWildCard`: a wildcard is only `*` or a leading `*.`.
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

/// Istio's `ValidateNamespaceSlashWildcardHostname` for Gateway server hosts
/// (`is_gateway`) and Sidecar egress hosts: `namespace/dnsName`, where a Gateway also
/// accepts a bare host.
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

fn is_label_name(s: &str) -> bool {
    // (?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn validate_tag_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.is_empty() || !p.split('.').all(is_dns1123_label) {
            return Err(format!("invalid tag key: {k:?}"));
        }
        if p.len() > 253 {
            return Err(format!("invalid tag key: {k:?} (DNS prefix is too long)"));
        }
    }
    if !is_label_name(name) {
        return Err(format!("invalid tag key: {k:?}"));
    }
    if name.len() > 63 {
        return Err(format!("invalid tag key: {k:?} (name is too long)"));
    }
    Ok(())
}

/// Istio's `labels.Instance.Validate`: every key a Kubernetes label name, every value empty or
/// a label value. Returns one message per bad key or value, sorted by key.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        if let Err(e) = validate_tag_key(k) {
            errs.push(e);
        }
        if !v.is_empty() && !is_label_name(v) {
            errs.push(format!("invalid tag value: {v:?}"));
        }
    }
    errs
}

/// Istio's `ValidateDuration`: at least 1ms, in whole milliseconds.
pub fn validate_duration(d: Duration) -> Result<(), String> {
    let d = d.get();
    if d < std::time::Duration::from_millis(1) {
        return Err("duration must be greater than 1ms".into());
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("only durations to ms precision are supported".into());
    }
    Ok(())
}

/// Istio's `ValidatePortName`: a DNS-1123 label.
pub fn validate_port_name(name: &str) -> Result<(), String> {
    if is_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!("invalid port name: {name}"))
    }
}

/// The port protocols Istio knows (`pkg/config/protocol`), parsed case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC.
    Grpc,
    /// gRPC-Web.
    GrpcWeb,
    /// HTTP/1.1.
    Http,
    /// An outbound HTTP proxy port (sidecar egress only).
    HttpProxy,
    /// HTTP/2.
    Http2,
    /// HTTP over TLS.
    Https,
    /// Opaque TCP.
    Tcp,
    /// TLS with SNI.
    Tls,
    /// UDP (not proxied).
    Udp,
    /// MongoDB.
    Mongo,
    /// Redis.
    Redis,
    /// MySQL.
    MySql,
    /// Any other name.
    Unsupported,
}

impl Protocol {
    /// Parses a protocol name ignoring case; anything else is `Unsupported`.
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "http" => Protocol::Http,
            "http_proxy" => Protocol::HttpProxy,
            "http2" => Protocol::Http2,
            "https" => Protocol::Https,
            "tls" => Protocol::Tls,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::MySql,
            _ => Protocol::Unsupported,
        }
    }

    /// Protocols carried over HTTP.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::HttpProxy
                | Protocol::Grpc
                | Protocol::GrpcWeb
        )
    }

    /// Protocols carried over TLS (HTTPS, TLS).
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }
}

/// Istio's `ValidateProtocol`: empty (sniffed) or a known protocol.
pub fn validate_protocol(p: &str) -> Result<(), String> {
    if !p.is_empty() && Protocol::parse(p) == Protocol::Unsupported {
        return Err(format!("unsupported protocol: {p}"));
    }
    Ok(())
}

/// Istio's `validateExportTo` for configuration other than ServiceEntry: `.`, `*` or
/// namespace names, without duplicates, and `*` only alone.
pub fn validate_export_to(namespace: &str, export_to: &[String]) -> Vec<String> {
    let mut errs = Vec::new();
    if export_to.is_empty() {
        return errs;
    }
    let mut seen: Vec<String> = Vec::new();
    for e in export_to {
        let key = if e == "." {
            namespace.to_string()
        } else {
            e.clone()
        };
        if seen.contains(&key) {
            if &key != e {
                errs.push(format!(
                    "duplicate entries in exportTo: . and current namespace {namespace}"
                ));
            } else {
                errs.push(format!("duplicate entries in exportTo for entry {e}"));
            }
            continue;
        }
        // Go validates the substituted key, so "." becomes the namespace name here.
        let check = match key.as_str() {
            "." | "*" => Ok(()),
            "~" => Err("exportTo ~ (none) is not allowed for Istio configuration objects"),
            k if is_dns1123_label(k) => Ok(()),
            _ => Err("only .,*, or a valid DNS 1123 label is allowed as exportTo entry"),
        };
        match check {
            Ok(()) => seen.push(key),
            Err(m) => errs.push(m.to_string()),
        }
    }
    if seen.iter().any(|k| k == "*") && export_to.len() > 1 {
        errs.push(
            "cannot have both public (*) and non-public exportTo values for a resource".into(),
        );
    }
    errs
}

/// Istio's regex check (`validateStringRegexp`): at most 1024 characters, RE2 syntax.
pub fn validate_regex(re: &str, location: &str) -> Result<(), String> {
    if re.len() > 1024 {
        return Err(format!(
            "{location:?}: regex is too large, max length allowed is 1024"
        ));
    }
    regex::Regex::new(re).map(|_| ()).map_err(|e| {
        format!(
            "{location:?}: {}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)",
            e.to_string().lines().last().unwrap_or("invalid regex").trim()
        )
    })
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

/// Go's `net.SplitHostPort`: `host:port`, `[v6]:port` or `:port`.
pub fn split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let missing_port = || Err(format!("address {hostport}: missing port in address"));
    let too_many = || Err(format!("address {hostport}: too many colons in address"));
    let Some(i) = hostport.rfind(':') else {
        return missing_port();
    };
    let (host, j, k) = if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return Err(format!("address {hostport}: missing ']' in address"));
        };
        if end + 1 == hostport.len() {
            return missing_port();
        } else if end + 1 != i {
            if hostport.as_bytes()[end + 1] == b':' {
                return too_many();
            }
            return missing_port();
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..i];
        if host.contains(':') {
            return too_many();
        }
        (host, 0, 0)
    };
    if hostport[j..].contains('[') {
        return Err(format!("address {hostport}: unexpected '[' in address"));
    }
    if hostport[k..].contains(']') {
        return Err(format!("address {hostport}: unexpected ']' in address"));
    }
    Ok((host, &hostport[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_domains() {
        assert!(validate_wildcard_domain("*").is_ok());
        assert!(validate_wildcard_domain("*.foo.com").is_ok());
        assert!(validate_wildcard_domain("*foo.baz").is_ok());
        assert!(validate_wildcard_domain("*-foo.baz").is_ok());
        assert!(validate_wildcard_domain("Foo.Bar").is_ok());
        assert!(validate_wildcard_domain("foo.*").is_err());
        assert!(validate_wildcard_domain("foo.*.com").is_err());
        assert!(validate_wildcard_domain("1.1.1.1").is_err());
        assert!(validate_wildcard_domain("").is_err());
        assert!(validate_fqdn("istio.io.").is_ok());
        assert!(validate_fqdn("foobar*123").is_err());
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
    fn hosts_overlap() {
        assert!(host_matches("*.foo.bar", "*.bar"));
        assert!(host_matches("*", "foo.com"));
        assert!(!host_matches("*.foo.com", "foo.com"));
        assert!(host_subset_of("a.foo.com", "*.foo.com"));
        assert!(!host_subset_of("*.com", "*.foo.com"));
    }

    #[test]
    fn subnets_and_addresses() {
        assert!(validate_ip_subnet("10.0.0.0/8").is_ok());
        assert!(validate_ip_subnet("2001:1::1/64").is_ok());
        assert!(validate_ip_subnet("10.0.0.0/33").is_err());
        assert!(validate_ip_subnet("1.1.A.1").is_err());
        assert!(validate_ip_address("2001:1::1").is_ok());
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port(":80"), Ok(("", "80")));
        assert!(split_host_port("foo").is_err());
        assert!(split_host_port("1:2:3").is_err());
    }

    #[test]
    fn labels_and_export_to() {
        let mut l = BTreeMap::new();
        l.insert("app".to_string(), "Foo_bar".to_string());
        assert!(validate_labels(&l).is_empty());
        l.insert("bad key".to_string(), "v".to_string());
        assert_eq!(validate_labels(&l).len(), 1);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(validate_export_to("ns", &s(&[".", "ns1"])).is_empty());
        assert!(!validate_export_to("ns", &s(&[".", "ns"])).is_empty());
        assert!(!validate_export_to("ns", &s(&["*", "ns1"])).is_empty());
        assert!(!validate_export_to("ns", &s(&["~"])).is_empty());
    }
}
