//! Small builders for the Envoy messages translation emits again and again: addresses,
//! `Any`-packed filters, TCP proxies, HTTP connection managers, TLS contexts.

use prost::{Message, Name};
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use weft_xds::envoy::extensions::transport_sockets::tls::v3 as tls;
use weft_xds::google::protobuf::{Any, BoolValue, Duration as PbDuration};

/// Well-known Envoy extension names, as istiod writes them.
pub mod wellknown {
    /// HTTP connection manager network filter.
    pub const HCM: &str = "envoy.filters.network.http_connection_manager";
    /// TCP proxy network filter.
    pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
    /// TLS inspector listener filter.
    pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
    /// HTTP inspector listener filter.
    pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
    /// Original destination listener filter.
    pub const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
    /// Router HTTP filter.
    pub const ROUTER: &str = "envoy.filters.http.router";
    /// Fault HTTP filter.
    pub const FAULT: &str = "envoy.filters.http.fault";
    /// CORS HTTP filter.
    pub const CORS: &str = "envoy.filters.http.cors";
    /// TLS transport socket.
    pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
    /// SNI-to-cluster network filter (AUTO_PASSTHROUGH gateways).
    pub const SNI_CLUSTER: &str = "envoy.filters.network.sni_cluster";
}

/// Transport protocol values set by the TLS inspector.
pub const TLS_TRANSPORT: &str = "tls";
/// Transport protocol of plaintext connections.
pub const RAW_BUFFER: &str = "raw_buffer";

/// ALPNs the HTTP inspector reports for plaintext HTTP.
pub const PLAINTEXT_HTTP_ALPNS: &[&str] = &["http/1.1", "h2c"];
/// ALPNs an Istio client sends for HTTP over mTLS.
pub const MTLS_HTTP_ALPNS: &[&str] = &["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// Every ALPN an Istio client may send over mTLS.
pub const ALL_ISTIO_MTLS_ALPNS: &[&str] = &[
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];
/// ALPNs an Istio client sends for TCP over mTLS.
pub const MTLS_TCP_ALPNS: &[&str] = &["istio-peer-exchange", "istio"];

/// Packs a message into an `Any`.
pub fn any<T: Message + Name>(msg: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// Decodes an `Any` when it holds a `T`.
pub fn unpack<T: Message + Name + Default>(a: &Any) -> Option<T> {
    if a.type_url != T::type_url() {
        return None;
    }
    T::decode(a.value.as_slice()).ok()
}

/// A `google.protobuf.BoolValue`.
pub fn bool_value(v: bool) -> Option<BoolValue> {
    Some(BoolValue { value: v })
}

/// A `google.protobuf.Duration` from a std duration.
pub fn duration(d: std::time::Duration) -> Option<PbDuration> {
    Some(PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}

/// A TCP socket address.
pub fn socket_address(ip: &str, port: u32) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// A Unix domain socket address.
pub fn pipe_address(path: &str) -> core::Address {
    core::Address {
        address: Some(core::address::Address::Pipe(core::Pipe {
            path: path.to_string(),
            ..Default::default()
        })),
    }
}

/// ADS as a config source (RDS, EDS).
pub fn ads() -> Option<core::ConfigSource> {
    Some(core::ConfigSource {
        resource_api_version: core::ApiVersion::V3 as i32,
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource::default(),
        )),
        ..Default::default()
    })
}

/// A listener filter with an `Any` config.
pub fn listener_filter(name: &str, config: Any) -> listener::ListenerFilter {
    listener::ListenerFilter {
        name: name.to_string(),
        config_type: Some(listener::listener_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// The TLS inspector listener filter.
pub fn tls_inspector() -> listener::ListenerFilter {
    use weft_xds::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
    listener_filter(wellknown::TLS_INSPECTOR, any(&TlsInspector::default()))
}

/// The HTTP inspector listener filter.
pub fn http_inspector() -> listener::ListenerFilter {
    use weft_xds::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
    listener_filter(wellknown::HTTP_INSPECTOR, any(&HttpInspector::default()))
}

/// The original destination listener filter.
pub fn original_dst() -> listener::ListenerFilter {
    use weft_xds::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
    listener_filter(wellknown::ORIGINAL_DST, any(&OriginalDst::default()))
}

/// A network filter with an `Any` config.
pub fn network_filter(name: &str, config: Any) -> listener::Filter {
    listener::Filter {
        name: name.to_string(),
        config_type: Some(listener::filter::ConfigType::TypedConfig(config)),
    }
}

/// A TCP proxy to one cluster, or to weighted clusters when more than one is given.
pub fn tcp_proxy(stat_prefix: &str, clusters: &[(String, u32)]) -> listener::Filter {
    let specifier = if clusters.len() == 1 {
        tcp::tcp_proxy::ClusterSpecifier::Cluster(clusters[0].0.clone())
    } else {
        tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(tcp::tcp_proxy::WeightedCluster {
            clusters: clusters
                .iter()
                .map(
                    |(name, weight)| tcp::tcp_proxy::weighted_cluster::ClusterWeight {
                        name: name.clone(),
                        weight: *weight,
                        ..Default::default()
                    },
                )
                .collect(),
        })
    };
    let proxy = tcp::TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(specifier),
        ..Default::default()
    };
    network_filter(wellknown::TCP_PROXY, any(&proxy))
}

/// Where an HTTP connection manager gets its routes.
pub enum Routes {
    /// RDS by name.
    Rds(String),
    /// Inline.
    Inline(Box<route::RouteConfiguration>),
}

/// An HTTP connection manager with the router filter (and fault and CORS before it, as
/// istiod orders them).
pub fn http_connection_manager(
    stat_prefix: &str,
    routes: Routes,
    forward_client_cert: bool,
) -> listener::Filter {
    use weft_xds::envoy::extensions::filters::http::cors::v3::Cors;
    use weft_xds::envoy::extensions::filters::http::fault::v3::HttpFault;
    use weft_xds::envoy::extensions::filters::http::router::v3::Router;
    let http_filter = |name: &str, config: Any| hcm::HttpFilter {
        name: name.to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    };
    let route_specifier = match routes {
        Routes::Rds(name) => hcm::http_connection_manager::RouteSpecifier::Rds(hcm::Rds {
            config_source: ads(),
            route_config_name: name,
        }),
        Routes::Inline(rc) => hcm::http_connection_manager::RouteSpecifier::RouteConfig(*rc),
    };
    let mut manager = hcm::HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(route_specifier),
        http_filters: vec![
            http_filter(wellknown::FAULT, any(&HttpFault::default())),
            http_filter(wellknown::CORS, any(&Cors::default())),
            http_filter(wellknown::ROUTER, any(&Router::default())),
        ],
        use_remote_address: bool_value(false),
        normalize_path: bool_value(true),
        path_with_escaped_slashes_action:
            hcm::http_connection_manager::PathWithEscapedSlashesAction::KeepUnchanged as i32,
        ..Default::default()
    };
    if forward_client_cert {
        // As istiod's sidecar inbound: append this hop's element with the peer's subject,
        // DNS and URI (the SPIFFE id) SANs.
        manager.forward_client_cert_details =
            hcm::http_connection_manager::ForwardClientCertDetails::AppendForward as i32;
        manager.set_current_client_cert_details =
            Some(hcm::http_connection_manager::SetCurrentClientCertDetails {
                subject: bool_value(true),
                dns: true,
                uri: true,
                ..Default::default()
            });
    }
    network_filter(wellknown::HCM, any(&manager))
}

/// An SDS secret reference served over ADS (`default`, `ROOTCA`, `kubernetes://name`).
pub fn sds(name: &str) -> tls::SdsSecretConfig {
    tls::SdsSecretConfig {
        name: name.to_string(),
        sds_config: ads(),
    }
}

/// The common TLS context of Istio mTLS: the workload certificate `default`, validated
/// against `ROOTCA`.
pub fn istio_common_tls(alpn: &[&str]) -> tls::CommonTlsContext {
    tls::CommonTlsContext {
        alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
        tls_certificate_sds_secret_configs: vec![sds("default")],
        validation_context_type: Some(
            tls::common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(sds(
                "ROOTCA",
            )),
        ),
        ..Default::default()
    }
}

/// A downstream TLS transport socket.
pub fn downstream_tls(ctx: tls::DownstreamTlsContext) -> core::TransportSocket {
    core::TransportSocket {
        name: wellknown::TLS_SOCKET.to_string(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(any(&ctx))),
    }
}

/// An upstream TLS transport socket.
pub fn upstream_tls(ctx: tls::UpstreamTlsContext) -> core::TransportSocket {
    core::TransportSocket {
        name: wellknown::TLS_SOCKET.to_string(),
        config_type: Some(core::transport_socket::ConfigType::TypedConfig(any(&ctx))),
    }
}

/// The downstream context of an Istio mTLS server (inbound): client certificates required.
pub fn istio_mtls_server(alpn: &[&str]) -> core::TransportSocket {
    downstream_tls(tls::DownstreamTlsContext {
        common_tls_context: Some(istio_common_tls(alpn)),
        require_client_certificate: bool_value(true),
        ..Default::default()
    })
}

/// A CIDR range from `ip` or `ip/len`, with the host bits cleared (so that ranges that
/// differ only in insignificant bits compare equal). `None` when it does not parse.
pub fn cidr_range(s: &str) -> Option<core::CidrRange> {
    let net: ipnet::IpNet = if s.contains('/') {
        s.parse().ok()?
    } else {
        let ip: std::net::IpAddr = s.parse().ok()?;
        ipnet::IpNet::from(ip)
    };
    let net = net.trunc();
    Some(core::CidrRange {
        address_prefix: net.addr().to_string(),
        prefix_len: Some(weft_xds::google::protobuf::UInt32Value {
            value: u32::from(net.prefix_len()),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(filter: &listener::Filter) -> hcm::HttpConnectionManager {
        match &filter.config_type {
            Some(listener::filter::ConfigType::TypedConfig(any)) => {
                hcm::HttpConnectionManager::decode(any.value.as_slice()).expect("HCM")
            }
            other => panic!("no typed config: {other:?}"),
        }
    }

    #[test]
    fn inbound_manager_appends_the_peer_identity_to_xfcc() {
        let m = manager(&http_connection_manager(
            "inbound_0.0.0.0_9080",
            Routes::Rds("inbound|9080||".into()),
            true,
        ));
        assert_eq!(
            m.forward_client_cert_details,
            hcm::http_connection_manager::ForwardClientCertDetails::AppendForward as i32
        );
        let set = m.set_current_client_cert_details.expect("set current");
        assert!(set.uri && set.dns);
        assert_eq!(set.subject, bool_value(true));

        let m = manager(&http_connection_manager(
            "outbound_0.0.0.0_9080",
            Routes::Rds("9080".into()),
            false,
        ));
        assert_eq!(m.forward_client_cert_details, 0);
        assert!(m.set_current_client_cert_details.is_none());
    }
}
