//! Ports, port names and protocols (`pkg/config/validation/agent`, `pkg/config/protocol`).

use super::hosts::is_dns1123_label;

/// Istio's `ValidatePort`: a port number in 1..=65535.
pub fn validate_port(port: i64) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// The CRD rule on `PortSelector.number`, `targetPort` and endpoint ports (DestinationRule,
/// ServiceEntry, WorkloadEntry): 1..=65535, with the CRD's wording (`port must be between
/// 1-65535`) rather than [`validate_port`]'s.
pub fn validate_port_crd(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!(
            "Invalid value: {port}: port must be between 1-65535"
        ))
    }
}

/// Istio's `ValidatePortName`: a DNS-1123 label (upper case allowed).
pub fn validate_port_name(name: &str) -> Result<(), String> {
    if is_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!("invalid port name: {name}"))
    }
}

/// A port written as a string (AuthorizationPolicy `ports`/`notPorts` values, Istio's
/// `security.ValidatePorts`): decimal digits only, at most 65535 (0 is accepted).
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

/// The port protocols Istio knows (`protocol.Instance`), parsed case-insensitively. An empty
/// name (Istio sniffs the protocol) parses as `Unsupported`, as Istio's `protocol.Parse` does.
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
    /// Any other name, and the empty one.
    Unsupported,
}

impl Protocol {
    /// Istio's `protocol.Parse`: case-insensitive; anything else is `Unsupported`.
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
                | Protocol::MySql
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert!(validate_port(1).is_ok());
        assert!(validate_port(0).is_err());
        assert!(validate_port(65536).is_err());
        assert!(validate_port_crd(65535).is_ok());
        assert!(
            validate_port_crd(0)
                .unwrap_err()
                .contains("port must be between 1-65535")
        );
        assert!(validate_port_name("http-Web").is_ok());
        assert!(validate_port_name("").is_err());
        assert!(validate_port_name("-x").is_err());
    }

    #[test]
    fn port_strings() {
        assert!(validate_port_string("0").is_ok());
        assert!(validate_port_string("65535").is_ok());
        assert!(validate_port_string("65536").is_err());
        assert!(validate_port_string("+80").is_err());
        assert!(validate_port_string("port1").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("http"), Protocol::Http);
        assert_eq!(Protocol::parse(""), Protocol::Unsupported);
        assert!(Protocol::parse("HTTPS").is_tls());
        assert!(Protocol::parse("mysql").is_tcp());
        assert!(validate_protocol("bogus").is_err());
        assert!(validate_protocol("").is_ok());
    }
}
