//! Istio's `DestinationRule` (`networking.istio.io`): what happens to traffic for a service
//! after routing — load balancing, connection pools, outlier detection, client TLS, subsets.
//!
//! The types follow `networking/v1alpha3/destination_rule.proto` field for field. Several of
//! them (`ClientTlsSettings`, `ConnectionPoolSettings`, `LocalityLoadBalancerSetting`, ...) are
//! reused by Sidecar and MeshConfig.

mod validation;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::meta::WorkloadSelector;
pub use crate::networking::virtual_service::PortSelector;
use crate::serde_util::{is_default, istio_enum};

pub use validation::{
    validate_client_tls_settings, validate_connection_pool, validate_load_balancer,
    validate_locality_lb_setting, validate_outlier_detection, validate_traffic_policy,
};

/// `DestinationRule` spec: policies applied to traffic for `host` after routing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    /// The service the rule applies to (registry name; short names resolve in the rule's namespace).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Policies for every port and subset unless overridden.
    #[serde(
        default,
        alias = "traffic_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of endpoints (versions), each with optional policy overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Namespaces the rule is visible to (`.` own, `*` all); empty means all.
    #[serde(default, alias = "export_to", skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Restricts the rule to the workloads (clients) with these labels in the rule's namespace.
    #[serde(
        default,
        alias = "workload_selector",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload_selector: Option<WorkloadSelector>,
}

/// Traffic policy for a destination: load balancing, connection pool, outlier detection, TLS,
/// per-port overrides, tunneling, PROXY protocol and retry budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Load-balancing algorithm and locality settings.
    #[serde(
        default,
        alias = "load_balancer",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits (circuit breaking) per upstream host.
    #[serde(
        default,
        alias = "connection_pool",
        skip_serializing_if = "Option::is_none"
    )]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing hosts from the load-balancing pool.
    #[serde(
        default,
        alias = "outlier_detection",
        skip_serializing_if = "Option::is_none"
    )]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS settings for connections to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port policies; a port's policy replaces (does not merge with) the top-level one.
    #[serde(
        default,
        alias = "port_level_settings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnels TCP to the destination over HTTP CONNECT or POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// Sends a PROXY protocol header to the upstream.
    #[serde(
        default,
        alias = "proxy_protocol",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Limits concurrent retries relative to active requests.
    #[serde(
        default,
        alias = "retry_budget",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry_budget: Option<RetryBudget>,
}

/// Traffic policy for one port of the destination (`TrafficPolicy.PortTrafficPolicy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The destination port the policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    /// Load-balancing algorithm for this port.
    #[serde(
        default,
        alias = "load_balancer",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits for this port.
    #[serde(
        default,
        alias = "connection_pool",
        skip_serializing_if = "Option::is_none"
    )]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection for this port.
    #[serde(
        default,
        alias = "outlier_detection",
        skip_serializing_if = "Option::is_none"
    )]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS settings for this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// Tunneling of TCP to the destination (`TrafficPolicy.TunnelSettings`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Host (FQDN or IP) the connection is tunneled to.
    #[serde(
        default,
        alias = "target_host",
        skip_serializing_if = "String::is_empty"
    )]
    pub target_host: String,
    /// Port the connection is tunneled to.
    #[serde(default, alias = "target_port", skip_serializing_if = "is_default")]
    pub target_port: u32,
}

/// Upstream PROXY protocol settings (`TrafficPolicy.ProxyProtocol`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// PROXY protocol version (V1 when unset).
    #[serde(default, skip_serializing_if = "is_default")]
    pub version: ProxyProtocolVersion,
}

istio_enum! {
    /// PROXY protocol version (`TrafficPolicy.ProxyProtocol.VERSION`).
    pub enum ProxyProtocolVersion {
        /// Human-readable version 1.
        V1 = "V1",
        /// Binary version 2.
        V2 = "V2",
    }
}

/// Retry budget: concurrent retries allowed as a share of active requests
/// (`TrafficPolicy.RetryBudget`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Percentage (0-100) of active and pending requests that may be retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Retries always allowed regardless of the percentage.
    #[serde(
        default,
        alias = "min_retry_concurrency",
        skip_serializing_if = "is_default"
    )]
    pub min_retry_concurrency: u32,
    /// Window of requests the budget is computed over (only active requests when unset).
    #[serde(
        default,
        alias = "budget_interval",
        skip_serializing_if = "Option::is_none"
    )]
    pub budget_interval: Option<Duration>,
}

/// A named subset of the service's endpoints, selected by labels, with optional policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Subset name, referenced from routes (a DNS label).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Endpoint labels that select the subset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Policy overriding the rule-level one for this subset.
    #[serde(
        default,
        alias = "traffic_policy",
        skip_serializing_if = "Option::is_none"
    )]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Load-balancing policy for a destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// A standard algorithm (oneof `lb_policy` with `consistent_hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    /// Consistent-hash (session affinity) balancing (oneof `lb_policy` with `simple`).
    #[serde(
        default,
        alias = "consistent_hash",
        skip_serializing_if = "Option::is_none"
    )]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality-weighted distribution and failover; replaces the mesh-wide setting.
    #[serde(
        default,
        alias = "locality_lb_setting",
        skip_serializing_if = "Option::is_none"
    )]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Deprecated slow-start window for new endpoints; use `warmup`.
    #[serde(
        default,
        alias = "warmup_duration_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start for new endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
    /// Envoy zone-aware routing (prefer the caller's zone, spill over by capacity).
    #[serde(
        default,
        alias = "zone_aware_lb_setting",
        skip_serializing_if = "Option::is_none"
    )]
    pub zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
}

istio_enum! {
    /// Standard load-balancing algorithms (`LoadBalancerSettings.SimpleLB`).
    pub enum SimpleLb {
        /// Let Istio choose.
        Unspecified = "UNSPECIFIED",
        /// Deprecated alias of `LEAST_REQUEST`.
        LeastConn = "LEAST_CONN",
        /// A random healthy host.
        Random = "RANDOM",
        /// Forward to the original destination address, no balancing.
        Passthrough = "PASSTHROUGH",
        /// Round robin.
        RoundRobin = "ROUND_ROBIN",
        /// The host with the fewest outstanding requests (of two random choices).
        LeastRequest = "LEAST_REQUEST",
    }
}

/// Consistent-hash load balancing: hash key and algorithm (`LoadBalancerSettings.ConsistentHashLB`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    /// Hash on this request header (oneof `hash_key`).
    #[serde(
        default,
        alias = "http_header_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_header_name: Option<String>,
    /// Hash on this cookie, generating it when absent (oneof `hash_key`).
    #[serde(
        default,
        alias = "http_cookie",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP (oneof `hash_key`).
    #[serde(
        default,
        alias = "use_source_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_source_ip: Option<bool>,
    /// Hash on this query parameter (oneof `hash_key`).
    #[serde(
        default,
        alias = "http_query_parameter_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_query_parameter_name: Option<String>,
    /// Ring-hash algorithm (oneof `hash_algorithm`; the default).
    #[serde(default, alias = "ring_hash", skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// Maglev algorithm (oneof `hash_algorithm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated ring size; use `ringHash.minimumRingSize`.
    #[serde(
        default,
        alias = "minimum_ring_size",
        skip_serializing_if = "is_default"
    )]
    pub minimum_ring_size: u64,
}

/// Ring-hash settings (`ConsistentHashLB.RingHash`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum number of virtual nodes on the ring (Envoy default 1024).
    #[serde(
        default,
        alias = "minimum_ring_size",
        skip_serializing_if = "is_default"
    )]
    pub minimum_ring_size: u64,
}

/// Maglev settings (`ConsistentHashLB.MagLev`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Lookup table size: a prime below 5000011 (Envoy default 65537).
    #[serde(default, alias = "table_size", skip_serializing_if = "is_default")]
    pub table_size: u64,
}

/// The cookie used as hash key (`ConsistentHashLB.HTTPCookie`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Path set on a generated cookie.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Lifetime of a generated cookie; zero makes it a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Extra attributes set on a generated cookie (`SameSite`, `Secure`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<HttpCookieAttribute>,
}

/// One attribute of a generated hash cookie (`HTTPCookie.Attribute`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookieAttribute {
    /// Attribute name (required, unique within the cookie).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Attribute value, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Slow start for newly added endpoints (`WarmupConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// How long a new endpoint stays in warmup (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Share of its full traffic (0-100) an endpoint gets when warmup starts.
    #[serde(
        default,
        alias = "minimum_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub minimum_percent: Option<f64>,
    /// How fast traffic ramps up over the window (1.0 is linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

/// Locality-weighted load balancing: explicit distribution, region failover or label-based
/// failover priority (`LocalityLoadBalancerSetting`; also used in MeshConfig).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLoadBalancerSetting {
    /// Traffic shares from each source locality to destination localities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<Distribute>,
    /// Region to fail over to when a region's endpoints are unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<Failover>,
    /// Ordered labels used to rank endpoints for priority failover.
    #[serde(
        default,
        alias = "failover_priority",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failover_priority: Vec<String>,
    /// Turns locality load balancing on or off (unset: mesh default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// How traffic from one locality is spread over others (`LocalityLoadBalancerSetting.Distribute`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Distribute {
    /// Source locality, `region/zone/subzone` with an optional trailing `*`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Destination locality to weight; the weights must add up to 100.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u32>,
}

/// Region-to-region failover (`LocalityLoadBalancerSetting.Failover`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failover {
    /// Source region.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Region to fail over to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
}

/// Envoy zone-aware routing settings (`ZoneAwareLoadBalancerSetting`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAwareLoadBalancerSetting {
    /// Turns zone-aware routing on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Ordering of cross-region failover tiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<ZoneAwareFailover>,
    /// Ordered non-topology labels ranking endpoints below the regional tiers.
    #[serde(
        default,
        alias = "failover_priority",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub failover_priority: Vec<String>,
    /// Minimum hosts in the local region for zone-aware routing to engage (Envoy default 6).
    #[serde(
        default,
        alias = "min_cluster_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_cluster_size: Option<u32>,
}

/// Region-to-region failover for zone-aware routing (`ZoneAwareLoadBalancerSetting.Failover`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAwareFailover {
    /// Source region.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Region to fail over to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
}

/// Connection-pool (circuit-breaker) limits per upstream host (`ConnectionPoolSettings`; also
/// used by Sidecar and MeshConfig).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// Settings for all TCP connections (HTTP included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// Settings for HTTP/1.1, HTTP/2 and gRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// TCP connection limits (`ConnectionPoolSettings.TCPSettings`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Maximum connections to a host (default 2^32-1).
    #[serde(default, alias = "max_connections", skip_serializing_if = "is_default")]
    pub max_connections: i32,
    /// Connect timeout (at least 1ms; default 10s).
    #[serde(
        default,
        alias = "connect_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    /// Enables SO_KEEPALIVE with these settings.
    #[serde(
        default,
        alias = "tcp_keepalive",
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Maximum lifetime of a connection (at least 1ms).
    #[serde(
        default,
        alias = "max_connection_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connection_duration: Option<Duration>,
    /// Idle timeout for TCP connections (default 1h; `0s` disables).
    #[serde(
        default,
        alias = "idle_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
}

/// TCP keepalive probes (`TCPSettings.TcpKeepalive`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dead (OS default when 0).
    #[serde(default, skip_serializing_if = "is_default")]
    pub probes: u32,
    /// Idle time before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// Time between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// HTTP connection-pool limits (`ConnectionPoolSettings.HTTPSettings`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Maximum requests queued waiting for a connection.
    #[serde(
        default,
        alias = "http1_max_pending_requests",
        skip_serializing_if = "is_default"
    )]
    pub http1_max_pending_requests: i32,
    /// Maximum active requests to a host.
    #[serde(
        default,
        alias = "http2_max_requests",
        skip_serializing_if = "is_default"
    )]
    pub http2_max_requests: i32,
    /// Requests per connection before it is closed (1 disables keep-alive; 0 unlimited).
    #[serde(
        default,
        alias = "max_requests_per_connection",
        skip_serializing_if = "is_default"
    )]
    pub max_requests_per_connection: i32,
    /// Maximum outstanding retries to all hosts.
    #[serde(default, alias = "max_retries", skip_serializing_if = "is_default")]
    pub max_retries: i32,
    /// Idle timeout for pooled connections (default 1h).
    #[serde(
        default,
        alias = "idle_timeout",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    /// Whether HTTP/1.1 connections are upgraded to HTTP/2.
    #[serde(
        default,
        alias = "h2_upgrade_policy",
        skip_serializing_if = "is_default"
    )]
    pub h2_upgrade_policy: H2UpgradePolicy,
    /// Keep the client's protocol towards the upstream.
    #[serde(
        default,
        alias = "use_client_protocol",
        skip_serializing_if = "is_default"
    )]
    pub use_client_protocol: bool,
    /// Maximum concurrent streams per HTTP/2 connection.
    #[serde(
        default,
        alias = "max_concurrent_streams",
        skip_serializing_if = "is_default"
    )]
    pub max_concurrent_streams: i32,
    /// HTTP/2 PING keepalive towards the upstream.
    #[serde(
        default,
        alias = "http2_keep_alive",
        skip_serializing_if = "Option::is_none"
    )]
    pub http2_keep_alive: Option<ConnectionKeepalive>,
}

istio_enum! {
    /// HTTP/1.1 to HTTP/2 upgrade policy (`HTTPSettings.H2UpgradePolicy`).
    pub enum H2UpgradePolicy {
        /// Mesh default.
        Default = "DEFAULT",
        /// Never upgrade.
        DoNotUpgrade = "DO_NOT_UPGRADE",
        /// Upgrade.
        Upgrade = "UPGRADE",
    }
}

/// HTTP/2 PING keepalive (`HTTPSettings.ConnectionKeepalive`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionKeepalive {
    /// Time between PINGs (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time to wait for a PING reply before closing the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// Outlier detection: ejecting hosts that keep failing (`OutlierDetection`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated error count; use `consecutiveGatewayErrors` or `consecutive5xxErrors`.
    #[serde(
        default,
        alias = "consecutive_errors",
        skip_serializing_if = "is_default"
    )]
    pub consecutive_errors: i32,
    /// Count locally originated failures separately from upstream errors.
    #[serde(
        default,
        alias = "split_external_local_origin_errors",
        skip_serializing_if = "is_default"
    )]
    pub split_external_local_origin_errors: bool,
    /// Local-origin failures before ejection (needs `splitExternalLocalOriginErrors`).
    #[serde(
        default,
        alias = "consecutive_local_origin_failures",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Gateway errors (502/503/504, connect failures) before ejection; 0 disables.
    #[serde(
        default,
        alias = "consecutive_gateway_errors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_gateway_errors: Option<u32>,
    /// 5xx errors before ejection (default 5; 0 disables).
    #[serde(
        default,
        alias = "consecutive_5xx_errors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// Time between ejection sweeps (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection time, multiplied by the number of ejections (default 30s).
    #[serde(
        default,
        alias = "base_ejection_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub base_ejection_time: Option<Duration>,
    /// Maximum percentage of hosts that may be ejected (default 10).
    #[serde(
        default,
        alias = "max_ejection_percent",
        skip_serializing_if = "is_default"
    )]
    pub max_ejection_percent: i32,
    /// Outlier detection is off while fewer than this percentage of hosts are healthy.
    #[serde(
        default,
        alias = "min_health_percent",
        skip_serializing_if = "is_default"
    )]
    pub min_health_percent: i32,
}

/// Client-side TLS settings for upstream connections (`ClientTLSSettings`; also used by
/// Sidecar, MeshConfig and others).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// Whether and how TLS is originated.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: TlsMode,
    /// Client certificate file (MUTUAL without `credentialName`).
    #[serde(
        default,
        alias = "client_certificate",
        skip_serializing_if = "String::is_empty"
    )]
    pub client_certificate: String,
    /// Client private key file (MUTUAL without `credentialName`).
    #[serde(
        default,
        alias = "private_key",
        skip_serializing_if = "String::is_empty"
    )]
    pub private_key: String,
    /// CA bundle file used to verify the server (OS CAs when unset).
    #[serde(
        default,
        alias = "ca_certificates",
        skip_serializing_if = "String::is_empty"
    )]
    pub ca_certificates: String,
    /// Secret holding the client certificate, key and CA (instead of file paths).
    #[serde(
        default,
        alias = "credential_name",
        skip_serializing_if = "String::is_empty"
    )]
    pub credential_name: String,
    /// Accepted subject alternative names of the server certificate.
    #[serde(
        default,
        alias = "subject_alt_names",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subject_alt_names: Vec<String>,
    /// SNI sent in the handshake.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// Skip verifying the server certificate's CA and SAN.
    #[serde(
        default,
        alias = "insecure_skip_verify",
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file used to verify the server.
    #[serde(default, alias = "ca_crl", skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
}

istio_enum! {
    /// Upstream TLS mode (`ClientTLSSettings.TLSmode`).
    pub enum TlsMode {
        /// Plain text.
        Disable = "DISABLE",
        /// TLS, verifying the server.
        Simple = "SIMPLE",
        /// Mutual TLS with user-provided certificates.
        Mutual = "MUTUAL",
        /// Mutual TLS with Istio's workload certificates.
        IstioMutual = "ISTIO_MUTUAL",
    }
}

#[cfg(test)]
mod tests;
