//! Gateway (router) listeners: the selected Gateways' servers merged per port as istiod merges
//! them, ports translated to the gateway Service's target ports, HTTP route tables
//! (`http.PORT`, `https.PORT.NAME.GATEWAY.NAMESPACE`) from the VirtualServices bound to them,
//! TLS servers by SNI, TCP servers to their routes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use weft_config::networking::Gateway;
use weft_config::networking::gateway::{Server, TlsMode};
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::transport_sockets::tls::v3 as tls;

use super::envoy;
use super::names::{self, BLACKHOLE_CLUSTER};
use super::outbound::{ChainOpts, route_destinations};
use super::route::{RouteContext, build_http_routes};
use crate::model::{
    Cfg, Environment, Protocol, Proxy, ServiceTarget, Visibility, host, vs_gateways,
};

/// Annotation naming the Service(s) that front a Gateway (set by Istio's deployment
/// controller); when present, ports are resolved only through those Services.
pub const GATEWAY_SERVICE_ANNOTATION: &str = "internal.istio.io/gateway-service";
/// Service label that opts out of gateway port translation.
pub const DISABLE_PORT_TRANSLATION_LABEL: &str =
    "experimental.istio.io/disable-gateway-port-translation";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PortKind {
    PlainHttp,
    Tls,
    PlainTcp,
}

#[derive(Clone)]
struct ServerRef {
    gateway: Arc<Cfg<Gateway>>,
    server: Server,
}

impl ServerRef {
    fn gateway_name(&self) -> String {
        format!("{}/{}", self.gateway.namespace, self.gateway.name)
    }

    fn port(&self) -> u32 {
        self.server.port.as_ref().map(|p| p.number).unwrap_or(0)
    }

    fn protocol(&self) -> Protocol {
        Protocol::parse(
            self.server
                .port
                .as_ref()
                .map(|p| p.protocol.as_str())
                .unwrap_or(""),
        )
    }

    /// Server hosts as (namespace filter, host).
    fn hosts(&self) -> Vec<(String, String)> {
        self.server
            .hosts
            .iter()
            .map(|h| match h.split_once('/') {
                Some((".", host)) => (self.gateway.namespace.clone(), host.to_string()),
                Some((ns, host)) => (ns.to_string(), host.to_string()),
                None => ("*".to_string(), h.clone()),
            })
            .collect()
    }

    fn tls_mode(&self) -> Option<TlsMode> {
        self.server.tls.as_ref().map(|t| t.mode)
    }

    fn terminates_tls(&self) -> bool {
        matches!(
            self.tls_mode(),
            Some(
                TlsMode::Simple | TlsMode::Mutual | TlsMode::IstioMutual | TlsMode::OptionalMutual
            )
        )
    }
}

fn resolve_ports(number: u32, targets: &[ServiceTarget], legacy: bool) -> Vec<u32> {
    let mut ports = BTreeSet::new();
    for t in targets {
        if legacy
            && t.service
                .labels
                .contains_key(DISABLE_PORT_TRANSLATION_LABEL)
        {
            continue;
        }
        if t.port.port == number && t.target_port != 0 {
            if legacy {
                return vec![t.target_port];
            }
            ports.insert(t.target_port);
        }
    }
    if ports.is_empty() && legacy {
        return vec![number];
    }
    ports.into_iter().collect()
}

/// Servers of the selected gateways, merged per listener port.
fn merge_servers(env: &Environment, proxy: &Proxy) -> BTreeMap<u32, (PortKind, Vec<ServerRef>)> {
    let targets = env.proxy_targets(proxy);
    let mut merged: BTreeMap<u32, (PortKind, Vec<ServerRef>)> = BTreeMap::new();
    // Hosts of TLS servers per port (`./` resolved): a TLS server repeating one is rejected.
    let mut tls_hosts: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for gw in env.gateways_for(proxy) {
        let (legacy, instances) = match gw.annotations.get(GATEWAY_SERVICE_ANNOTATION) {
            None => (true, targets.clone()),
            Some(list) => {
                let hosts: Vec<&str> = list.split(',').map(str::trim).collect();
                (
                    false,
                    targets
                        .iter()
                        .filter(|t| {
                            hosts.contains(&t.service.hostname.as_str())
                                && t.service.namespace == gw.namespace
                        })
                        .cloned()
                        .collect(),
                )
            }
        };
        for server in &gw.spec.servers {
            let Some(port) = &server.port else {
                continue;
            };
            let sref = ServerRef {
                gateway: gw.clone(),
                server: server.clone(),
            };
            let protocol = sref.protocol();
            let kind = if protocol.is_http() {
                PortKind::PlainHttp
            } else if protocol.is_tls() {
                PortKind::Tls
            } else {
                PortKind::PlainTcp
            };
            let hosts: Vec<String> = server
                .hosts
                .iter()
                .map(|h| match h.strip_prefix("./") {
                    Some(rest) => format!("{}/{rest}", gw.namespace),
                    None => h.clone(),
                })
                .collect();
            for resolved in resolve_ports(port.number, &instances, legacy) {
                if kind == PortKind::Tls {
                    let known = tls_hosts.entry(resolved).or_default();
                    if hosts.iter().any(|h| known.contains(h)) {
                        continue;
                    }
                    known.extend(hosts.iter().cloned());
                }
                match merged.get_mut(&resolved) {
                    None => {
                        merged.insert(resolved, (kind, vec![sref.clone()]));
                    }
                    Some((existing, servers)) => {
                        // HTTP merges with HTTP, TLS with TLS (distinct SNI); everything else
                        // conflicts and the later server is dropped, as in istiod.
                        if *existing == kind && kind != PortKind::PlainTcp {
                            servers.push(sref.clone());
                        }
                    }
                }
            }
        }
    }
    merged
}

/// Hosts shared by a VirtualService and a server (each VS host within a server host, or the
/// server host when it is narrower).
fn intersect_hosts(vs_hosts: &[String], server_hosts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for h in vs_hosts {
        for s in server_hosts {
            let pick = if host::subset_of(h, s) {
                Some(h.clone())
            } else if host::subset_of(s, h) {
                Some(s.clone())
            } else {
                None
            };
            if let Some(p) = pick
                && !out.contains(&p)
            {
                out.push(p);
            }
        }
    }
    out
}

/// VirtualServices bound to a server, with the hosts they serve on it.
fn bound_virtual_services(
    env: &Environment,
    s: &ServerRef,
) -> Vec<(
    Arc<Cfg<weft_config::networking::VirtualService>>,
    Vec<String>,
)> {
    let gw_name = s.gateway_name();
    let server_hosts = s.hosts();
    env.virtual_services
        .iter()
        .filter(|vs| vs_gateways(vs).contains(&gw_name))
        .filter(|vs| {
            Visibility::parse(vs.spec.export_to.iter().map(String::as_str))
                .visible_to(&vs.namespace, &s.gateway.namespace)
        })
        .filter_map(|vs| {
            let hosts: Vec<String> = server_hosts
                .iter()
                .filter(|(ns, _)| ns == "*" || *ns == vs.namespace)
                .map(|(_, h)| h.clone())
                .collect();
            let shared = intersect_hosts(&vs.spec.hosts, &hosts);
            (!shared.is_empty()).then(|| (vs.clone(), shared))
        })
        .collect()
}

fn http_route_config(
    env: &Environment,
    proxy: &Proxy,
    name: &str,
    servers: &[ServerRef],
) -> route::RouteConfiguration {
    let mut vhosts: Vec<route::VirtualHost> = Vec::new();
    for s in servers {
        let server_port = s.port();
        let gateways: BTreeSet<String> = [s.gateway_name()].into();
        let ctx = RouteContext {
            env,
            proxy,
            port: server_port,
            gateways: &gateways,
        };
        // httpsRedirect only means something on plaintext servers.
        let redirect =
            s.protocol().is_http() && s.server.tls.as_ref().is_some_and(|t| t.https_redirect);
        let bound = bound_virtual_services(env, s);
        let mut add = |host: &str, routes: Vec<route::Route>| {
            let vname = format!("{host}:{server_port}");
            if let Some(v) = vhosts.iter_mut().find(|v| v.name == vname) {
                v.routes.extend(routes);
                return;
            }
            vhosts.push(route::VirtualHost {
                name: vname,
                domains: vec![host.to_string()],
                routes,
                require_tls: if redirect {
                    route::virtual_host::TlsRequirementType::All as i32
                } else {
                    0
                },
                include_request_attempt_count: true,
                ..Default::default()
            });
        };
        if bound.is_empty() && redirect {
            for (_, h) in s.hosts() {
                add(&h, Vec::new());
            }
        }
        for (vs, hosts) in bound {
            let routes = build_http_routes(&ctx, &vs);
            for h in hosts {
                add(&h, routes.clone());
            }
        }
    }
    if vhosts.is_empty() {
        let port = servers.first().map(ServerRef::port).unwrap_or(0);
        vhosts.push(route::VirtualHost {
            name: format!("blackhole:{port}"),
            domains: vec!["*".to_string()],
            ..Default::default()
        });
    }
    route::RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vhosts,
        validate_clusters: envoy::bool_value(false),
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

fn server_tls_socket(s: &ServerRef) -> Option<weft_xds::envoy::config::core::v3::TransportSocket> {
    let t = s.server.tls.as_ref()?;
    let require_client = matches!(t.mode, TlsMode::Mutual | TlsMode::IstioMutual);
    let common = if t.mode == TlsMode::IstioMutual {
        envoy::istio_common_tls(&["h2", "http/1.1"])
    } else {
        let mut c = tls::CommonTlsContext {
            alpn_protocols: vec!["h2".to_string(), "http/1.1".to_string()],
            ..Default::default()
        };
        let cert = if !t.credential_name.is_empty() {
            format!("kubernetes://{}", t.credential_name)
        } else {
            format!("file-cert:{}~{}", t.server_certificate, t.private_key)
        };
        c.tls_certificate_sds_secret_configs.push(envoy::sds(&cert));
        if matches!(t.mode, TlsMode::Mutual | TlsMode::OptionalMutual) {
            let ca = if !t.credential_name.is_empty() {
                format!("kubernetes://{}-cacert", t.credential_name)
            } else {
                format!("file-root:{}", t.ca_certificates)
            };
            c.validation_context_type = Some(
                tls::common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                    envoy::sds(&ca),
                ),
            );
        }
        c
    };
    Some(envoy::downstream_tls(tls::DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: envoy::bool_value(require_client),
        ..Default::default()
    }))
}

fn sni_hosts(s: &ServerRef) -> Vec<String> {
    s.hosts()
        .into_iter()
        .map(|(_, h)| h)
        .filter(|h| h != "*")
        .collect()
}

fn tcp_routes_chain(
    env: &Environment,
    proxy: &Proxy,
    s: &ServerRef,
) -> Option<Vec<listener::Filter>> {
    let gw_name = s.gateway_name();
    let gateways: BTreeSet<String> = [gw_name.clone()].into();
    let ctx = RouteContext {
        env,
        proxy,
        port: s.port(),
        gateways: &gateways,
    };
    for (vs, _) in bound_virtual_services(env, s) {
        for tcp in &vs.spec.tcp {
            let applies = tcp.r#match.is_empty()
                || tcp.r#match.iter().any(|m| {
                    (m.port == 0 || m.port == s.port())
                        && (m.gateways.is_empty()
                            || m.gateways.iter().any(|g| {
                                crate::model::resolve_gateway_name(g, &vs.namespace) == gw_name
                            }))
                });
            if !applies {
                continue;
            }
            let dests = route_destinations(&ctx, &tcp.route, &vs.namespace);
            if dests.is_empty() {
                continue;
            }
            return Some(vec![envoy::tcp_proxy(&dests[0].0, &dests)]);
        }
    }
    None
}

fn passthrough_chains(
    env: &Environment,
    proxy: &Proxy,
    s: &ServerRef,
    seen: &mut BTreeSet<Vec<String>>,
) -> Vec<ChainOpts> {
    let gw_name = s.gateway_name();
    let gateways: BTreeSet<String> = [gw_name.clone()].into();
    let ctx = RouteContext {
        env,
        proxy,
        port: s.port(),
        gateways: &gateways,
    };
    let server_hosts: Vec<String> = s.hosts().into_iter().map(|(_, h)| h).collect();
    let mut out = Vec::new();
    for (vs, _) in bound_virtual_services(env, s) {
        for tls_route in &vs.spec.tls {
            for m in &tls_route.r#match {
                let applies = (m.port == 0 || m.port == s.port())
                    && (m.gateways.is_empty()
                        || m.gateways.iter().any(|g| {
                            crate::model::resolve_gateway_name(g, &vs.namespace) == gw_name
                        }));
                if !applies {
                    continue;
                }
                let mut sni = intersect_hosts(&m.sni_hosts, &server_hosts);
                sni.sort();
                if sni.is_empty() || !seen.insert(sni.clone()) {
                    continue;
                }
                let dests = route_destinations(&ctx, &tls_route.route, &vs.namespace);
                if dests.is_empty() {
                    continue;
                }
                out.push(ChainOpts {
                    sni_hosts: sni,
                    filters: vec![envoy::tcp_proxy(&dests[0].0, &dests)],
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// Builds a gateway's listeners and route configurations.
pub(crate) fn gateway_listeners(
    env: &Environment,
    proxy: &Proxy,
) -> (Vec<listener::Listener>, Vec<route::RouteConfiguration>) {
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    for (port, (kind, servers)) in merge_servers(env, proxy) {
        let mut chains: Vec<ChainOpts> = Vec::new();
        match kind {
            PortKind::PlainHttp => {
                let name = format!("http.{port}");
                routes.push(http_route_config(env, proxy, &name, &servers));
                chains.push(ChainOpts {
                    rds: Some(name),
                    ..Default::default()
                });
            }
            PortKind::PlainTcp => {
                if let Some(s) = servers.first()
                    && let Some(filters) = tcp_routes_chain(env, proxy, s)
                {
                    chains.push(ChainOpts {
                        filters,
                        ..Default::default()
                    });
                }
            }
            PortKind::Tls => {
                let mut seen = BTreeSet::new();
                for s in &servers {
                    match s.tls_mode() {
                        _ if s.terminates_tls() && s.protocol() == Protocol::Https => {
                            let pname = s
                                .server
                                .port
                                .as_ref()
                                .map(|p| p.name.clone())
                                .unwrap_or_default();
                            let name = format!(
                                "https.{}.{}.{}.{}",
                                s.port(),
                                pname,
                                s.gateway.name,
                                s.gateway.namespace
                            );
                            routes.push(http_route_config(
                                env,
                                proxy,
                                &name,
                                std::slice::from_ref(s),
                            ));
                            chains.push(ChainOpts {
                                sni_hosts: sni_hosts(s),
                                rds: Some(name),
                                transport_socket: server_tls_socket(s),
                                ..Default::default()
                            });
                        }
                        _ if s.terminates_tls() => {
                            if let Some(filters) = tcp_routes_chain(env, proxy, s) {
                                chains.push(ChainOpts {
                                    sni_hosts: sni_hosts(s),
                                    filters,
                                    transport_socket: server_tls_socket(s),
                                    ..Default::default()
                                });
                            }
                        }
                        Some(TlsMode::AutoPassthrough) => {
                            let sni = sni_hosts(s);
                            chains.push(ChainOpts {
                                sni_hosts: sni,
                                filters: vec![
                                    envoy::network_filter(
                                        envoy::wellknown::SNI_CLUSTER,
                                        envoy::any(&weft_xds::envoy::extensions::filters::network::sni_cluster::v3::SniCluster::default()),
                                    ),
                                    envoy::tcp_proxy(
                                        BLACKHOLE_CLUSTER,
                                        &[(BLACKHOLE_CLUSTER.to_string(), 1)],
                                    ),
                                ],
                                ..Default::default()
                            });
                        }
                        _ => chains.extend(passthrough_chains(env, proxy, s, &mut seen)),
                    }
                }
            }
        }
        if chains.is_empty() {
            continue;
        }
        let need_tls = chains
            .iter()
            .any(|c| !c.sni_hosts.is_empty() || c.transport_socket.is_some());
        let stat_prefix = format!("outbound_0.0.0.0_{port}");
        let mut l = listener::Listener {
            name: names::listener_name("0.0.0.0", port),
            address: Some(envoy::socket_address("0.0.0.0", port)),
            traffic_direction: weft_xds::envoy::config::core::v3::TrafficDirection::Outbound as i32,
            listener_filters_timeout: envoy::duration(std::time::Duration::ZERO),
            ..Default::default()
        };
        if need_tls {
            l.listener_filters.push(envoy::tls_inspector());
        }
        l.filter_chains = chains.into_iter().map(|c| c.build(&stat_prefix)).collect();
        listeners.push(l);
    }
    (listeners, routes)
}
