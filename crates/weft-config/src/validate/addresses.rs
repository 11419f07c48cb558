//! Addresses: IPs, subnets, Unix domain sockets and `host:port`, as Istio checks them (Go's
//! `net/netip` parsing rules).

use std::net::{IpAddr, Ipv6Addr};

use super::go::go_atoi;
use super::hosts::validate_fqdn;
use super::ports::validate_port;

/// Istio's `netutil.IsValidIPAddress`: an IPv4 or IPv6 address (an IPv6 zone such as
/// `fe80::1%eth0` is accepted, as Go's `netip.ParseAddr` does).
pub fn is_valid_ip(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    match s.split_once('%') {
        Some((addr, zone)) => !zone.is_empty() && addr.parse::<Ipv6Addr>().is_ok(),
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

/// Istio's `ValidateIPSubnet`: an address, or a CIDR block (Go's `netip.ParsePrefix`: decimal
/// prefix length without leading zeros) when the text has one `/`.
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

/// Istio's `security.ValidateIPs` for one AuthorizationPolicy value: a CIDR block when the text
/// has a `/`, else an IP address, with that function's wording (`bad CIDR range (...)`).
pub fn validate_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.contains('/') {
        s.parse::<ipnet::IpNet>()
            .map(|_| ())
            .map_err(|_| format!("bad CIDR range ({s})"))
    } else {
        s.parse::<IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("bad IP address ({s})"))
    }
}

/// Istio's `ValidateUnixAddress` (the part after `unix://`): an absolute file path not ending
/// in `/`, or an abstract socket starting with `@`.
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

/// Go's `net.SplitHostPort`: `host:port`, `[v6]:port` or `:port`, with Go's error texts.
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

/// Istio's `ValidateProxyAddress`: `host:port` with a valid port and an FQDN or IP host.
pub fn validate_proxy_address(addr: &str) -> Result<(), String> {
    let (host, port) =
        split_host_port(addr).map_err(|e| format!("unable to split {addr:?}: {e}"))?;
    let port = go_atoi(port).ok_or_else(|| format!("port ({port}) is not a number"))?;
    validate_port(port)?;
    if validate_fqdn(host).is_err() && !is_valid_ip(host) {
        return Err(format!("{host:?} is not a valid hostname or an IP address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_and_addresses() {
        assert!(validate_ip_subnet("10.0.0.0/8").is_ok());
        assert!(validate_ip_subnet("172.1.2.16/16").is_ok());
        assert!(validate_ip_subnet("2001:1::1/64").is_ok());
        assert!(validate_ip_subnet("10.0.0.0/33").is_err());
        assert!(validate_ip_subnet("1.1.1.1/48").is_err());
        assert!(validate_ip_subnet("10.0.0.0/08").is_err());
        assert!(validate_ip_subnet("1.1.A.1").is_err());
        assert!(validate_ip_subnet("example.com").is_err());
        assert!(validate_ip_address("2001:1::1").is_ok());
        assert!(validate_ip_address("fe80::1%eth0").is_ok());
    }

    #[test]
    fn authorization_ips() {
        assert!(validate_ip_or_cidr("10.0.0.0/8").is_ok());
        assert!(validate_ip_or_cidr("1.2.3.4/24").is_ok());
        assert!(validate_ip_or_cidr("::1").is_ok());
        assert!(validate_ip_or_cidr("a.b.c.d").is_err());
        assert!(validate_ip_or_cidr("1.2.3.4/33").is_err());
    }

    #[test]
    fn unix_addresses() {
        assert!(validate_unix_address("/path/to/socket").is_ok());
        assert!(validate_unix_address("@abstract").is_ok());
        assert!(validate_unix_address("relative").is_err());
        assert!(validate_unix_address("/dir/").is_err());
        assert!(validate_unix_address("").is_err());
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port(":80"), Ok(("", "80")));
        assert!(split_host_port("foo").is_err());
        assert!(split_host_port("1:2:3").is_err());
    }

    #[test]
    fn proxy_addresses() {
        assert!(validate_proxy_address("zipkin.istio-system:9411").is_ok());
        assert!(validate_proxy_address("10.0.0.1:80").is_ok());
        assert!(validate_proxy_address("[::1]:80").is_ok());
        assert!(validate_proxy_address("zipkin").is_err());
        assert!(validate_proxy_address("zipkin:0").is_err());
        assert!(validate_proxy_address("bad_host:80").is_err());
    }
}
