//! Envoy v3 xDS for weft: the resource types (re-exported from `envoy-types`), a descriptor pool of
//! the whole Envoy API, and transcoding between those types and their proto3-JSON/YAML form
//! (bootstrap files, `/config_dump`, `proxy-config -o json|yaml`, readable test fixtures), and the
//! xDS transport: a versioned resource [`cache`], an ADS [`server`] and an ADS [`client`], both
//! state of the world and delta.

pub mod cache;
pub mod client;
pub mod json;
pub mod server;

pub use cache::{Cache, Resource, Snapshot};
pub use client::{AdsClient, ClientConfig, Subscription, Update};
pub use server::{AdsServer, ServerHandle, serve};

pub use envoy_types;
pub use envoy_types::pb::envoy;
pub use envoy_types::pb::google;

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// The Envoy API's file descriptors, as shipped by the `envoy-types` version in Cargo.lock, with
/// `source_code_info` stripped. Regenerated (and checked for staleness) by `tests/descriptor.rs`.
pub const ENVOY_DESCRIPTOR_SET: &[u8] = include_bytes!("envoy_descriptor.bin");

/// The descriptor pool built from [`ENVOY_DESCRIPTOR_SET`], decoded once on first use.
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(ENVOY_DESCRIPTOR_SET)
            .expect("the checked-in Envoy descriptor set decodes (tests/descriptor.rs checks it)")
    })
}

/// Type URLs of the xDS resource types, as they appear in `Any.type_url` and discovery requests.
pub mod type_url {
    /// LDS: listeners (wildcard subscription).
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// CDS: clusters (wildcard subscription).
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// RDS: route configurations, subscribed by name.
    pub const ROUTE_CONFIGURATION: &str =
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// EDS: endpoints of a cluster, subscribed by cluster name.
    pub const CLUSTER_LOAD_ASSIGNMENT: &str =
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// SDS: TLS certificates and validation contexts, subscribed by name.
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}

/// The order in which Envoy subscribes to and applies types: clusters before their endpoints,
/// listeners before their routes, secrets last. Pushes of several types follow it.
pub(crate) fn type_order(type_url: &str) -> u8 {
    match type_url {
        type_url::CLUSTER => 0,
        type_url::CLUSTER_LOAD_ASSIGNMENT => 1,
        type_url::LISTENER => 2,
        type_url::ROUTE_CONFIGURATION => 3,
        type_url::SECRET => 4,
        _ => 5,
    }
}
