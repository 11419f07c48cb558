//! Service port protocols, inferred as Istio infers them (declared protocol, Kubernetes
//! `appProtocol`, or the port name's prefix), and how each one is handled by a listener.

use std::fmt;

/// An Istio service port protocol. `Unsupported` is what Istio calls a port whose protocol is
/// unknown: its traffic is sniffed (HTTP inspector) and handled as HTTP or TCP per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.1 (and HTTP/2 with prior knowledge when the client uses it).
    Http,
    /// HTTP/2.
    Http2,
    /// TLS carrying HTTP, not terminated by the sidecar.
    Https,
    /// gRPC (HTTP/2).
    Grpc,
    /// gRPC-Web (HTTP/1.1).
    GrpcWeb,
    /// Opaque TCP.
    Tcp,
    /// TLS, not terminated by the sidecar (routed on SNI).
    Tls,
    /// MongoDB (opaque TCP to Istio).
    Mongo,
    /// Redis (opaque TCP to Istio).
    Redis,
    /// MySQL (server-first TCP).
    Mysql,
    /// UDP: no listener is built.
    Udp,
    /// An HTTP proxy port (`HTTP_PROXY`, Sidecar egress only).
    HttpProxy,
    /// Unknown: detected per connection.
    Unsupported,
}

/// How a listener handles a port: Istio's `ListenerProtocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerProtocol {
    /// An HTTP connection manager.
    Http,
    /// A TCP proxy (or TLS passthrough).
    Tcp,
    /// Sniffed: both an HTTP and a TCP filter chain.
    Auto,
    /// Not handled by a listener (UDP).
    Unsupported,
}

impl Protocol {
    /// Parses a protocol name as Istio does (case-insensitive); unknown names are `Unsupported`.
    pub fn parse(s: &str) -> Protocol {
        match s.to_ascii_lowercase().as_str() {
            "http" => Protocol::Http,
            "http2" => Protocol::Http2,
            "https" => Protocol::Https,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "tcp" => Protocol::Tcp,
            "tls" => Protocol::Tls,
            "mongo" => Protocol::Mongo,
            "redis" => Protocol::Redis,
            "mysql" => Protocol::Mysql,
            "udp" => Protocol::Udp,
            "http_proxy" => Protocol::HttpProxy,
            _ => Protocol::Unsupported,
        }
    }

    /// Infers the protocol of a Kubernetes Service port: `appProtocol` first, then the port
    /// name (`http`, `http-web`, `grpc-api`...), else unknown (sniffed). UDP/SCTP ports keep
    /// their transport protocol.
    pub fn from_kubernetes(
        name: &str,
        app_protocol: Option<&str>,
        transport: Option<&str>,
    ) -> Protocol {
        match transport.map(str::to_ascii_uppercase).as_deref() {
            Some("UDP") => return Protocol::Udp,
            Some("SCTP") => return Protocol::Unsupported,
            _ => {}
        }
        if let Some(ap) = app_protocol {
            match ap {
                "kubernetes.io/h2c" => return Protocol::Http2,
                "kubernetes.io/ws" => return Protocol::Http,
                "kubernetes.io/wss" => return Protocol::Https,
                _ => {}
            }
            let p = Protocol::parse(ap);
            if p != Protocol::Unsupported {
                return p;
            }
        }
        Protocol::from_port_name(name)
    }

    /// The protocol named by a port name's prefix (`<protocol>[-<suffix>]`), as Istio's
    /// protocol selection by port name; `grpc-web` is recognised whole.
    pub fn from_port_name(name: &str) -> Protocol {
        let lower = name.to_ascii_lowercase();
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return Protocol::GrpcWeb;
        }
        let prefix = lower.split('-').next().unwrap_or("");
        match Protocol::parse(prefix) {
            // UDP is never inferred from a name.
            Protocol::Udp => Protocol::Unsupported,
            p => p,
        }
    }

    /// True for protocols handled by an HTTP connection manager.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::Grpc
                | Protocol::GrpcWeb
                | Protocol::HttpProxy
        )
    }

    /// True for HTTP/2-based protocols (the upstream cluster speaks h2).
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// True for protocols handled by a TCP proxy.
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

    /// True for TLS protocols routed on SNI.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }

    /// True for HTTP or sniffed ports: the ones that get a virtual host in an HTTP route table.
    pub fn is_http_or_sniffed(self) -> bool {
        self.is_http() || self == Protocol::Unsupported
    }

    /// The listener treatment of this protocol.
    pub fn listener_protocol(self) -> ListenerProtocol {
        if self.is_http() {
            ListenerProtocol::Http
        } else if self.is_tcp() {
            ListenerProtocol::Tcp
        } else if self == Protocol::Unsupported {
            ListenerProtocol::Auto
        } else {
            ListenerProtocol::Unsupported
        }
    }

    /// Istio's name of the protocol (`HTTP`, `GRPC-Web`, `UnsupportedProtocol`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Https => "HTTPS",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-Web",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Mongo => "Mongo",
            Protocol::Redis => "Redis",
            Protocol::Mysql => "MySQL",
            Protocol::Udp => "UDP",
            Protocol::HttpProxy => "HTTP_PROXY",
            Protocol::Unsupported => "UnsupportedProtocol",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_name_prefixes() {
        assert_eq!(Protocol::from_port_name("http"), Protocol::Http);
        assert_eq!(Protocol::from_port_name("http-web"), Protocol::Http);
        assert_eq!(Protocol::from_port_name("HTTP2"), Protocol::Http2);
        assert_eq!(Protocol::from_port_name("grpc-web"), Protocol::GrpcWeb);
        assert_eq!(Protocol::from_port_name("grpc-api"), Protocol::Grpc);
        assert_eq!(Protocol::from_port_name("tcp-db"), Protocol::Tcp);
        assert_eq!(Protocol::from_port_name("https"), Protocol::Https);
        assert_eq!(Protocol::from_port_name("auto"), Protocol::Unsupported);
        assert_eq!(Protocol::from_port_name("httpx"), Protocol::Unsupported);
        assert_eq!(Protocol::from_port_name("udp"), Protocol::Unsupported);
    }

    #[test]
    fn app_protocol_wins_over_name() {
        assert_eq!(
            Protocol::from_kubernetes("tcp", Some("http"), None),
            Protocol::Http
        );
        assert_eq!(
            Protocol::from_kubernetes("web", Some("kubernetes.io/h2c"), None),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::from_kubernetes("http", None, Some("UDP")),
            Protocol::Udp
        );
        assert_eq!(
            Protocol::from_kubernetes("http", Some("custom"), None),
            Protocol::Http
        );
    }

    #[test]
    fn listener_treatment() {
        assert_eq!(Protocol::Grpc.listener_protocol(), ListenerProtocol::Http);
        assert_eq!(Protocol::Tls.listener_protocol(), ListenerProtocol::Tcp);
        assert_eq!(
            Protocol::Unsupported.listener_protocol(),
            ListenerProtocol::Auto
        );
        assert_eq!(
            Protocol::Udp.listener_protocol(),
            ListenerProtocol::Unsupported
        );
    }
}
