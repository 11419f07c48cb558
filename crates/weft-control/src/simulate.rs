//! A traffic simulator over generated Envoy resources, deciding as Istio's simulator
//! (`pilot/pkg/simulation`) decides: listener, listener filters, filter chain sieve, TLS
//! checks, virtual host and route, or TCP proxy. It answers "where does this request go?"
//! without running a proxy, for tests and for `weft x route-check`.

use std::net::IpAddr;

use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use weft_xds::envoy::extensions::transport_sockets::tls::v3 as tls;

use crate::translate::Resources;
use crate::translate::envoy::{unpack, wellknown};
use crate::translate::names::{VIRTUAL_INBOUND, VIRTUAL_OUTBOUND};

/// Whether a call leaves the workload (captured to `virtualOutbound`, or sent to a gateway)
/// or arrives at it (captured to `virtualInbound`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallMode {
    /// Outbound (and every gateway call).
    Outbound,
    /// Inbound to the workload.
    Inbound,
}

/// The application protocol of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallProtocol {
    /// HTTP/1.1.
    Http,
    /// HTTP/2.
    Http2,
    /// Opaque TCP.
    Tcp,
}

/// The transport security of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallTls {
    /// Plaintext.
    Plaintext,
    /// TLS (client does not present a certificate).
    Tls,
    /// Istio mutual TLS.
    Mtls,
}

/// A synthetic connection or request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Inbound or outbound.
    pub mode: CallMode,
    /// Destination IP.
    pub address: String,
    /// Destination port.
    pub port: u32,
    /// Application protocol.
    pub protocol: CallProtocol,
    /// Transport security.
    pub tls: CallTls,
    /// ALPN offered; `None` uses the default for the protocol and TLS mode.
    pub alpn: Option<String>,
    /// SNI; `None` uses the Host header for TLS calls.
    pub sni: Option<String>,
    /// Host header.
    pub host: Option<String>,
    /// Request path.
    pub path: String,
    /// The SDS certificate name that marks a chain as Istio mTLS (`default` when `None`);
    /// for servers that terminate mutual TLS with their own certificates.
    pub mtls_secret_config_name: Option<String>,
}

impl Call {
    /// A plaintext outbound HTTP/1.1 request for `host` on `port`, to address 1.3.3.7 (an
    /// address no listener binds, as in Istio's simulator).
    pub fn http(host: &str, port: u32) -> Call {
        Call {
            mode: CallMode::Outbound,
            address: "1.3.3.7".to_string(),
            port,
            protocol: CallProtocol::Http,
            tls: CallTls::Plaintext,
            alpn: None,
            sni: None,
            host: Some(host.to_string()),
            path: "/".to_string(),
            mtls_secret_config_name: None,
        }
    }

    /// A plaintext TCP connection to `address:port`.
    pub fn tcp(address: &str, port: u32) -> Call {
        Call {
            mode: CallMode::Outbound,
            address: address.to_string(),
            port,
            protocol: CallProtocol::Tcp,
            tls: CallTls::Plaintext,
            alpn: None,
            sni: None,
            host: None,
            path: "/".to_string(),
            mtls_secret_config_name: None,
        }
    }

    /// The ALPN the client sends: the explicit one, else Istio's default for the protocol.
    pub fn effective_alpn(&self) -> Option<String> {
        if self.alpn.is_some() {
            return self.alpn.clone();
        }
        let v = match (self.tls, self.protocol) {
            (CallTls::Plaintext, _) | (CallTls::Tls, CallProtocol::Tcp) => return None,
            (CallTls::Tls, CallProtocol::Http) => "http/1.1",
            (CallTls::Tls, CallProtocol::Http2) => "h2",
            (CallTls::Mtls, CallProtocol::Http) => "istio-http/1.1",
            (CallTls::Mtls, CallProtocol::Http2) => "istio-h2",
            (CallTls::Mtls, CallProtocol::Tcp) => "istio",
        };
        Some(v.to_string())
    }

    /// The SNI the client sends: the explicit one, else the Host for TLS calls.
    pub fn effective_sni(&self) -> Option<String> {
        if self.sni.is_some() {
            return self.sni.clone();
        }
        if self.tls == CallTls::Plaintext {
            None
        } else {
            self.host.clone()
        }
    }
}

/// Where a call went. Fields that were not reached are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Listener name.
    pub listener: String,
    /// Filter chain name.
    pub filter_chain: String,
    /// Route configuration name, when it came from RDS.
    pub route_config: String,
    /// Virtual host name.
    pub virtual_host: String,
    /// Route name.
    pub route: String,
    /// Cluster name.
    pub cluster: String,
}

/// Why a call failed, in Istio's simulator terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimErrorKind {
    /// No listener takes the destination.
    #[error("no listener")]
    NoListener,
    /// The listener has no chain for this connection.
    #[error("no filter chain")]
    NoFilterChain,
    /// More than one chain matches (Envoy would reject the config).
    #[error("multiple filter chains")]
    MultipleFilterChains,
    /// Plaintext sent to a chain that terminates TLS.
    #[error("tls error")]
    Tls,
    /// mTLS where the chain expects plain TLS, or the reverse.
    #[error("mtls error")]
    Mtls,
    /// TLS or raw TCP sent to an HTTP connection manager that cannot read it.
    #[error("protocol error")]
    Protocol,
    /// No virtual host matches the Host header.
    #[error("no virtual host")]
    NoVirtualHost,
    /// The virtual host requires TLS and the call is plaintext (a redirect).
    #[error("tls redirect")]
    TlsRedirect,
    /// No route matches the path.
    #[error("no route")]
    NoRoute,
}

/// A failed simulation: the error and how far the call got.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (listener {:?}, filter chain {:?}, route config {:?}, virtual host {:?})", reached.listener, reached.filter_chain, reached.route_config, reached.virtual_host)]
pub struct SimError {
    /// What went wrong.
    pub kind: SimErrorKind,
    /// The listener, chain, route config and virtual host reached before the error.
    pub reached: Box<Outcome>,
}

fn socket(addr: &core::Address) -> Option<(IpAddr, u32)> {
    let core::address::Address::SocketAddress(sa) = addr.address.as_ref()? else {
        return None;
    };
    let ip = sa.address.parse().ok()?;
    let port = match sa.port_specifier.as_ref()? {
        core::socket_address::PortSpecifier::PortValue(p) => *p,
        core::socket_address::PortSpecifier::NamedPort(_) => return None,
    };
    Some((ip, port))
}

fn find_listener<'a>(res: &'a Resources, call: &Call) -> Option<&'a listener::Listener> {
    if call.mode == CallMode::Inbound {
        return res.listener(VIRTUAL_INBOUND);
    }
    let bound = |ip: IpAddr| {
        res.listeners
            .iter()
            .find(|l| l.address.as_ref().and_then(socket) == Some((ip, call.port)))
    };
    if let Ok(ip) = call.address.parse::<IpAddr>()
        && let Some(l) = bound(ip)
    {
        return Some(l);
    }
    let wildcard = if call.address.contains(':') {
        IpAddr::from([0u16; 8])
    } else {
        IpAddr::from([0u8; 4])
    };
    bound(wildcard)
        .or_else(|| bound(IpAddr::from([0u8; 4])))
        .or_else(|| res.listener(VIRTUAL_OUTBOUND))
        // Without capture (no virtualOutbound) the application calls the outbound listener
        // bound on the port itself, whatever its address (a Sidecar `egress[].bind`).
        .or_else(|| {
            res.listeners.iter().find(|l| {
                l.traffic_direction != core::TrafficDirection::Inbound as i32
                    && l.address
                        .as_ref()
                        .and_then(socket)
                        .is_some_and(|(_, p)| p == call.port)
            })
        })
}

fn has_listener_filter(l: &listener::Listener, name: &str) -> bool {
    l.listener_filters.iter().any(|f| f.name == name)
}

fn cidr_contains(r: &core::CidrRange, ip: IpAddr) -> Option<u32> {
    let len = r.prefix_len.as_ref().map(|p| p.value).unwrap_or(0);
    let net: ipnet::IpNet = format!("{}/{}", r.address_prefix, len).parse().ok()?;
    net.contains(&ip).then_some(len)
}

/// Keeps the best-ranked chains for one criterion: those with the highest rank; when none
/// matches, those that do not set the criterion.
fn sieve<F, U>(
    chains: Vec<&listener::FilterChain>,
    rank: F,
    unset: U,
) -> Vec<&listener::FilterChain>
where
    F: Fn(&listener::FilterChainMatch) -> Option<i64>,
    U: Fn(&listener::FilterChainMatch) -> bool,
{
    let default_match = listener::FilterChainMatch::default();
    let m = |c: &listener::FilterChain| {
        c.filter_chain_match
            .clone()
            .unwrap_or_else(|| default_match.clone())
    };
    let ranked: Vec<(i64, &listener::FilterChain)> = chains
        .iter()
        .filter_map(|c| rank(&m(c)).map(|r| (r, *c)))
        .collect();
    if let Some(best) = ranked.iter().map(|(r, _)| *r).max() {
        return ranked
            .into_iter()
            .filter(|(r, _)| *r == best)
            .map(|(_, c)| c)
            .collect();
    }
    chains.into_iter().filter(|c| unset(&m(c))).collect()
}

fn select_chain<'a>(
    l: &'a listener::Listener,
    call: &Call,
    alpn: Option<&str>,
    transport: &str,
) -> Result<&'a listener::FilterChain, SimErrorKind> {
    let ip: Option<IpAddr> = call.address.parse().ok();
    let sni = call.effective_sni();
    let mut chains: Vec<&listener::FilterChain> = l.filter_chains.iter().collect();
    chains = sieve(
        chains,
        |m| (m.destination_port.as_ref().map(|p| p.value) == Some(call.port)).then_some(0),
        |m| m.destination_port.is_none(),
    );
    chains = sieve(
        chains,
        |m| {
            let ip = ip?;
            m.prefix_ranges
                .iter()
                .filter_map(|r| cidr_contains(r, ip))
                .max()
                .map(i64::from)
        },
        |m| m.prefix_ranges.is_empty(),
    );
    chains = sieve(
        chains,
        |m| {
            let sni = sni.as_deref()?;
            m.server_names
                .iter()
                .filter_map(|n| {
                    if n == sni {
                        Some(i64::MAX)
                    } else if let Some(suffix) = n.strip_prefix('*') {
                        (sni.ends_with(suffix) && sni.len() > suffix.len())
                            .then(|| i64::try_from(suffix.len()).unwrap_or(0))
                    } else {
                        None
                    }
                })
                .max()
        },
        |m| m.server_names.is_empty(),
    );
    chains = sieve(
        chains,
        |m| (m.transport_protocol == transport).then_some(0),
        |m| m.transport_protocol.is_empty(),
    );
    chains = sieve(
        chains,
        |m| {
            let alpn = alpn?;
            m.application_protocols
                .iter()
                .any(|a| a == alpn)
                .then_some(0)
        },
        |m| m.application_protocols.is_empty(),
    );
    match chains.len() {
        1 => Ok(chains[0]),
        0 => l
            .default_filter_chain
            .as_ref()
            .ok_or(SimErrorKind::NoFilterChain),
        _ => Err(SimErrorKind::MultipleFilterChains),
    }
}

fn downstream_tls(ts: &core::TransportSocket) -> Option<tls::DownstreamTlsContext> {
    match ts.config_type.as_ref()? {
        core::transport_socket::ConfigType::TypedConfig(a) => unpack(a),
    }
}

fn typed<T: prost::Message + prost::Name + Default>(f: &listener::Filter) -> Option<T> {
    match f.config_type.as_ref()? {
        listener::filter::ConfigType::TypedConfig(a) => unpack(a),
        listener::filter::ConfigType::ConfigDiscovery(_) => None,
    }
}

fn select_virtual_host<'a>(
    rc: &'a route::RouteConfiguration,
    host: &str,
) -> Option<&'a route::VirtualHost> {
    let host = if rc.ignore_port_in_host_matching {
        strip_port(host)
    } else {
        host
    };
    let host = host.to_ascii_lowercase();
    let domains =
        |v: &'a route::VirtualHost| v.domains.iter().map(move |d| (v, d.to_ascii_lowercase()));
    let all: Vec<(&route::VirtualHost, String)> =
        rc.virtual_hosts.iter().flat_map(domains).collect();
    if let Some((v, _)) = all.iter().find(|(_, d)| *d == host) {
        return Some(v);
    }
    let best_suffix = all
        .iter()
        .filter(|(_, d)| {
            d.len() > 1 && d.starts_with('*') && host.ends_with(&d[1..]) && host.len() > d.len() - 1
        })
        .max_by_key(|(_, d)| d.len());
    if let Some((v, _)) = best_suffix {
        return Some(v);
    }
    let best_prefix = all
        .iter()
        .filter(|(_, d)| d.len() > 1 && d.ends_with('*') && host.starts_with(&d[..d.len() - 1]))
        .max_by_key(|(_, d)| d.len());
    if let Some((v, _)) = best_prefix {
        return Some(v);
    }
    all.iter().find(|(_, d)| d == "*").map(|(v, _)| *v)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map(|(h, _)| &host[..h.len() + 1])
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

fn path_matches(m: &route::RouteMatch, path: &str) -> bool {
    use route::route_match::PathSpecifier;
    let path = path.split('?').next().unwrap_or(path);
    let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
    let eq = |a: &str, b: &str| {
        if case_sensitive {
            a == b
        } else {
            a.eq_ignore_ascii_case(b)
        }
    };
    let starts = |p: &str| {
        path.len() >= p.len() && path.is_char_boundary(p.len()) && eq(&path[..p.len()], p)
    };
    match m.path_specifier.as_ref() {
        None => false,
        Some(PathSpecifier::Prefix(p)) => starts(p),
        Some(PathSpecifier::Path(p)) => eq(path, p),
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            starts(p) && (path.len() == p.len() || path[p.len()..].starts_with('/'))
        }
        Some(PathSpecifier::SafeRegex(r)) => regex::Regex::new(&format!("^(?:{})$", r.regex))
            .map(|re| re.is_match(path))
            .unwrap_or(false),
        Some(_) => false,
    }
}

fn route_cluster(r: &route::Route) -> String {
    use route::route_action::ClusterSpecifier;
    match &r.action {
        Some(route::route::Action::Route(a)) => match &a.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => c.clone(),
            Some(ClusterSpecifier::WeightedClusters(w)) => w
                .clusters
                .first()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

fn fail(kind: SimErrorKind, out: &Outcome) -> SimError {
    SimError {
        kind,
        reached: Box::new(out.clone()),
    }
}

/// Runs a call through a proxy's resources.
pub fn simulate(res: &Resources, call: &Call) -> Result<Outcome, SimError> {
    let mut out = Outcome::default();
    let l = find_listener(res, call).ok_or_else(|| fail(SimErrorKind::NoListener, &out))?;
    out.listener = l.name.clone();
    let has_tls_inspector = has_listener_filter(l, wellknown::TLS_INSPECTOR);
    let has_http_inspector = has_listener_filter(l, wellknown::HTTP_INSPECTOR);
    let mut alpn = if has_tls_inspector {
        call.effective_alpn()
    } else {
        None
    };
    if has_http_inspector && call.tls == CallTls::Plaintext {
        alpn = match call.protocol {
            CallProtocol::Http => Some("http/1.1".to_string()),
            CallProtocol::Http2 => Some("h2c".to_string()),
            CallProtocol::Tcp => None,
        };
    }
    let transport = if has_tls_inspector && call.tls != CallTls::Plaintext {
        "tls"
    } else {
        "raw_buffer"
    };
    let chain = select_chain(l, call, alpn.as_deref(), transport).map_err(|k| fail(k, &out))?;
    out.filter_chain = chain.name.clone();
    let terminates_tls = chain.transport_socket.is_some();
    if let Some(ts) = &chain.transport_socket {
        if call.tls == CallTls::Plaintext {
            return Err(fail(SimErrorKind::Tls, &out));
        }
        let ctx = downstream_tls(ts).unwrap_or_default();
        let first_cert = ctx
            .common_tls_context
            .as_ref()
            .and_then(|c| c.tls_certificate_sds_secret_configs.first())
            .map(|s| s.name.as_str());
        let mtls_name = call.mtls_secret_config_name.as_deref().unwrap_or("default");
        let requires_mtls = first_cert == Some(mtls_name)
            && ctx
                .require_client_certificate
                .as_ref()
                .is_some_and(|b| b.value);
        if requires_mtls != (call.tls == CallTls::Mtls) {
            return Err(fail(SimErrorKind::Mtls, &out));
        }
    }
    for f in &chain.filters {
        if f.name == wellknown::HCM {
            let Some(manager) = typed::<hcm::HttpConnectionManager>(f) else {
                continue;
            };
            if (call.tls != CallTls::Plaintext && !terminates_tls)
                || call.protocol == CallProtocol::Tcp
            {
                return Err(fail(SimErrorKind::Protocol, &out));
            }
            let rc = match manager.route_specifier {
                Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) => {
                    out.route_config = rds.route_config_name.clone();
                    res.route(&rds.route_config_name).cloned()
                }
                Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) => Some(rc),
                _ => None,
            };
            let Some(rc) = rc else {
                return Err(fail(SimErrorKind::NoVirtualHost, &out));
            };
            let vh = select_virtual_host(&rc, call.host.as_deref().unwrap_or(""))
                .ok_or_else(|| fail(SimErrorKind::NoVirtualHost, &out))?;
            out.virtual_host = vh.name.clone();
            if vh.require_tls == route::virtual_host::TlsRequirementType::All as i32
                && call.tls == CallTls::Plaintext
            {
                return Err(fail(SimErrorKind::TlsRedirect, &out));
            }
            let r = vh
                .routes
                .iter()
                .find(|r| {
                    r.r#match
                        .as_ref()
                        .is_some_and(|m| path_matches(m, &call.path))
                })
                .ok_or_else(|| fail(SimErrorKind::NoRoute, &out))?;
            out.route = r.name.clone();
            out.cluster = route_cluster(r);
            return Ok(out);
        }
        if f.name == wellknown::TCP_PROXY {
            let Some(proxy) = typed::<tcp::TcpProxy>(f) else {
                continue;
            };
            out.cluster = match proxy.cluster_specifier {
                Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
                Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => w
                    .clusters
                    .first()
                    .map(|c| c.name.clone())
                    .unwrap_or_default(),
                None => String::new(),
            };
            return Ok(out);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_alpn() {
        let mut c = Call::http("a", 80);
        assert_eq!(c.effective_alpn(), None);
        c.tls = CallTls::Mtls;
        assert_eq!(c.effective_alpn().as_deref(), Some("istio-http/1.1"));
        c.protocol = CallProtocol::Tcp;
        assert_eq!(c.effective_alpn().as_deref(), Some("istio"));
        assert_eq!(c.effective_sni().as_deref(), Some("a"));
    }

    #[test]
    fn uncaptured_sidecar_calls_its_bound_egress_listener() {
        let config = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.1.2}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:18080
  egress:
  - bind: 127.0.2.1
    captureMode: NONE
    hosts: ["./*"]
"#;
        let parsed = weft_config::parse_str(config, "c.yaml");
        let env = crate::model::Environment::from_resources(
            &parsed.resources,
            crate::model::MeshSettings::default(),
        );
        let mut proxy = crate::model::Proxy::from_node_id(
            "sidecar~127.0.1.1~productpage.default~default.svc.cluster.local",
        )
        .expect("valid id");
        proxy.metadata.interception_mode = "NONE".into();
        let res = crate::translate::translate(&env, &proxy);
        let out = simulate(&res, &Call::http("reviews:9080", 9080)).expect("routed");
        assert_eq!(out.listener, "127.0.2.1_9080");
        assert_eq!(
            out.cluster,
            "outbound|9080||reviews.default.svc.cluster.local"
        );
    }

    #[test]
    fn host_port_stripping() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
