//! Istio's `ServiceEntry` (`networking.istio.io`): adds services (usually external ones, or
//! VMs) to Istio's service registry.
//!
//! The types follow `networking/v1alpha3/service_entry.proto`. Endpoints are
//! [`WorkloadEntry`] values, as in the proto.

mod validation;

use serde::{Deserialize, Serialize};

use crate::meta::NetworkingWorkloadSelector;

use crate::networking::workload::WorkloadEntry;
use crate::serde_util::{is_default, istio_enum};

/// `ServiceEntry` spec: hosts, ports and endpoints of a service added to the registry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Host names of the service (matched against HTTP Host / SNI; may start with `*.`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDR blocks of the service (CIDRs only for NONE/STATIC resolution).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Ports the service listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Whether the service is outside or part of the mesh.
    #[serde(default, skip_serializing_if = "is_default")]
    pub location: Location,
    /// How endpoint addresses are found.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resolution: Resolution,
    /// Static endpoints of the service (excludes `workloadSelector`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Selects Pods and WorkloadEntries as endpoints (MESH_INTERNAL; excludes `endpoints`).
    #[serde(
        default,
        alias = "workload_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    /// Namespaces the service is visible to (`.` own, `*` all, `~` none).
    #[serde(default, alias = "export_to", skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Accepted SANs of the endpoints' server certificates.
    #[serde(
        default,
        alias = "subject_alt_names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_alt_names: Vec<String>,
}

/// A port of a ServiceEntry (`ServicePort`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port number (1-65535).
    #[serde(default, skip_serializing_if = "is_default")]
    pub number: u32,
    /// Protocol: HTTP, HTTPS, HTTP2, GRPC, TLS, TCP, MONGO, ... (sniffed when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Port name (a DNS label, unique within the entry).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Port on the endpoints that receives the traffic (defaults to `number`).
    #[serde(default, alias = "target_port", skip_serializing_if = "is_default")]
    pub target_port: u32,
}

istio_enum! {
    /// Whether a ServiceEntry's service is in the mesh (`ServiceEntry.Location`).
    pub enum Location {
        /// Outside the mesh: no mTLS, treated as external in telemetry.
        MeshExternal = "MESH_EXTERNAL",
        /// Part of the mesh (VMs, other clusters).
        MeshInternal = "MESH_INTERNAL",
    }
}

istio_enum! {
    /// How a ServiceEntry's endpoint addresses are resolved (`ServiceEntry.Resolution`).
    pub enum Resolution {
        /// Use the connection's original destination address.
        None = "NONE",
        /// Use the IPs given in `endpoints` (or selected workloads).
        Static = "STATIC",
        /// Resolve endpoint (or host) names by DNS, connecting to all addresses.
        Dns = "DNS",
        /// Resolve by DNS, connecting to the first address only.
        DnsRoundRobin = "DNS_ROUND_ROBIN",
        /// Resolve the requested name (Host header / SNI) under a wildcard host by DNS.
        DynamicDns = "DYNAMIC_DNS",
    }
}

#[cfg(test)]
mod tests;
