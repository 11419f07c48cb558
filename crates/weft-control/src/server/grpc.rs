//! Config for proxyless gRPC clients (grpc-go, grpc C-core/Python with an `xds:///` target), as
//! istiod's `grpcgen` shapes it: a gRPC client asks LDS for the target's `host:port` by name and
//! expects an API listener of that name whose HTTP connection manager points RDS at a route
//! configuration of the same name, and plaintext EDS clusters.
//!
//! A node is served this way when its metadata says `GENERATOR: grpc` (Istio's proxyless
//! bootstrap sets it). The routes are the sidecar's: the virtual host of `host:port` in the
//! outbound route configuration of that port, so VirtualServices (splits, header matches)
//! apply unchanged.

use std::collections::BTreeSet;

use weft_xds::envoy::config::cluster::v3 as cluster;
use weft_xds::envoy::config::listener::v3 as listener;
use weft_xds::envoy::config::route::v3 as route;
use weft_xds::envoy::extensions::filters::http::router::v3::Router;
use weft_xds::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;

use crate::model::Proxy;
use crate::translate::Resources;
use crate::translate::envoy::{ads, any, duration, wellknown};

/// Whether a proxy is a proxyless gRPC client (`GENERATOR: grpc` in its node metadata).
pub fn is_grpc(proxy: &Proxy) -> bool {
    proxy
        .metadata
        .raw
        .get("GENERATOR")
        .and_then(|v| v.as_str())
        .is_some_and(|g| g == "grpc")
}

fn api_listener(name: &str) -> listener::Listener {
    let manager = hcm::HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: ads(),
                route_config_name: name.to_string(),
            },
        )),
        http_filters: vec![hcm::HttpFilter {
            name: wellknown::ROUTER.to_string(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    listener::Listener {
        name: name.to_string(),
        api_listener: Some(listener::ApiListener {
            api_listener: Some(any(&manager)),
        }),
        ..Default::default()
    }
}

fn routed_clusters(vh: &route::VirtualHost) -> Vec<String> {
    use route::route::Action;
    use route::route_action::ClusterSpecifier;
    let mut out = Vec::new();
    for r in &vh.routes {
        if let Some(Action::Route(a)) = &r.action {
            match &a.cluster_specifier {
                Some(ClusterSpecifier::Cluster(c)) => out.push(c.clone()),
                Some(ClusterSpecifier::WeightedClusters(w)) => {
                    out.extend(w.clusters.iter().map(|c| c.name.clone()))
                }
                _ => {}
            }
        }
    }
    out
}

/// Rewrites a sidecar's translation into what a proxyless gRPC client reads: one API listener
/// and one route configuration per `host:port` virtual host of the outbound route
/// configurations, and plaintext round-robin EDS clusters for the clusters they route to.
pub fn for_grpc(sidecar: &Resources) -> Resources {
    let mut out = Resources::default();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for rc in &sidecar.routes {
        // Outbound route configurations are named by port (or `host:port` with a Sidecar bind).
        if rc.name.starts_with("inbound") {
            continue;
        }
        for vh in &rc.virtual_hosts {
            let Some((_, port)) = vh.name.rsplit_once(':') else {
                continue;
            };
            if port.parse::<u16>().is_err() {
                continue;
            }
            out.listeners.push(api_listener(&vh.name));
            wanted.extend(routed_clusters(vh));
            out.routes.push(route::RouteConfiguration {
                name: vh.name.clone(),
                virtual_hosts: vec![route::VirtualHost {
                    domains: vec!["*".to_string()],
                    ..vh.clone()
                }],
                ..Default::default()
            });
        }
    }
    for c in &sidecar.clusters {
        if !wanted.contains(&c.name) {
            continue;
        }
        let eds = c.cluster_discovery_type
            == Some(cluster::cluster::ClusterDiscoveryType::Type(
                cluster::cluster::DiscoveryType::Eds as i32,
            ));
        if !eds {
            continue;
        }
        out.clusters.push(cluster::Cluster {
            name: c.name.clone(),
            cluster_discovery_type: c.cluster_discovery_type.clone(),
            eds_cluster_config: Some(cluster::cluster::EdsClusterConfig {
                eds_config: ads(),
                service_name: String::new(),
            }),
            connect_timeout: c
                .connect_timeout
                .or(duration(std::time::Duration::from_secs(10))),
            lb_policy: cluster::cluster::LbPolicy::RoundRobin as i32,
            ..Default::default()
        });
    }
    let names: BTreeSet<&str> = out.clusters.iter().map(|c| c.name.as_str()).collect();
    out.endpoints = sidecar
        .endpoints
        .iter()
        .filter(|e| names.contains(e.cluster_name.as_str()))
        .cloned()
        .collect();
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.listeners.dedup_by(|a, b| a.name == b.name);
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    out.routes.dedup_by(|a, b| a.name == b.name);
    out
}
