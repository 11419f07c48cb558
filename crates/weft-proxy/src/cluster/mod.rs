//! Upstream clusters: endpoint sets that can be replaced live, load balancing, circuit breaking,
//! outlier detection and the per-endpoint connection pools. All state touched per request is
//! atomic.

pub mod breaker;
pub mod lb;
pub mod outlier;
pub mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
pub use breaker::{Breakers, Priority, Slot};
pub use lb::{EndpointSet, LbSettings, PickCtx};
pub use outlier::Outcome;
use outlier::{OutlierConfig, OutlierState};
use pool::{Pool, PoolOptions};

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
    /// N random choices, fewest requests in flight wins (`LEAST_REQUEST`).
    LeastRequest,
    /// Consistent hashing on a ring (`RING_HASH`), keyed by the route's `hash_policy`.
    RingHash,
    /// Maglev consistent hashing (`MAGLEV`), keyed by the route's `hash_policy`.
    Maglev,
}

/// A compiled cluster. Routes and TCP proxies find it by name in the snapshot.
#[derive(Debug)]
pub struct Cluster {
    /// Cluster name, as routes refer to it.
    pub name: String,
    /// Upstream TCP connect timeout (Envoy's default is 5 s).
    pub connect_timeout: Duration,
    /// Load-balancing policy and table settings.
    pub lb: LbSettings,
    /// HTTP version towards the endpoints.
    pub protocol: UpstreamProtocol,
    /// The endpoints; swapped whole when EDS (or a test) replaces them.
    endpoints: ArcSwap<EndpointSet>,
    /// Circuit breakers per priority, shared with the connection pools and tasks.
    pub breakers: Arc<Breakers>,
    /// Outlier detection, when configured.
    pub outlier: Option<OutlierConfig>,
    /// Connection pool settings for new endpoints.
    pub pool: PoolOptions,
    /// The destination service for metric labels, and the cluster's pre-resolved series.
    pub telemetry: crate::telemetry::ClusterTelemetry,
    /// Counters, shared with earlier and later versions of this cluster.
    pub stats: Arc<ClusterStats>,
    /// `transport_socket` and `transport_socket_matches`: TLS or plaintext, per endpoint.
    pub transport: Arc<TransportSelector>,
    /// `type: ORIGINAL_DST`: hosts are the downstream connections' original destinations.
    pub original_dst: Option<OriginalDst>,
}

/// Picks each endpoint's transport socket: the first `transport_socket_matches` entry whose
/// `match` fields all equal the endpoint's `envoy.transport_socket_match` metadata (Istio's
/// auto mTLS: `tlsMode: istio`), else the cluster's `transport_socket`.
#[derive(Debug, Default)]
pub struct TransportSelector {
    /// `transport_socket`: `None` is plaintext.
    pub default: Option<Arc<crate::tls::UpstreamTls>>,
    /// `transport_socket_matches`, in order: (name, match fields, socket).
    pub matches: Vec<SocketMatch>,
}

impl TransportSelector {
    /// The transport socket for an endpoint with `metadata` (its flattened
    /// `envoy.transport_socket_match` fields).
    pub fn select(&self, metadata: &[(String, String)]) -> Option<Arc<crate::tls::UpstreamTls>> {
        for (_, want, socket) in &self.matches {
            if want.iter().all(|kv| metadata.contains(kv)) {
                return socket.clone();
            }
        }
        self.default.clone()
    }
}

/// One `transport_socket_matches` entry: name, `match` fields, socket (`None`: plaintext).
pub type SocketMatch = (
    String,
    Vec<(String, String)>,
    Option<Arc<crate::tls::UpstreamTls>>,
);

/// The hosts of an `ORIGINAL_DST` cluster, created as connections ask for them.
#[derive(Debug)]
pub struct OriginalDst {
    /// `original_dst_lb_config.use_http_header`: take the host from a request header.
    pub use_http_header: bool,
    /// The header (default `x-envoy-original-dst-host`).
    pub http_header_name: http::HeaderName,
    /// `upstream_port_override`.
    pub port_override: Option<u16>,
    /// Hosts in use, by address; unused ones are dropped as new ones are added.
    hosts: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
}

/// One upstream host.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Load-balancing weight (at least 1).
    pub weight: u32,
    /// Priority level (`LocalityLbEndpoints.priority`).
    pub priority: u32,
    /// Locality index within the load assignment (for locality weighting).
    pub locality: u32,
    /// The locality's `load_balancing_weight` (0 when unset).
    pub locality_weight: u32,
    /// False when the endpoint must not receive traffic (health status from configuration).
    pub healthy: AtomicBool,
    /// Outlier detection state (ejection).
    pub outlier: OutlierState,
    /// Requests in flight to this endpoint (least-request balancing, `/clusters`).
    pub active_requests: AtomicU64,
    /// Requests sent to this endpoint in total (`/clusters`).
    pub total_requests: AtomicU64,
    /// Connections to this endpoint.
    pub pool: Pool,
    /// `envoy.transport_socket_match` metadata, flattened (for pools keyed by transport).
    pub socket_match: Vec<(String, String)>,
}

impl Endpoint {
    /// Whether the endpoint may take traffic now: healthy and not ejected. A host whose
    /// ejection time is over is returned to service here.
    pub fn available(&self, stats: &ClusterStats) -> bool {
        if !self.healthy.load(Ordering::Relaxed) {
            return false;
        }
        let (ejected, returned) = self.outlier.ejected();
        if returned {
            stats
                .outlier_ejections_active
                .fetch_sub(1, Ordering::Relaxed);
        }
        !ejected
    }

    /// True while outlier detection keeps the host out (for `/clusters`).
    pub fn is_ejected(&self) -> bool {
        self.outlier.ejected().0
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
    /// Priority level (0 is the highest).
    pub priority: u32,
    /// Locality index within the assignment.
    pub locality: u32,
    /// Locality weight (0 when unset).
    pub locality_weight: u32,
    /// The endpoint's `envoy.transport_socket_match` metadata as (key, value) pairs.
    pub socket_match: Vec<(String, String)>,
}

impl EndpointSpec {
    /// A healthy endpoint of weight 1 at priority 0.
    pub fn new(addr: SocketAddr) -> Self {
        EndpointSpec {
            addr,
            weight: 1,
            healthy: true,
            priority: 0,
            locality: 0,
            locality_weight: 0,
            socket_match: Vec::new(),
        }
    }
}

impl Cluster {
    /// Reserves a request slot (`max_requests` of `priority`), or `None` on overflow.
    pub fn try_acquire(&self, priority: Priority) -> Option<Slot> {
        self.breakers.request(priority)
    }

    /// Requests in flight (all priorities).
    pub fn active_requests(&self) -> u64 {
        self.breakers
            .levels
            .iter()
            .map(|l| l.requests.load(Ordering::Relaxed))
            .sum()
    }

    /// The current endpoint set.
    pub fn endpoints(&self) -> arc_swap::Guard<Arc<EndpointSet>> {
        self.endpoints.load()
    }

    /// Replaces the endpoints (what EDS will call). Endpoints whose address, weight and
    /// priority stay keep their connection pool, counters and outlier state; requests in
    /// flight finish on the endpoints they have.
    pub fn replace_endpoints(&self, specs: &[EndpointSpec]) {
        let old = self.endpoints.load_full();
        let set = self.build(specs, Some(&old));
        self.endpoints.store(Arc::new(set));
    }

    fn build(&self, specs: &[EndpointSpec], previous: Option<&EndpointSet>) -> EndpointSet {
        build_set(
            specs,
            previous,
            &self.lb,
            self.pool,
            &self.breakers,
            &self.transport,
        )
    }

    /// Picks an available endpoint with the cluster's policy; `None` means "no healthy
    /// upstream".
    pub fn pick(&self) -> Option<EndpointLease> {
        self.pick_with(&PickCtx::default())
    }

    /// Picks an endpoint for a request with a hash and hosts to avoid.
    pub fn pick_with(&self, ctx: &PickCtx<'_>) -> Option<EndpointLease> {
        if let Some(od) = &self.original_dst {
            let mut addr = ctx.original_dst?;
            if let Some(p) = od.port_override {
                addr.set_port(p);
            }
            let ep = self.original_dst_host(od, addr);
            ep.active_requests.fetch_add(1, Ordering::Relaxed);
            ep.total_requests.fetch_add(1, Ordering::Relaxed);
            return Some(EndpointLease { endpoint: ep });
        }
        let set = self.endpoints.load();
        let ep = set.pick(&self.stats, ctx)?;
        ep.active_requests.fetch_add(1, Ordering::Relaxed);
        ep.total_requests.fetch_add(1, Ordering::Relaxed);
        Some(EndpointLease { endpoint: ep })
    }

    fn original_dst_host(&self, od: &OriginalDst, addr: SocketAddr) -> Arc<Endpoint> {
        let mut hosts = od.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ep) = hosts.get(&addr) {
            return Arc::clone(ep);
        }
        if hosts.len() >= 256 {
            // Hosts no request holds and with no open connection go (Envoy's cleanup).
            hosts.retain(|_, ep| Arc::strong_count(ep) > 1 || ep.pool.idle() > 0);
        }
        let spec = EndpointSpec::new(addr);
        let ep = new_endpoint(&spec, self.pool, &self.breakers, &self.transport);
        hosts.insert(addr, Arc::clone(&ep));
        ep
    }

    /// Tells outlier detection how a request to `ep` went; may eject the host.
    pub fn report(&self, ep: &Endpoint, outcome: Outcome) {
        let Some(cfg) = &self.outlier else {
            return;
        };
        let Some(reason) = ep.outlier.record(cfg, outcome) else {
            return;
        };
        let set = self.endpoints.load();
        let total = set.endpoints.len() as u64;
        let ejected = set.endpoints.iter().filter(|e| e.is_ejected()).count() as u64;
        // At least one host can always be ejected (Envoy's rule since 1.24).
        if ejected > 0 && (ejected + 1) * 100 > u64::from(cfg.max_ejection_percent) * total {
            self.stats
                .outlier_ejections_overflow
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let time = ep.outlier.eject(cfg);
        let s = &self.stats;
        s.outlier_ejections_enforced_total
            .fetch_add(1, Ordering::Relaxed);
        s.outlier_ejections_active.fetch_add(1, Ordering::Relaxed);
        match reason {
            outlier::Reason::Consecutive5xx => &s.outlier_ejections_enforced_consecutive_5xx,
            outlier::Reason::ConsecutiveGatewayFailure => {
                &s.outlier_ejections_enforced_consecutive_gateway_failure
            }
            outlier::Reason::ConsecutiveLocalOriginFailure => {
                &s.outlier_ejections_enforced_consecutive_local_origin_failure
            }
        }
        .fetch_add(1, Ordering::Relaxed);
        tracing::info!(cluster = %self.name, host = %ep.addr, ?reason, ?time, "outlier detection: host ejected");
    }
}

fn new_endpoint(
    s: &EndpointSpec,
    pool: PoolOptions,
    breakers: &Arc<Breakers>,
    transport: &TransportSelector,
) -> Arc<Endpoint> {
    Arc::new(Endpoint {
        addr: s.addr,
        weight: s.weight.max(1),
        priority: s.priority,
        locality: s.locality,
        locality_weight: s.locality_weight,
        healthy: AtomicBool::new(s.healthy),
        outlier: OutlierState::default(),
        active_requests: AtomicU64::new(0),
        total_requests: AtomicU64::new(0),
        pool: Pool::new(
            s.addr,
            pool,
            Arc::clone(breakers),
            transport.select(&s.socket_match),
        ),
        socket_match: s.socket_match.clone(),
    })
}

fn build_set(
    specs: &[EndpointSpec],
    previous: Option<&EndpointSet>,
    lb: &LbSettings,
    pool: PoolOptions,
    breakers: &Arc<Breakers>,
    transport: &TransportSelector,
) -> EndpointSet {
    let endpoints: Vec<Arc<Endpoint>> = specs
        .iter()
        .map(|s| {
            let weight = s.weight.max(1);
            if let Some(old) = previous.and_then(|p| {
                p.endpoints.iter().find(|e| {
                    e.addr == s.addr
                        && e.weight == weight
                        && e.priority == s.priority
                        && e.locality == s.locality
                        && e.locality_weight == s.locality_weight
                        && e.socket_match == s.socket_match
                })
            }) {
                old.healthy.store(s.healthy, Ordering::Relaxed);
                return Arc::clone(old);
            }
            new_endpoint(s, pool, breakers, transport)
        })
        .collect();
    EndpointSet::new(endpoints, lb)
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
                priority: locality.priority,
                locality: li as u32,
                locality_weight: locality
                    .load_balancing_weight
                    .as_ref()
                    .map_or(0, |w| w.value),
                socket_match: lbe
                    .metadata
                    .as_ref()
                    .and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH))
                    .map(flatten_struct)
                    .unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// The metadata namespace `transport_socket_matches` look at.
const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

/// The top-level fields of a `Struct` with scalar values, as strings (numbers in their
/// shortest form, booleans as `true`/`false`), sorted by key.
fn flatten_struct(s: &weft_xds::google::protobuf::Struct) -> Vec<(String, String)> {
    use weft_xds::google::protobuf::value::Kind;
    let mut out: Vec<(String, String)> = s
        .fields
        .iter()
        .filter_map(|(k, v)| {
            let v = match v.kind.as_ref()? {
                Kind::StringValue(s) => s.clone(),
                Kind::NumberValue(n) => n.to_string(),
                Kind::BoolValue(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect();
    out.sort();
    out
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
    secrets: &crate::tls::SecretStore,
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
    let is_original_dst =
        c.cluster_discovery_type == Some(cl::cluster::ClusterDiscoveryType::Type(4));
    match &c.cluster_discovery_type {
        None | Some(cl::cluster::ClusterDiscoveryType::Type(0 | 4)) => {}
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
    let mut lb = LbSettings {
        policy: match c.lb_policy {
            0 => LbPolicy::RoundRobin,
            1 => LbPolicy::LeastRequest,
            2 => LbPolicy::RingHash,
            3 => LbPolicy::Random,
            5 => LbPolicy::Maglev,
            // CLUSTER_PROVIDED: ORIGINAL_DST clusters pick their own host.
            6 if is_original_dst => LbPolicy::RoundRobin,
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
        },
        ..LbSettings::default()
    };
    match &c.lb_config {
        Some(cl::cluster::LbConfig::LeastRequestLbConfig(l)) => {
            if let Some(n) = &l.choice_count {
                lb.choice_count = n.value.max(2);
            }
        }
        Some(cl::cluster::LbConfig::RingHashLbConfig(r)) => {
            if let Some(n) = &r.minimum_ring_size {
                lb.min_ring_size = n.value.max(1);
            }
            if let Some(n) = &r.maximum_ring_size {
                lb.max_ring_size = n.value.max(1);
            }
            lb.min_ring_size = lb.min_ring_size.min(lb.max_ring_size);
        }
        Some(cl::cluster::LbConfig::MaglevLbConfig(m)) => {
            if let Some(n) = &m.table_size {
                lb.maglev_table_size = n.value.max(2);
            }
        }
        Some(_) | None => {}
    }
    if let Some(common) = &c.common_lb_config {
        if let Some(p) = &common.healthy_panic_threshold {
            lb.panic_threshold = p.value.clamp(0.0, 100.0) as u32;
        }
        use cl::cluster::common_lb_config::LocalityConfigSpecifier as L;
        match &common.locality_config_specifier {
            Some(L::LocalityWeightedLbConfig(_)) => lb.locality_weighted = true,
            Some(L::ZoneAwareLbConfig(_)) => warnings.push(Unsupported {
                resource: resource.clone(),
                what: "common_lb_config.zone_aware_lb_config".into(),
            }),
            None => {}
        }
    }
    if let Some(f) = c
        .load_assignment
        .as_ref()
        .and_then(|a| a.policy.as_ref())
        .and_then(|p| p.overprovisioning_factor.as_ref())
    {
        lb.overprovisioning = f.value.max(1);
    }
    #[allow(deprecated)]
    let mut protocol = if c.http2_protocol_options.is_some() {
        UpstreamProtocol::Http2
    } else {
        UpstreamProtocol::Http1
    };
    let mut pool = PoolOptions {
        max_idle: max_idle_per_endpoint,
        ..PoolOptions::default()
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
        if let Some(common) = &opts.common_http_protocol_options {
            if let Some(t) = &common.idle_timeout {
                pool.idle_timeout = Some(duration(t)).filter(|d| !d.is_zero());
            }
            if let Some(m) = &common.max_requests_per_connection {
                pool.max_requests_per_connection = Some(m.value).filter(|m| *m > 0);
            }
        }
        crate::config::supported::check(
            &opts,
            &resource,
            &format!("typed_extension_protocol_options[{key}]"),
            warnings,
        );
    }
    let mut breakers = Breakers::default();
    if let Some(cb) = &c.circuit_breakers {
        for t in &cb.thresholds {
            let level = &mut breakers.levels[if t.priority == 1 { 1 } else { 0 }];
            let set = |v: &Option<weft_xds::google::protobuf::UInt32Value>, slot: &mut u64| {
                if let Some(v) = v {
                    *slot = u64::from(v.value);
                }
            };
            set(&t.max_connections, &mut level.max_connections);
            set(&t.max_pending_requests, &mut level.max_pending_requests);
            set(&t.max_requests, &mut level.max_requests);
            set(&t.max_retries, &mut level.max_retries);
        }
    }
    let breakers = Arc::new(breakers);
    let outlier = c.outlier_detection.as_ref().map(OutlierConfig::compile);
    let specs = match &c.load_assignment {
        Some(cla) => endpoint_specs(cla, &resource)?,
        None => Vec::new(),
    };
    let mut transport = TransportSelector::default();
    let h2 = protocol == UpstreamProtocol::Http2;
    if let Some(ts) = &c.transport_socket {
        transport.default =
            crate::tls::compile_upstream(ts, secrets, &resource, "transport_socket", h2, warnings)?;
    }
    for (i, m) in c.transport_socket_matches.iter().enumerate() {
        let field = format!("transport_socket_matches[{i}]");
        let socket = match &m.transport_socket {
            Some(ts) => crate::tls::compile_upstream(
                ts,
                secrets,
                &resource,
                &format!("{field}.transport_socket"),
                h2,
                warnings,
            )?,
            None => None,
        };
        let want = m.r#match.as_ref().map(flatten_struct).unwrap_or_default();
        transport.matches.push((m.name.clone(), want, socket));
    }
    let original_dst = if is_original_dst {
        let cfg = match &c.lb_config {
            Some(cl::cluster::LbConfig::OriginalDstLbConfig(o)) => Some(o),
            _ => None,
        };
        let header = cfg
            .map(|o| o.http_header_name.as_str())
            .filter(|h| !h.is_empty())
            .unwrap_or("x-envoy-original-dst-host");
        Some(OriginalDst {
            use_http_header: cfg.is_some_and(|o| o.use_http_header),
            http_header_name: http::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
                .map_err(|e| CompileError::Invalid {
                    resource: resource.clone(),
                    field: "original_dst_lb_config.http_header_name".into(),
                    reason: format!("{header:?} is not a header name: {e}"),
                })?,
            port_override: match cfg.and_then(|o| o.upstream_port_override.as_ref()) {
                Some(p) => Some(u16::try_from(p.value).map_err(|_| CompileError::Invalid {
                    resource: resource.clone(),
                    field: "original_dst_lb_config.upstream_port_override".into(),
                    reason: format!("{} is not a port", p.value),
                })?),
                None => None,
            },
            hosts: Mutex::new(HashMap::new()),
        })
    } else {
        None
    };
    let set = build_set(&specs, None, &lb, pool, &breakers, &transport);
    Ok(Cluster {
        name: c.name.clone(),
        connect_timeout: c
            .connect_timeout
            .as_ref()
            .map_or(Duration::from_secs(5), duration),
        lb,
        protocol,
        endpoints: ArcSwap::from_pointee(set),
        breakers,
        outlier,
        pool,
        stats,
        transport: Arc::new(transport),
        original_dst,
        telemetry: crate::telemetry::ClusterTelemetry::new(c),
    })
}
