//! Istio's `WorkloadEntry` and `WorkloadGroup` (`networking.istio.io`): non-Kubernetes
//! workloads (VMs, bare metal) and the template they are registered from.
//!
//! The types follow `networking/v1alpha3/workload_entry.proto` and `workload_group.proto`.

pub(crate) mod validation;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::serde_util::is_default;

/// `WorkloadEntry` spec: one workload instance (also a ServiceEntry endpoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP, host name (DNS resolution) or `unix://` socket path of the workload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Service port name to the workload's port, overriding the service's port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// Labels of the workload (matched by selectors and subsets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network (L3 domain) the workload lives in; reached through a gateway if remote.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Locality `region/zone/subzone`, for locality load balancing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// Load-balancing weight relative to the other endpoints.
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: u32,
    /// Service account of the workload (its mTLS identity).
    #[serde(
        default,
        alias = "service_account",
        skip_serializing_if = "String::is_empty"
    )]
    pub service_account: String,
}

/// `WorkloadGroup` spec: template and health check for auto-registered WorkloadEntries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroup {
    /// Labels and annotations given to every generated WorkloadEntry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<WorkloadGroupObjectMeta>,
    /// Template of the generated WorkloadEntries (required; address is filled in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<WorkloadEntry>,
    /// Readiness check run by the workload's proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ReadinessProbe>,
}

/// Metadata attached to generated WorkloadEntries (`WorkloadGroup.ObjectMeta`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroupObjectMeta {
    /// Labels to attach.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to attach.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Readiness probe of a WorkloadGroup, modelled on Kubernetes' (`ReadinessProbe`). Exactly one
/// of `httpGet`, `tcpSocket`, `exec` and `grpc` (oneof `health_check_method`) must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessProbe {
    /// Seconds after start before the first probe.
    #[serde(
        default,
        alias = "initial_delay_seconds",
        skip_serializing_if = "is_default"
    )]
    pub initial_delay_seconds: i32,
    /// Seconds before a probe times out (default 1).
    #[serde(default, alias = "timeout_seconds", skip_serializing_if = "is_default")]
    pub timeout_seconds: i32,
    /// Seconds between probes (default 10).
    #[serde(default, alias = "period_seconds", skip_serializing_if = "is_default")]
    pub period_seconds: i32,
    /// Consecutive successes to become ready again (default 1).
    #[serde(
        default,
        alias = "success_threshold",
        skip_serializing_if = "is_default"
    )]
    pub success_threshold: i32,
    /// Consecutive failures to become unready (default 3).
    #[serde(
        default,
        alias = "failure_threshold",
        skip_serializing_if = "is_default"
    )]
    pub failure_threshold: i32,
    /// HTTP GET check (oneof `health_check_method`).
    #[serde(default, alias = "http_get", skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpHealthCheckConfig>,
    /// TCP connect check (oneof `health_check_method`).
    #[serde(default, alias = "tcp_socket", skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpHealthCheckConfig>,
    /// Command check (oneof `health_check_method`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHealthCheckConfig>,
    /// gRPC health check (oneof `health_check_method`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheckConfig>,
}

/// HTTP GET readiness check (`HTTPHealthCheckConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheckConfig {
    /// Request path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Port (required, 1-65535).
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Host to connect to (default: the workload IP).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    /// Headers sent with the request.
    #[serde(default, alias = "http_headers", skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// A header of an HTTP readiness check (`HTTPHeader`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    /// Header name (letters, digits, '-' and '_').
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Header value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// TCP connect readiness check (`TCPHealthCheckConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpHealthCheckConfig {
    /// Host to connect to (default localhost).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Port (required, 1-65535).
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
}

/// Command readiness check (`ExecHealthCheckConfig`): exit status 0 means ready.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecHealthCheckConfig {
    /// Command and arguments (required).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// gRPC health-check readiness check (`GrpcHealthCheckConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcHealthCheckConfig {
    /// Port (1-65535).
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Fully qualified gRPC service name to check.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
}

#[cfg(test)]
mod tests;
