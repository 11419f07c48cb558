//! Clusters (`outbound|PORT|SUBSET|HOST`, the passthrough and blackhole clusters) with
//! DestinationRule traffic policy mapped as istiod maps it, and EDS `ClusterLoadAssignment`s
//! that give every endpoint a locality.

use std::collections::BTreeMap;

use weft_config::networking::destination_rule::{
    ClientTlsSettings, PortTrafficPolicy, SimpleLb, TlsMode, TrafficPolicy,
};
use weft_xds::envoy::config::cluster::v3 as cluster;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::endpoint::v3 as endpoint;
use weft_xds::envoy::extensions::transport_sockets::tls::v3 as tls;
use weft_xds::google::protobuf::UInt32Value;

use super::envoy::{self, duration};
use super::names::{
    self, BLACKHOLE_CLUSTER, DYNAMIC_DNS_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER,
};
use crate::model::{
    Endpoint, Environment, Locality, MergedDestinationRule, Protocol, Proxy, Resolution, Service,
    ServicePort,
};

/// One endpoint of an assignment.
pub(crate) struct LbHost {
    pub address: core::Address,
    /// Load-balancing weight (0: unset).
    pub weight: u32,
    pub healthy: bool,
    /// The workload has an Istio sidecar (`security.istio.io/tlsMode: istio`), so auto mTLS
    /// may send it Istio mTLS.
    pub istio_mtls: bool,
}

/// Label Istio's injector sets on workloads with a sidecar.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// Filter metadata key Envoy reads for `transport_socket_matches`.
const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

fn struct_with(key: &str, value: &str) -> weft_xds::google::protobuf::Struct {
    use weft_xds::google::protobuf::{Value, value::Kind};
    weft_xds::google::protobuf::Struct {
        fields: [(
            key.to_string(),
            Value {
                kind: Some(Kind::StringValue(value.to_string())),
            },
        )]
        .into(),
    }
}
/// Endpoints of one locality.
pub(crate) type LocalityGroup = (Locality, Vec<LbHost>);

fn discovery_type(
    t: cluster::cluster::DiscoveryType,
) -> Option<cluster::cluster::ClusterDiscoveryType> {
    Some(cluster::cluster::ClusterDiscoveryType::Type(t as i32))
}

/// A `ClusterLoadAssignment` from endpoints grouped by locality: `(locality, [(address,
/// weight, healthy)])`. Every group carries a locality, even an empty one.
pub(crate) fn load_assignment(
    name: &str,
    groups: Vec<LocalityGroup>,
) -> endpoint::ClusterLoadAssignment {
    endpoint::ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: groups
            .into_iter()
            .map(|(loc, eps)| {
                let total: u32 = eps.iter().map(|h| h.weight.max(1)).sum();
                endpoint::LocalityLbEndpoints {
                    locality: Some(core::Locality {
                        region: loc.region,
                        zone: loc.zone,
                        sub_zone: loc.sub_zone,
                    }),
                    lb_endpoints: eps
                        .into_iter()
                        .map(|h| endpoint::LbEndpoint {
                            host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                                endpoint::Endpoint {
                                    address: Some(h.address),
                                    ..Default::default()
                                },
                            )),
                            metadata: h.istio_mtls.then(|| core::Metadata {
                                filter_metadata: [(
                                    TRANSPORT_SOCKET_MATCH.to_string(),
                                    struct_with("tlsMode", "istio"),
                                )]
                                .into(),
                                ..Default::default()
                            }),
                            health_status: if h.healthy {
                                core::HealthStatus::Healthy as i32
                            } else {
                                core::HealthStatus::Unhealthy as i32
                            },
                            load_balancing_weight: Some(UInt32Value {
                                value: h.weight.max(1),
                            }),
                        })
                        .collect(),
                    load_balancing_weight: Some(UInt32Value { value: total }),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    }
}

fn endpoint_groups(eps: &[Endpoint]) -> Vec<LocalityGroup> {
    let mut groups: BTreeMap<Locality, Vec<LbHost>> = BTreeMap::new();
    for e in eps {
        let address = if let Some(p) = e.address.strip_prefix("unix://") {
            envoy::pipe_address(p)
        } else {
            envoy::socket_address(&e.address, e.port)
        };
        groups.entry(e.locality.clone()).or_default().push(LbHost {
            address,
            weight: e.weight,
            healthy: e.healthy,
            istio_mtls: e.labels.get(TLS_MODE_LABEL).is_some_and(|m| m == "istio"),
        });
    }
    groups.into_iter().collect()
}

/// Traffic policy for one port: port-level settings over the top-level ones, field by field.
pub(crate) fn policy_for_port(policy: Option<&TrafficPolicy>, port: u32) -> Option<TrafficPolicy> {
    let policy = policy?;
    let mut out = policy.clone();
    out.port_level_settings.clear();
    if let Some(pl) = policy
        .port_level_settings
        .iter()
        .find(|p| p.port.as_ref().is_some_and(|s| s.number == port))
    {
        let PortTrafficPolicy {
            load_balancer,
            connection_pool,
            outlier_detection,
            tls,
            ..
        } = pl.clone();
        if load_balancer.is_some() {
            out.load_balancer = load_balancer;
        }
        if connection_pool.is_some() {
            out.connection_pool = connection_pool;
        }
        if outlier_detection.is_some() {
            out.outlier_detection = outlier_detection;
        }
        if tls.is_some() {
            out.tls = tls;
        }
    }
    Some(out)
}

/// Subset policy over the (port-resolved) top-level policy, as Istio's `MergeTrafficPolicy`.
fn merge_policy(
    base: Option<TrafficPolicy>,
    subset: Option<TrafficPolicy>,
) -> Option<TrafficPolicy> {
    match (base, subset) {
        (None, s) => s,
        (b, None) => b,
        (Some(mut b), Some(s)) => {
            if s.load_balancer.is_some() {
                b.load_balancer = s.load_balancer;
            }
            if s.connection_pool.is_some() {
                b.connection_pool = s.connection_pool;
            }
            if s.outlier_detection.is_some() {
                b.outlier_detection = s.outlier_detection;
            }
            if s.tls.is_some() {
                b.tls = s.tls;
            }
            if s.tunnel.is_some() {
                b.tunnel = s.tunnel;
            }
            if s.proxy_protocol.is_some() {
                b.proxy_protocol = s.proxy_protocol;
            }
            Some(b)
        }
    }
}

fn threshold(v: i32) -> Option<UInt32Value> {
    Some(UInt32Value {
        value: if v > 0 { v as u32 } else { u32::MAX },
    })
}

fn apply_policy(
    c: &mut cluster::Cluster,
    policy: Option<&TrafficPolicy>,
    port: &ServicePort,
    sni: &str,
) -> Option<u32> {
    use cluster::cluster::LbPolicy;
    c.lb_policy = LbPolicy::LeastRequest as i32;
    let mut thresholds = cluster::circuit_breakers::Thresholds {
        max_connections: threshold(0),
        max_pending_requests: threshold(0),
        max_requests: threshold(0),
        max_retries: threshold(0),
        track_remaining: true,
        ..Default::default()
    };
    let mut max_requests_per_connection = None;
    let Some(policy) = policy else {
        c.circuit_breakers = Some(cluster::CircuitBreakers {
            thresholds: vec![thresholds],
            ..Default::default()
        });
        return None;
    };
    if let Some(lb) = &policy.load_balancer {
        if let Some(simple) = lb.simple {
            c.lb_policy = match simple {
                SimpleLb::RoundRobin => LbPolicy::RoundRobin,
                SimpleLb::Random => LbPolicy::Random,
                SimpleLb::Passthrough => LbPolicy::ClusterProvided,
                SimpleLb::LeastConn | SimpleLb::LeastRequest | SimpleLb::Unspecified => {
                    LbPolicy::LeastRequest
                }
            } as i32;
            if simple == SimpleLb::Passthrough {
                c.cluster_discovery_type =
                    discovery_type(cluster::cluster::DiscoveryType::OriginalDst);
                c.eds_cluster_config = None;
                c.load_assignment = None;
            }
        } else if let Some(ch) = &lb.consistent_hash {
            c.lb_policy = if ch.maglev.is_some() {
                LbPolicy::Maglev
            } else {
                LbPolicy::RingHash
            } as i32;
        }
    }
    if let Some(cp) = &policy.connection_pool {
        if let Some(tcp) = &cp.tcp {
            thresholds.max_connections = threshold(tcp.max_connections);
            if let Some(t) = tcp.connect_timeout {
                c.connect_timeout = duration(t.get());
            }
        }
        if let Some(http) = &cp.http {
            thresholds.max_pending_requests = threshold(http.http1_max_pending_requests);
            thresholds.max_requests = threshold(http.http2_max_requests);
            thresholds.max_retries = threshold(http.max_retries);
            if http.max_requests_per_connection > 0 {
                max_requests_per_connection = Some(http.max_requests_per_connection as u32);
            }
        }
    }
    c.circuit_breakers = Some(cluster::CircuitBreakers {
        thresholds: vec![thresholds],
        ..Default::default()
    });
    if let Some(od) = &policy.outlier_detection {
        let mut o = cluster::OutlierDetection {
            interval: od.interval.and_then(|d| duration(d.get())),
            base_ejection_time: od.base_ejection_time.and_then(|d| duration(d.get())),
            ..Default::default()
        };
        if od.max_ejection_percent > 0 {
            o.max_ejection_percent = Some(UInt32Value {
                value: od.max_ejection_percent as u32,
            });
        }
        let five_xx = od
            .consecutive_5xx_errors
            .or((od.consecutive_errors > 0).then_some(od.consecutive_errors as u32));
        match five_xx {
            Some(n) if n > 0 => {
                o.consecutive_5xx = Some(UInt32Value { value: n });
                o.enforcing_consecutive_5xx = Some(UInt32Value { value: 100 });
            }
            _ => o.enforcing_consecutive_5xx = Some(UInt32Value { value: 0 }),
        }
        if let Some(n) = od.consecutive_gateway_errors {
            o.consecutive_gateway_failure = Some(UInt32Value { value: n });
            o.enforcing_consecutive_gateway_failure = Some(UInt32Value { value: 100 });
        }
        c.outlier_detection = Some(o);
    }
    if let Some(t) = &policy.tls {
        c.transport_socket = upstream_tls(t, port, sni);
    }
    max_requests_per_connection
}

fn upstream_tls(
    t: &ClientTlsSettings,
    _port: &ServicePort,
    sni: &str,
) -> Option<core::TransportSocket> {
    let common = match t.mode {
        TlsMode::Disable => return None,
        TlsMode::IstioMutual => envoy::istio_common_tls(&["istio"]),
        TlsMode::Simple | TlsMode::Mutual => {
            let mut common = tls::CommonTlsContext::default();
            if !t.credential_name.is_empty() {
                if t.mode == TlsMode::Mutual {
                    common
                        .tls_certificate_sds_secret_configs
                        .push(envoy::sds(&format!("kubernetes://{}", t.credential_name)));
                }
                common.validation_context_type = Some(
                    tls::common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                        envoy::sds(&format!("kubernetes://{}-cacert", t.credential_name)),
                    ),
                );
            } else {
                if t.mode == TlsMode::Mutual && !t.client_certificate.is_empty() {
                    common
                        .tls_certificate_sds_secret_configs
                        .push(envoy::sds(&format!(
                            "file-cert:{}~{}",
                            t.client_certificate, t.private_key
                        )));
                }
                if !t.ca_certificates.is_empty() {
                    common.validation_context_type = Some(
                        tls::common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                            envoy::sds(&format!("file-root:{}", t.ca_certificates)),
                        ),
                    );
                }
            }
            common
        }
    };
    let sni = if !t.sni.is_empty() {
        t.sni.clone()
    } else {
        sni.to_string()
    };
    Some(envoy::upstream_tls(tls::UpstreamTlsContext {
        common_tls_context: Some(common),
        sni,
        ..Default::default()
    }))
}

/// Auto mTLS (Istio's default): Istio mTLS to endpoints labelled as having a sidecar,
/// plaintext to the others.
fn auto_mtls_matches(sni: &str) -> Vec<cluster::cluster::TransportSocketMatch> {
    use weft_xds::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
    vec![
        cluster::cluster::TransportSocketMatch {
            name: "tlsMode-istio".to_string(),
            r#match: Some(struct_with("tlsMode", "istio")),
            transport_socket: Some(envoy::upstream_tls(tls::UpstreamTlsContext {
                common_tls_context: Some(envoy::istio_common_tls(envoy::MTLS_TCP_ALPNS)),
                sni: sni.to_string(),
                ..Default::default()
            })),
        },
        cluster::cluster::TransportSocketMatch {
            name: "tlsMode-disabled".to_string(),
            r#match: Some(Default::default()),
            transport_socket: Some(core::TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".to_string(),
                config_type: Some(core::transport_socket::ConfigType::TypedConfig(envoy::any(
                    &RawBuffer::default(),
                ))),
            }),
        },
    ]
}

/// Upstream HTTP protocol options: HTTP/2 for h2 ports, and the per-connection request
/// limit of the connection pool.
fn protocol_options(
    http2: bool,
    max_requests_per_connection: Option<u32>,
) -> std::collections::HashMap<String, weft_xds::google::protobuf::Any> {
    use weft_xds::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use weft_xds::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    };
    if !http2 && max_requests_per_connection.is_none() {
        return Default::default();
    }
    let mut opts = HttpProtocolOptions {
        common_http_protocol_options: max_requests_per_connection.map(|n| {
            core::HttpProtocolOptions {
                max_requests_per_connection: Some(UInt32Value { value: n }),
                ..Default::default()
            }
        }),
        ..Default::default()
    };
    if http2 {
        opts.upstream_protocol_options = Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    core::Http2ProtocolOptions::default(),
                )),
            },
        ));
    }
    [(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        envoy::any(&opts),
    )]
    .into()
}

fn build_cluster(
    env: &Environment,
    svc: &Service,
    port: &ServicePort,
    subset: &str,
    policy: Option<&TrafficPolicy>,
    endpoints: &[Endpoint],
) -> (cluster::Cluster, Option<endpoint::ClusterLoadAssignment>) {
    use cluster::cluster::DiscoveryType;
    let name = names::outbound_cluster(port.port, subset, &svc.hostname);
    let mut c = cluster::Cluster {
        name: name.clone(),
        connect_timeout: duration(env.mesh.connect_timeout),
        ..Default::default()
    };
    let mut cla = None;
    match svc.resolution {
        Resolution::ClientSideLb => {
            c.cluster_discovery_type = discovery_type(DiscoveryType::Eds);
            c.eds_cluster_config = Some(cluster::cluster::EdsClusterConfig {
                eds_config: envoy::ads(),
                service_name: name.clone(),
            });
            cla = Some(load_assignment(&name, endpoint_groups(endpoints)));
        }
        Resolution::DnsLb | Resolution::DnsRoundRobin => {
            c.cluster_discovery_type = discovery_type(if svc.resolution == Resolution::DnsLb {
                DiscoveryType::StrictDns
            } else {
                DiscoveryType::LogicalDns
            });
            c.dns_lookup_family = cluster::cluster::DnsLookupFamily::V4Only as i32;
            c.load_assignment = Some(load_assignment(&name, endpoint_groups(endpoints)));
        }
        Resolution::Passthrough | Resolution::DynamicDns | Resolution::Alias => {
            c.cluster_discovery_type = discovery_type(DiscoveryType::OriginalDst);
        }
    }
    let sni = format!("outbound_.{}_.{}_.{}", port.port, subset, svc.hostname);
    let max_requests = apply_policy(&mut c, policy, port, &sni);
    if c.transport_socket.is_none() && env.mesh.enable_auto_mtls && !svc.mesh_external {
        c.transport_socket_matches = auto_mtls_matches(&sni);
    }
    if matches!(
        svc.resolution,
        Resolution::Passthrough | Resolution::DynamicDns
    ) {
        c.lb_policy = cluster::cluster::LbPolicy::ClusterProvided as i32;
    }
    if c.lb_policy == cluster::cluster::LbPolicy::ClusterProvided as i32 {
        cla = None;
    }
    c.typed_extension_protocol_options = protocol_options(port.protocol.is_http2(), max_requests);
    (c, cla)
}

/// Outbound clusters (and EDS assignments) for services, with their DestinationRules.
pub(crate) fn outbound_clusters(
    env: &Environment,
    proxy: &Proxy,
    services: &[std::sync::Arc<Service>],
) -> (Vec<cluster::Cluster>, Vec<endpoint::ClusterLoadAssignment>) {
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for svc in services {
        if svc.resolution == Resolution::Alias {
            continue;
        }
        let all_endpoints = env.registry.endpoints(svc);
        let dr: Option<MergedDestinationRule> =
            env.destination_rule(proxy, &svc.hostname, &svc.namespace);
        for port in &svc.ports {
            if port.protocol == Protocol::Udp {
                continue;
            }
            let eps: Vec<Endpoint> = all_endpoints
                .iter()
                .filter(|e| e.service_port == port.port)
                .cloned()
                .collect();
            let base = policy_for_port(
                dr.as_ref().and_then(|d| d.traffic_policy.as_ref()),
                port.port,
            );
            let (c, cla) = build_cluster(env, svc, port, "", base.as_ref(), &eps);
            clusters.push(c);
            assignments.extend(cla);
            for subset in dr.iter().flat_map(|d| d.subsets.iter()) {
                let sub_eps: Vec<Endpoint> = eps
                    .iter()
                    .filter(|e| weft_config::meta::selector_matches(&subset.labels, &e.labels))
                    .cloned()
                    .collect();
                let policy = merge_policy(
                    base.clone(),
                    policy_for_port(subset.traffic_policy.as_ref(), port.port),
                );
                let (c, cla) =
                    build_cluster(env, svc, port, &subset.name, policy.as_ref(), &sub_eps);
                clusters.push(c);
                assignments.extend(cla);
            }
        }
    }
    (clusters, assignments)
}

/// `BlackHoleCluster`, `PassthroughCluster`, `InboundPassthroughCluster` and, in dynamic DNS
/// mode, `AllowAnyDynamicDNSCluster`.
pub(crate) fn special_clusters(
    env: &Environment,
    dynamic_dns: bool,
    inbound: bool,
) -> Vec<cluster::Cluster> {
    use cluster::cluster::{DiscoveryType, LbPolicy};
    let timeout = duration(env.mesh.connect_timeout);
    let mut out = vec![
        cluster::Cluster {
            name: BLACKHOLE_CLUSTER.to_string(),
            cluster_discovery_type: discovery_type(DiscoveryType::Static),
            connect_timeout: timeout,
            ..Default::default()
        },
        cluster::Cluster {
            name: PASSTHROUGH_CLUSTER.to_string(),
            cluster_discovery_type: discovery_type(DiscoveryType::OriginalDst),
            lb_policy: LbPolicy::ClusterProvided as i32,
            connect_timeout: timeout,
            ..Default::default()
        },
    ];
    if inbound {
        let source = match envoy::socket_address("127.0.0.6", 0).address {
            Some(core::address::Address::SocketAddress(s)) => Some(s),
            _ => None,
        };
        out.push(cluster::Cluster {
            name: INBOUND_PASSTHROUGH_CLUSTER.to_string(),
            cluster_discovery_type: discovery_type(DiscoveryType::OriginalDst),
            lb_policy: LbPolicy::ClusterProvided as i32,
            connect_timeout: timeout,
            upstream_bind_config: Some(core::BindConfig {
                source_address: source,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if dynamic_dns {
        use weft_xds::envoy::extensions::clusters::dynamic_forward_proxy::v3 as dfp;
        use weft_xds::envoy::extensions::common::dynamic_forward_proxy::v3::DnsCacheConfig;
        let config = dfp::ClusterConfig {
            cluster_implementation_specifier: Some(
                dfp::cluster_config::ClusterImplementationSpecifier::DnsCacheConfig(
                    DnsCacheConfig {
                        name: "dynamic_forward_proxy_cache_config".to_string(),
                        dns_lookup_family: cluster::cluster::DnsLookupFamily::V4Only as i32,
                        ..Default::default()
                    },
                ),
            ),
            ..Default::default()
        };
        out.push(cluster::Cluster {
            name: DYNAMIC_DNS_CLUSTER.to_string(),
            lb_policy: LbPolicy::ClusterProvided as i32,
            connect_timeout: timeout,
            cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::ClusterType(
                cluster::cluster::CustomClusterType {
                    name: "envoy.clusters.dynamic_forward_proxy".to_string(),
                    typed_config: Some(envoy::any(&config)),
                },
            )),
            ..Default::default()
        });
    }
    out
}
