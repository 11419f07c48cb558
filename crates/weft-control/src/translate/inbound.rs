//! `virtualInbound` (15006): per workload port, filter chains for plaintext, TLS and Istio
//! mTLS as the port's PeerAuthentication mode allows, plus passthrough chains for ports no
//! service declares; and the `inbound|PORT||` clusters behind them.

use weft_config::networking::gateway::{ServerTlsSettings, TlsMode};
use weft_xds::envoy::config::cluster::v3 as cluster;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::transport_sockets::tls::v3 as tls;

use super::envoy::{
    self, ALL_ISTIO_MTLS_ALPNS, MTLS_HTTP_ALPNS, MTLS_TCP_ALPNS, PLAINTEXT_HTTP_ALPNS, RAW_BUFFER,
    Routes, TLS_TRANSPORT,
};
use super::names::{self, BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER};
use super::route::default_route;
use crate::model::{Environment, ListenerProtocol, MtlsMode, Protocol, Proxy};

/// One filter chain shape for a given mTLS mode and protocol (Istio's
/// `FilterChainMatchOptions`).
struct MatchOption {
    alpn: &'static [&'static str],
    transport: &'static str,
    http: bool,
    tls: bool,
}

const fn opt(
    alpn: &'static [&'static str],
    transport: &'static str,
    http: bool,
    tls: bool,
) -> MatchOption {
    MatchOption {
        alpn,
        transport,
        http,
        tls,
    }
}

fn match_options(mode: MtlsMode, protocol: ListenerProtocol) -> Vec<MatchOption> {
    match (protocol, mode) {
        (ListenerProtocol::Http, MtlsMode::Strict) => vec![opt(&[], TLS_TRANSPORT, true, true)],
        (ListenerProtocol::Http, MtlsMode::Permissive) => vec![
            opt(ALL_ISTIO_MTLS_ALPNS, TLS_TRANSPORT, true, true),
            opt(&[], RAW_BUFFER, true, false),
        ],
        (ListenerProtocol::Http, MtlsMode::Disable) => vec![opt(&[], "", true, false)],
        (ListenerProtocol::Auto, MtlsMode::Strict) => vec![
            opt(MTLS_HTTP_ALPNS, TLS_TRANSPORT, true, true),
            opt(&[], TLS_TRANSPORT, false, true),
        ],
        (ListenerProtocol::Auto, MtlsMode::Permissive) => vec![
            opt(MTLS_HTTP_ALPNS, TLS_TRANSPORT, true, true),
            opt(PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, true, false),
            opt(MTLS_TCP_ALPNS, TLS_TRANSPORT, false, true),
            opt(&[], TLS_TRANSPORT, false, false),
            opt(&[], RAW_BUFFER, false, false),
        ],
        (ListenerProtocol::Auto, MtlsMode::Disable) => vec![
            opt(PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, true, false),
            opt(&[], RAW_BUFFER, false, false),
            opt(&[], TLS_TRANSPORT, false, false),
        ],
        (_, MtlsMode::Strict) => vec![opt(&[], TLS_TRANSPORT, false, true)],
        (_, MtlsMode::Permissive) => vec![
            opt(ALL_ISTIO_MTLS_ALPNS, TLS_TRANSPORT, false, true),
            opt(&[], TLS_TRANSPORT, false, false),
            opt(&[], RAW_BUFFER, false, false),
        ],
        (_, MtlsMode::Disable) => vec![opt(&[], "", false, false)],
    }
}

/// A port the workload serves, and where its inbound cluster sends traffic.
#[derive(Clone, Debug)]
pub(crate) struct InboundPort {
    pub port: u32,
    pub protocol: Protocol,
    /// Sidecar `defaultEndpoint` (`127.0.0.1:8080`, `unix:///sock`), empty for original dst.
    pub default_endpoint: String,
    /// Address the chain is named after (`0.0.0.0` for service ports, the Sidecar ingress
    /// `bind` or the proxy IP for Sidecar ingress ports).
    pub bind: String,
    /// TLS the Sidecar ingress listener terminates itself (`ingress[].tls`).
    pub tls: Option<ServerTlsSettings>,
    /// The port gets a listener of its own bound to `bind:port` instead of a `virtualInbound`
    /// chain: the proxy captures nothing, or the Sidecar ingress says `captureMode: NONE`.
    pub bind_to_port: bool,
}

/// The ports the proxy serves: the Sidecar's `ingress` listeners, else the service ports
/// whose endpoints are this proxy.
pub(crate) fn inbound_ports(env: &Environment, proxy: &Proxy) -> Vec<InboundPort> {
    if let Some(sc) = env.sidecar_for(proxy)
        && !sc.spec.ingress.is_empty()
    {
        return sc
            .spec
            .ingress
            .iter()
            .filter_map(|i| {
                let p = i.port.as_ref()?;
                let bind = if i.bind.is_empty() {
                    proxy
                        .ip_addresses
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "0.0.0.0".to_string())
                } else {
                    i.bind.clone()
                };
                Some(InboundPort {
                    port: p.number,
                    protocol: Protocol::parse(&p.protocol),
                    default_endpoint: i.default_endpoint.clone(),
                    bind,
                    tls: i.tls.clone(),
                    bind_to_port: proxy.interception_none()
                        || i.capture_mode == weft_config::networking::sidecar::CaptureMode::None,
                })
            })
            .collect();
    }
    let mut out: Vec<InboundPort> = Vec::new();
    for t in env.proxy_targets(proxy) {
        if out.iter().any(|p| p.port == t.target_port) {
            continue;
        }
        out.push(InboundPort {
            port: t.target_port,
            protocol: t.port.protocol,
            default_endpoint: String::new(),
            bind: if proxy.ipv6_only() { "::" } else { "0.0.0.0" }.to_string(),
            tls: None,
            bind_to_port: proxy.interception_none(),
        });
    }
    out
}

fn inbound_http_routes(port: u32, cluster: &str) -> route::RouteConfiguration {
    route::RouteConfiguration {
        name: cluster.to_string(),
        virtual_hosts: vec![route::VirtualHost {
            name: format!("inbound|http|{port}"),
            domains: vec!["*".to_string()],
            routes: vec![{
                let mut r = default_route(cluster);
                if let Some(route::route::Action::Route(a)) = &mut r.action {
                    a.retry_policy = None;
                }
                r
            }],
            ..Default::default()
        }],
        validate_clusters: envoy::bool_value(false),
        ..Default::default()
    }
}

fn chains_for(
    name_http: &str,
    name_tcp: &str,
    port: Option<u32>,
    route_port: u32,
    mode: MtlsMode,
    protocol: ListenerProtocol,
    cluster: &str,
) -> Vec<listener::FilterChain> {
    let stat_prefix = format!("inbound_0.0.0.0_{route_port}");
    match_options(mode, protocol)
        .into_iter()
        .map(|o| {
            let filters = if o.http {
                vec![envoy::http_connection_manager(
                    &stat_prefix,
                    Routes::Inline(Box::new(inbound_http_routes(route_port, cluster))),
                    true,
                )]
            } else {
                vec![envoy::tcp_proxy(cluster, &[(cluster.to_string(), 1)])]
            };
            let alpn: &[&str] = if o.http { &["h2", "http/1.1"] } else { &[] };
            listener::FilterChain {
                name: if o.http { name_http } else { name_tcp }.to_string(),
                filter_chain_match: Some(listener::FilterChainMatch {
                    destination_port: port
                        .map(|p| weft_xds::google::protobuf::UInt32Value { value: p }),
                    transport_protocol: o.transport.to_string(),
                    application_protocols: o.alpn.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                filters,
                transport_socket: o.tls.then(|| envoy::istio_mtls_server(alpn)),
                ..Default::default()
            }
        })
        .collect()
}

/// The chain of a Sidecar ingress port that terminates TLS with its own certificates (when
/// PeerAuthentication does not require Istio mTLS there): HTTPS is served as HTTP, TLS as TCP.
fn sidecar_tls_chain(name: &str, p: &InboundPort, t: &ServerTlsSettings) -> listener::FilterChain {
    let http = p.protocol.is_http() || p.protocol == Protocol::Https;
    let cluster = names::inbound_cluster(p.port);
    let filters = if http {
        vec![envoy::http_connection_manager(
            &format!("inbound_{name}"),
            Routes::Inline(Box::new(inbound_http_routes(p.port, &cluster))),
            true,
        )]
    } else {
        vec![envoy::tcp_proxy(&cluster, &[(cluster.clone(), 1)])]
    };
    let mutual = t.mode == TlsMode::Mutual;
    let mut common = tls::CommonTlsContext {
        alpn_protocols: if http {
            vec!["h2".to_string(), "http/1.1".to_string()]
        } else {
            Vec::new()
        },
        tls_certificate_sds_secret_configs: vec![envoy::sds(&format!(
            "file-cert:{}~{}",
            t.server_certificate, t.private_key
        ))],
        ..Default::default()
    };
    if mutual && !t.ca_certificates.is_empty() {
        common.validation_context_type = Some(
            tls::common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                envoy::sds(&format!("file-root:{}", t.ca_certificates)),
            ),
        );
    }
    listener::FilterChain {
        name: name.to_string(),
        filter_chain_match: Some(listener::FilterChainMatch {
            destination_port: Some(weft_xds::google::protobuf::UInt32Value { value: p.port }),
            transport_protocol: TLS_TRANSPORT.to_string(),
            ..Default::default()
        }),
        filters,
        transport_socket: Some(envoy::downstream_tls(tls::DownstreamTlsContext {
            common_tls_context: Some(common),
            require_client_certificate: envoy::bool_value(mutual),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Builds `virtualInbound`.
pub(crate) fn virtual_inbound(
    env: &Environment,
    proxy: &Proxy,
    ports: &[InboundPort],
) -> listener::Listener {
    let wildcard = if proxy.ipv6_only() { "::" } else { "0.0.0.0" };
    let mut chains = vec![listener::FilterChain {
        name: "virtualInbound-blackhole".to_string(),
        filter_chain_match: Some(listener::FilterChainMatch {
            destination_port: Some(weft_xds::google::protobuf::UInt32Value {
                value: names::VIRTUAL_INBOUND_PORT,
            }),
            ..Default::default()
        }),
        filters: vec![envoy::tcp_proxy(
            BLACKHOLE_CLUSTER,
            &[(BLACKHOLE_CLUSTER.to_string(), 1)],
        )],
        ..Default::default()
    }];
    for p in ports.iter().filter(|p| !p.bind_to_port) {
        let lp = p.protocol.listener_protocol();
        if lp == ListenerProtocol::Unsupported {
            continue;
        }
        let name = names::listener_name(&p.bind, p.port);
        let mode = env.mtls_mode(proxy, Some(p.port));
        if let Some(tls) = p.tls.as_ref().filter(|_| mode != MtlsMode::Strict) {
            chains.push(sidecar_tls_chain(&name, p, tls));
            continue;
        }
        chains.extend(chains_for(
            &name,
            &name,
            Some(p.port),
            p.port,
            mode,
            lp,
            &names::inbound_cluster(p.port),
        ));
    }
    for port in env.mtls_port_overrides(proxy) {
        if ports.iter().any(|p| p.port == port) {
            continue;
        }
        chains.extend(chains_for(
            "virtualInbound-catchall-http",
            names::VIRTUAL_INBOUND,
            Some(port),
            0,
            env.mtls_mode(proxy, Some(port)),
            ListenerProtocol::Auto,
            INBOUND_PASSTHROUGH_CLUSTER,
        ));
    }
    chains.extend(chains_for(
        "virtualInbound-catchall-http",
        names::VIRTUAL_INBOUND,
        None,
        0,
        env.mtls_mode(proxy, None),
        ListenerProtocol::Auto,
        INBOUND_PASSTHROUGH_CLUSTER,
    ));
    listener::Listener {
        name: names::VIRTUAL_INBOUND.to_string(),
        address: Some(envoy::socket_address(wildcard, names::VIRTUAL_INBOUND_PORT)),
        use_original_dst: envoy::bool_value(true),
        traffic_direction: core::TrafficDirection::Inbound as i32,
        listener_filters: vec![
            envoy::original_dst(),
            envoy::tls_inspector(),
            envoy::http_inspector(),
        ],
        continue_on_listener_filters_timeout: true,
        filter_chains: chains,
        ..Default::default()
    }
}

/// The inbound ports that are not captured (`INTERCEPTION_MODE: NONE`, or a Sidecar ingress with
/// `captureMode: NONE`) get one listener each, bound to `bind:port` (the Sidecar ingress `bind`,
/// else the proxy IP), with the chains `virtualInbound` would have had for that port; Istio
/// names it `BIND_PORT`.
pub(crate) fn inbound_listeners(
    env: &Environment,
    proxy: &Proxy,
    ports: &[InboundPort],
) -> Vec<listener::Listener> {
    let mut out: Vec<listener::Listener> = Vec::new();
    for p in ports.iter().filter(|p| p.bind_to_port) {
        let lp = p.protocol.listener_protocol();
        if lp == ListenerProtocol::Unsupported {
            continue;
        }
        let name = names::listener_name(&p.bind, p.port);
        if out.iter().any(|l| l.name == name) {
            continue;
        }
        let mode = env.mtls_mode(proxy, Some(p.port));
        let filter_chains = match p.tls.as_ref().filter(|_| mode != MtlsMode::Strict) {
            Some(tls) => vec![sidecar_tls_chain(&name, p, tls)],
            None => chains_for(
                &name,
                &name,
                Some(p.port),
                p.port,
                mode,
                lp,
                &names::inbound_cluster(p.port),
            ),
        };
        out.push(listener::Listener {
            name: name.clone(),
            address: Some(envoy::socket_address(&p.bind, p.port)),
            traffic_direction: core::TrafficDirection::Inbound as i32,
            listener_filters: vec![envoy::tls_inspector(), envoy::http_inspector()],
            continue_on_listener_filters_timeout: true,
            filter_chains,
            ..Default::default()
        });
    }
    out
}

/// `inbound|PORT||` clusters: to the Sidecar's `defaultEndpoint` when one is given, else to
/// the original destination through the inbound passthrough source address.
pub(crate) fn inbound_clusters(
    env: &Environment,
    proxy: &Proxy,
    ports: &[InboundPort],
) -> Vec<cluster::Cluster> {
    let mut out = Vec::new();
    for p in ports {
        let name = names::inbound_cluster(p.port);
        let mut c = cluster::Cluster {
            name: name.clone(),
            connect_timeout: envoy::duration(env.mesh.connect_timeout),
            ..Default::default()
        };
        if p.default_endpoint.is_empty() {
            c.cluster_discovery_type = Some(cluster::cluster::ClusterDiscoveryType::Type(
                cluster::cluster::DiscoveryType::OriginalDst as i32,
            ));
            c.lb_policy = cluster::cluster::LbPolicy::ClusterProvided as i32;
            c.upstream_bind_config = Some(core::BindConfig {
                source_address: Some(
                    envoy::socket_address("127.0.0.6", 0)
                        .address
                        .and_then(|a| match a {
                            core::address::Address::SocketAddress(s) => Some(s),
                            _ => None,
                        })
                        .unwrap_or_default(),
                ),
                ..Default::default()
            });
        } else {
            let address = if let Some(path) = p.default_endpoint.strip_prefix("unix://") {
                envoy::pipe_address(path)
            } else {
                let (host, port) = p
                    .default_endpoint
                    .rsplit_once(':')
                    .map(|(h, port)| (h.to_string(), port.parse().unwrap_or(p.port)))
                    .unwrap_or((p.default_endpoint.clone(), p.port));
                let host = if host == "0.0.0.0" {
                    proxy.ip_addresses.first().cloned().unwrap_or(host)
                } else {
                    host
                };
                envoy::socket_address(&host, port)
            };
            c.cluster_discovery_type = Some(cluster::cluster::ClusterDiscoveryType::Type(
                cluster::cluster::DiscoveryType::Static as i32,
            ));
            c.load_assignment = Some(super::cluster::load_assignment(
                &name,
                vec![(
                    Default::default(),
                    vec![super::cluster::LbHost {
                        address,
                        weight: 0,
                        healthy: true,
                        istio_mtls: false,
                    }],
                )],
            ));
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::{Environment, MeshSettings, Proxy};
    use crate::translate::translate;

    const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.1.2, labels: {app: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:18080
  egress:
  - bind: 127.0.2.1
    captureMode: NONE
    hosts: ["./*"]
"#;

    fn proxy(interception: &str) -> Proxy {
        let mut p = Proxy::from_node_id(
            "sidecar~127.0.1.1~productpage-v1.default~default.svc.cluster.local",
        )
        .expect("valid id");
        p.labels.insert("app".into(), "productpage".into());
        p.metadata.interception_mode = interception.into();
        p
    }

    #[test]
    fn no_capture_binds_inbound_ports_and_drops_virtual_listeners() {
        let parsed = weft_config::parse_str(CONFIG, "c.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let env = Environment::from_resources(&parsed.resources, MeshSettings::default());

        let out = translate(&env, &proxy("NONE"));
        let names: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["127.0.1.1_9080", "127.0.2.1_9080"], "{names:?}");
        let inbound = out.listener("127.0.1.1_9080").expect("inbound listener");
        assert_ne!(
            inbound.bind_to_port,
            crate::translate::envoy::bool_value(false)
        );
        let cluster = out.cluster("inbound|9080||").expect("inbound cluster");
        assert!(
            format!("{:?}", cluster.load_assignment).contains("18080"),
            "the inbound cluster goes to the defaultEndpoint"
        );

        let captured = translate(&env, &proxy("REDIRECT"));
        assert!(captured.listener("virtualInbound").is_some());
        assert!(captured.listener("virtualOutbound").is_some());
        assert!(captured.listener("127.0.1.1_9080").is_none());
    }

    #[test]
    fn ingress_capture_mode_none_binds_that_port_under_redirect() {
        let text = CONFIG.replace(
            "    defaultEndpoint: 127.0.0.1:18080",
            "    defaultEndpoint: 127.0.0.1:18080\n    captureMode: NONE",
        );
        let parsed = weft_config::parse_str(&text, "c.yaml");
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let env = Environment::from_resources(&parsed.resources, MeshSettings::default());
        let out = translate(&env, &proxy("REDIRECT"));
        assert!(out.listener("127.0.1.1_9080").is_some(), "own listener");
        let vi = out.listener("virtualInbound").expect("virtualInbound");
        assert!(
            vi.filter_chains.iter().all(|c| c.name != "127.0.1.1_9080"),
            "no virtualInbound chain for a port with its own listener"
        );
        assert!(out.cluster("inbound|9080||").is_some());
    }

    #[test]
    fn no_capture_binds_every_outbound_listener() {
        let parsed = weft_config::parse_str(CONFIG, "c.yaml");
        let mut env = Environment::from_resources(&parsed.resources, MeshSettings::default());
        env.sidecars.clear();
        let out = translate(&env, &proxy("NONE"));
        let l = out
            .listener("127.0.0.1_9080")
            .expect("outbound listener on localhost");
        assert_ne!(l.bind_to_port, crate::translate::envoy::bool_value(false));
        assert!(out.listener("virtualOutbound").is_none());
    }
}
