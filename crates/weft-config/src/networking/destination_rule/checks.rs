//! Istio's own validation helpers (`pkg/config/validation/agent`, `pkg/config/labels`,
//! `pkg/config/protocol`, `pkg/config/visibility`) as the DestinationRule, ServiceEntry and
//! WorkloadEntry/WorkloadGroup validators need them. These follow Istio's rules exactly, which
//! differ in places from the generic Kubernetes ones in `validate::common` (Istio host labels
//! allow upper case, a top-level domain may not be all digits, durations are millisecond-grained).

use std::net::IpAddr;

use crate::duration::Duration;
use crate::validate::{Path, Report, common};

/// Defines a protobuf enum that (de)serializes by its proto value name and refuses unknown
/// names with Kubernetes' `Unsupported value` wording. The first variant is the proto default.
macro_rules! istio_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            #[default]
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in proto order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the proto (and YAML) spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of {}", $crate::networking::destination_rule::checks::quoted_list(&[$($text),+]))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        match v {
                            $($text => Ok($name::$variant),)+
                            _ => Err(E::custom(format!(
                                "Unsupported value: {v:?}: supported values: {}",
                                $crate::networking::destination_rule::checks::quoted_list(&[$($text),+])
                            ))),
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use istio_enum;

/// `"A", "B", "C"`, as Kubernetes lists supported values.
pub fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// serde `skip_serializing_if` helper: true for a type's default value.
pub fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Istio's `labels.IsDNS1123Label`: 1-63 letters (either case), digits and '-', starting and
/// ending with a letter or digit.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Istio's `labels.IsWildcardDNS1123Label`: `*`, or a DNS label optionally prefixed by `*` or
/// `*-`.
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

/// Istio's `ValidateDNS1123Labels`: every label a DNS label (a trailing dot is allowed), and
/// the top-level domain not all digits (so IP addresses are not host names).
pub fn validate_dns1123_labels(domain: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts.last().copied().unwrap_or("");
    if !tld.is_empty() && is_go_atoi(tld) {
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

/// True when Go's `strconv.Atoi` would accept `s` (an optional sign and decimal digits).
fn is_go_atoi(s: &str) -> bool {
    let digits = s
        .strip_prefix('+')
        .or_else(|| s.strip_prefix('-'))
        .unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
}

/// Istio's `ValidateFQDN`: a DNS name of at most 255 characters, no wildcard.
pub fn validate_fqdn(fqdn: &str) -> Result<(), String> {
    check_dns1123_preconditions(fqdn)?;
    validate_dns1123_labels(fqdn)
}

/// Istio's `ValidateWildcardDomain`: a DNS name whose first label may be a wildcard (`*`,
/// `*.example.com`, `*foo.example.com`).
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

/// Istio's `ValidatePartialWildCard`: a wildcard only as `*` or a leading `*.`.
pub fn validate_partial_wildcard(host: &str) -> Result<(), String> {
    if host.contains('*') && host.len() != 1 && !host.starts_with("*.") {
        return Err(format!("partial wildcard {host:?} not allowed"));
    }
    Ok(())
}

/// Istio's `ValidateDuration` for proto durations: at least 1ms and a whole number of
/// milliseconds.
pub fn validate_duration(d: Duration) -> Result<(), String> {
    let d = d.get();
    if d < std::time::Duration::from_millis(1) {
        return Err(format!("duration {} must be greater than 1ms", Duration(d)));
    }
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "duration {}: only durations to ms precision are supported",
            Duration(d)
        ));
    }
    Ok(())
}

/// Istio's `ValidatePort`, with the CRD's wording: a port number in 1..65535.
pub fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!(
            "Invalid value: {port}: port must be between 1-65535"
        ))
    }
}

/// Istio's `ValidatePortName`: a DNS label.
pub fn validate_port_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Required value: port name must be set (a DNS label)".into());
    }
    if !is_dns1123_label(name) {
        return Err(format!(
            "invalid port name: {name:?}: must be a DNS label (1-63 letters, digits or '-', not starting or ending with '-')"
        ));
    }
    Ok(())
}

/// Istio's `netutil.IsValidIPAddress`.
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Istio's `ValidateIPSubnet`: an IP address, or a CIDR block when the text has one `/`.
pub fn validate_ip_subnet(subnet: &str) -> Result<(), String> {
    if subnet.matches('/').count() == 1 {
        return match subnet.parse::<ipnet::IpNet>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{subnet} is not a valid CIDR block")),
        };
    }
    if is_ip(subnet) {
        Ok(())
    } else {
        Err(format!("{subnet} is not a valid IP"))
    }
}

/// Istio's `ValidateUnixAddress` (for the part after `unix://`): an absolute path not ending
/// in `/`, or an abstract socket name starting with `@`.
pub fn validate_unix_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err(
            "UDS must be an absolute path or abstract socket: unix address must not be empty"
                .into(),
        );
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') {
        return Err(format!(
            "UDS must be an absolute path or abstract socket: {addr} is not an absolute path to a file"
        ));
    }
    if addr.ends_with('/') {
        return Err(format!(
            "UDS may not be a dir: {addr} is not an absolute path to a file"
        ));
    }
    Ok(())
}

/// Validates a set of labels as Istio's `labels.Instance.Validate` does (Kubernetes label key
/// and value syntax), reporting at `path[key]`.
pub fn validate_labels(
    labels: &std::collections::BTreeMap<String, String>,
    path: &Path,
    report: &mut Report,
) {
    for (k, v) in labels {
        if let Err(e) = common::validate_label_key(k) {
            report.error(&path.key(k), e);
        }
        if let Err(e) = common::validate_label_value(v) {
            report.error(&path.key(k), e);
        }
    }
}

/// Istio's `visibility.Instance`: the reserved `exportTo` values.
const EXPORT_PRIVATE: &str = ".";
const EXPORT_PUBLIC: &str = "*";
const EXPORT_NONE: &str = "~";

/// Istio's `validateExportTo` for DestinationRule (`is_service_entry` false) and ServiceEntry.
pub fn validate_export_to(
    namespace: &str,
    export_to: &[String],
    is_service_entry: bool,
    is_destination_rule_with_selector: bool,
    path: &Path,
    report: &mut Report,
) {
    if export_to.is_empty() {
        return;
    }
    let mut seen: Vec<String> = Vec::new();
    for (i, e) in export_to.iter().enumerate() {
        let p = path.index(i);
        let key = if e == EXPORT_PRIVATE {
            namespace.to_string()
        } else {
            e.clone()
        };
        if seen.contains(&key) {
            if &key != e {
                report.error(
                    &p,
                    format!("duplicate entries in exportTo: . and current namespace {namespace}"),
                );
            } else {
                report.error(&p, format!("duplicate entries in exportTo for entry {e}"));
            }
            continue;
        }
        if is_service_entry && e == EXPORT_NONE {
            seen.push(key);
            continue;
        }
        match key.as_str() {
            EXPORT_PRIVATE | EXPORT_PUBLIC => seen.push(key),
            EXPORT_NONE => report.error(
                &p,
                "exportTo ~ (none) is not allowed for Istio configuration objects",
            ),
            // "." in a resource without a namespace stays "." (the current namespace).
            "" => seen.push(key),
            k if is_dns1123_label(k) => seen.push(key),
            _ => report.error(
                &p,
                format!(
                    "invalid exportTo entry {e:?}: only ., *, or a valid DNS 1123 label is allowed as exportTo entry"
                ),
            ),
        }
    }
    if is_destination_rule_with_selector && !seen.is_empty() {
        if seen.iter().any(|s| s == namespace) {
            if seen.len() > 1 {
                report.error(
                    path,
                    "destination rule with workload selector cannot have multiple entries in exportTo",
                );
            }
        } else {
            report.error(
                path,
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            );
        }
    }
    if seen.iter().any(|s| s == EXPORT_PUBLIC) && export_to.len() > 1 {
        report.error(
            path,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if seen.iter().any(|s| s == EXPORT_NONE) && export_to.len() > 1 {
        report.error(
            path,
            "cannot export service entry to no one (~) and someone",
        );
    }
}

/// Istio's `protocol.Instance`: the protocols a service port may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    GrpcWeb,
    Http,
    HttpProxy,
    Http2,
    Https,
    Tcp,
    Tls,
    Udp,
    Mongo,
    Redis,
    Mysql,
    /// Not set (`""`): Istio sniffs the protocol.
    Unset,
    /// Anything else.
    Unsupported,
}

impl Protocol {
    /// Istio's `protocol.Parse`: case-insensitive.
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "" => Protocol::Unset,
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
            "mysql" => Protocol::Mysql,
            _ => Protocol::Unsupported,
        }
    }

    /// HTTP-family protocols (HTTP, HTTP2, HTTP_PROXY, GRPC, GRPC-Web).
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

    /// Protocols proxied as opaque TCP (TCP, HTTPS, TLS, Mongo, Redis, MySQL).
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Protocol::Tcp
                | Protocol::Https
                | Protocol::Tls
                | Protocol::Mongo
                | Protocol::Redis
                | Protocol::Mysql
        )
    }

    /// TLS-carrying protocols (HTTPS, TLS).
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }
}

/// Istio's `ValidateProtocol`: empty, or a protocol Istio knows.
pub fn validate_protocol(s: &str) -> Result<(), String> {
    if Protocol::parse(s) == Protocol::Unsupported {
        return Err(format!(
            "unsupported protocol: {s:?}; supported protocols are HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, HTTP_PROXY, TCP, TLS, UDP, MONGO, REDIS, MYSQL"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(validate_fqdn("*.google.com").is_err());
        assert!(validate_fqdn("10.0.0.1").is_err());
    }

    #[test]
    fn durations_need_ms_precision() {
        let d = |s: &str| s.parse::<Duration>().unwrap();
        assert!(validate_duration(d("1s")).is_ok());
        assert!(validate_duration(d("1ms")).is_ok());
        assert!(validate_duration(d("0s")).is_err());
        assert!(validate_duration(d("1.000000001s")).is_err());
        assert!(validate_duration(d("0.0000005s")).is_err());
    }

    #[test]
    fn subnets_and_protocols() {
        assert!(validate_ip_subnet("172.1.2.16/16").is_ok());
        assert!(validate_ip_subnet("2001:1::1/64").is_ok());
        assert!(validate_ip_subnet("1.1.1.1/48").is_err());
        assert!(validate_ip_subnet("example.com").is_err());
        assert_eq!(Protocol::parse("http"), Protocol::Http);
        assert!(Protocol::parse("HTTPS").is_tls());
        assert!(validate_protocol("bogus").is_err());
        assert!(validate_protocol("").is_ok());
    }

    #[test]
    fn unix_addresses() {
        assert!(validate_unix_address("/path/to/socket").is_ok());
        assert!(validate_unix_address("@abstract").is_ok());
        assert!(validate_unix_address("relative").is_err());
        assert!(validate_unix_address("/dir/").is_err());
        assert!(validate_unix_address("").is_err());
    }
}
