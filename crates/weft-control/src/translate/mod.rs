//! Translation of the model into Envoy v3 resources for one proxy, with istiod's names and
//! structure: listeners, clusters, route configurations and EDS load assignments.

pub mod authn;
pub mod authz;
mod cluster;
pub mod envoy;
mod gateway;
mod inbound;
pub mod names;
mod outbound;
mod route;
mod telemetry;

use std::collections::BTreeSet;

use weft_xds::envoy::config::cluster::v3::Cluster;
use weft_xds::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::envoy::config::listener::v3::Listener;
use weft_xds::envoy::config::route::v3::RouteConfiguration;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;

pub use gateway::{DISABLE_PORT_TRANSLATION_LABEL, GATEWAY_SERVICE_ANNOTATION};
pub use route::alt_hosts;

use crate::model::{Environment, OutboundMode, Proxy};

/// The Envoy resources of one proxy, each list sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    /// LDS.
    pub listeners: Vec<Listener>,
    /// CDS.
    pub clusters: Vec<Cluster>,
    /// RDS.
    pub routes: Vec<RouteConfiguration>,
    /// EDS.
    pub endpoints: Vec<ClusterLoadAssignment>,
}

impl Resources {
    /// The listener with this name.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The cluster with this name.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The route configuration with this name.
    pub fn route(&self, name: &str) -> Option<&RouteConfiguration> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// RDS names referenced by a listener's HTTP connection managers.
fn rds_names(l: &Listener) -> Vec<String> {
    use weft_xds::envoy::config::listener::v3::filter::ConfigType;
    let mut out = Vec::new();
    for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &fc.filters {
            let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if let Some(m) = envoy::unpack::<hcm::HttpConnectionManager>(any)
                && let Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) =
                    m.route_specifier
            {
                out.push(rds.route_config_name);
            }
        }
    }
    out
}

/// Translates the model into the Envoy resources of one proxy.
pub fn translate(env: &Environment, proxy: &Proxy) -> Resources {
    let mut out = Resources::default();
    if proxy.is_router() {
        let (listeners, routes) = gateway::gateway_listeners(env, proxy);
        out.listeners = listeners;
        out.routes = routes;
        let services = env.visible_services(&proxy.config_namespace);
        let (clusters, endpoints) = cluster::outbound_clusters(env, proxy, &services);
        out.clusters = clusters;
        out.endpoints = endpoints;
        out.clusters
            .extend(cluster::special_clusters(env, false, false));
        let security = authz::InboundSecurity::new(env, proxy);
        for fc in out
            .listeners
            .iter_mut()
            .flat_map(|l| l.filter_chains.iter_mut())
        {
            security.apply(&mut fc.filters);
        }
    } else {
        let scope = env.sidecar_scope(proxy);
        out.listeners = outbound::sidecar_outbound_listeners(env, proxy, &scope);
        let ports = inbound::inbound_ports(env, proxy);
        // Uncaptured inbound ports listen on their own; without capture at all there are no
        // virtual listeners.
        out.listeners
            .extend(inbound::inbound_listeners(env, proxy, &ports));
        if !proxy.interception_none() {
            out.listeners
                .push(outbound::virtual_outbound(proxy, scope.outbound_mode));
            out.listeners
                .push(inbound::virtual_inbound(env, proxy, &ports));
        }
        let names: BTreeSet<String> = out.listeners.iter().flat_map(rds_names).collect();
        out.routes = names
            .iter()
            .map(|n| route::sidecar_route_config(env, proxy, &scope, n))
            .collect();
        let services = scope.services();
        let (clusters, endpoints) = cluster::outbound_clusters(env, proxy, &services);
        out.clusters = clusters;
        out.endpoints = endpoints;
        out.clusters
            .extend(inbound::inbound_clusters(env, proxy, &ports));
        out.clusters.extend(cluster::special_clusters(
            env,
            scope.outbound_mode == OutboundMode::AllowAnyDynamicDns,
            true,
        ));
    }
    telemetry::apply(env, proxy, &mut out);
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.clusters.dedup_by(|a, b| a.name == b.name);
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out.endpoints
        .dedup_by(|a, b| a.cluster_name == b.cluster_name);
    out
}

/// A sidecar's outbound route configuration by name, built on demand (for tests and
/// `proxy-config routes --name`): `PORT` or `HOST:PORT`.
pub fn sidecar_route(env: &Environment, proxy: &Proxy, name: &str) -> RouteConfiguration {
    let scope = env.sidecar_scope(proxy);
    route::sidecar_route_config(env, proxy, &scope, name)
}
