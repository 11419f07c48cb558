//! Upstream clusters: endpoint sets that can be replaced live, load balancing, circuit breaking
//! and the per-endpoint connection pools. All state touched per request is atomic.

pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use weft_xds::envoy::config::cluster::v3 as cl;
use weft_xds::envoy::config::core::v3::{address, socket_address};
use weft_xds::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use weft_xds::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};

use crate::config::{CompileError, Unsupported, duration};
use crate::stats::ClusterStats;
use pool::Pool;

/// Which HTTP version the proxy speaks to a cluster's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a pool of keep-alive connections per endpoint.
    Http1,
    /// HTTP/2 (h2c), one multiplexed connection per endpoint.
    Http2,
}

/// How a cluster picks an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbPolicy {
    /// Weighted round robin (`ROUND_ROBIN`).
    RoundRobin,
    /// Weighted random (`RANDOM`).
    Random,
    /// Power of two choices on in-flight requests (`LEAST_REQUEST`).
    LeastRequest,
}

/// A compiled cluster. Routes and TCP proxies find it by name in the snapshot.
#[derive(Debug)]
pub struct Cluster {
    /// Cluster name, as routes refer to it.
    pub name: String,
    /// Upstream TCP connect timeout (Envoy's default is 5 s).
    pub connect_timeout: Duration,
    /// Load-balancing policy.
    pub lb: LbPolicy,
    /// HTTP version towards the endpoints.
    pub protocol: UpstreamProtocol,
    /// The endpoints; swapped whole when EDS (or a test) replaces them.
    endpoints: ArcSwap<EndpointSet>,
    /// Circuit breaker: most requests in flight at once (`max_requests`, default 1024).
    pub max_requests: u64,
    /// Requests in flight now, guarded by [`Cluster::try_acquire`].
    active_requests: AtomicU64,
    /// Idle HTTP/1.1 connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// Counters, shared with earlier and later versions of this cluster.
    pub stats: Arc<ClusterStats>,
}

/// The endpoints of a cluster at one moment, with the round-robin schedule precomputed.
#[derive(Debug)]
pub struct EndpointSet {
    /// All endpoints, healthy or not.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Smooth weighted round-robin order (indices into `endpoints`).
    schedule: Vec<u32>,
    /// Running sum of weights, for weighted random picks.
    cumulative: Vec<u64>,
    cursor: AtomicUsize,
}

/// One upstream host.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Load-balancing weight (at least 1).
    pub weight: u32,
    /// False when the endpoint must not receive traffic (health status from config, health
    /// checking and outlier detection later).
    pub healthy: AtomicBool,
    /// Requests in flight to this endpoint (least-request balancing, `/clusters`).
    pub active_requests: AtomicU64,
    /// Requests sent to this endpoint in total (`/clusters`).
    pub total_requests: AtomicU64,
    /// Connections to this endpoint.
    pub pool: Pool,
}

/// A slot in a cluster's circuit breaker, released on drop.
#[derive(Debug)]
pub struct RequestPermit {
    cluster: Arc<Cluster>,
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.cluster.active_requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint chosen for one request; its in-flight count drops with it.
#[derive(Debug)]
pub struct EndpointLease {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
}

impl Drop for EndpointLease {
    fn drop(&mut self) {
        self.endpoint
            .active_requests
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One endpoint as written in configuration, before it is compiled.
#[derive(Clone, Debug)]
pub struct EndpointSpec {
    /// Address.
    pub addr: SocketAddr,
    /// Weight (0 is taken as 1).
    pub weight: u32,
    /// Whether it may receive traffic.
    pub healthy: bool,
}

impl Cluster {
    /// Reserves a request slot, or `None` when `max_requests` are already in flight.
    pub fn try_acquire(self: &Arc<Self>) -> Option<RequestPermit> {
        let before = self.active_requests.fetch_add(1, Ordering::Relaxed);
        if before >= self.max_requests {
            self.active_requests.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(RequestPermit {
            cluster: Arc::clone(self),
        })
    }

    /// Requests in flight.
    pub fn active_requests(&self) -> u64 {
        self.active_requests.load(Ordering::Relaxed)
    }

    /// The current endpoint set.
    pub fn endpoints(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.endpoints.load()
    }

    /// Replaces the endpoints (what EDS will call). Endpoints whose address stays keep their
    /// connection pool and counters; requests in flight finish on the endpoints they have.
    pub fn replace_endpoints(&self, specs: &[EndpointSpec]) {
        let old = self.endpoints.load_full();
        let set = EndpointSet::build(specs, Some(&old), self.max_idle_per_endpoint);
        self.endpoints.store(Arc::new(set));
    }

    /// Picks a healthy endpoint with the cluster's policy; `None` means "no healthy upstream".
    pub fn pick(&self) -> Option<EndpointLease> {
        let set = self.endpoints.load();
        let ep = match self.lb {
            LbPolicy::RoundRobin => set.pick_round_robin(),
            LbPolicy::Random => set.pick_random(),
            LbPolicy::LeastRequest => set.pick_least_request(),
        }?;
        ep.active_requests.fetch_add(1, Ordering::Relaxed);
        ep.total_requests.fetch_add(1, Ordering::Relaxed);
        Some(EndpointLease { endpoint: ep })
    }
}

impl EndpointSet {
    fn build(specs: &[EndpointSpec], previous: Option<&EndpointSet>, max_idle: usize) -> Self {
        let endpoints: Vec<Arc<Endpoint>> = specs
            .iter()
            .map(|s| {
                let weight = s.weight.max(1);
                if let Some(old) = previous.and_then(|p| {
                    p.endpoints
                        .iter()
                        .find(|e| e.addr == s.addr && e.weight == weight)
                }) {
                    old.healthy.store(s.healthy, Ordering::Relaxed);
                    return Arc::clone(old);
                }
                Arc::new(Endpoint {
                    addr: s.addr,
                    weight,
                    healthy: AtomicBool::new(s.healthy),
                    active_requests: AtomicU64::new(0),
                    total_requests: AtomicU64::new(0),
                    pool: Pool::new(s.addr, max_idle),
                })
            })
            .collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let mut cumulative = Vec::with_capacity(weights.len());
        let mut sum = 0u64;
        for w in &weights {
            sum += u64::from(*w);
            cumulative.push(sum);
        }
        EndpointSet {
            schedule: smooth_weighted_schedule(&weights),
            cumulative,
            endpoints,
            cursor: AtomicUsize::new(0),
        }
    }

    fn pick_round_robin(&self) -> Option<Arc<Endpoint>> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..len {
            let idx = self.schedule[(start + i) % len] as usize;
            let ep = &self.endpoints[idx];
            if ep.healthy.load(Ordering::Relaxed) {
                return Some(Arc::clone(ep));
            }
        }
        None
    }

    fn pick_random(&self) -> Option<Arc<Endpoint>> {
        let total = *self.cumulative.last()?;
        let draw = fastrand::u64(0..total);
        let first = self.cumulative.partition_point(|c| *c <= draw);
        let n = self.endpoints.len();
        (0..n)
            .map(|i| &self.endpoints[(first + i) % n])
            .find(|e| e.healthy.load(Ordering::Relaxed))
            .cloned()
    }

    /// Power of two choices on in-flight requests, as Envoy's LEAST_REQUEST does by default.
    fn pick_least_request(&self) -> Option<Arc<Endpoint>> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let a = &self.endpoints[fastrand::usize(0..n)];
        let b = &self.endpoints[fastrand::usize(0..n)];
        let ok = |e: &Arc<Endpoint>| e.healthy.load(Ordering::Relaxed);
        match (ok(a), ok(b)) {
            (true, true) => {
                let la = a.active_requests.load(Ordering::Relaxed);
                let lb = b.active_requests.load(Ordering::Relaxed);
                Some(Arc::clone(if lb < la { b } else { a }))
            }
            (true, false) => Some(Arc::clone(a)),
            (false, true) => Some(Arc::clone(b)),
            (false, false) => self.pick_round_robin(),
        }
    }
}

/// nginx's smooth weighted round robin, unrolled into a schedule of at most 4096 slots (weights
/// are divided by their gcd first, and scaled down when the sum is larger).
fn smooth_weighted_schedule(weights: &[u32]) -> Vec<u32> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights
        .iter()
        .fold(0u64, |g, w| gcd(g, u64::from(*w)))
        .max(1);
    let mut w: Vec<u64> = weights.iter().map(|x| u64::from(*x) / g).collect();
    let sum: u64 = w.iter().sum();
    const MAX: u64 = 4096;
    if sum > MAX {
        for x in &mut w {
            *x = (*x * MAX / sum).max(1);
        }
    }
    let sum: i64 = w.iter().map(|x| *x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(sum as usize);
    for _ in 0..sum {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= sum;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Reads the endpoints of a `load_assignment`.
pub fn endpoint_specs(
    cla: &ClusterLoadAssignment,
    resource: &str,
) -> Result<Vec<EndpointSpec>, CompileError> {
    let mut out = Vec::new();
    for (li, locality) in cla.endpoints.iter().enumerate() {
        for (ei, lbe) in locality.lb_endpoints.iter().enumerate() {
            let field = format!("load_assignment.endpoints[{li}].lb_endpoints[{ei}]");
            let ep = match &lbe.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => ep,
                _ => {
                    return Err(CompileError::Invalid {
                        resource: resource.to_owned(),
                        field,
                        reason: "an endpoint needs an address".into(),
                    });
                }
            };
            let addr = socket_addr(
                ep.address.as_ref(),
                resource,
                &format!("{field}.endpoint.address"),
            )?;
            // HEALTHY(1), UNKNOWN(0) and DEGRADED(5) take traffic; UNHEALTHY, DRAINING, TIMEOUT do not.
            let healthy = matches!(lbe.health_status, 0 | 1 | 5);
            out.push(EndpointSpec {
                addr,
                weight: lbe.load_balancing_weight.as_ref().map_or(1, |w| w.value),
                healthy,
            });
        }
    }
    Ok(out)
}

/// Reads an Envoy `Address` that must be an IP socket address.
pub fn socket_addr(
    a: Option<&weft_xds::envoy::config::core::v3::Address>,
    resource: &str,
    field: &str,
) -> Result<SocketAddr, CompileError> {
    let invalid = |reason: String| CompileError::Invalid {
        resource: resource.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let Some(address::Address::SocketAddress(sa)) = a.and_then(|a| a.address.as_ref()) else {
        return Err(invalid(
            "needs a socket_address (pipes and internal addresses are not supported)".into(),
        ));
    };
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => {
            u16::try_from(p).map_err(|_| invalid(format!("port {p} is out of range")))?
        }
        _ => {
            return Err(invalid(
                "needs port_value (named ports are not supported)".into(),
            ));
        }
    };
    let ip: std::net::IpAddr = sa.address.parse().map_err(|_| {
        invalid(format!(
            "{:?} is not an IP address (DNS names need STRICT_DNS, which weft does not support yet)",
            sa.address
        ))
    })?;
    Ok(SocketAddr::new(ip, port))
}

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Compiles a `Cluster`.
pub fn compile_cluster(
    c: &cl::Cluster,
    stats: Arc<ClusterStats>,
    max_idle_per_endpoint: usize,
    warnings: &mut Vec<Unsupported>,
) -> Result<Cluster, CompileError> {
    let resource = format!("cluster {:?}", c.name);
    if c.name.is_empty() {
        return Err(CompileError::Invalid {
            resource,
            field: "name".into(),
            reason: "a cluster needs a name".into(),
        });
    }
    match &c.cluster_discovery_type {
        None | Some(cl::cluster::ClusterDiscoveryType::Type(0)) => {}
        Some(cl::cluster::ClusterDiscoveryType::Type(3)) => {
            if c.eds_cluster_config.is_some() && c.load_assignment.is_none() {
                warnings.push(Unsupported {
                    resource: resource.clone(),
                    what: "type EDS without load_assignment (EDS over xDS)".into(),
                });
            }
        }
        Some(cl::cluster::ClusterDiscoveryType::Type(t)) => warnings.push(Unsupported {
            resource: resource.clone(),
            what: format!(
                "type {}",
                cl::cluster::DiscoveryType::try_from(*t).map_or("?", |d| d.as_str_name())
            ),
        }),
        Some(cl::cluster::ClusterDiscoveryType::ClusterType(ct)) => warnings.push(Unsupported {
            resource: resource.clone(),
            what: format!("cluster_type {}", ct.name),
        }),
    }
    let lb = match c.lb_policy {
        0 => LbPolicy::RoundRobin,
        1 => LbPolicy::LeastRequest,
        3 => LbPolicy::Random,
        other => {
            warnings.push(Unsupported {
                resource: resource.clone(),
                what: format!(
                    "lb_policy {} (round robin is used)",
                    cl::cluster::LbPolicy::try_from(other).map_or("?", |p| p.as_str_name())
                ),
            });
            LbPolicy::RoundRobin
        }
    };
    #[allow(deprecated)]
    let mut protocol = if c.http2_protocol_options.is_some() {
        UpstreamProtocol::Http2
    } else {
        UpstreamProtocol::Http1
    };
    for (key, any) in &c.typed_extension_protocol_options {
        if key != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
            && !any.type_url.ends_with(HTTP_PROTOCOL_OPTIONS)
        {
            warnings.push(Unsupported {
                resource: resource.clone(),
                what: format!("typed_extension_protocol_options {key}"),
            });
            continue;
        }
        let opts =
            <HttpProtocolOptions as prost::Message>::decode(any.value.as_slice()).map_err(|e| {
                CompileError::Invalid {
                    resource: resource.clone(),
                    field: format!("typed_extension_protocol_options[{key}]"),
                    reason: e.to_string(),
                }
            })?;
        use http_protocol_options::UpstreamProtocolOptions as U;
        use http_protocol_options::explicit_http_config::ProtocolConfig as P;
        match &opts.upstream_protocol_options {
            Some(U::ExplicitHttpConfig(e)) => match &e.protocol_config {
                Some(P::Http2ProtocolOptions(_)) => protocol = UpstreamProtocol::Http2,
                Some(P::HttpProtocolOptions(_)) => protocol = UpstreamProtocol::Http1,
                _ => warnings.push(Unsupported {
                    resource: resource.clone(),
                    what: "HttpProtocolOptions explicit_http_config http3_protocol_options".into(),
                }),
            },
            Some(U::UseDownstreamProtocolConfig(_)) => warnings.push(Unsupported {
                resource: resource.clone(),
                what: "HttpProtocolOptions use_downstream_protocol_config (HTTP/1.1 is used)"
                    .into(),
            }),
            Some(U::AutoConfig(_)) => warnings.push(Unsupported {
                resource: resource.clone(),
                what: "HttpProtocolOptions auto_config (HTTP/1.1 is used)".into(),
            }),
            None => {}
        }
        crate::config::supported::check(
            &opts,
            &resource,
            &format!("typed_extension_protocol_options[{key}]"),
            warnings,
        );
    }
    let mut max_requests = 1024u64;
    if let Some(cb) = &c.circuit_breakers {
        for t in cb.thresholds.iter().filter(|t| t.priority == 0) {
            if let Some(m) = &t.max_requests {
                max_requests = u64::from(m.value);
            }
        }
    }
    let specs = match &c.load_assignment {
        Some(cla) => endpoint_specs(cla, &resource)?,
        None => Vec::new(),
    };
    let set = EndpointSet::build(&specs, None, max_idle_per_endpoint);
    Ok(Cluster {
        name: c.name.clone(),
        connect_timeout: c
            .connect_timeout
            .as_ref()
            .map_or(Duration::from_secs(5), duration),
        lb,
        protocol,
        endpoints: ArcSwap::from_pointee(set),
        max_requests,
        active_requests: AtomicU64::new(0),
        max_idle_per_endpoint,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_schedule_interleaves_by_weight() {
        let s = smooth_weighted_schedule(&[5, 1, 1]);
        assert_eq!(s.len(), 7);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 5);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_weighted_schedule(&[10, 10]), vec![0, 1]);
    }
}
