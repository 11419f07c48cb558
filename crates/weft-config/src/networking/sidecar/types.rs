//! The `Sidecar` API (`networking.istio.io`, `sidecar.proto`) as serde types.

use serde::{Deserialize, Serialize};

use crate::meta::NetworkingWorkloadSelector;

use crate::networking::destination_rule::ConnectionPoolSettings;
use crate::networking::gateway::ServerTlsSettings;
use crate::networking::virtual_service::Destination;
use crate::serde_util::{is_default, is_zero_u32};

/// `Sidecar` spec: what a workload's proxy accepts inbound and can reach outbound.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Workloads this Sidecar applies to; all workloads of the namespace when unset.
    #[serde(
        default,
        alias = "workload_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    /// Inbound listeners; Istio derives them from the workload's services when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IstioIngressListener>,
    /// Outbound listeners and the services they can reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<IstioEgressListener>,
    /// Connection limits for inbound traffic on every port without its own settings.
    #[serde(
        default,
        alias = "inbound_connection_pool",
        skip_serializing_if = "Option::is_none"
    )]
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// What to do with traffic to destinations outside the registry.
    #[serde(
        default,
        alias = "outbound_traffic_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// An inbound listener of the sidecar.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioIngressListener {
    /// Port the listener accepts traffic on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// IP address to bind to; the workload's addresses when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// How traffic reaches the listener.
    #[serde(default, alias = "capture_mode", skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Loopback endpoint (`127.0.0.1:port`, `[::1]:port`, `0.0.0.0:port`, `[::]:port` or
    /// `unix://path`) the traffic is forwarded to.
    #[serde(
        default,
        alias = "default_endpoint",
        skip_serializing_if = "String::is_empty"
    )]
    pub default_endpoint: String,
    /// TLS termination for traffic from outside the mesh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Connection limits for this port (overrides `inboundConnectionPool`).
    #[serde(
        default,
        alias = "connection_pool",
        skip_serializing_if = "Option::is_none"
    )]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// An outbound listener of the sidecar and the hosts reachable through it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    /// Port of the listener; the last listener may omit it to catch all other traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// IP address or `unix://` socket to bind to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// How traffic reaches the listener.
    #[serde(default, alias = "capture_mode", skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Reachable services as `namespace/dnsName` (`*`, `.` and `~` namespaces allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// A listener port of a sidecar.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    /// Port number (0 for a Unix domain socket egress listener).
    #[serde(default)]
    pub number: u32,
    /// Protocol (sniffed when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Optional port name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Deprecated and without effect on sidecars.
    #[serde(default, alias = "target_port", skip_serializing_if = "is_zero_u32")]
    pub target_port: u32,
}

/// How traffic is captured into a listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CaptureMode {
    /// The environment's default capture mode.
    #[default]
    #[serde(rename = "DEFAULT")]
    Default,
    /// Redirected with iptables.
    #[serde(rename = "IPTABLES")]
    Iptables,
    /// Not captured: the application connects to the listener directly.
    #[serde(rename = "NONE")]
    None,
}

/// The sidecar's policy for traffic to destinations it does not know.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Whether unknown destinations are blocked or passed through.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: OutboundTrafficPolicyMode,
    /// Service that unknown traffic is sent to instead (ALLOW_ANY only).
    #[serde(
        default,
        alias = "egress_proxy",
        skip_serializing_if = "Option::is_none"
    )]
    pub egress_proxy: Option<Destination>,
}

/// `OutboundTrafficPolicy.Mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutboundTrafficPolicyMode {
    /// Only hosts in the service registry are reachable.
    #[default]
    #[serde(rename = "REGISTRY_ONLY")]
    RegistryOnly,
    /// Unknown hosts are passed through.
    #[serde(rename = "ALLOW_ANY")]
    AllowAny,
}
