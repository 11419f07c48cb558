//! Sidecar outbound listeners: one per service port (`0.0.0.0_PORT` for HTTP, `VIP_PORT` for
//! TCP and sniffed services with a VIP), merged on conflicts as istiod merges them, plus
//! `virtualOutbound` on 15001.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use weft_config::networking::VirtualService;
use weft_config::networking::virtual_service::RouteDestination;
use weft_xds::envoy::config::core::v3 as core;
use weft_xds::envoy::config::listener::v3 as listener;

use super::envoy::{self, PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, Routes};
use super::names::{self, BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, PASSTHROUGH_FILTER_CHAIN};
use super::route::{RouteContext, dynamic_dns_route_config};
use crate::model::{
    Cfg, Environment, ListenerProtocol, OutboundMode, Protocol, Proxy, RegistryKind, Resolution,
    Service, ServicePort, SidecarScope, host,
};

/// The options of one filter chain before it becomes an Envoy `FilterChain`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChainOpts {
    pub name: String,
    pub sni_hosts: Vec<String>,
    pub destination_cidrs: Vec<String>,
    pub application_protocols: Vec<String>,
    pub transport_protocol: String,
    pub destination_port: Option<u32>,
    /// RDS name of an HTTP chain; `None` for a network (TCP) chain.
    pub rds: Option<String>,
    /// Inline routes of an HTTP chain.
    pub inline_routes: Option<weft_xds::envoy::config::route::v3::RouteConfiguration>,
    pub filters: Vec<listener::Filter>,
    pub transport_socket: Option<core::TransportSocket>,
}

impl ChainOpts {
    pub fn is_match_all(&self) -> bool {
        self.sni_hosts.is_empty()
            && self.destination_cidrs.is_empty()
            && self.application_protocols.is_empty()
            && self.transport_protocol.is_empty()
            && self.destination_port.is_none()
    }

    pub fn to_match(&self) -> Option<listener::FilterChainMatch> {
        if self.is_match_all() {
            return None;
        }
        Some(listener::FilterChainMatch {
            destination_port: self
                .destination_port
                .map(|p| weft_xds::google::protobuf::UInt32Value { value: p }),
            prefix_ranges: self
                .destination_cidrs
                .iter()
                .filter_map(|c| envoy::cidr_range(c))
                .collect(),
            server_names: self.sni_hosts.clone(),
            transport_protocol: self.transport_protocol.clone(),
            application_protocols: self.application_protocols.clone(),
            ..Default::default()
        })
    }

    pub fn build(self, stat_prefix: &str) -> listener::FilterChain {
        let filter_chain_match = self.to_match();
        let mut filters = self.filters;
        if let Some(rc) = self.inline_routes {
            filters.push(envoy::http_connection_manager(
                stat_prefix,
                Routes::Inline(Box::new(rc)),
                false,
            ));
        } else if let Some(rds) = self.rds {
            filters.push(envoy::http_connection_manager(
                stat_prefix,
                Routes::Rds(rds),
                false,
            ));
        }
        listener::FilterChain {
            name: self.name,
            filter_chain_match,
            filters,
            transport_socket: self.transport_socket,
            ..Default::default()
        }
    }
}

/// Builds a listener from chains: chains without match criteria become the default chain,
/// listener filters are added when a chain needs SNI or ALPN.
pub(crate) fn assemble_listener(
    name: String,
    address: core::Address,
    chains: Vec<ChainOpts>,
    fallthrough: Option<Vec<listener::Filter>>,
    bind_to_port: bool,
) -> listener::Listener {
    let need_tls = chains
        .iter()
        .any(|c| !c.sni_hosts.is_empty() || c.transport_socket.is_some());
    let need_http = chains.iter().any(|c| !c.application_protocols.is_empty());
    let mut l = listener::Listener {
        name: name.clone(),
        address: Some(address),
        traffic_direction: core::TrafficDirection::Outbound as i32,
        continue_on_listener_filters_timeout: true,
        ..Default::default()
    };
    if !bind_to_port {
        l.bind_to_port = envoy::bool_value(false);
    }
    if need_tls || need_http {
        l.listener_filters.push(envoy::tls_inspector());
    }
    if need_http {
        l.listener_filters.push(envoy::http_inspector());
    } else {
        l.listener_filters_timeout = envoy::duration(std::time::Duration::ZERO);
    }
    let stat_prefix = format!("outbound_{name}");
    let mut default_chain = None;
    for c in chains {
        if c.is_match_all() {
            default_chain = Some(c.build(&stat_prefix));
        } else {
            l.filter_chains.push(c.build(&stat_prefix));
        }
    }
    match default_chain {
        Some(d) if l.filter_chains.is_empty() => l.filter_chains.push(d),
        Some(d) => l.default_filter_chain = Some(d),
        None => {
            if let Some(filters) = fallthrough {
                l.default_filter_chain = Some(listener::FilterChain {
                    name: PASSTHROUGH_FILTER_CHAIN.to_string(),
                    filter_chain_match: Some(listener::FilterChainMatch::default()),
                    filters,
                    ..Default::default()
                });
            }
        }
    }
    l
}

/// The network filters of the catch-all chain: pass through or drop, per the outbound mode.
pub(crate) fn catch_all_filters(mode: OutboundMode) -> Vec<listener::Filter> {
    let cluster = match mode {
        OutboundMode::RegistryOnly => BLACKHOLE_CLUSTER,
        OutboundMode::AllowAny | OutboundMode::AllowAnyDynamicDns => PASSTHROUGH_CLUSTER,
    };
    vec![envoy::tcp_proxy(cluster, &[(cluster.to_string(), 1)])]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Conflict {
    None,
    HttpOverTcp,
    TcpOverHttp,
    TcpOverTcp,
    TcpOverAuto,
    AutoOverHttp,
    AutoOverTcp,
}

struct Entry {
    port: u32,
    bind: String,
    bind_to_port: bool,
    locked: bool,
    chains: Vec<ChainOpts>,
    protocol: Protocol,
    order: usize,
}

struct Builder<'a> {
    env: &'a Environment,
    proxy: &'a Proxy,
    wildcard: &'static str,
    map: BTreeMap<(String, u32), Entry>,
}

struct ListenerOpts<'a> {
    bind: String,
    bind_to_port: bool,
    port: ServicePort,
    service: &'a Arc<Service>,
}

fn chain_key(c: &ChainOpts) -> (Vec<String>, Vec<String>, Vec<String>, String) {
    let mut sni = c.sni_hosts.clone();
    sni.sort();
    let mut cidrs: Vec<String> = c
        .destination_cidrs
        .iter()
        .filter_map(|x| envoy::cidr_range(x))
        .map(|r| {
            format!(
                "{}/{}",
                r.address_prefix,
                r.prefix_len.map(|p| p.value).unwrap_or(0)
            )
        })
        .collect();
    cidrs.sort();
    (
        sni,
        cidrs,
        c.application_protocols.clone(),
        c.transport_protocol.clone(),
    )
}

fn merge_tcp_chains(current: &mut Entry, incoming: Vec<ChainOpts>) {
    for c in incoming {
        let key = chain_key(&c);
        if current.chains.iter().any(|e| chain_key(e) == key) {
            continue;
        }
        current.chains.push(c);
    }
}

fn vs_for_host<'v>(
    vses: &'v [Arc<Cfg<VirtualService>>],
    hostname: &str,
    domain: &str,
) -> Vec<&'v Arc<Cfg<VirtualService>>> {
    // Only TCP and TLS rules matter to network filter chains.
    vses.iter()
        .filter(|v| !v.spec.tcp.is_empty() || !v.spec.tls.is_empty())
        .filter(|v| {
            v.spec.hosts.iter().any(|h| {
                host::matches(&host::resolve_short_name(h, &v.namespace, domain), hostname)
            })
        })
        .collect()
}

/// The clusters and weights of TCP/TLS route destinations.
pub(crate) fn route_destinations(
    ctx: &RouteContext<'_>,
    routes: &[RouteDestination],
    vs_namespace: &str,
) -> Vec<(String, u32)> {
    let dests: Vec<(String, u32)> = routes
        .iter()
        .filter_map(|r| {
            r.destination.as_ref().map(|d| {
                (
                    ctx.destination_cluster(d, vs_namespace),
                    u32::try_from(r.weight).unwrap_or(0),
                )
            })
        })
        .collect();
    if dests.len() == 1 {
        return vec![(dests[0].0.clone(), 1)];
    }
    dests
}

fn tcp_filter(
    ctx: &RouteContext<'_>,
    routes: &[RouteDestination],
    vs_namespace: &str,
) -> Vec<listener::Filter> {
    let dests = route_destinations(ctx, routes, vs_namespace);
    if dests.is_empty() {
        return Vec::new();
    }
    let stat = dests[0].0.clone();
    vec![envoy::tcp_proxy(&stat, &dests)]
}

impl Builder<'_> {
    fn single_destination(&self, service: &Service, listen_port: u32) -> Vec<listener::Filter> {
        let port = if service.ports.len() == 1 {
            service.ports[0].port
        } else {
            listen_port
        };
        let cluster = names::outbound_cluster(port, "", &service.hostname);
        vec![envoy::tcp_proxy(&cluster, &[(cluster.clone(), 1)])]
    }

    fn tls_chains(
        &self,
        opts: &ListenerOpts<'_>,
        cidr: &Option<String>,
        vses: &[&Arc<Cfg<VirtualService>>],
    ) -> Vec<ChainOpts> {
        let port = &opts.port;
        if !port.protocol.is_tls() {
            return Vec::new();
        }
        let mesh: BTreeSet<String> = ["mesh".to_string()].into();
        let ctx = RouteContext {
            env: self.env,
            proxy: self.proxy,
            port: port.port,
            gateways: &mesh,
        };
        let mut out = Vec::new();
        let mut handled = BTreeSet::new();
        let mut has_match = false;
        for vs in vses {
            for tls in &vs.spec.tls {
                for m in &tls.r#match {
                    let applies = (m.port == 0 || m.port == port.port)
                        && weft_config::meta::selector_matches(
                            &m.source_labels,
                            &self.proxy.labels,
                        )
                        && (m.source_namespace.is_empty()
                            || m.source_namespace == self.proxy.config_namespace)
                        && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == "mesh"));
                    if !applies {
                        continue;
                    }
                    let cidrs = if !m.destination_subnets.is_empty() {
                        m.destination_subnets.clone()
                    } else {
                        cidr.iter().cloned().collect()
                    };
                    let hash = format!(
                        "{}|{}",
                        m.sni_hosts.join(","),
                        m.destination_subnets.join(",")
                    );
                    if handled.insert(hash) {
                        out.push(ChainOpts {
                            sni_hosts: m.sni_hosts.clone(),
                            destination_cidrs: cidrs,
                            filters: tcp_filter(&ctx, &tls.route, &vs.namespace),
                            ..Default::default()
                        });
                        has_match = true;
                    }
                }
            }
        }
        if !has_match {
            let svc = opts.service;
            let mut listen_addr = svc.address().to_string();
            if listen_addr.contains('/') {
                listen_addr.clear();
            }
            let mut sni = Vec::new();
            if cidr.is_some()
                || listen_addr.is_empty()
                || (listen_addr == self.wildcard && opts.bind == self.wildcard)
            {
                sni.push(svc.hostname.clone());
                for a in &svc.aliases {
                    sni.push(a.clone());
                    sni.extend(super::route::alt_hosts(a, &self.proxy.dns_domain));
                }
            }
            out.push(ChainOpts {
                sni_hosts: sni,
                destination_cidrs: cidr.iter().cloned().collect(),
                filters: self.single_destination(svc, port.port),
                ..Default::default()
            });
        }
        out
    }

    fn tcp_chains(
        &self,
        opts: &ListenerOpts<'_>,
        cidr: &Option<String>,
        vses: &[&Arc<Cfg<VirtualService>>],
    ) -> Vec<ChainOpts> {
        let port = &opts.port;
        if port.protocol.is_tls() {
            return Vec::new();
        }
        let mesh: BTreeSet<String> = ["mesh".to_string()].into();
        let ctx = RouteContext {
            env: self.env,
            proxy: self.proxy,
            port: port.port,
            gateways: &mesh,
        };
        let cidrs: Vec<String> = cidr.iter().cloned().collect();
        let mut out = Vec::new();
        let mut default_added = false;
        'vs: for vs in vses {
            for tcp in &vs.spec.tcp {
                if tcp.r#match.is_empty() {
                    out.push(ChainOpts {
                        destination_cidrs: cidrs.clone(),
                        filters: tcp_filter(&ctx, &tcp.route, &vs.namespace),
                        ..Default::default()
                    });
                    default_added = true;
                    break 'vs;
                }
                let mut subnets = Vec::new();
                for m in &tcp.r#match {
                    let applies = (m.port == 0 || m.port == port.port)
                        && weft_config::meta::selector_matches(
                            &m.source_labels,
                            &self.proxy.labels,
                        )
                        && (m.source_namespace.is_empty()
                            || m.source_namespace == self.proxy.config_namespace)
                        && (m.gateways.is_empty() || m.gateways.iter().any(|g| g == "mesh"));
                    if !applies {
                        continue;
                    }
                    if m.destination_subnets.is_empty() {
                        out.push(ChainOpts {
                            destination_cidrs: cidrs.clone(),
                            filters: tcp_filter(&ctx, &tcp.route, &vs.namespace),
                            ..Default::default()
                        });
                        default_added = true;
                        break 'vs;
                    }
                    subnets.extend(m.destination_subnets.clone());
                }
                if !subnets.is_empty() {
                    let mut sorted_subnets = subnets.clone();
                    sorted_subnets.sort();
                    let mut sorted_cidrs = cidrs.clone();
                    sorted_cidrs.sort();
                    if sorted_subnets == sorted_cidrs {
                        default_added = true;
                    }
                    out.push(ChainOpts {
                        destination_cidrs: subnets,
                        filters: tcp_filter(&ctx, &tcp.route, &vs.namespace),
                        ..Default::default()
                    });
                }
            }
        }
        if !default_added {
            out.push(ChainOpts {
                destination_cidrs: cidrs,
                filters: self.single_destination(opts.service, port.port),
                ..Default::default()
            });
        }
        out
    }

    fn http_chain(&self, opts: &ListenerOpts<'_>, lp: ListenerProtocol) -> ChainOpts {
        let rds = if lp == ListenerProtocol::Auto && opts.bind != self.wildcard {
            format!("{}:{}", opts.service.hostname, opts.port.port)
        } else {
            opts.port.port.to_string()
        };
        ChainOpts {
            rds: Some(rds),
            ..Default::default()
        }
    }

    fn build_listener(&mut self, mut opts: ListenerOpts<'_>, vses: &[Arc<Cfg<VirtualService>>]) {
        let service = opts.service;
        if service.resolution == Resolution::Alias {
            return;
        }
        let lp = opts.port.protocol.listener_protocol();
        let mut cidr = None;
        match lp {
            ListenerProtocol::Tcp | ListenerProtocol::Auto => {
                if opts.bind.is_empty() {
                    let mut addr = service.address().to_string();
                    if service.registry == RegistryKind::External
                        && self.proxy.ipv6_only()
                        && addr == crate::model::service::UNSPECIFIED_IP
                    {
                        addr = "::".to_string();
                    }
                    if addr.contains('/') {
                        opts.bind = self.wildcard.to_string();
                        cidr = Some(addr);
                    } else {
                        opts.bind = addr;
                    }
                }
            }
            ListenerProtocol::Http => {
                if opts.bind.is_empty() {
                    opts.bind = self.wildcard.to_string();
                }
            }
            ListenerProtocol::Unsupported => return,
        }
        let key = (opts.bind.clone(), opts.port.port);
        let current = self.map.get(&key);
        if current.is_some_and(|c| c.locked) {
            return;
        }
        let domain = self.env.mesh.config_domain.clone();
        let svc_vs = vs_for_host(vses, &service.hostname, &domain);
        let mut protocol = opts.port.protocol;
        let mut conflict = Conflict::None;
        let chains = if opts.port.protocol == Protocol::HttpProxy {
            vec![self.http_chain(&opts, lp)]
        } else {
            match lp {
                ListenerProtocol::Http => {
                    if let Some(c) = current {
                        if c.protocol.is_tcp() {
                            conflict = Conflict::HttpOverTcp;
                        } else {
                            return;
                        }
                    }
                    let mut chain = self.http_chain(&opts, lp);
                    if opts.bind == self.wildcard {
                        chain.application_protocols =
                            PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect();
                        chain.transport_protocol = RAW_BUFFER.to_string();
                        protocol = Protocol::Unsupported;
                    }
                    vec![chain]
                }
                ListenerProtocol::Tcp => {
                    if let Some(c) = current {
                        conflict = if c.protocol.is_http() {
                            Conflict::TcpOverHttp
                        } else if c.protocol.is_tcp() {
                            Conflict::TcpOverTcp
                        } else {
                            Conflict::TcpOverAuto
                        };
                    }
                    let mut chains = self.tls_chains(&opts, &cidr, &svc_vs);
                    chains.extend(self.tcp_chains(&opts, &cidr, &svc_vs));
                    chains
                }
                ListenerProtocol::Auto => {
                    if let Some(c) = current {
                        if c.protocol.is_http() {
                            conflict = Conflict::AutoOverHttp;
                        } else if c.protocol.is_tcp() {
                            conflict = Conflict::AutoOverTcp;
                        } else {
                            return;
                        }
                    }
                    let mut chains = self.tls_chains(&opts, &cidr, &svc_vs);
                    chains.extend(self.tcp_chains(&opts, &cidr, &svc_vs));
                    let mut http = self.http_chain(&opts, lp);
                    http.application_protocols =
                        PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect();
                    http.transport_protocol = RAW_BUFFER.to_string();
                    chains.push(http);
                    chains
                }
                ListenerProtocol::Unsupported => return,
            }
        };
        match conflict {
            Conflict::None | Conflict::AutoOverHttp => {
                let order = self.map.len();
                self.map.insert(
                    key,
                    Entry {
                        port: opts.port.port,
                        bind: opts.bind,
                        bind_to_port: opts.bind_to_port,
                        locked: false,
                        chains,
                        protocol,
                        order,
                    },
                );
            }
            Conflict::HttpOverTcp | Conflict::TcpOverHttp | Conflict::AutoOverTcp => {
                if let Some(cur) = self.map.get_mut(&key) {
                    merge_tcp_chains(cur, chains);
                    cur.protocol = Protocol::Unsupported;
                }
            }
            Conflict::TcpOverTcp | Conflict::TcpOverAuto => {
                if let Some(cur) = self.map.get_mut(&key) {
                    merge_tcp_chains(cur, chains);
                }
            }
        }
    }
}

/// Builds the sidecar's outbound service listeners (not `virtualOutbound`).
pub(crate) fn sidecar_outbound_listeners(
    env: &Environment,
    proxy: &Proxy,
    scope: &SidecarScope,
) -> Vec<listener::Listener> {
    let wildcard = if proxy.ipv6_only() { "::" } else { "0.0.0.0" };
    let localhost = if proxy.ipv6_only() {
        "::1"
    } else {
        "127.0.0.1"
    };
    let mut b = Builder {
        env,
        proxy,
        wildcard,
        map: BTreeMap::new(),
    };
    for egress in &scope.egress {
        // Without capture nothing reaches an unbound listener: every egress listener binds.
        let bind_to_port =
            egress.capture_none || proxy.interception_none() || egress.bind.starts_with("unix://");
        let bind = if !egress.bind.is_empty() {
            egress.bind.clone()
        } else if bind_to_port {
            localhost.to_string()
        } else {
            String::new()
        };
        if let Some(p) = &egress.port {
            let port = ServicePort {
                name: p.name.clone(),
                port: p.number,
                protocol: Protocol::parse(&p.protocol),
                target_port: p.target_port,
            };
            for svc in &egress.services {
                b.build_listener(
                    ListenerOpts {
                        bind: bind.clone(),
                        bind_to_port,
                        port: port.clone(),
                        service: svc,
                    },
                    &egress.virtual_services,
                );
            }
        } else {
            for e in b.map.values_mut() {
                e.locked = true;
            }
            for svc in &egress.services {
                for port in &svc.ports {
                    let headless_tcp = bind.is_empty()
                        && svc.resolution == Resolution::Passthrough
                        && svc.address() == crate::model::service::UNSPECIFIED_IP
                        && (port.protocol.is_tcp() || port.protocol == Protocol::Unsupported);
                    if !headless_tcp {
                        b.build_listener(
                            ListenerOpts {
                                bind: bind.clone(),
                                bind_to_port,
                                port: port.clone(),
                                service: svc,
                            },
                            &egress.virtual_services,
                        );
                        continue;
                    }
                    let instances: Vec<_> = env
                        .registry
                        .endpoints(svc)
                        .into_iter()
                        .filter(|e| e.service_port == port.port)
                        .collect();
                    if svc.registry != RegistryKind::Kubernetes && instances.is_empty() {
                        b.build_listener(
                            ListenerOpts {
                                bind: bind.clone(),
                                bind_to_port,
                                port: port.clone(),
                                service: svc,
                            },
                            &egress.virtual_services,
                        );
                        continue;
                    }
                    let mut seen = BTreeSet::new();
                    for inst in instances {
                        if inst.address.parse::<std::net::IpAddr>().is_err()
                            || proxy.ip_addresses.first() == Some(&inst.address)
                            || !seen.insert(inst.address.clone())
                        {
                            continue;
                        }
                        b.build_listener(
                            ListenerOpts {
                                bind: inst.address.clone(),
                                bind_to_port,
                                port: port.clone(),
                                service: svc,
                            },
                            &egress.virtual_services,
                        );
                    }
                }
            }
        }
    }
    let fallthrough = catch_all_filters(scope.outbound_mode);
    let mut entries: Vec<Entry> = b.map.into_values().collect();
    entries.sort_by_key(|e| e.order);
    let mut out: Vec<listener::Listener> = entries
        .into_iter()
        .map(|e| {
            let address = if e.bind.starts_with("unix://") {
                envoy::pipe_address(e.bind.trim_start_matches("unix://"))
            } else {
                envoy::socket_address(&e.bind, e.port)
            };
            assemble_listener(
                names::listener_name(&e.bind, e.port),
                address,
                e.chains,
                Some(fallthrough.clone()),
                e.bind_to_port,
            )
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `virtualOutbound`: the 15001 capture listener. Connections are handed to the listener of
/// their original destination; what reaches its own chains matched no listener and passes
/// through (or is dropped in `REGISTRY_ONLY`). Direct connections to 15001 are dropped.
pub(crate) fn virtual_outbound(proxy: &Proxy, mode: OutboundMode) -> listener::Listener {
    let wildcard = if proxy.ipv6_only() { "::" } else { "0.0.0.0" };
    let mut chains = vec![ChainOpts {
        name: "virtualOutbound-blackhole".to_string(),
        destination_port: Some(names::VIRTUAL_OUTBOUND_PORT),
        filters: vec![envoy::tcp_proxy(
            BLACKHOLE_CLUSTER,
            &[(BLACKHOLE_CLUSTER.to_string(), 1)],
        )],
        ..Default::default()
    }];
    if mode == OutboundMode::AllowAnyDynamicDns {
        chains.push(ChainOpts {
            name: "virtualOutbound-catchall-http".to_string(),
            application_protocols: PLAINTEXT_HTTP_ALPNS.iter().map(|s| s.to_string()).collect(),
            transport_protocol: RAW_BUFFER.to_string(),
            inline_routes: Some(dynamic_dns_route_config()),
            ..Default::default()
        });
    }
    chains.push(ChainOpts {
        name: "virtualOutbound-catchall-tcp".to_string(),
        filters: catch_all_filters(mode),
        ..Default::default()
    });
    let need_http = mode == OutboundMode::AllowAnyDynamicDns;
    let stat_prefix = names::VIRTUAL_OUTBOUND.to_string();
    let mut l = listener::Listener {
        name: names::VIRTUAL_OUTBOUND.to_string(),
        address: Some(envoy::socket_address(
            wildcard,
            names::VIRTUAL_OUTBOUND_PORT,
        )),
        use_original_dst: envoy::bool_value(true),
        traffic_direction: core::TrafficDirection::Outbound as i32,
        ..Default::default()
    };
    if need_http {
        l.listener_filters.push(envoy::tls_inspector());
        l.listener_filters.push(envoy::http_inspector());
    }
    for c in chains {
        let mut fc = c.clone().build(&stat_prefix);
        if c.is_match_all() {
            if need_http {
                // Next to an HTTP chain that matches on ALPN, the catch-all must be the
                // default chain, or Envoy's sieve would leave raw TCP with no chain.
                l.default_filter_chain = Some(fc);
                continue;
            }
            // Otherwise it is an ordinary chain with an empty match, as istiod writes it.
            fc.filter_chain_match = Some(listener::FilterChainMatch::default());
        }
        l.filter_chains.push(fc);
    }
    l
}
